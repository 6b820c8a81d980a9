"""Completing the comb (tips/comb.py): a sub-threshold peak is taken only where the stack's alternation says a tip
is missing, level with its class, and never where the layer is simply absent."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from inspectd.imaging.canonical import Orientation, points_from_canonical
from inspectd.tips.comb import fill_alternation_breaks

SHAPE = (600, 800)


def _stack(orientation: Orientation, n: int = 10, pitch: float = 12.0):
    """Anodes at x = 400, cathodes at x = 360 (canonical: tips point +x), alternating along y; full-frame px."""
    a = np.array([[400.0 + (k % 3), 100 + 2 * k * pitch, 0.9] for k in range(n + 1)])
    c = np.array([[360.0 - (k % 2), 100 + (2 * k + 1) * pitch, 0.85] for k in range(n)])
    to_full = lambda p: np.column_stack([points_from_canonical(p[:, :2], orientation, SHAPE), p[:, 2]])
    return to_full, a, c, SimpleNamespace(orientation=orientation, frame_shape=SHAPE)


def test_a_half_seen_cathode_in_a_break_is_taken_whichever_way_the_tips_face():
    for o in Orientation:
        full, a, c, plan = _stack(o)
        missing = c[4].copy()
        c = np.delete(c, 4, axis=0)
        low_c = np.array([[missing[0] + 1.0, missing[1] + 0.5, 0.4],  # the half-seen tip
                          [missing[0] + 60.0, missing[1], 0.6],  # in the break, but level with the anodes: not it
                          [360.0, 100 + 3 * 24.0 + 1.0, 0.5]])  # right on a cathode that is there: no break
        a2, c2, la, lc = fill_alternation_breaks(full(a), full(c), np.zeros((0, 3)), full(low_c), plan)
        assert len(a2) == len(a) and len(c2) == len(c) + 1, o
        got = c2[-1]
        assert np.allclose(got, full(low_c[:1])[0]), o
        assert len(lc) == 2 and len(la) == 0


def test_a_missing_layer_without_a_peak_stays_a_break_and_a_short_stack_is_left_alone():
    full, a, c, plan = _stack(Orientation.RIGHT)
    c = np.delete(c, 4, axis=0)
    far = np.array([[362.0, 100 + 8 * 12.0 + 1.0, 0.5]])  # 1 px from the anode before the break: not its middle
    _, c2, _, lc = fill_alternation_breaks(full(a), full(c), np.zeros((0, 3)), full(far), plan)
    assert len(c2) == len(c) and len(lc) == 1
    few_a, few_c = full(a[:2]), full(c[:1])
    out = fill_alternation_breaks(few_a, few_c, np.zeros((0, 3)), full(far), plan)
    assert out[0] is few_a and out[1] is few_c


def test_a_missing_anode_is_filled_too_and_at_most_one_peak_per_break():
    full, a, c, plan = _stack(Orientation.DOWN)
    gone = a[5].copy()
    a = np.delete(a, 5, axis=0)
    low_a = np.array([[gone[0] - 1, gone[1], 0.45], [gone[0] + 1, gone[1] + 3, 0.5]])
    a2, _, la, _ = fill_alternation_breaks(full(a), full(c), full(low_a), np.zeros((0, 3)), plan)
    assert len(a2) == len(a) + 1 and len(la) == 1
    assert np.isclose(a2[-1, 2], 0.5)  # the stronger of the two
