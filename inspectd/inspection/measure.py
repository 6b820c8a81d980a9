"""Overhang measurement from electrode tips (docs/contracts.md §1).

Geometry
--------
Tips are ``[x, y]`` points in full-frame pixels (x right, y down).  The caller
gives ``tip_direction``, the unit vector the tips face in image coordinates
((1, 0): tips point right, (-1, 0): left, (0, -1): up, (0, 1): down).  Every
tip is projected on two axes:

* the **layer axis** ``d = tip_direction``: ``along = p · d``.  The further a
  tip sticks out, the larger its ``along``.
* the **stack axis** ``s``, perpendicular to ``d``, signed so that its dominant
  image component is positive: for horizontal layers (``|dx| >= |dy|``) ``s``
  points down (increasing y), for vertical layers (``|dy| > |dx|``) it points
  right (increasing x).  ``stack = p · s``.

"Along the stack" order is increasing ``stack``: top -> bottom for horizontal
layers, left -> right for vertical ones, whichever way the tips face.  Ties
(equal stack coordinate) are broken by class (anode first) and then by the
input order, so the result is deterministic.

Pairing
-------
Adjacent tips are only 2-6 px apart along the stack but 50-100 px apart along
the layer, and tips jitter a few px; a 2-D nearest-neighbour search would pair a
cathode with an anode of the wrong layer.  Instead all tips are merged into one
sequence ordered along the stack, and every cathode takes as neighbours the
nearest anode *before* it and the nearest anode *after* it in that sequence.
Where one side has no anode (a cathode at the end of the stack, or a missing
end anode) the existing one is used for both sides and the substitution is
recorded in ``neighbour_missing`` / ``one_sided``.

``overhang_px = along(anode) - along(cathode)``: positive when the anode sticks
out beyond the cathode, as on a healthy cell; negative when the cathode sticks
out beyond its anode.  Both sides are reported; the verdict uses the smaller
(``overhang_min_mm``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ANODE = "A"
CATHODE = "C"

__all__ = ["ANODE", "CATHODE", "Measurement", "measure", "stack_axis", "infer_tip_direction"]


def _as_points(a, name: str) -> np.ndarray:
    arr = np.asarray(a if a is not None else [], dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be an (N, 2) array of [x, y], got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds non-finite coordinates")
    return arr


def _unit(direction) -> np.ndarray:
    d = np.asarray(direction, dtype=np.float64).reshape(-1)
    if d.shape != (2,) or not np.all(np.isfinite(d)):
        raise ValueError(f"tip_direction must be a finite (dx, dy) pair, got {direction!r}")
    n = float(np.hypot(d[0], d[1]))
    if n < 1e-12:
        raise ValueError("tip_direction must not be the zero vector")
    return d / n


def stack_axis(tip_direction) -> np.ndarray:
    """Unit vector along the stack for `tip_direction` (see module docstring).

    Horizontal layers (``|dx| >= |dy|``): the perpendicular with positive y
    component (top -> bottom).  Vertical layers: the one with positive x
    component (left -> right).
    """
    d = _unit(tip_direction)
    s = np.array([-d[1], d[0]])
    horizontal = abs(d[0]) >= abs(d[1])
    if (horizontal and s[1] < 0) or (not horizontal and s[0] < 0):
        s = -s
    return s + 0.0  # normalise -0.0


def infer_tip_direction(anode_tips, cathode_tips, snap: bool = True) -> tuple[float, float] | None:
    """Guess which way the tips face from the labels/predictions themselves.

    Anodes stick out beyond cathodes, so the mean anode minus the mean cathode
    points the way the tips face.  With ``snap`` the result is snapped to the
    nearest image axis (stations are mounted at multiples of 90°).  Returns
    None when either class is empty or the two means coincide.
    """
    a = _as_points(anode_tips, "anode_tips")
    c = _as_points(cathode_tips, "cathode_tips")
    if len(a) == 0 or len(c) == 0:
        return None
    v = a.mean(axis=0) - c.mean(axis=0)
    if float(np.hypot(*v)) < 1e-9:
        return None
    if snap:
        if abs(v[0]) >= abs(v[1]):
            return (float(np.sign(v[0])), 0.0)
        return (0.0, float(np.sign(v[1])))
    v = v / np.hypot(*v)
    return (float(v[0]), float(v[1]))


@dataclass(frozen=True, eq=False)
class Measurement:
    """Everything measured on one frame's tips.  Arrays are read-only.

    Indices: cathode ``k`` is the k-th cathode along the stack, anode ``j`` the
    j-th anode along the stack, merged position ``i`` the i-th tip of either
    class along the stack.
    """

    mm_per_px: float
    tip_direction: tuple[float, float]  # unit layer axis d
    stack_direction: tuple[float, float]  # unit stack axis s
    anode_tips: np.ndarray  # (Na, 2) [x, y], ordered along the stack
    cathode_tips: np.ndarray  # (Nc, 2) [x, y], ordered along the stack
    anode_along: np.ndarray  # (Na,) projection on d
    cathode_along: np.ndarray  # (Nc,)
    anode_stack: np.ndarray  # (Na,) projection on s (increasing)
    cathode_stack: np.ndarray  # (Nc,)
    sequence: tuple[str, ...]  # merged classes along the stack, "A"/"C"
    sequence_index: tuple[int, ...]  # per merged position: index within its class
    alternation_breaks: tuple[int, ...]  # merged positions i >= 1 with sequence[i] == sequence[i-1]
    neighbours: np.ndarray  # (Nc, 2) int: anode index [before, after] (after substitution; -1 if no anode at all)
    neighbour_missing: np.ndarray  # (Nc, 2) bool: that side had no anode (the other side's was used)
    overhang_px: np.ndarray  # (Nc, 2) float [before, after]; NaN when there is no anode at all
    overhang_mm: np.ndarray  # (Nc, 2)
    overhang_min_mm: np.ndarray  # (Nc,) min of the two sides; NaN when there is no anode at all
    anode_input_index: np.ndarray = field(repr=False)  # (Na,) original index of each ordered anode
    cathode_input_index: np.ndarray = field(repr=False)  # (Nc,)

    @property
    def n_anode(self) -> int:
        return int(len(self.anode_tips))

    @property
    def n_cathode(self) -> int:
        return int(len(self.cathode_tips))

    @property
    def one_sided(self) -> tuple[int, ...]:
        """Cathode indices for which one neighbour anode was missing (and substituted)."""
        return tuple(int(k) for k in np.flatnonzero(self.neighbour_missing.any(axis=1)))

    def sequence_string(self) -> str:
        return "".join(self.sequence)

    def to_dict(self) -> dict:
        """JSON-ready summary (NaN -> None)."""
        return {
            "mm_per_px": self.mm_per_px,
            "tip_direction": list(self.tip_direction),
            "n_anode": self.n_anode,
            "n_cathode": self.n_cathode,
            "sequence": self.sequence_string(),
            "alternation_breaks": list(self.alternation_breaks),
            "anode_tips": self.anode_tips.tolist(),
            "cathode_tips": self.cathode_tips.tolist(),
            "neighbours": self.neighbours.tolist(),
            "one_sided": list(self.one_sided),
            "overhang_mm": _jsonable(self.overhang_mm),
            "overhang_min_mm": _jsonable(self.overhang_min_mm),
        }


def _jsonable(a: np.ndarray):
    """Nested lists of floats with NaN -> None."""
    return np.where(np.isfinite(a), a, None).tolist() if np.size(a) else []


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def measure(anode_tips, cathode_tips, tip_direction, mm_per_px: float, order_by=None) -> Measurement:
    """Order the tips along the stack, pair every cathode with its two neighbour
    anodes and measure the overhangs (see the module docstring for the exact
    conventions).

    `anode_tips`, `cathode_tips`: (N, 2) ``[x, y]`` full-frame px, any order,
    possibly empty.  `tip_direction`: (dx, dy), need not be normalised.
    `mm_per_px`: > 0.  `order_by`: optional (anode, cathode) points, one per tip,
    whose stack coordinate orders the tips instead of the tips' own (the tips slid
    along their layers to the cathode front, `layer_slope.front_points`).
    Never raises on empty inputs.
    """
    if not (np.isfinite(mm_per_px) and mm_per_px > 0):
        raise ValueError(f"mm_per_px must be > 0, got {mm_per_px!r}")
    a = _as_points(anode_tips, "anode_tips")
    c = _as_points(cathode_tips, "cathode_tips")
    d = _unit(tip_direction)
    s = stack_axis(d)

    if order_by is None:
        a_st, c_st = a @ s, c @ s
    else:
        oa, oc = (np.asarray(p, np.float64).reshape(-1, 2) for p in order_by)
        if len(oa) != len(a) or len(oc) != len(c):
            raise ValueError(f"order_by needs one point per tip: {len(oa)}/{len(a)} anode, {len(oc)}/{len(c)} cathode")
        a_st, c_st = oa @ s, oc @ s
    a_al, c_al = a @ d, c @ d
    # Within a class: by stack coordinate, then input order (stable).
    a_ord = np.argsort(a_st, kind="stable")
    c_ord = np.argsort(c_st, kind="stable")
    a, a_st, a_al = a[a_ord], a_st[a_ord], a_al[a_ord]
    c, c_st, c_al = c[c_ord], c_st[c_ord], c_al[c_ord]
    na, nc = len(a), len(c)

    # Merged sequence: by stack coordinate, ties anode first, then class index.
    st = np.concatenate([a_st, c_st])
    cls = np.concatenate([np.zeros(na, np.int8), np.ones(nc, np.int8)])  # 0 = anode, 1 = cathode
    idx = np.concatenate([np.arange(na), np.arange(nc)])
    order = np.lexsort((idx, cls, st))
    seq_cls = cls[order]
    seq_idx = idx[order]
    sequence = tuple(ANODE if k == 0 else CATHODE for k in seq_cls)
    breaks = tuple(int(i) for i in np.flatnonzero(seq_cls[1:] == seq_cls[:-1]) + 1)

    # Neighbour anodes from the merged sequence.
    is_a = seq_cls == 0
    n = len(seq_cls)
    pos = np.arange(n)
    # last anode at or before each position / first anode at or after it
    last_a = np.maximum.accumulate(np.where(is_a, pos, -1)) if n else np.zeros(0, int)
    first_a = (np.minimum.accumulate(np.where(is_a, pos, n)[::-1])[::-1]) if n else np.zeros(0, int)
    neighbours = np.full((nc, 2), -1, dtype=np.int64)
    missing = np.zeros((nc, 2), dtype=bool)
    cpos = np.flatnonzero(~is_a)  # merged positions of cathodes, in cathode order
    for k, p in zip(seq_idx[cpos], cpos):
        before = last_a[p - 1] if p > 0 else -1
        after = first_a[p + 1] if p + 1 < n else n
        jb = int(seq_idx[before]) if before >= 0 else -1
        ja = int(seq_idx[after]) if after < n else -1
        missing[k] = (jb < 0, ja < 0)
        if jb < 0:
            jb = ja
        if ja < 0:
            ja = jb
        neighbours[k] = (jb, ja)
    if na == 0:
        missing[:] = True

    overhang_px = np.full((nc, 2), np.nan)
    ok = neighbours >= 0
    overhang_px[ok] = a_al[neighbours[ok]] - np.repeat(c_al[:, None], 2, axis=1)[ok]
    overhang_mm = overhang_px * float(mm_per_px)
    with np.errstate(invalid="ignore"):
        ov_min = np.min(overhang_mm, axis=1) if nc else np.zeros(0)

    return Measurement(
        mm_per_px=float(mm_per_px),
        tip_direction=(float(d[0]), float(d[1])),
        stack_direction=(float(s[0]), float(s[1])),
        anode_tips=_ro(a),
        cathode_tips=_ro(c),
        anode_along=_ro(a_al),
        cathode_along=_ro(c_al),
        anode_stack=_ro(a_st),
        cathode_stack=_ro(c_st),
        sequence=sequence,
        sequence_index=tuple(int(i) for i in seq_idx),
        alternation_breaks=breaks,
        neighbours=_ro(neighbours),
        neighbour_missing=_ro(missing),
        overhang_px=_ro(overhang_px),
        overhang_mm=_ro(overhang_mm),
        overhang_min_mm=_ro(ov_min),
        anode_input_index=_ro(a_ord.astype(np.int64)),
        cathode_input_index=_ro(c_ord.astype(np.int64)),
    )
