"""The simulator's domain-randomisation families (inspectd.sim.variety, issue #16): base frames unchanged,
labels exact on every new family, clutter never over a tip, tilted stacks ordered by their layers."""

from __future__ import annotations

import numpy as np
import pytest

from inspectd.config import Config
from inspectd.frames import Frame, Sidecar
from inspectd.inspection.layer_slope import front_points
from inspectd.inspection.measure import measure
from inspectd.inspection.stages import TIP_DIRECTION, locate, preprocess
from inspectd.sim import SimOptions, render_frame
from inspectd.sim.render import render_debug
from inspectd.sim.scene import anode_profile
from inspectd.sim.variety import FAMILIES, parse_families
from helpers import bilinear

S = 1000


def test_families_allowed_but_never_drawn_leave_the_base_frame_unchanged():
    for i in range(3):
        base = render_frame(31, i, SimOptions(size=512))
        same = render_frame(31, i, SimOptions(size=512, families=FAMILIES, family_rate=0.0))
        assert same.families == ()
        assert np.array_equal(base.image, same.image)
        assert np.array_equal(base.anode_tips, same.anode_tips)


def test_forbidding_one_family_does_not_change_the_others():
    both = render_frame(32, 0, SimOptions(size=512, families=("teeth", "dose"), family_rate=1.0))
    one = render_frame(32, 0, SimOptions(size=512, families=("teeth",), family_rate=1.0))
    assert both.families == ("teeth", "dose") and one.families == ("teeth",)
    assert np.array_equal(both.anode_tips, one.anode_tips)
    assert not np.array_equal(both.image, one.image)  # dose changed the noise only


def test_family_spec_and_validation():
    assert parse_families("") == ()
    assert parse_families("all") == FAMILIES
    assert "tail" not in parse_families("all-tail,invert") and "invert" not in parse_families("all-tail,invert")
    with pytest.raises(ValueError, match="unknown simulator families"):
        parse_families("tails")
    with pytest.raises(ValueError, match="unknown simulator families"):
        SimOptions(families=("fog",))


@pytest.mark.parametrize("family", ["tail", "blunt", "rounded", "curl", "pitch", "dense", "fork"])
def test_new_tip_shapes_keep_labels_on_the_tips(family):
    """Noise-, clutter- and blur-free: a few px inside each labelled tip is darker than a few px beyond it,
    and every anode's profile is at 25 % of its plateau exactly at the label."""
    n = 0
    for i in range(4):
        o = SimOptions(size=S, orientation="right", families=(family,), family_rate=1.0)
        f, info = render_debug(40 + len(family), i, o, noise=False, clutter=False, blur=False, force_defect="none")
        assert family in f.families
        img = f.image.astype(np.float64)
        k = 3.0
        for x, y in np.vstack([f.anode_tips, f.cathode_tips]):
            inside, beyond = bilinear(img, x - k, y), bilinear(img, x + k, y)
            assert inside < beyond - 0.01 * (img.max() - img.min()), (family, i, x, y)
            n += 1
        for ly in info["scene"].layers:
            if ly.kind == "a" and ly.fold is None:
                assert anode_profile(np.array([ly.tip]), ly)[0] == pytest.approx(0.25 * ly.a, rel=1e-6)
    assert n > 100


def test_pitch_family_reaches_coarse_and_fine_pitches():
    pitches = [render_debug(50, i, SimOptions(size=S, families=("pitch",), family_rate=1.0))[1]["scene"].pitch for i in range(30)]
    assert min(pitches) < 4.0 and max(pitches) > 12.0


def test_periodic_clutter_never_covers_a_tip():
    for i in range(6):
        o_on = SimOptions(size=S, orientation="right", families=("teeth",), family_rate=1.0)
        o_off = SimOptions(size=S, orientation="right", families=("teeth",), family_rate=0.0)
        on, info = render_debug(60, i, o_on, noise=False, blur=False)
        off, _ = render_debug(60, i, o_off, noise=False, blur=False)
        assert np.array_equal(on.anode_tips, off.anode_tips)
        diff = np.abs(on.image.astype(np.int64) - off.image.astype(np.int64)) > 0
        assert diff.any(), "the clutter was not drawn"
        r = int(np.ceil(2 * info["scene"].pitch))
        for x, y in np.vstack([on.anode_tips, on.cathode_tips]):
            xi, yi = int(round(x)), int(round(y))
            assert not diff[yi - r : yi + r + 1, xi - r : xi + r + 1].any(), (i, x, y)


def test_tilted_stack_is_ordered_along_its_layers():
    """Rotated frames: ordering tips by their row reads two anodes in a row; sliding each tip along its
    layer to the cathode front (layer_slope) restores the alternation of the true sequence."""
    cfg = Config()
    axis_breaks = front_breaks = 0
    for i in range(6):
        f = render_frame(8011, i, SimOptions(size=S, families=("tilt",), family_rate=1.0, defect_rate=0.0))
        frame = Frame(frame_id=f"t{i}", image=f.image, meta=Sidecar(bit_depth=f.bit_depth, mm_per_px=f.mm_per_px))
        img8 = preprocess(frame)
        _, roi = locate(img8, cfg)
        d = TIP_DIRECTION[roi.orientation.name]
        a, c = f.anode_tips, f.cathode_tips
        axis_breaks += len(measure(a, c, d, f.mm_per_px).alternation_breaks)
        front_breaks += len(measure(a, c, d, f.mm_per_px, order_by=front_points(img8, roi, a, c)).alternation_breaks)
    assert axis_breaks >= 3
    assert front_breaks == 0


def test_tip_region_statistics_measure_the_scene():
    """evaluation.sim_stats on a rendered frame: the same-class pitch is twice the layer pitch the scene drew."""
    from inspectd.evaluation.sim_stats import frame_stats

    f, info = render_debug(81, 1, SimOptions(size=S, orientation="left"), force_defect="none")
    frame = Frame(frame_id="s", image=f.image, meta=Sidecar(bit_depth=f.bit_depth, mm_per_px=f.mm_per_px))
    s = frame_stats(preprocess(frame), f.anode_tips, f.cathode_tips, Config())
    assert s is not None
    assert s["pitch"] == pytest.approx(2 * info["scene"].pitch, rel=0.1)
    assert 0.05 < s["contrast"] < 1.0 and s["overhang"] > 0


def test_a_family_added_later_leaves_every_earlier_draw_where_it_was():
    """"fork" came after the first 13 families: dumps made before it regenerate byte-identical."""
    old = tuple(f for f in FAMILIES if f != "fork")
    for i in range(6):
        a = render_frame(33, i, SimOptions(size=512, families=old, family_rate=0.5))
        b = render_frame(33, i, SimOptions(size=512, families=FAMILIES, family_rate=0.5))
        assert tuple(f for f in b.families if f != "fork") == a.families
        if "fork" not in b.families:
            assert np.array_equal(a.image, b.image)
        else:
            assert np.array_equal(a.anode_tips, b.anode_tips) and not np.array_equal(a.image, b.image)
