"""The confidence gate (inspection/confidence.py, issue #16): ERROR LOW_CONFIDENCE on evidence that cannot back
an OK or NG, never on a clean stack."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inspectd.config import Config, GateConfig
from inspectd.frames import Frame, Sidecar, TipLabels
from inspectd.inspection.confidence import assess, gate_reason, limits
from inspectd.inspection.measure import measure
from inspectd.inspection.stages import Inspector
from inspectd.sim import SimOptions
from inspectd.sim.render import render_debug
from inspectd.tips.detector import Tips
from inspectd.verdict import ReasonCode, Result, Verdict

CARD_GATE = {"tip_score_min": 0.5, "gap_ratio_min": 0.3, "doubt_max": 0.6, "alternation_max": 0.2, "squeeze_min": 0.8}


class ScoredOracle:
    """The labels as tips, with scores and doubt peaks chosen by the test (a detector with known confidence)."""

    name = "test:scored-oracle"

    def __init__(self, gate=CARD_GATE, corrupt=None):
        self.gate = gate
        self.corrupt = corrupt

    def detect(self, frame, img8, roi):
        a, c = (np.asarray(p, np.float64) for p in frame.meta.labels.arrays())
        sa, sc = np.full(len(a), 0.9), np.full(len(c), 0.9)
        doubt = np.zeros((0, 3))
        if self.corrupt == "weak_tip":
            sa[len(a) // 2] = 0.2
        elif self.corrupt == "duplicate":  # the same cathode seen twice, 0.3 px apart
            c = np.vstack([c, c[len(c) // 2] + (0.0, 0.3) if frame.meta.sim["orientation"] in ("right", "left") else c[len(c) // 2] + (0.3, 0.0)])
            sc = np.append(sc, 0.9)
        elif self.corrupt == "doubt":  # a half-seen peak between two anodes
            doubt = np.array([[*(0.5 * (a[2] + a[3])), 0.65]])
        elif self.corrupt == "clutter":  # "tips" on a rack's teeth: one class all the way down
            a = np.vstack([a, c])
            c = c[:2]
            sa, sc = np.full(len(a), 0.9), np.full(len(c), 0.9)
        return Tips(a, c, sa, sc, doubt)


@pytest.fixture(scope="module")
def clean_frame():
    f, _ = render_debug(71, 0, SimOptions(size=1000, orientation="right"), force_defect="none")
    meta = Sidecar(
        mm_per_px=f.mm_per_px,
        bit_depth=f.bit_depth,
        labels=TipLabels(anode_tips=[tuple(p) for p in f.anode_tips], cathode_tips=[tuple(p) for p in f.cathode_tips]),
        expected=f.expected,
        sim={"orientation": f.orientation},
    )
    return Frame(frame_id="clean", image=f.image, meta=meta)


def _verdict(frame, corrupt=None, cfg=None) -> Verdict:
    return Inspector(cfg or Config(), ScoredOracle(corrupt=corrupt)).inspect(frame, 1).verdict


def test_clean_stack_passes_and_carries_its_confidence(clean_frame):
    v = _verdict(clean_frame)
    assert v.result is Result.OK, v.reasons
    assert v.confidence is not None and v.confidence.tip_min == pytest.approx(0.9)
    assert v.confidence.doubt_max == 0.0 and v.confidence.gap_min > 0.5
    assert json.loads(v.to_json())["confidence"]["tip_min"] == pytest.approx(0.9)


@pytest.mark.parametrize(
    "corrupt,word",
    [("weak_tip", "score"), ("duplicate", "gap"), ("doubt", "rejected tip peak"), ("clutter", "alternating stack")],
)
def test_corrupted_stack_is_error_low_confidence(clean_frame, corrupt, word):
    v = _verdict(clean_frame, corrupt)
    assert v.result is Result.ERROR
    assert v.reasons[0].code is ReasonCode.LOW_CONFIDENCE
    assert word in v.reasons[0].message and v.reasons[0].limit is not None
    assert v.anode_tips and v.cathode_tips  # the operator still sees what was found


def test_weak_tip_is_named_by_class_and_index(clean_frame):
    v = _verdict(clean_frame, "weak_tip")
    r = v.reasons[0]
    assert v.confidence.tip_min_class == "anode"
    assert r.index == v.confidence.tip_min_index and r.value == pytest.approx(0.2)


def test_gate_can_be_switched_off_and_station_limits_override_the_card(clean_frame):
    off = Config(gate=GateConfig(enabled=False))
    assert _verdict(clean_frame, "weak_tip", off).result is Result.OK
    lax = Config(gate=GateConfig(tip_score_min=0.1))
    assert _verdict(clean_frame, "weak_tip", lax).result is Result.OK
    assert limits(GateConfig(tip_score_min=0.1), CARD_GATE) == (0.1, 0.3, 0.6, 0.2, 0.8)
    assert limits(GateConfig(), {}) == (None, None, None, None, None)


def test_no_scores_no_gate():
    m = measure(np.array([[10.0, 0.0], [10.0, 10.0]]), np.array([[5.0, 5.0]]), (1, 0), 0.02)
    assert assess(m, None, None) is None
    assert gate_reason(None, 0.5, 0.5, 0.5) is None


def test_a_cathode_invented_in_a_missing_layer_is_stopped():
    """Missing layer: the two anodes close up. A cathode put in that gap makes the count right; without the
    gate's squeeze the cell passes, with it the frame is ERROR LOW_CONFIDENCE naming that cathode."""
    f, info = render_debug(72, 0, SimOptions(size=1000, orientation="right"), force_defect="missing_layer")
    assert f.expected == "NG"
    a, c = f.anode_tips, f.cathode_tips
    ay = a[:, 1]
    j = int(np.argmin(np.diff(ay)))  # the closed-up pair
    fake = np.array([[float(np.median(c[:, 0])), 0.5 * (ay[j] + ay[j + 1])]])
    c2 = np.vstack([c, fake])
    meta = Sidecar(
        mm_per_px=f.mm_per_px, bit_depth=f.bit_depth, expected="NG", sim={"orientation": "right"},
        labels=TipLabels(anode_tips=[tuple(p) for p in a], cathode_tips=[tuple(p) for p in c2]),
    )
    frame = Frame(frame_id="invented", image=f.image, meta=meta)
    passed = Inspector(Config(), ScoredOracle(gate={})).inspect(frame, 1).verdict
    assert passed.result is Result.OK  # the failure the gate exists for
    v = Inspector(Config(), ScoredOracle(gate={"squeeze_min": 0.8})).inspect(frame, 1).verdict
    assert v.result is Result.ERROR and v.reasons[0].code is ReasonCode.LOW_CONFIDENCE
    assert "missing layer" in v.reasons[0].message and v.confidence.squeeze < 0.8


def test_a_handful_of_tips_is_no_stack():
    from inspectd.inspection.confidence import MIN_STACK_TIPS, no_plausible_stack

    two = measure(np.array([[10.0, 0.0]]), np.array([[5.0, 5.0]]), (1, 0), 0.02)
    r = no_plausible_stack(two)
    assert r is not None and r.code is ReasonCode.NO_STACK and "no plausible stack" in r.message
    many = measure(np.array([[10.0, 10.0 * k] for k in range(4)]), np.array([[5.0, 10.0 * k + 5] for k in range(3)]), (1, 0), 0.02)
    assert MIN_STACK_TIPS <= 7 and no_plausible_stack(many) is None


def test_the_squeeze_is_measured_at_the_anode_tips_not_at_the_cathode_front():
    """Anodes that close up at their free ends round a cathode while their layers still cross the cathode front
    evenly spaced: the squeeze sees the close-up (it was blind to it when it used the front points)."""
    ys = np.arange(12) * 10.0
    anodes = np.column_stack([np.full(12, 100.0), ys])
    anodes[6, 1] -= 4.0  # the pair round cathode 5 is 6 px apart at the tips, 10 at the front
    cathodes = np.column_stack([np.full(11, 80.0), ys[:-1] + 5.0])
    front = (np.column_stack([np.full(12, 80.0), ys]), cathodes)  # where each layer meets the cathode front
    m = measure(anodes, cathodes, (1, 0), 0.02, order_by=front)
    sa, sc = np.ones(12), np.ones(11)
    conf = assess(m, sa, sc)
    assert conf.squeeze_index == 5 and conf.squeeze == pytest.approx(0.6)
    assert gate_reason(conf, None, None, squeeze_min=0.8, would_pass=True).code is ReasonCode.LOW_CONFIDENCE
