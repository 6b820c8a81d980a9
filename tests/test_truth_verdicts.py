"""Ground-truth tips fed straight into measurement and rules reproduce the simulator's `expected`.

This is the vision issue's acceptance test for measurement + rules: 100 % agreement,
every defect kind included, in all four orientations, and each defect is rejected
for the reason that defect should produce.
"""

import pytest

from inspectd.config import RecipeConfig
from inspectd.inspection.stages import TIP_DIRECTION
from inspectd.sim import DEFECT_KINDS, SimOptions
from inspectd.sim.render import render_debug
from inspectd.verdict import ReasonCode, Result
from inspectd.inspection.measure import measure
from inspectd.inspection.rules import judge

RECIPE = RecipeConfig()
# Which reason codes may legitimately explain each defect (a missing or extra
# layer shows as a count change, a broken alternation and/or a gap in the
# stack; a cathode pulled far back moves along the stack too when the layers
# are tilted or bent, so its gap may also fire).
GAP = ReasonCode.STACK_GAP
ALLOWED = {
    "overhang_short": {ReasonCode.OVERHANG_MIN},
    "overhang_long": {ReasonCode.OVERHANG_MAX, GAP},
    "missing_layer": {ReasonCode.COUNT_MISMATCH, ReasonCode.ALTERNATION, ReasonCode.OVERHANG_MAX, GAP},
    "extra_layer": {ReasonCode.COUNT_MISMATCH, ReasonCode.ALTERNATION, ReasonCode.OVERHANG_MIN, GAP},
    "folded_tip": {ReasonCode.OVERHANG_MIN},
}


def _judge(sim):
    m = measure(sim.anode_tips, sim.cathode_tips, TIP_DIRECTION[sim.orientation.upper()], sim.mm_per_px)
    return judge(m, RECIPE)


@pytest.mark.parametrize("orientation", ["right", "left", "up", "down"])
@pytest.mark.parametrize("kind", ["none", *DEFECT_KINDS])
def test_truth_verdict_matches_expected(kind, orientation):
    for index in range(3):
        opts = SimOptions(size=1000, bit_depth=8, orientation=orientation)
        sim, _ = render_debug(500, index, opts, force_defect=kind, noise=False, clutter=False, blur=False)
        result, reasons = _judge(sim)
        assert result.value == sim.expected, (kind, orientation, index, reasons)
        if kind == "none":
            assert result is Result.OK and reasons == []
        else:
            assert result is Result.NG
            codes = {r.code for r in reasons}
            assert codes and codes <= ALLOWED[kind], (kind, codes)


def test_random_dump_agreement_is_total():
    """Frames drawn as `simulate` draws them (defect rate 0.5, any orientation)."""
    from inspectd.sim import render_frame

    n = 0
    for i in range(40):
        sim = render_frame(77, i, SimOptions(size=1000, bit_depth=8, defect_rate=0.5))
        result, _ = _judge(sim)
        assert result.value == sim.expected, (i, sim.defects)
        n += sim.expected == "NG"
    assert n >= 10  # the set really contains defects
