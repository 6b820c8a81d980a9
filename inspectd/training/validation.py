"""Validation of a tip model during training and export: the inference path on held-out labelled frames.

Runs `infer.detect_tips` (pitch estimate, tiles, decode) on frames with an
ROI box made from their labels the way `find_roi` pads it, and reports median
/ p95 / p99 tip error (full-frame px), miss and false-tip rates
(`inspectd.evaluation.matching.match_tips`, gate 3/4 of the same-class pitch)
at the threshold that minimises miss + FALSE_WEIGHT x false rate on that set.

False tips weigh more than misses because they fail unsafe: a cathode the
model invents in the gap of a missing layer makes the count right and passes
a bad cell (seen once on 159 defective held-out frames at threshold 0.60,
where miss + false put it), while a missed tip rejects a good one or stops it
at the confidence gate.
"""

from __future__ import annotations

import math

FALSE_WEIGHT = 3.0  # a false tip costs this many missed ones when the threshold is chosen (module docstring)
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspectd.config import RoiConfig
from inspectd.evaluation.matching import default_gate, match_tips
from inspectd.frames import iter_dump
from inspectd.frames.dumps import FrameReadError
from inspectd.imaging.canonical import box_from_canonical, canonical_shape, points_to_canonical
from inspectd.imaging.region import Roi
from inspectd.imaging.window import to_8bit
from inspectd.tips.codec import HeatmapCodec
from inspectd.tips.crop import InputSpec, make_batch
from inspectd.tips.geometry import orientation_from_labels
from inspectd.tips.infer import merge_tiles

__all__ = ["THRESHOLDS", "ValFrame", "roi_from_labels", "val_frames", "validate"]

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.10, 0.71, 0.05))


def roi_from_labels(anode: np.ndarray, cathode: np.ndarray, shape, rng: np.random.Generator | None = None):
    """A ROI box around labelled tips padded the way `find_roi` pads its box (docs/roi.md)."""

    o = orientation_from_labels(anode, cathode)
    pts = points_to_canonical(np.vstack([anode, cathode]), o, shape)
    h_c, w_c = canonical_shape(shape, o)
    size = max(shape)
    y0, y1 = pts[:, 1].min(), pts[:, 1].max()
    x0, x1 = pts[:, 0].min(), pts[:, 0].max()
    h = y1 - y0

    rc = RoiConfig()
    lam, mf, py, mp = (getattr(rc, k, d) for k, d in (("lam", 0.26), ("margin_frac", 0.03), ("pad_y", 0.09), ("margin_px", 8)))
    half_w = max(lam * h, 0.5 * (x1 - x0) + 0.1 * h) + mf * size + mp
    half_h = (0.5 + py) * h + mp
    xm, ym = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    box = (
        max(0, int(math.floor(xm - half_w))),
        max(0, int(math.floor(ym - half_h))),
        min(w_c, int(math.ceil(xm + half_w)) + 1),
        min(h_c, int(math.ceil(ym + half_h)) + 1),
    )
    fx0, fy0, fx1, fy1 = box_from_canonical(box, o, shape)
    return Roi(fx0, fy0, fx1, fy1, o)


@dataclass
class ValFrame:
    frame_id: str
    img8: np.ndarray
    anode: np.ndarray
    cathode: np.ndarray
    roi: Roi


def val_frames(dumps: list[Path], n: int, roi: str = "labels") -> list[ValFrame]:
    """Up to `n` labelled frames spread over `dumps` (the first frames of each, proportionally)."""

    per = max(1, int(math.ceil(n / max(1, len(dumps)))))
    out = []
    for d in dumps:
        k = 0
        for fr in iter_dump(d):
            if isinstance(fr, FrameReadError) or fr.meta.labels is None:
                continue
            a, c = fr.meta.labels.arrays()
            if len(a) == 0 or len(c) == 0:
                continue
            img8 = to_8bit(fr.image, fr.bit_depth)
            if roi == "find_roi":
                from inspectd.config import CornerConfig, RoiConfig
                from inspectd.inspection.corners import detect_corners
                from inspectd.inspection.roi import find_roi

                r = find_roi(img8, detect_corners(img8, CornerConfig()), RoiConfig())
            else:
                r = roi_from_labels(a, c, img8.shape)
            out.append(ValFrame(fr.frame_id, img8, a, c, r))
            k += 1
            if k >= per:
                break
    return out[:n] if len(out) > n else out


def validate(
    infer, frames: list[ValFrame], spec: InputSpec, codec: HeatmapCodec, thresholds=THRESHOLDS, methods=("argmax", "quarter", "dark")
) -> dict:
    """Run the inference path on `frames`; errors (full-frame px), miss/false rates per threshold and decoder."""

    lo_thr = min(thresholds)
    res = {m: {t: {"err": [], "miss": 0, "false": 0, "n_gt": 0, "n_pred": 0} for t in thresholds} for m in methods}
    t_ms = []
    n_frames = 0
    for vf in frames:
        if vf.roi is None:
            for m in methods:
                for t in thresholds:
                    r = res[m][t]
                    r["miss"] += len(vf.anode) + len(vf.cathode)
                    r["n_gt"] += len(vf.anode) + len(vf.cathode)
            continue
        n_frames += 1
        t0 = time.perf_counter()
        batch, plan = make_batch(vf.img8, vf.roi, spec)
        hm = np.asarray(infer(batch), np.float32)
        t_ms.append((time.perf_counter() - t0) * 1000)
        gate = default_gate(vf.anode, vf.cathode) or 7.5
        for m in methods:
            dets = merge_tiles(hm, plan, codec, lo_thr, m)
            for t in thresholds:
                r = res[m][t]
                for pred, gt in zip(dets, (vf.anode, vf.cathode)):
                    p = pred[pred[:, 2] >= t, :2]
                    pairs, up, ug = match_tips(p, gt, gate)
                    if len(pairs):
                        r["err"] += np.hypot(*(p[pairs[:, 0]] - gt[pairs[:, 1]]).T).tolist()
                    r["miss"] += len(ug)
                    r["false"] += len(up)
                    r["n_gt"] += len(gt)
                    r["n_pred"] += len(p)
    table = {}
    for m in methods:
        table[m] = {}
        for t in thresholds:
            r = res[m][t]
            e = np.asarray(r["err"])
            table[m][t] = {
                "median_px": float(np.median(e)) if len(e) else None,
                "p95_px": float(np.percentile(e, 95)) if len(e) else None,
                "p99_px": float(np.percentile(e, 99)) if len(e) else None,
                "miss_rate": r["miss"] / max(1, r["n_gt"]),
                "false_rate": r["false"] / max(1, r["n_pred"]),
                "n_gt": r["n_gt"],
            }
    ref = "dark" if "dark" in methods else methods[0]
    best_t = min(
        thresholds, key=lambda t: (table[ref][t]["miss_rate"] + FALSE_WEIGHT * table[ref][t]["false_rate"], -t)
    )
    best = {m: {"threshold": best_t, **table[m][best_t]} for m in methods}
    return {
        "frames": len(frames),
        "frames_with_roi": n_frames,
        "threshold": best_t,
        "at_threshold": best,
        "by_threshold": {str(t): table[ref][t] for t in thresholds},
        "model_ms_median": float(np.median(t_ms)) if t_ms else None,
        "score": best[ref]["miss_rate"] + best[ref]["false_rate"] + 0.02 * (best[ref]["median_px"] or 10.0),
    }
