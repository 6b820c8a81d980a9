"""The confidence gate's limits from calibration frames: one fire budget shared by its five criteria.

A limit just past the k-th most extreme of N clean calibration values stops a
new clean frame of the same kind with probability (k + 1) / (N + 1); five
criteria together stop at most the sum. With the share split evenly (a fifth
of 1 % each) and N = 543 clean frames, every criterion sits at its single most
extreme clean value, and one outlier decides a criterion: one clean frame with
a rejected peak of 0.647 (the detector's threshold is 0.65) switched the doubt
criterion, the one that catches most tip errors, all but off (caught 27 of 88
held-out frames with a tip error where it had caught 48).

So the budget is spent where it buys something. Every criterion starts off
(no limit, no cost); then, one move at a time, the criterion whose move
catches the most further *error* frames of the calibration set (frames with a
missed or false tip) per unit of bound makes it, while the summed bound stays
within the rate: a criterion's limit moves from one clean value to a
later one (its first position: just past its most extreme clean value). A
criterion that buys nothing stays off (the tip score, whose weakest clean
value sits at the detector's own threshold, usually does). The squeeze is
on from the start with a quarter of the budget reserved: it is there for one
failure, a cathode invented in the gap of a missing layer, which passes a bad
cell and which calibration sets hold too rarely to buy it a place. The error frames
only choose where the budget goes; the promise, at most `rate` of clean new
frames stopped, rests on the clean frames alone.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ALWAYS_ON", "CRITERIA", "FIRE_RATE", "calibrate"]

FIRE_RATE = 0.01  # calibration target: share of good new frames the gate may stop
ALWAYS_ON = ("squeeze_min",)  # safety criteria: on, with a reserved share of the budget, even when they buy nothing
RESERVED = 0.25  # share of the rate reserved for each ALWAYS_ON criterion
# (card key, fires below the limit): the columns of calibrate's arrays, in this order
CRITERIA = (
    ("tip_score_min", True),
    ("gap_ratio_min", True),
    ("squeeze_min", True),
    ("doubt_max", False),
    ("alternation_max", False),
)
_EPS = 1e-4  # a limit sits this far past the value it lets through


class _Criterion:
    """One criterion's candidate limits, in 'fires below' form (upper limits negated). Step -1 is off."""

    def __init__(self, j: int, clean: np.ndarray, errors: np.ndarray, lower: bool):
        self.j, self.sign = j, (1.0 if lower else -1.0)
        v = self.sign * clean[:, j]
        v = np.sort(v[np.isfinite(v)])
        self.n = len(v)
        self.values = np.unique(v)  # step i: just below values[i], beyond[i] clean frames strictly below it
        self.beyond = np.searchsorted(v, self.values, side="left")
        e = self.sign * errors[:, j]
        self.errors = np.where(np.isfinite(e), e, np.inf)
        self.i = -1

    def limit(self, i: int | None = None) -> float:
        i = self.i if i is None else i
        return -np.inf if i < 0 else float(self.values[i]) - _EPS

    def cost(self, i: int | None = None) -> float:
        i = self.i if i is None else i
        return 0.0 if i < 0 else (int(self.beyond[i]) + 1) / (self.n + 1)

    def caught(self, i: int | None = None) -> np.ndarray:
        return self.errors < self.limit(i)


def calibrate(clean, errors=None, rate: float = FIRE_RATE) -> dict:
    """Limits for the card's `gate` from per-frame scores.

    clean, errors: (N, 5) arrays in CRITERIA order (NaN where a criterion does
    not apply to a frame: no gap, or a squeeze on a frame that would not pass).
    Writes each limit (None: off), how many clean frames lie beyond it
    (`beyond`), the summed bound (`fire_rate_bound`) and what the limits catch
    of the calibration error frames. With no error frames only ALWAYS_ON criteria are on.
    """
    clean = np.asarray(clean, np.float64).reshape(-1, len(CRITERIA))
    errors = np.zeros((0, len(CRITERIA))) if errors is None else np.asarray(errors, np.float64).reshape(-1, len(CRITERIA))
    crits = [
        _Criterion(j, clean, errors, lower)
        for j, (_, lower) in enumerate(CRITERIA)
        if np.isfinite(clean[:, j]).any()
    ]
    for c in crits:
        if CRITERIA[c.j][0] in ALWAYS_ON:  # the furthest step within its reserved share, else its first
            c.i = max(0, int(np.searchsorted(c.beyond + 1, RESERVED * rate * (c.n + 1), side="right")) - 1)
    caught = np.zeros(len(errors), bool)
    for c in crits:
        caught |= c.caught()
    while True:
        total = sum(c.cost() for c in crits)
        best = None
        for c in crits:
            for i in range(c.i + 1, len(c.values)):  # any later step, not just the next: plateaus are common
                extra = c.cost(i) - c.cost()
                if total + extra > rate + 1e-12:
                    break
                gain = int((c.caught(i) & ~caught).sum())
                if gain > 0 and (best is None or gain / extra > best[0]):
                    best = (gain / extra, c, i)
        if best is None:
            break
        best[1].i = best[2]
        caught |= best[1].caught()
    out: dict = {"fire_rate_target": rate, "frames": len(clean)}
    for c in crits:
        key = CRITERIA[c.j][0]
        out[key] = None if c.i < 0 else round(c.sign * c.limit(), 4)
    out["beyond"] = {CRITERIA[c.j][0]: int(c.beyond[c.i]) for c in crits if c.i >= 0}
    out["fire_rate_bound"] = round(sum(c.cost() for c in crits), 4)
    if len(errors):
        out["errors_caught"] = f"{int(caught.sum())} of {len(errors)} calibration frames with a tip error"
    return out
