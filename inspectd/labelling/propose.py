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
    review: list[dict] = field(default_factory=list)  # {"class", "index", "why"}: for a person to look at
    agreed: int = 0  # tips both finders put within AGREE_PX
    error: str | None = None  # no stack, no model: nothing proposed


def locate_detail(img8: np.ndarray, cfg: Config) -> RoiDetail | None:
    """The ROI search with its fronts, at full resolution, trying the corner passes `locate` tries."""
    for cc in corner_attempts(cfg.corners, img8.shape):
        detail = find_roi_detail(img8, detect_corners(img8, cc), cfg.roi)
        if detail is not None:
            return detail
    return None


def _merge(model: np.ndarray, prof: np.ndarray, cls: str, agree: float, gate: float):
    pairs, only_model, only_prof = match_tips(model, prof, gate)
    pts, why = [], []
    agreed = 0
    for i, j in pairs:
        d = float(np.hypot(*(model[i] - prof[j])))
        pts.append(prof[j])
        if d <= agree:
            agreed += 1
            why.append(None)
        else:
            why.append(f"model and profile {d:.1f} px apart (model at {model[i][0]:.1f}, {model[i][1]:.1f})")
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
    agreed = 0
    for cls, m, p in (("anode", model_a, prof.anode), ("cathode", model_c, prof.cathode)):
        if detector is None:  # profile only: nothing to compare
            pts, why, n = p, [None] * len(p), 0
        else:
            pts, why, n = _merge(m, p, cls, AGREE_PX * scale, gate)
        pts, why = _along_stack(pts, why, horizontal)
        out[cls] = pts
        agreed += n
        review += [{"class": cls, "index": k, "why": w} for k, w in enumerate(why) if w]
    return Proposal(frame.frame_id, out["anode"], out["cathode"], review, agreed, error)
