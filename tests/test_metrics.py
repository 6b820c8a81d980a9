"""Evaluation metrics: matching, NME / PCK / PCS, counts, overhang MAE, overkill / escape."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from inspectd.evaluation.matching import default_gate, match_tips
from inspectd.evaluation.metrics import evaluate
from inspectd.evaluation.report_table import format_table
from inspectd.verdict import Result, Verdict

DIAG300 = math.hypot(300, 300)  # 424.26 px: PCK@1% = 4.24 px, PCK@0.5% = 2.12 px

GT_A = [[100.0, 100.0], [100.0, 110.0], [100.0, 120.0]]
GT_C = [[40.0, 105.0], [40.0, 115.0]]


def gt(expected="OK", **kw):
    d = {"anode_tips": GT_A, "cathode_tips": GT_C, "expected": expected, "mm_per_px": 0.05}
    d.update(kw)
    return d


def verdict(anodes, cathodes, result="OK", roi=(0, 0, 300, 300), **kw):
    d = {"schema": "inspectd.verdict/1", "result": result, "anode_tips": anodes, "cathode_tips": cathodes}
    if roi is not None:
        d["roi"] = list(roi)
    d.update(kw)
    return d


# --------------------------------------------------------------------------- matching


def test_match_tips_gating():
    g = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    p = np.array([[10.5, 0.0], [0.0, 1.0], [40.0, 0.0]])
    pairs, up, ug = match_tips(p, g, gate_px=2.0)
    np.testing.assert_array_equal(pairs, [[1, 0], [0, 1]])  # sorted by gt index
    np.testing.assert_array_equal(up, [2])
    np.testing.assert_array_equal(ug, [2])
    # a pair exactly at the gate is matched, one just beyond it is not
    assert len(match_tips([[2.0, 0.0]], [[0.0, 0.0]], 2.0)[0]) == 1
    assert len(match_tips([[2.001, 0.0]], [[0.0, 0.0]], 2.0)[0]) == 0


def test_match_tips_is_one_to_one_and_maximal():
    # greedy nearest-first would take p0-g1 (1 px) and leave p1 unmatched (5 px
    # from g0); the optimal matching pairs both within the 2.5 px gate.
    g = np.array([[0.0, 0.0], [3.0, 0.0]])
    p = np.array([[2.0, 0.0], [5.0, 0.0]])
    pairs, up, ug = match_tips(p, g, gate_px=2.5)
    np.testing.assert_array_equal(pairs, [[0, 0], [1, 1]])
    assert up.size == 0 and ug.size == 0
    # two predictions on one label: one matched, one false
    pairs, up, ug = match_tips([[0.0, 0.5], [0.0, -0.2]], [[0.0, 0.0]], 3.0)
    np.testing.assert_array_equal(pairs, [[1, 0]])
    np.testing.assert_array_equal(up, [0])


def test_match_tips_empty():
    pairs, up, ug = match_tips([], [[1.0, 1.0]], 5.0)
    assert pairs.shape == (0, 2) and up.size == 0 and list(ug) == [0]
    pairs, up, ug = match_tips([[1.0, 1.0]], np.zeros((0, 2)), 5.0)
    assert pairs.shape == (0, 2) and list(up) == [0] and ug.size == 0


def test_default_gate_is_three_quarters_of_the_same_class_pitch():
    assert default_gate(GT_A, GT_C) == pytest.approx(7.5)
    assert default_gate([[0, 0]], []) is None


# --------------------------------------------------------------------------- accuracy metrics


def tiny_records():
    # image 1: errors 1, 0, 3 (anodes) and 0, 2 (cathodes); one far false anode
    v1 = verdict([[101.0, 100.0], [100.0, 110.0], [100.0, 123.0], [250.0, 250.0]], [[40.0, 105.0], [42.0, 115.0]], "NG")
    # image 2: exact, but the second cathode is missed
    v2 = verdict(GT_A, [[40.0, 105.0]], "OK")
    return [("img1", gt("OK"), v1), ("img2", gt("NG"), v2)]


def test_hand_computed_nme_pck_pcs():
    rep = evaluate(tiny_records())
    assert rep.n_images == 2 and rep.n_gt_tips == 10 and rep.n_pred_tips == 10
    assert rep.n_matched == 9 and rep.n_missed == 1 and rep.n_false == 1
    # NME: mean over the 9 matched tips of err / diag
    assert rep.nme == pytest.approx((1 + 0 + 3 + 0 + 2 + 0 + 0 + 0 + 0) / 9 / DIAG300)
    # PCK@0.5% (2.12 px): img1 4 of 5 (the 3 px one fails), img2 4 of 5 (the miss fails)
    assert rep.pck["0.5%"] == pytest.approx(8 / 10)
    # PCK@1% (4.24 px): img1 5 of 5, img2 4 of 5
    assert rep.pck["1%"] == pytest.approx(9 / 10)
    # PCS: img1 max 3 px -> fails 0.5 %, passes 1 %; img2 has a miss -> fails both
    assert rep.pcs["0.5%"] == pytest.approx(0.0)
    assert rep.pcs["1%"] == pytest.approx(0.5)
    assert rep.miss_rate == pytest.approx(0.1)
    assert rep.false_tip_rate == pytest.approx(0.1)
    assert rep.error_px["median"] == pytest.approx(0.0)
    assert rep.error_px["p99"] == pytest.approx(np.percentile([1, 0, 3, 0, 2, 0, 0, 0, 0], 99))
    # per image
    im1, im2 = rep.images
    assert im1.nme == pytest.approx(6 / 5 / DIAG300)
    assert im1.pcs_pass == {0.005: False, 0.01: True}
    assert im2.pcs_pass == {0.005: False, 0.01: False}
    assert im1.pck == {0.005: pytest.approx(0.8), 0.01: pytest.approx(1.0)}
    assert im2.pck == {0.005: pytest.approx(0.8), 0.01: pytest.approx(0.8)}
    assert im1.diag_source == "verdict_roi" and im1.diag == pytest.approx(DIAG300)
    # counts: img1 has 4 anodes (false tip), img2 has 1 cathode
    assert rep.count_accuracy == {"anode": 0.5, "cathode": 0.5}
    assert rep.per_class["cathode"]["miss_rate"] == pytest.approx(0.25)
    assert rep.per_class["anode"]["false_tip_rate"] == pytest.approx(1 / 7)


def test_miss_fails_pck_and_pcs_even_when_matched_tips_are_perfect():
    rep = evaluate([("f", gt(), verdict(GT_A[:2], GT_C))])
    assert rep.nme == pytest.approx(0.0)  # misses have no error...
    assert rep.pck["1%"] == pytest.approx(4 / 5)  # ...but fail PCK
    assert rep.pcs["1%"] == pytest.approx(0.0)  # ...and PCS
    assert rep.miss_rate == pytest.approx(0.2)


def test_false_tip_alone_does_not_fail_pcs():
    rep = evaluate([("f", gt(), verdict(GT_A + [[250.0, 250.0]], GT_C))])
    assert rep.pcs["0.5%"] == 1.0 and rep.pck["0.5%"] == 1.0
    assert rep.n_false == 1 and rep.false_tip_rate == pytest.approx(1 / 6)


def test_gate_turns_far_predictions_into_miss_plus_false_tip():
    v = verdict([[100.0, 100.0], [100.0, 110.0], [109.0, 120.0]], GT_C)  # 9 px off > 7.5 px gate
    rep = evaluate([("f", gt(), v)])
    assert rep.n_missed == 1 and rep.n_false == 1
    rep = evaluate([("f", gt(), v)], gate_px=10.0)
    assert rep.n_missed == 0 and rep.error_px["p99"] == pytest.approx(np.percentile([0, 0, 9, 0, 0], 99))


def test_overhang_mae():
    rep = evaluate(tiny_records())
    # img1: cathode 0 -> min(101, 100) - 40 = 60 px = 3.0 mm (gt 3.0); cathode 1
    # -> min(100, 100) - 42 = 58 px = 2.9 mm (gt 3.0); img2: cathode 0 exact.
    assert rep.n_overhang_pairs == 3
    assert rep.overhang_mae_mm == pytest.approx(0.1 / 3)


def test_overhang_mae_tips_left_and_explicit_direction():
    flip = lambda pts: [[-x, y] for x, y in pts]  # noqa: E731
    g = {"anode_tips": flip(GT_A), "cathode_tips": flip(GT_C), "mm_per_px": 0.1}
    v = verdict(flip(GT_A), [[-43.0, 105.0], [-40.0, 115.0]], roi=(-300, 0, 0, 300))
    rep = evaluate([("f", g, v)])
    assert rep.overhang_mae_mm == pytest.approx(0.3 / 2)  # 3 px at 0.1 mm/px on one of two
    rep2 = evaluate([("f", dict(g, tip_direction=(-1.0, 0.0)), v)])
    assert rep2.overhang_mae_mm == pytest.approx(rep.overhang_mae_mm)


# --------------------------------------------------------------------------- verdicts


def test_overkill_and_escape():
    recs = [
        ("ok-ok", gt("OK"), verdict(GT_A, GT_C, "OK")),
        ("ok-ng", gt("OK"), verdict(GT_A, GT_C, "NG")),  # overkill
        ("ok-err", gt("OK"), verdict([], [], "ERROR", roi=None)),  # overkill (ERROR rejects)
        ("ok-timeout", gt("OK"), verdict([], [], "TIMEOUT", roi=None)),  # overkill
        ("ng-ok", gt("NG"), verdict(GT_A, GT_C, "OK")),  # escape
        ("ng-ng", gt("NG"), verdict(GT_A, GT_C, "NG")),
        ("ng-err", gt("NG"), verdict([], [], "ERROR", roi=None)),  # a reject: not an escape
        ("unknown", gt(None), verdict(GT_A, GT_C, "OK")),  # no expectation: not counted
    ]
    rep = evaluate(recs)
    assert rep.n_expected_ok == 4 and rep.n_expected_ng == 3
    assert rep.overkill == 3 and rep.overkill_rate == pytest.approx(3 / 4)
    assert rep.escape == 1 and rep.escape_rate == pytest.approx(1 / 3)
    assert rep.confusion == {
        "NG": {"ERROR": 1, "NG": 1, "OK": 1},
        "OK": {"ERROR": 1, "NG": 1, "OK": 1, "TIMEOUT": 1},
    }


def test_missing_roi_falls_back_to_gt_bbox_and_says_so():
    recs = [("a", gt(), verdict(GT_A, GT_C, roi=None)), ("b", gt(), verdict(GT_A, GT_C))]
    rep = evaluate(recs)
    bbox_diag = math.hypot(60, 20)
    assert rep.images[0].diag_source == "gt_bbox" and rep.images[0].diag == pytest.approx(bbox_diag)
    assert rep.diag_sources == {"gt_bbox": 1, "verdict_roi": 1}
    assert any("bounding box" in n for n in rep.notes)
    # a labelled ROI wins over the verdict's
    rep = evaluate([("c", gt(roi_diagonal=500.0), verdict(GT_A, GT_C))])
    assert rep.images[0].diag == 500.0 and rep.images[0].diag_source == "gt_roi"
    rep = evaluate([("d", gt(roi=[0, 0, 30, 40]), verdict(GT_A, GT_C))])
    assert rep.images[0].diag == pytest.approx(50.0)


def test_error_verdict_without_tips_counts_every_tip_as_missed():
    rep = evaluate([("e", gt(), verdict([], [], "ERROR", roi=None))])
    assert rep.miss_rate == 1.0 and rep.pck["1%"] == 0.0 and rep.pcs["1%"] == 0.0
    assert rep.nme is None and rep.overhang_mae_mm is None
    assert rep.count_accuracy == {"anode": 0.0, "cathode": 0.0}


def test_report_is_json_ready_and_table_renders():
    recs = tiny_records()
    # a pydantic Verdict and a sidecar-style gt with "labels" work too
    v = Verdict(seq=1, frame_id="img3", station="L1-S1", result=Result.OK, anode_tips=GT_A, cathode_tips=GT_C,
                roi=(0, 0, 300, 300), latency_ms=40.0, t_published_ns=2_000_000_000)
    v0 = verdict(GT_A, GT_C, latency_ms=20.0, t_published_ns=1_000_000_000)
    recs += [("img3", {"labels": {"anode_tips": GT_A, "cathode_tips": GT_C}, "expected": "OK"}, v), ("img4", gt(), v0)]
    rep = evaluate(recs)
    assert rep.images[2].n_matched == {"anode": 3, "cathode": 2}
    assert rep.latency_ms["p50"] == pytest.approx(30.0)
    assert rep.fps == pytest.approx(1.0)
    d = rep.to_dict(include_images=True)
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["pck"]["1%"] == pytest.approx(rep.pck["1%"])
    assert back["images"][0]["pcs_pass"] == {"0.5%": False, "1%": True}
    assert "images" not in rep.to_dict()
    table = format_table(rep)
    for needle in ("NME", "PCK@0.5%", "PCK@1%", "PCS@1%", "miss rate", "overkill", "escape", "overhang MAE"):
        assert needle in table
    assert format_table(evaluate([]))  # an empty evaluation renders too


def test_empty_evaluation():
    rep = evaluate([])
    assert rep.n_images == 0 and rep.nme is None and rep.pck["1%"] is None and rep.overkill == 0
    json.dumps(rep.to_dict(), allow_nan=False)
