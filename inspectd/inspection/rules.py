"""Recipe rules: a Measurement and a RecipeConfig -> Result and reasons.

Rules (all checked on every frame that has tips of both classes):

* ``OVERHANG_MIN``: a cathode whose smaller overhang (``overhang_min_mm``) is
  below ``overhang_min_mm``.  One reason per cathode, ``index`` = cathode index
  along the stack, ``value_mm`` = its smaller overhang, ``limit_mm`` = the limit.
  A negative overhang (cathode sticking out beyond its anode) lands here too.
* ``OVERHANG_MAX``: a cathode whose smaller overhang is above
  ``overhang_max_mm`` (same fields).
* ``COUNT_MISMATCH``: ``n_anode != n_cathode + anode_excess``; ``value`` =
  ``n_anode - n_cathode``, ``limit`` = ``anode_excess``.
* ``ALTERNATION``: two tips of one class adjacent along the stack; ``index`` =
  merged-sequence position of the second tip of the pair (see
  ``Measurement.alternation_breaks``).
* ``LAYERS_MIN`` / ``LAYERS_MAX``: cathode count outside the optional range;
  ``value`` = ``n_cathode``, ``limit`` = the bound.
* ``STACK_GAP`` (``max_gap_ratio``, optional): two neighbouring anode tips
  further apart along the stack than ``max_gap_ratio`` times the median anode
  spacing, *and* at the same place two neighbouring cathode tips further
  apart than that times the median cathode spacing (at least 4 tips of each
  class). A layer the detector lost (an extra layer merged with its
  neighbour keeps counts and alternation intact) widens both; requiring both
  ignores the label/position jitter of a single tip. ``index`` = the anode
  index of the second tip of the gap, ``value`` = the smaller of the two
  ratios, ``limit`` = the bound.

No anode or no cathode tip at all -> ``ERROR`` with ``NO_TIPS`` (a frame that
could not be measured is never OK).  Any reason -> ``NG``.  ``OK`` only when
every rule was evaluated and none fired.

Reasons are sorted by code (in the declaration order of ``ReasonCode``), then
by index, so equal inputs give byte-identical verdicts.
"""

from __future__ import annotations

import math

import numpy as np

from inspectd.config import RecipeConfig
from inspectd.inspection.measure import Measurement
from inspectd.verdict import OverhangSummary, Reason, ReasonCode, Result

__all__ = ["judge", "summarise_overhang"]

_CODE_ORDER = {code: i for i, code in enumerate(ReasonCode)}


def _sort_key(r: Reason) -> tuple[int, int]:
    return (_CODE_ORDER[r.code], -1 if r.index is None else r.index)


def judge(measurement: Measurement, recipe: RecipeConfig) -> tuple[Result, list[Reason]]:
    """Apply the recipe to one frame's measurement (rules in the module docstring)."""
    m = measurement
    na, nc = m.n_anode, m.n_cathode
    if na == 0 or nc == 0:
        missing = " and ".join(n for n, k in (("anode", na), ("cathode", nc)) if k == 0)
        return Result.ERROR, [
            Reason(
                code=ReasonCode.NO_TIPS,
                message=f"no {missing} tips detected ({na} anode, {nc} cathode): cannot measure overhang",
            )
        ]

    reasons: list[Reason] = []
    lo, hi = float(recipe.overhang_min_mm), float(recipe.overhang_max_mm)
    ov = np.asarray(m.overhang_min_mm, dtype=float)
    for k, v in enumerate(ov):
        v = float(v)
        if not math.isfinite(v):  # cannot happen with both classes present; never pass silently
            reasons.append(
                Reason(code=ReasonCode.INTERNAL, index=k, message=f"cathode {k}: overhang not measurable")
            )
        elif v < lo:
            reasons.append(
                Reason(
                    code=ReasonCode.OVERHANG_MIN,
                    index=k,
                    value_mm=v,
                    limit_mm=lo,
                    message=f"cathode {k}: overhang {v:.3f} mm < {lo:g} mm",
                )
            )
        elif v > hi:
            reasons.append(
                Reason(
                    code=ReasonCode.OVERHANG_MAX,
                    index=k,
                    value_mm=v,
                    limit_mm=hi,
                    message=f"cathode {k}: overhang {v:.3f} mm > {hi:g} mm",
                )
            )

    excess = int(recipe.anode_excess)
    if na != nc + excess:
        reasons.append(
            Reason(
                code=ReasonCode.COUNT_MISMATCH,
                value=float(na - nc),
                limit=float(excess),
                message=f"{na} anode and {nc} cathode tips: expected n_anode = n_cathode {excess:+d}",
            )
        )

    for i in m.alternation_breaks:
        cls = "anode" if m.sequence[i] == "A" else "cathode"
        reasons.append(
            Reason(
                code=ReasonCode.ALTERNATION,
                index=int(i),
                message=f"tips {i - 1} and {i} along the stack are both {cls} tips",
            )
        )

    if recipe.layers_min is not None and nc < recipe.layers_min:
        reasons.append(
            Reason(
                code=ReasonCode.LAYERS_MIN,
                value=float(nc),
                limit=float(recipe.layers_min),
                message=f"{nc} cathode layers < minimum {recipe.layers_min}",
            )
        )
    if recipe.layers_max is not None and nc > recipe.layers_max:
        reasons.append(
            Reason(
                code=ReasonCode.LAYERS_MAX,
                value=float(nc),
                limit=float(recipe.layers_max),
                message=f"{nc} cathode layers > maximum {recipe.layers_max}",
            )
        )

    if recipe.max_gap_ratio is not None:
        reasons += _stack_gaps(m, float(recipe.max_gap_ratio))

    reasons.sort(key=_sort_key)
    if any(r.code == ReasonCode.INTERNAL for r in reasons):
        return Result.ERROR, reasons
    return (Result.NG if reasons else Result.OK), reasons


def _stack_gaps(m: Measurement, limit: float) -> list[Reason]:
    """STACK_GAP: an anode gap and an overlapping cathode gap, both wider than `limit` x their class median."""
    sa, sc = np.asarray(m.anode_stack, float), np.asarray(m.cathode_stack, float)
    if len(sa) < 4 or len(sc) < 4:
        return []
    ga, gc = np.diff(sa), np.diff(sc)  # ordered along the stack: non-negative
    ma, mc = float(np.median(ga)), float(np.median(gc))
    if ma <= 0 or mc <= 0:
        return []
    ra, rc = ga / ma, gc / mc
    out: list[Reason] = []
    for j in np.flatnonzero(ra > limit):
        overlapping = (sc[:-1] < sa[j + 1]) & (sc[1:] > sa[j]) & (rc > limit)
        if not overlapping.any():
            continue
        k = int(np.flatnonzero(overlapping)[np.argmax(rc[overlapping])])
        ratio = float(min(ra[j], rc[k]))
        out.append(
            Reason(
                code=ReasonCode.STACK_GAP,
                index=int(j + 1),
                value=round(ratio, 3),
                limit=limit,
                message=f"anode tips {j}-{j + 1} and cathode tips {k}-{k + 1} are {ra[j]:.2f}x and {rc[k]:.2f}x "
                f"their median spacing (> {limit:g}x) at the same place: a layer may be missing from the detection",
            )
        )
    return out


def summarise_overhang(measurement: Measurement) -> OverhangSummary | None:
    """min / mean / max over cathodes of each cathode's smaller overhang, in mm.

    None when there is no measurable cathode (no cathode, or no anode).
    """
    v = np.asarray(measurement.overhang_min_mm, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    return OverhangSummary(min=float(v.min()), mean=float(v.mean()), max=float(v.max()))
