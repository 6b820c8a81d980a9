"""One frame through the tip model: ROI -> tiles -> heatmaps -> peaks -> full-frame tips.

Shared by the pipeline's `HrnetDetector`, the training loop's validation pass
and the export's held-out evaluation, so that what is measured is what runs.
`infer` is any callable (B, 1, H, W) float32 -> (B, 2, H/s, W/s) (an
`Engine.infer`, or a torch model wrapped by `torch_infer`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from inspectd.imaging.canonical import points_to_canonical
from inspectd.tips.codec import HeatmapCodec
from inspectd.tips.comb import fill_alternation_breaks
from inspectd.tips.crop import CropPlan, InputSpec, make_batch, pitch_candidates

__all__ = ["FrameTips", "detect_tips", "drop_stray_back_cathodes", "merge_tiles"]

InferFn = Callable[[np.ndarray], np.ndarray]

# Peaks between this fraction of the threshold and the threshold are kept apart as "doubt": evidence the
# model half-saw (a missed tip, or a tip it nearly invented). They never become tips; the confidence gate
# reads the strongest one. Decoding lower changes no accepted peak (NMS runs strongest first).
DOUBT_FLOOR = 0.5
MIN_SCALE_TIPS = 6  # a pitch candidate whose tiles show fewer tips than this is not one (a stack has more)


@dataclass
class FrameTips:
    anode: np.ndarray  # (N, 3) [x, y, score], full-frame px, ordered along the stack
    cathode: np.ndarray  # (M, 3)
    plan: CropPlan
    heatmaps: np.ndarray | None = None  # (B, 2, h, w) when kept
    doubt: np.ndarray | None = None  # (K, 3) [x, y, score] peaks below the threshold but above DOUBT_FLOOR of it


def merge_tiles(heatmaps: np.ndarray, plan: CropPlan, codec: HeatmapCodec, threshold: float, method: str) -> list[np.ndarray]:
    """Decode every tile, keep each tile's own rows, map to full-frame px; per class (N, 3), along the stack."""
    per_class: list[list[np.ndarray]] = [[] for _ in range(heatmaps.shape[1])]
    for k in range(len(plan.tiles)):
        dets = codec.decode(heatmaps[k], threshold, method)
        for c, d in enumerate(dets):
            if len(d) == 0:
                continue
            if len(plan.tiles) > 1:
                d = d[plan.owned(d[:, :2], k)]
                if len(d) == 0:
                    continue
            full = plan.to_full(d[:, :2], k)
            per_class[c].append(np.column_stack([full, d[:, 2]]))
    out = []
    for lst in per_class:
        pts = np.vstack(lst) if lst else np.zeros((0, 3))
        out.append(_along_stack(pts, plan))
    return out


def _along_stack(pts: np.ndarray, plan: CropPlan) -> np.ndarray:
    if len(pts) < 2:
        return pts
    key = pts[:, 1] if plan.orientation.horizontal_layers else pts[:, 0]
    return pts[np.argsort(key, kind="stable")]


def detect_tips(
    infer: InferFn,
    img8: np.ndarray,
    roi,
    spec: InputSpec,
    codec: HeatmapCodec,
    threshold: float | None = None,
    method: str | None = None,
    pitch: float | None = None,
    keep_heatmaps: bool = False,
    fill_breaks: bool = False,
) -> FrameTips:
    """Tips of one frame (uint8 `img8`, windowed) inside `roi` (full-frame px, with orientation).

    Without a `pitch`, the frame's own (crop.pitch_candidates); when the image
    leaves it open, the model is run at each candidate and the one whose tips
    it is surest of (highest mean peak score, at least MIN_SCALE_TIPS tips)
    wins: on the 40 held-out simulator and real frames where this happens,
    missed + false tips 701 -> 550 against the size rule alone (the best
    candidate each time, known from the labels: 380). `fill_breaks`: complete
    the comb from sub-threshold peaks (tips/comb.py).
    """
    candidates = [(pitch, "given")] if pitch is not None else pitch_candidates(img8, roi, spec)
    best: FrameTips | None = None
    best_score = -1.0
    for p, src in candidates:
        ft = _detect_at(infer, img8, roi, spec, codec, threshold, method, p, src, keep_heatmaps, fill_breaks)
        if len(candidates) == 1:
            return ft
        scores = np.concatenate([ft.anode[:, 2], ft.cathode[:, 2]])
        score = float(scores.mean()) if len(scores) >= MIN_SCALE_TIPS else 0.0
        if best is None or score > best_score:
            best, best_score = ft, score
    assert best is not None
    best.plan = dataclasses.replace(best.plan, pitch_source=f"{best.plan.pitch_source}/{len(candidates)} tried")
    return best


def _detect_at(infer, img8, roi, spec, codec, threshold, method, pitch, source, keep_heatmaps, fill_breaks) -> FrameTips:
    batch, plan = make_batch(img8, roi, spec, pitch, source)
    hm = np.asarray(infer(batch), np.float32)
    thr = codec.threshold if threshold is None else threshold
    a, c = merge_tiles(hm, plan, codec, DOUBT_FLOOR * thr, method or codec.decoder)
    low_a, low_c = a[a[:, 2] < thr], c[c[:, 2] < thr]
    a, c = a[a[:, 2] >= thr], c[c[:, 2] >= thr]
    if spec.back_pitches > 0:
        c = drop_stray_back_cathodes(a, c, plan)
    if fill_breaks:
        a, c, low_a, low_c = fill_alternation_breaks(a, c, low_a, low_c, plan)
        a, c = _along_stack(a, plan), _along_stack(c, plan)
    return FrameTips(a, c, plan, hm if keep_heatmaps else None, np.vstack([low_a, low_c]))


def drop_stray_back_cathodes(anode: np.ndarray, cathode: np.ndarray, plan: CropPlan, behind: float = 6.0) -> np.ndarray:
    """Drop cathode peaks far behind the cathode front unless they fill an empty slot between two anodes.

    Tiles reaching far behind the front (``back_pitches``) let the model see a
    cathode pulled back by more than the recipe's overhang, but they also show
    it the layers' bodies and the stack's ends, where it fires now and then
    (measured on 80 healthy simulator frames: 6 stray cathodes 15-25 pitches
    behind the front). A real pulled-back cathode lies between two adjacent
    anodes and is the only cathode there. So a cathode more than `behind`
    same-class pitches behind the median cathode is kept only if it lies
    between two anodes (along the stack) and no other cathode does.
    """
    if len(cathode) < 3 or len(anode) < 2:
        return cathode
    cc = points_to_canonical(cathode[:, :2], plan.orientation, plan.frame_shape)
    back = cc[:, 0] < np.median(cc[:, 0]) - behind * plan.pitch
    if not back.any():
        return cathode
    ay = np.sort(points_to_canonical(anode[:, :2], plan.orientation, plan.frame_shape)[:, 1])
    front_y = cc[~back, 1]
    keep = np.ones(len(cathode), bool)
    for i in np.flatnonzero(back):
        y = cc[i, 1]
        j = int(np.searchsorted(ay, y))
        if j == 0 or j == len(ay):  # beyond the stack's end anodes
            keep[i] = False
            continue
        lo, hi = ay[j - 1], ay[j]
        keep[i] = not np.any((front_y > lo) & (front_y < hi))
    return cathode[keep]
