"""Scoring one image: its predicted tips matched to its labels, counts, NME/PCK, overhang error, verdict.

`evaluate_image` joins one labelled frame (sidecar) with its verdict; the
figures are defined in `metrics.py`'s docstring and docs/accuracy.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from inspectd.evaluation.matching import default_gate, match_tips, pts
from inspectd.inspection.measure import infer_tip_direction, measure

__all__ = ["CLASSES", "ImageEval", "PCK_THRESHOLDS", "evaluate_image"]

PCK_THRESHOLDS = (0.005, 0.01)  # 0.5 %, 1 % of the ROI diagonal
CLASSES = ("anode", "cathode")
DEFAULT_GATE_FRAC = 0.02  # no pitch to gate by: 2 % of the ROI diagonal
FALLBACK_GATE_PX = 10.0  # else 10 px


@dataclass
class ImageEval:
    frame_id: str
    diag: float | None  # ROI diagonal (px) used as normaliser
    diag_source: str  # "gt_roi" | "verdict_roi" | "gt_bbox" | "none"
    gate_px: float
    n_gt: dict[str, int]
    n_pred: dict[str, int]
    n_matched: dict[str, int]
    errors_px: dict[str, list[float]]  # matched errors, per class (gt order)
    n_missed: int
    n_false: int
    max_norm_error: float | None  # largest err/d over matched tips (None if no match or no diag)
    pck_hits: dict[float, int]  # labelled tips within t·d, per threshold
    pcs_pass: dict[float, bool | None]  # None when no diag
    overhang_abs_err_mm: list[float]
    expected: str | None
    predicted: str
    latency_ms: float | None
    t_published_ns: int | None

    @property
    def count_ok(self) -> dict[str, bool]:
        return {k: self.n_pred[k] == self.n_gt[k] for k in CLASSES}

    @property
    def pck(self) -> dict[float, float | None]:
        """Per-image PCK: labelled tips within t·d over labelled tips (misses fail)."""
        n = sum(self.n_gt.values())
        return {t: (h / n if (n and self.diag) else None) for t, h in self.pck_hits.items()}

    @property
    def nme(self) -> float | None:
        e = [x for k in CLASSES for x in self.errors_px[k]]
        if not e or not self.diag:
            return None
        return float(np.mean(e) / self.diag)


def _get_tips(d: Mapping[str, Any], key: str) -> np.ndarray:
    if d is None:
        return np.zeros((0, 2))
    v = d.get(key)
    if v is None and isinstance(d.get("labels"), Mapping):
        v = d["labels"].get(key)
    return pts(v)


def _box_diag(box) -> float | None:
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    d = math.hypot(x1 - x0, y1 - y0)
    return d if d > 0 and math.isfinite(d) else None


def _normaliser(gt: Mapping[str, Any], verdict: Mapping[str, Any], gt_all: np.ndarray) -> tuple[float | None, str]:
    for key in ("roi_diagonal", "roi_diag"):
        v = gt.get(key)
        if v is not None and float(v) > 0:
            return float(v), "gt_roi"
    if gt.get("roi") is not None:
        d = _box_diag(gt["roi"])
        if d:
            return d, "gt_roi"
    if verdict.get("roi") is not None:
        d = _box_diag(verdict["roi"])
        if d:
            return d, "verdict_roi"
    if len(gt_all) >= 2:
        span = gt_all.max(axis=0) - gt_all.min(axis=0)
        d = float(math.hypot(*span))
        if d > 0:
            return d, "gt_bbox"
    return None, "none"


def _as_dict(obj: Any) -> dict:
    if obj is None:
        return {}
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", by_alias=True)
    return dict(obj)


def evaluate_image(
    frame_id: str,
    gt: Mapping[str, Any],
    verdict: Mapping[str, Any] | Any,
    gate_px: float | None = None,
    gate_frac: float = DEFAULT_GATE_FRAC,
) -> ImageEval:
    """Match and score one image (see the module docstring)."""
    gt = _as_dict(gt)
    v = _as_dict(verdict)
    g = {"anode": _get_tips(gt, "anode_tips"), "cathode": _get_tips(gt, "cathode_tips")}
    p = {"anode": _get_tips(v, "anode_tips"), "cathode": _get_tips(v, "cathode_tips")}
    diag, source = _normaliser(gt, v, np.concatenate([g["anode"], g["cathode"]]))
    if gate_px is not None:
        gate = float(gate_px)
    else:
        gate = default_gate(g["anode"], g["cathode"])
        if gate is None:
            gate = gate_frac * diag if diag else FALLBACK_GATE_PX

    errors: dict[str, list[float]] = {}
    pairs_by: dict[str, np.ndarray] = {}
    n_missed = n_false = 0
    for k in CLASSES:
        pairs, up, ug = match_tips(p[k], g[k], gate)
        pairs_by[k] = pairs
        errors[k] = [float(np.hypot(*(p[k][i] - g[k][j]))) for i, j in pairs]
        n_missed += len(ug)
        n_false += len(up)

    all_err = np.array([e for k in CLASSES for e in errors[k]])
    n_gt_total = sum(len(g[k]) for k in CLASSES)
    max_norm = float(all_err.max() / diag) if (diag and all_err.size) else None
    pck_hits = {t: (int(np.sum(all_err <= t * diag)) if diag else 0) for t in PCK_THRESHOLDS}
    pcs: dict[float, bool | None] = {}
    for t in PCK_THRESHOLDS:
        if not diag:
            pcs[t] = None
        elif n_missed:
            pcs[t] = False
        elif n_gt_total == 0:
            pcs[t] = True
        else:
            pcs[t] = bool(max_norm is not None and max_norm <= t)

    # Overhang error per matched cathode.
    ov_err: list[float] = []
    mm = gt.get("mm_per_px")
    if mm and len(pairs_by["cathode"]) and len(g["anode"]) and len(p["anode"]):
        direction = gt.get("tip_direction") or infer_tip_direction(g["anode"], g["cathode"])
        if direction is not None:
            mg = measure(g["anode"], g["cathode"], direction, float(mm))
            mp = measure(p["anode"], p["cathode"], direction, float(mm))
            # measure() reorders: map input index -> ordered index.
            g_pos = np.empty(len(g["cathode"]), np.int64)
            g_pos[mg.cathode_input_index] = np.arange(len(g["cathode"]))
            p_pos = np.empty(len(p["cathode"]), np.int64)
            p_pos[mp.cathode_input_index] = np.arange(len(p["cathode"]))
            for i, j in pairs_by["cathode"]:
                a, b = mp.overhang_min_mm[p_pos[i]], mg.overhang_min_mm[g_pos[j]]
                if np.isfinite(a) and np.isfinite(b):
                    ov_err.append(float(abs(a - b)))

    expected = gt.get("expected")
    lat = v.get("latency_ms")
    tpub = v.get("t_published_ns")
    return ImageEval(
        frame_id=str(frame_id),
        diag=diag,
        diag_source=source,
        gate_px=gate,
        n_gt={k: int(len(g[k])) for k in CLASSES},
        n_pred={k: int(len(p[k])) for k in CLASSES},
        n_matched={k: int(len(pairs_by[k])) for k in CLASSES},
        errors_px=errors,
        n_missed=int(n_missed),
        n_false=int(n_false),
        max_norm_error=max_norm,
        pck_hits=pck_hits,
        pcs_pass=pcs,
        overhang_abs_err_mm=ov_err,
        expected=str(expected) if expected is not None else None,
        predicted=str(v.get("result", "ERROR")),
        latency_ms=float(lat) if lat is not None and float(lat) > 0 else None,
        t_published_ns=int(tpub) if tpub else None,
    )
