"""Tests of the X-ray scene simulator (inspectd.sim)."""

from __future__ import annotations

import numpy as np
import pytest

from inspectd.config import RecipeConfig
from inspectd.sim import DEFECT_KINDS, ORIENTATIONS, SimFrame, SimOptions, render_frame
from inspectd.sim.render import render_debug, transform_points
from helpers import bilinear

S = 1000
RECIPE = RecipeConfig()


def _sequence(f: SimFrame) -> list[str]:
    """Merged class sequence along the stack, from the labels."""
    axis = 1 if f.orientation in ("right", "left") else 0
    pts = [(p[axis], "a") for p in f.anode_tips] + [(p[axis], "c") for p in f.cathode_tips]
    return [k for _, k in sorted(pts)]


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("bit_depth,dtype,top", [(8, np.uint8, 255), (12, np.uint16, 4095), (16, np.uint16, 65535)])
def test_dtype_range_shape(bit_depth, dtype, top):
    for i in range(3):
        f = render_frame(5, i, SimOptions(size=S, bit_depth=bit_depth))
        assert f.image.shape == (S, S)
        assert f.image.dtype == dtype
        assert int(f.image.max()) <= top
        assert f.bit_depth == bit_depth
        # real contrast: a bright background and a dark stack
        assert int(f.image.max()) - int(f.image.min()) > 0.3 * top
        assert f.anode_tips.dtype == np.float64 and f.anode_tips.shape[1] == 2
        assert f.cathode_tips.shape == (len(f.overhang_mm), 2)
        assert f.orientation in ORIENTATIONS
        assert f.expected in ("OK", "NG")


def test_other_sizes():
    for size in (1600, 2048):
        f = render_frame(1, 0, SimOptions(size=size, bit_depth=12))
        assert f.image.shape == (size, size)
        assert f.mm_per_px == pytest.approx(0.02 / (size / 1000))


def test_determinism():
    o = SimOptions(size=S, bit_depth=12)
    a, b = render_frame(3, 7, o), render_frame(3, 7, o)
    assert a.image.tobytes() == b.image.tobytes()
    assert np.array_equal(a.anode_tips, b.anode_tips) and np.array_equal(a.cathode_tips, b.cathode_tips)
    assert (a.expected, a.defects, a.orientation) == (b.expected, b.defects, b.orientation)
    assert np.array_equal(a.overhang_mm, b.overhang_mm)
    c = render_frame(3, 8, o)
    assert a.image.tobytes() != c.image.tobytes()
    d = render_frame(4, 7, o)
    assert a.image.tobytes() != d.image.tobytes()


def test_options_validated():
    with pytest.raises(ValueError):
        SimOptions(bit_depth=10)
    with pytest.raises(ValueError):
        SimOptions(orientation="sideways")
    with pytest.raises(ValueError):
        SimOptions(defect_rate=1.5)


# --------------------------------------------------------------------------- labels


def test_labels_sit_on_tips():
    """Noise- and clutter-free rendering: along each layer, a few px inside the labelled tip is darker
    than a few px beyond it."""
    k = 4.0
    n_checked = 0
    for i in range(8):
        for defect in ("none", "folded_tip", "overhang_short"):
            o = SimOptions(size=S, orientation="right")
            f, _ = render_debug(11, i, o, noise=False, clutter=False, force_defect=defect)
            img = f.image.astype(np.float64)
            for pts in (f.anode_tips, f.cathode_tips):
                for x, y in pts:
                    inside = bilinear(img, x - k, y)
                    beyond = bilinear(img, x + k, y)
                    assert inside < beyond - 0.02 * (img.max() - img.min()), (i, defect, x, y, inside, beyond)
                    n_checked += 1
    assert n_checked > 500


def test_anode_label_is_quarter_foot_and_cathode_half_max():
    """Along the centre line the geometry's profile crosses 25 % (anode) / 50 % (cathode) at the label."""
    from inspectd.sim.scene import anode_profile, cathode_profile

    _, info = render_debug(2, 0, SimOptions(size=S, orientation="right"), force_defect="none")
    scene = info["scene"]
    for ly in scene.layers:
        if ly.kind == "a":
            plateau = anode_profile(np.array([ly.taper_start - 0.01]), ly)[0] / (1.0)
            v = anode_profile(np.array([ly.tip]), ly)[0]
            assert v == pytest.approx(0.25 * ly.a, rel=1e-6)
            assert plateau == pytest.approx(ly.a, rel=1e-3)
        else:
            # half of the level just before the edge (the shoulder ends where the edge begins)
            before = cathode_profile(np.array([ly.tip - 0.5 * ly.taper]), ly)[0]
            assert before == pytest.approx(1.0 - ly.shoulder)
            assert cathode_profile(np.array([ly.tip]), ly)[0] == pytest.approx(0.5 * before)


def test_labels_inside_image_and_fov():
    for i in range(20):
        f, info = render_debug(21, i, SimOptions(size=S))
        for pts in (f.anode_tips, f.cathode_tips):
            assert np.all(pts >= 10) and np.all(pts <= S - 11)
            if info["fov"] is not None:
                r = np.hypot(pts[:, 0] - info["fov"]["center"][0], pts[:, 1] - info["fov"]["center"][1])
                assert np.all(r < info["fov"]["r"] - 10)


def test_ordering_along_stack_and_counts():
    for i in range(20):
        f = render_frame(31, i, SimOptions(size=S, defect_rate=0.0))
        axis = 1 if f.orientation in ("right", "left") else 0
        assert np.all(np.diff(f.anode_tips[:, axis]) > 0)
        assert np.all(np.diff(f.cathode_tips[:, axis]) > 0)
        assert len(f.anode_tips) == len(f.cathode_tips) + 1
        seq = _sequence(f)
        assert seq == ["a", "c"] * len(f.cathode_tips) + ["a"]
        assert 15 <= len(f.cathode_tips) <= 70


def test_orientations_are_exact_rotations():
    frames = {o: render_debug(41, 3, SimOptions(size=S, orientation=o))[0] for o in ORIENTATIONS}
    base = frames["right"]
    W = S - 1
    # images: the same canonical scene, rotated/flipped
    assert np.array_equal(frames["left"].image, base.image[:, ::-1])
    assert np.array_equal(frames["up"].image, np.rot90(base.image, 1))
    assert np.array_equal(frames["down"].image, np.rot90(base.image, -1))
    # labels: exact point transforms; order along the stack (top->bottom / left->right)
    a, c = base.anode_tips, base.cathode_tips
    np.testing.assert_allclose(frames["left"].anode_tips, np.stack([W - a[:, 0], a[:, 1]], 1))
    np.testing.assert_allclose(frames["up"].anode_tips, np.stack([a[:, 1], W - a[:, 0]], 1))
    np.testing.assert_allclose(frames["down"].anode_tips, np.stack([W - a[::-1, 1], a[::-1, 0]], 1))
    np.testing.assert_allclose(frames["down"].cathode_tips, np.stack([W - c[::-1, 1], c[::-1, 0]], 1))
    np.testing.assert_allclose(frames["down"].overhang_mm, base.overhang_mm[::-1])
    for o in ORIENTATIONS:
        f = frames[o]
        assert f.orientation == o
        assert f.expected == base.expected and len(f.anode_tips) == len(a)
        # a pixel value at a label agrees with the canonical image at the canonical label
        x, y = f.anode_tips[0]
        np.testing.assert_allclose(transform_points(a[:1] if o != "down" else a[-1:], o, S)[0], (x, y))
    # tips point the requested way: anodes stick out beyond cathodes
    d = {o: frames[o].anode_tips.mean(0) - frames[o].cathode_tips.mean(0) for o in ORIENTATIONS}
    assert d["right"][0] > 20 and d["left"][0] < -20 and d["up"][1] < -20 and d["down"][1] > 20


def test_any_orientation_covers_all_four():
    seen = {render_frame(51, i, SimOptions(size=512, defect_rate=0.0)).orientation for i in range(24)}
    assert seen == set(ORIENTATIONS)


# --------------------------------------------------------------------------- verdicts and defects


def test_healthy_frames_ok_with_margin():
    lo, hi = RECIPE.overhang_min_mm, RECIPE.overhang_max_mm
    for i in range(20):
        f = render_frame(61, i, SimOptions(size=S, defect_rate=0.0))
        assert f.expected == "OK" and f.defects == []
        assert len(f.anode_tips) == len(f.cathode_tips) + 1
        assert f.overhang_mm.min() >= lo + 0.15 - 1e-9
        assert f.overhang_mm.max() <= hi - 0.3 + 1e-9


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_forced_defects_are_ng(kind):
    lo, hi = RECIPE.overhang_min_mm, RECIPE.overhang_max_mm
    for i in range(4):
        f, info = render_debug(71, i, SimOptions(size=S), force_defect=kind)
        assert f.expected == "NG", info["reasons"]
        assert f.defects == [kind]
        na, nc = len(f.anode_tips), len(f.cathode_tips)
        seq = _sequence(f)
        adjacent = any(a == b for a, b in zip(seq[:-1], seq[1:]))
        ov = f.overhang_mm
        if kind == "overhang_short":
            assert ov.min() < lo - 0.1 and na == nc + 1 and not adjacent
            assert np.sum(ov < lo) == 1
        elif kind == "overhang_long":
            assert ov.max() > hi + 0.3 and na == nc + 1 and not adjacent
            assert np.sum(ov > hi) == 1
        elif kind == "missing_layer":
            assert na == nc + 2 and adjacent
            assert ov.min() >= lo + 0.15 - 1e-9 and ov.max() <= hi - 0.3 + 1e-9
        elif kind == "extra_layer":
            assert na in (nc, nc + 2) and adjacent
        elif kind == "folded_tip":
            assert na == nc + 1 and not adjacent
            assert ov.min() < lo - 0.05
            assert np.sum(ov < lo) in (1, 2)  # the two cathodes beside the folded anode


def test_defect_rate_zero_all_ok_and_rate_one_all_ng():
    assert all(render_frame(81, i, SimOptions(size=512, defect_rate=0.0)).expected == "OK" for i in range(20))
    fr = [render_frame(82, i, SimOptions(size=512, defect_rate=1.0)) for i in range(15)]
    assert all(f.expected == "NG" and len(f.defects) == 1 for f in fr)
    assert len({f.defects[0] for f in fr}) >= 3


def test_folded_tip_label_is_where_material_ends():
    f, info = render_debug(91, 2, SimOptions(size=S, orientation="right"), force_defect="folded_tip")
    scene = info["scene"]
    j = scene.extra["special"]["defect_layer"]
    ly = scene.layers[j]
    assert ly.kind == "a" and ly.fold is not None
    others = [l.tip for l in scene.layers if l.kind == "a" and l is not ly]
    assert ly.tip < np.median(others) - 15  # visibly short
    assert ly.fold.x_end - 3 <= ly.tip <= ly.fold.x_end + 1e-6


def test_custom_mm_per_px_and_recipe():
    # a coarser pixel: healthy frames must still be inside the recipe
    o = SimOptions(size=S, mm_per_px=0.05, defect_rate=0.0)
    for i in range(8):
        f = render_frame(101, i, o)
        assert f.mm_per_px == 0.05
        assert f.expected == "OK"
    # a layer-count rule is honoured for healthy stacks
    r = RecipeConfig(layers_min=20, layers_max=25)
    for i in range(8):
        f = render_frame(102, i, SimOptions(size=S, defect_rate=0.0, recipe=r))
        assert 20 <= len(f.cathode_tips) <= 25 and f.expected == "OK"
    # another overhang window: healthy geometry follows it, with the same margins
    r = RecipeConfig(overhang_min_mm=1.0, overhang_max_mm=2.5)
    for i in range(8):
        f = render_frame(103, i, SimOptions(size=S, defect_rate=0.0, recipe=r))
        assert f.expected == "OK"
        assert f.overhang_mm.min() >= 1.15 - 1e-9 and f.overhang_mm.max() <= 2.2 + 1e-9
    for kind in ("overhang_short", "overhang_long"):
        f = render_debug(104, 0, SimOptions(size=S, recipe=r), force_defect=kind)[0]
        assert f.expected == "NG"
        assert (f.overhang_mm.min() < 1.0) if kind == "overhang_short" else (f.overhang_mm.max() > 2.5)
    # anode_excess = 0: a healthy stack is a, c, a, c, ..., c
    r = RecipeConfig(anode_excess=0)
    for i in range(4):
        f = render_frame(105, i, SimOptions(size=S, defect_rate=0.0, recipe=r))
        assert len(f.anode_tips) == len(f.cathode_tips) and f.expected == "OK"


def test_expected_agrees_with_vision_rules():
    """The simulator's ground truth and the pipeline's rules give the same verdict on the true tips."""
    measure = pytest.importorskip("inspectd.inspection.measure")
    rules = pytest.importorskip("inspectd.inspection.rules")
    dirs = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1)}
    for i in range(16):
        f = render_frame(111, i, SimOptions(size=S, defect_rate=0.6))
        m = measure.measure(f.anode_tips, f.cathode_tips, dirs[f.orientation], f.mm_per_px)
        np.testing.assert_allclose(m.overhang_min_mm, f.overhang_mm, atol=1e-9)
        result, _ = rules.judge(m, RECIPE)
        assert str(getattr(result, "value", result)) == f.expected
