"""Tip proposals for a person to check: the model's tips beside the profile finder's, disagreements named.

For each frame: locate the stack (the inspection's corners and ROI search, at
full resolution so its fronts are exact), run the tip model and the profile
finder (`profile.py`), and match the two one to one. A tip both found within
`AGREE_PX` is proposed at the profile finder's position (it follows the
labelling convention's levels by construction); a tip only one of them found,
or found by both farther apart, is proposed too, and listed in the sidecar's
``review`` with why, so the review sheet flags it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inspectd.config import Config
from inspectd.evaluation.matching import default_gate, match_tips
from inspectd.frames import Frame
from inspectd.imaging.canonical import Orientation, points_to_canonical
from inspectd.imaging.window import to_8bit
from inspectd.inspection.corners import detect_corners
from inspectd.inspection.roi import RoiDetail, find_roi_detail
from inspectd.inspection.stages import corner_attempts
from inspectd.labelling.profile import profile_tips
from inspectd.tips.detector import DetectionUnavailable, TipDetector

__all__ = ["AGREE_PX", "Proposal", "locate_detail", "propose"]

AGREE_PX = 2.0  # model and profile tips closer than this (px at 1000²; scaled) agree


@dataclass
class Proposal:
    frame_id: str
    anode: np.ndarray
    cathode: np.ndarray
    review: list[dict] = field(default_factory=list)  # {"class", "index", "why"[, "alt"]}: for a person to look at
    dropped: list[str] = field(default_factory=list)  # model-only tips left out as implausible, and why
    agreed: int = 0  # tips both finders put within AGREE_PX
    error: str | None = None  # no stack, no model: nothing proposed
    orientation: Orientation | None = None  # which way the located stack's tips point


def locate_detail(img8: np.ndarray, cfg: Config) -> RoiDetail | None:
    """The ROI search with its fronts, at full resolution, trying the corner passes `locate` tries."""
    for cc in corner_attempts(cfg.corners, img8.shape):
        detail = find_roi_detail(img8, detect_corners(img8, cc), cfg.roi)
        if detail is not None:
            return detail
    return None


def _plausible(model_c: np.ndarray, prof_a: np.ndarray, prof_c: np.ndarray, cls: str) -> tuple[np.ndarray, list[str]]:
    """Which model-only tips (canonical px) fit the stack's structure; reasons for the ones that do not.

    The profile finder's tips are structured by construction (one anode per
    line, one cathode per gap); a model-only tip at the same height as one of
    its own class (within 0.35 of the pitch) is a duplicate, and a cathode out
    at the anode front (beyond half-way from the cathode front to it) is on an
    anode line.
    """
    ok = np.ones(len(model_c), bool)
    why = [""] * len(model_c)
    ya = np.sort(prof_a[:, 1]) if len(prof_a) > 1 else None
    pitch = float(np.median(np.diff(ya))) if ya is not None else None
    same = prof_a if cls == "anode" else prof_c
    for k, (x, y) in enumerate(model_c):
        if pitch and len(same) and np.min(np.abs(same[:, 1] - y)) < 0.35 * pitch:
            ok[k], why[k] = False, f"{cls} at ({x:.1f}, {y:.1f}) canonical: beside one already found"
        elif cls == "cathode" and len(prof_a) and len(prof_c):
            half = 0.5 * (np.median(prof_a[:, 0]) + np.median(prof_c[:, 0]))
            if x > half:
                ok[k], why[k] = False, f"cathode at ({x:.1f}, {y:.1f}) canonical: out at the anode front"
    return ok, why


def _merge(model: np.ndarray, prof: np.ndarray, cls: str, agree: float, gate: float, keep_model=None):
    pairs, only_model, only_prof = match_tips(model, prof, gate)
    if keep_model is not None:
        only_model = [i for i in only_model if keep_model[i]]
    pts, why = [], []
    agreed = 0
    for i, j in pairs:
        d = float(np.hypot(*(model[i] - prof[j])))
        pts.append(prof[j])
        if d <= agree:
            agreed += 1
            why.append(None)
        else:
            why.append((f"model and profile {d:.1f} px apart", [round(float(v), 2) for v in model[i]]))
    for i in only_model:
        pts.append(model[i])
        why.append("model only")
    for j in only_prof:
        pts.append(prof[j])
        why.append("profile only")
    if not pts:
        return np.zeros((0, 2)), [], 0
    p = np.asarray(pts, np.float64)
    return p, why, agreed


def _along_stack(pts: np.ndarray, why: list, horizontal: bool) -> tuple[np.ndarray, list]:
    if len(pts) == 0:
        return pts, why
    order = np.argsort(pts[:, 1] if horizontal else pts[:, 0], kind="stable")
    return pts[order], [why[k] for k in order]


def propose(frame: Frame, detector: TipDetector | None, cfg: Config) -> Proposal:
    """Proposed anode and cathode tips of one frame, with what a person should check."""
    img8 = to_8bit(frame.image, frame.bit_depth)
    detail = locate_detail(img8, cfg)
    empty = np.zeros((0, 2))
    if detail is None:
        return Proposal(frame.frame_id, empty, empty, error="no electrode stack found")
    prof = profile_tips(img8, detail)
    model_a, model_c = empty, empty
    error = None
    if detector is not None:
        try:
            t = detector.detect(frame, img8, detail.roi)
            model_a, model_c = np.asarray(t.anode).reshape(-1, 2), np.asarray(t.cathode).reshape(-1, 2)
        except DetectionUnavailable as e:
            error = f"model: {e}"
    scale = max(img8.shape) / 1000.0
    gate = default_gate(prof.anode, prof.cathode) or 7.5 * scale
    horizontal = detail.roi.orientation.name in ("LEFT", "RIGHT")
    out = {}
    review: list[dict] = []
    dropped: list[str] = []
    agreed = 0
    o = detail.roi.orientation
    canon = {k: points_to_canonical(v, o, img8.shape) for k, v in
             (("pa", prof.anode), ("pc", prof.cathode), ("ma", model_a), ("mc", model_c))}  # fmt: skip
    for cls, m, p in (("anode", model_a, prof.anode), ("cathode", model_c, prof.cathode)):
        if detector is None:  # profile only: nothing to compare
            pts, why, n = p, [None] * len(p), 0
        else:
            pairs, only_model, _ = match_tips(m, p, gate)
            keep = np.ones(len(m), bool)
            if len(only_model):
                idx = np.asarray(only_model)
                ok, reasons = _plausible(canon["m" + cls[0]][idx], canon["pa"], canon["pc"], cls)
                keep[idx] = ok
                dropped += [r for r in reasons if r]
            pts, why, n = _merge(m, p, cls, AGREE_PX * scale, gate, keep)
        pts, why = _along_stack(pts, why, horizontal)
        out[cls] = pts
        agreed += n
        for k, w in enumerate(why):
            if isinstance(w, tuple):  # a second position a person may prefer: the model's
                review.append({"class": cls, "index": k, "why": w[0], "alt": w[1]})
            elif w:
                review.append({"class": cls, "index": k, "why": w})
    return Proposal(frame.frame_id, out["anode"], out["cathode"], review, dropped, agreed, error, o)
