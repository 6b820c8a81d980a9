"""One-to-one matching of predicted tips to labelled tips, and the distance gate it uses.

Matching (Hungarian, scipy) decides which prediction is which label; a pair
farther apart than the gate is a miss plus a false tip, not an error of that
size. Training's validation, `inspectd eval` and the ablation all score this way.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["GATE_PITCH_FRAC", "default_gate", "match_tips", "pts"]

GATE_PITCH_FRAC = 0.75  # default gate: 3/4 of the labels' same-class tip pitch


def pts(a) -> np.ndarray:
    arr = np.asarray(a if a is not None else [], dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2))
    return arr.reshape(-1, 2)


def match_tips(pred, gt, gate_px: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of predicted to labelled tips of one class.

    Returns ``(pairs, unmatched_pred, unmatched_gt)``: ``pairs`` an (M, 2) int
    array of ``[pred_index, gt_index]`` rows sorted by gt index, every pair at
    distance ``<= gate_px``; the other two are sorted int index arrays.
    """
    p, g = pts(pred), pts(gt)
    empty = np.zeros((0, 2), dtype=np.int64)
    if len(p) == 0 or len(g) == 0:
        return empty, np.arange(len(p), dtype=np.int64), np.arange(len(g), dtype=np.int64)
    d = np.hypot(p[:, None, 0] - g[None, :, 0], p[:, None, 1] - g[None, :, 1])
    gate = float(gate_px)
    ok = d <= gate
    # A gated-out pair costs more than any set of admissible pairs, so the
    # solver first maximises the number of admissible pairs, then minimises
    # their total distance.
    big = (min(len(p), len(g)) + 1) * max(gate, 1.0) * 4.0 + 1.0
    cost = np.where(ok, d, big)
    r, c = linear_sum_assignment(cost)
    keep = ok[r, c]
    pairs = np.column_stack([r[keep], c[keep]]).astype(np.int64)
    pairs = pairs[np.argsort(pairs[:, 1], kind="stable")] if len(pairs) else empty
    up = np.setdiff1d(np.arange(len(p)), pairs[:, 0]).astype(np.int64)
    ug = np.setdiff1d(np.arange(len(g)), pairs[:, 1]).astype(np.int64)
    return pairs, up, ug


def default_gate(anode_gt, cathode_gt, frac: float = GATE_PITCH_FRAC) -> float | None:
    """``frac`` × the median distance from each labelled tip to the nearest
    labelled tip of its own class (the layer pitch of one class, ~10 px on real
    frames).  A prediction farther than that from a label is nearer to another
    layer's tip than a localisation of this one.  None with < 2 tips per class.
    """
    nn = []
    for g in (pts(anode_gt), pts(cathode_gt)):
        if len(g) >= 2:
            d = np.hypot(g[:, None, 0] - g[None, :, 0], g[:, None, 1] - g[None, :, 1])
            np.fill_diagonal(d, np.inf)
            nn.append(d.min(axis=1))
    if not nn:
        return None
    m = float(np.median(np.concatenate(nn)))
    return frac * m if m > 0 else None
