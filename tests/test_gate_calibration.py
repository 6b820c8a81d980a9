"""Calibrating the confidence gate (evaluation/gate_calibration.py): on fresh clean frames it stops no more than its
target, and the budget goes to the criteria that catch the calibration set's tip errors."""

from __future__ import annotations

import numpy as np
import pytest

from inspectd.evaluation.gate_calibration import CRITERIA, calibrate

LOWER = np.array([lower for _, lower in CRITERIA])


def _fires(g: dict, x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x), bool)
    for j, (key, lower) in enumerate(CRITERIA):
        if g.get(key) is not None:
            out |= (x[:, j] < g[key]) if lower else (x[:, j] > g[key])
    return out


def _frames(rng, n: int, bad: bool = False) -> np.ndarray:
    """Five scores per frame in CRITERIA order; bad frames have a strong rejected peak (doubt) or broken alternation."""
    x = np.column_stack([
        rng.uniform(0.65, 1.0, n), rng.uniform(0.5, 1.0, n), rng.uniform(0.7, 1.1, n),
        np.where(rng.random(n) < 0.9, 0.0, rng.uniform(0.33, 0.6, n)), np.where(rng.random(n) < 0.8, 0.0, rng.uniform(0, 0.05, n)),
    ])
    if bad:
        k = rng.random(n) < 0.7
        x[k, 3] = rng.uniform(0.5, 0.65, k.sum())
        x[~k, 4] = rng.uniform(0.03, 0.3, (~k).sum())
    return x


def test_fresh_clean_frames_are_stopped_at_most_at_the_target_rate():
    """The bound sum((k + 1) / (n + 1)) <= rate holds on new frames of the same kind, averaged over 100 calibrations,
    and the budget goes where the error frames are (doubt, alternation), not evenly: an even split puts each limit at
    its most extreme clean value and catches fewer."""
    rng = np.random.default_rng(3)
    rates, caught, caught_even = [], [], []
    for _ in range(100):
        g = calibrate(_frames(rng, 1000), _frames(rng, 200, bad=True), rate=0.01)
        assert g["fire_rate_bound"] <= 0.01
        rates.append(_fires(g, _frames(rng, 20000)).mean())
        test_err = _frames(rng, 2000, bad=True)
        caught.append(_fires(g, test_err).mean())
        cal = _frames(rng, 1000)
        even = {key: (np.sort(cal[:, j]) if lower else np.sort(cal[:, j])[::-1])[0] + (-1e-4 if lower else 1e-4)
                for j, (key, lower) in enumerate(CRITERIA)}
        caught_even.append(_fires(even, test_err).mean())
    assert np.mean(rates) <= 0.0105
    assert g["doubt_max"] is not None and g["beyond"]["doubt_max"] >= 1
    assert np.mean(caught) > np.mean(caught_even) + 0.05


def test_a_criterion_that_buys_nothing_stays_off_but_the_squeeze_is_always_on():
    rng = np.random.default_rng(1)
    g = calibrate(_frames(rng, 600), None, rate=0.01)
    assert g["tip_score_min"] is None and g["doubt_max"] is None and g["alternation_max"] is None
    assert g["squeeze_min"] is not None and g["beyond"] == {"squeeze_min": 0}
    assert g["fire_rate_bound"] == pytest.approx(1 / 601, abs=1e-4)


def test_the_squeeze_keeps_a_quarter_of_the_budget_and_too_few_frames_are_reported():
    rng = np.random.default_rng(2)
    g = calibrate(_frames(rng, 850), _frames(rng, 100, bad=True), rate=0.01)
    assert g["beyond"]["squeeze_min"] == 1  # (1 + 1) / 851 <= 0.0025 < (2 + 1) / 851
    few = calibrate(_frames(rng, 50), _frames(rng, 50, bad=True), rate=0.01)
    assert few["beyond"] == {"squeeze_min": 0} and few["fire_rate_bound"] == pytest.approx(1 / 51, abs=1e-4)


def test_criteria_that_do_not_apply_are_skipped():
    rng = np.random.default_rng(4)
    clean = _frames(rng, 400)
    clean[:, 2] = np.nan  # no frame would pass: no squeeze
    g = calibrate(clean, _frames(rng, 50, bad=True))
    assert "squeeze_min" not in g and g["fire_rate_bound"] <= 0.01
