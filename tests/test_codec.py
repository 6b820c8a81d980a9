"""Heatmap codec (tips/codec.py) and the input definition's geometry (tips/crop.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inspectd.imaging.canonical import Orientation, box_from_canonical, points_to_canonical
from inspectd.inspection.roi import Roi
from inspectd.tips.codec import HeatmapCodec
from inspectd.tips.crop import InputSpec, box_to_canonical, make_batch, plan_tiles, render_tile
from inspectd.tips.geometry import affine, estimate_pitch, labels_pitch, orientation_from_labels

# ----------------------------------------------------------------------------- codec


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_heatmap_pixel_centre_convention(stride):
    c = HeatmapCodec(stride=stride)
    # heatmap px j covers input px [s*j, s*j + s): its centre is s*j + (s-1)/2
    for j in range(4):
        assert c.from_heatmap(np.array([[j, j]]))[0, 0] == pytest.approx(stride * j + (stride - 1) / 2)
    pts = np.array([[10.3, 20.7], [0.0, 0.0]])
    np.testing.assert_allclose(c.from_heatmap(c.to_heatmap(pts)), pts, atol=1e-12)
    # a tip exactly at the centre of heatmap px (3, 5) puts the target's maximum 1.0 there
    p = c.from_heatmap(np.array([[3.0, 5.0]]))
    hm = c.encode([p], (16 * stride, 16 * stride))[0]
    assert np.unravel_index(np.argmax(hm), hm.shape) == (5, 3)
    assert hm[5, 3] == pytest.approx(1.0)


def _comb(rng, n, pitch, x_lo=30, x_hi=150, y0=20):
    ys = y0 + np.arange(n) * pitch + rng.uniform(-0.5, 0.5, n)
    xs = rng.uniform(x_lo, x_hi, n)
    return np.column_stack([xs, ys])


@pytest.mark.parametrize("stride", [2, 4])
def test_round_trip_isolated_all_decoders(stride):
    rng = np.random.default_rng(1)
    c = HeatmapCodec(stride=stride, sigma=1.0, threshold=0.3, dark_blur=1.0)
    pts = _comb(rng, 12, 20.0 * stride / 2)  # well separated peaks
    shape = (int(20 + 12 * 20 * stride / 2 + 32) // 32 * 32 + 32, 192)
    hm = c.encode([pts, pts[:5] + [10, 3]], shape)
    for method, bound in (("argmax", 0.5 * stride * math.sqrt(2) + 1e-9), ("quarter", 0.36 * stride), ("dark", 0.05)):
        dets = c.decode(hm, method=method)
        assert [len(d) for d in dets] == [12, 5]  # variable count, per class
        d = dets[0]
        err = np.array([np.min(np.hypot(*(d[:, :2] - p).T)) for p in pts])
        assert err.max() < bound, (method, err.max())


def test_round_trip_dense_comb_dark():
    """Same-class pitch 8 input px = 4 heatmap px at stride 2 (the chosen input scale)."""
    rng = np.random.default_rng(2)
    pts = _comb(rng, 25, 8.0)
    for blur, bound in ((0.0, 1e-6), (0.5, 0.05)):
        c = HeatmapCodec(stride=2, sigma=1.0, threshold=0.3, dark_blur=blur)
        d = c.decode(c.encode([pts], (256, 192)), method="dark")[0]
        assert len(d) == 25
        err = np.array([np.min(np.hypot(*(d[:, :2] - p).T)) for p in pts])
        assert err.max() < bound, (blur, err.max())


def test_threshold_and_nms():
    c = HeatmapCodec(stride=2, sigma=1.0)
    hm = np.zeros((1, 32, 32), np.float32)
    hm[0, 5, 5] = 0.9
    hm[0, 5, 6] = 0.9  # plateau: one peak, not two
    hm[0, 20, 20] = 0.2  # below the threshold
    hm[0, 20, 10] = 0.5
    d = c.decode(hm, threshold=0.3)[0]
    assert len(d) == 2 and d[0, 2] == pytest.approx(0.9) and d[1, 2] == pytest.approx(0.5)
    assert len(c.decode(hm, threshold=0.1)[0]) == 3
    assert len(c.decode(np.zeros((2, 8, 8), np.float32))[1]) == 0


# ----------------------------------------------------------------------------- crop geometry


def test_warp_affine_pixel_centre_convention():
    """render_tile samples the canonical image exactly where the affine maps points."""
    h, w = 160, 140
    x0, y0 = 61.3, 77.8
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 3.0**2)).astype(np.float32) * 200
    for s, ang, flip in [(1.0, 0.0, False), (0.5, 0.0, False), (0.8, 5.0, True), (1.7, -3.0, False)]:
        A = affine(s, (70, 80), (47.5, 47.5), ang, flip, 96)
        t = render_tile(img, A, 96, 96)
        Y, X = np.mgrid[0:96, 0:96]
        wgt = np.maximum(t - 1e-3, 0) ** 2
        got = np.array([(X * wgt).sum() / wgt.sum(), (Y * wgt).sum() / wgt.sum()])
        np.testing.assert_allclose(got, A[:, :2] @ [x0, y0] + A[:, 2], atol=0.03)


@pytest.mark.parametrize("o", list(Orientation))
def test_box_to_canonical_inverts_box_from_canonical(o):
    shape = (300, 420)
    hc, wc = (shape[0], shape[1]) if o.horizontal_layers else (shape[1], shape[0])
    box = (13, 27, min(wc, 200), min(hc, 250))
    full = box_from_canonical(box, o, shape)
    assert box_to_canonical(full, o, shape) == box


@pytest.mark.parametrize("o", list(Orientation))
@pytest.mark.parametrize("tall", [False, True])
def test_crop_mapping_round_trip(o, tall):
    """full -> tile input -> full is exact, and a blob at a full-frame point appears at its input position."""
    shape = (700, 600)
    spec = InputSpec(max_tile_h=256 if tall else 512, back_pitches=0)  # ROI-sized tiles
    roi = Roi(150, 100, 460, 560, o) if o.horizontal_layers else Roi(100, 150, 560, 460, o)
    plan = plan_tiles(shape, roi, spec, pitch=9.0)
    assert (len(plan.tiles) > 1) == tall
    rng = np.random.default_rng(3)
    pts = np.column_stack([rng.uniform(roi.x0, roi.x1 - 1, 40), rng.uniform(roi.y0, roi.y1 - 1, 40)])
    for k in range(len(plan.tiles)):
        back = plan.to_full(plan.to_input(pts, k), k)
        np.testing.assert_allclose(back, pts, atol=1e-9)
    # every point is owned by exactly one tile
    owners = np.zeros(len(pts), int)
    for k in range(len(plan.tiles)):
        owners += plan.owned(plan.to_input(pts, k), k)
    assert np.all(owners == 1)
    # image content: a small bright blob at a full-frame point lands at to_input(point)
    p = np.array([[0.5 * (roi.x0 + roi.x1) + 0.37, 0.5 * (roi.y0 + roi.y1) - 0.21]])
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    img = (20 + 200 * np.exp(-((xx - p[0, 0]) ** 2 + (yy - p[0, 1]) ** 2) / (2 * 4.0**2))).astype(np.uint8)
    batch, plan2 = make_batch(img, roi, spec, pitch=12.0)  # ROI 310 px -> 207 + 32 input px: one tile 256 wide
    assert batch.shape[1] == 1 and batch.shape[2] % 32 == 0 and batch.shape[3] == 256
    k = int(np.argmax([plan2.owned(plan2.to_input(p, j), j)[0] for j in range(len(plan2.tiles))]))
    t = batch[k, 0]
    q = plan2.to_input(p, k)[0]
    Y, X = np.mgrid[0 : t.shape[0], 0 : t.shape[1]]
    wgt = np.maximum(t - t.mean() - 2 * t.std(), 0) ** 2
    got = np.array([(X * wgt).sum() / wgt.sum(), (Y * wgt).sum() / wgt.sum()])
    # uint8 quantisation of the blob limits this check to ~0.1 px; the mapping itself is exact (above)
    np.testing.assert_allclose(got, q, atol=0.15)


@pytest.mark.parametrize("o", list(Orientation))
def test_wide_roi_is_anchored_at_the_tip_front(o):
    shape = (900, 800)
    spec = InputSpec(back_pitches=0)
    roi = Roi(100, 100, 700, 800, o) if o.horizontal_layers else Roi(100, 100, 800, 700, o)
    front = 420.0  # canonical x of the tip front
    plan = plan_tiles(shape, roi, spec, pitch=10.0, front=front)
    t = plan.tiles[0]
    assert t.width == spec.max_tile_w
    u = t.to_input(np.array([[front, 300.0]]))[0, 0]
    assert u == pytest.approx(spec.max_tile_w - spec.right_margin)
    # without a front the wide ROI (plus left_extra) is centred
    t2 = plan_tiles(shape, roi, spec, pitch=10.0).tiles[0]
    bx0, _, bx1, _ = box_to_canonical((roi.x0, roi.y0, roi.x1, roi.y1), o, shape)
    xm = 0.5 * (bx0 - spec.left_extra * 10.0 / 8.0 + bx1 - 1)
    assert t2.to_input(np.array([[xm, 0.0]]))[0, 0] == pytest.approx((t2.width - 1) / 2)


@pytest.mark.parametrize("o", list(Orientation))
@pytest.mark.parametrize("front", [None, 650.0])
def test_tiles_reach_back_pitches_behind_the_front(o, front):
    """`back_pitches`: the tile covers that many pitches behind the front (a narrow ROI's far
    edge when no front is measured), on top of the ROI-sized layout; the front keeps its margin."""
    shape = (900, 800)
    pitch = 10.0
    x0 = 300 if front is not None else 550  # wide ROI (front-anchored) / narrow ROI (whole ROI)
    roi = Roi(x0, 100, 700, 800, o) if o.horizontal_layers else Roi(100, x0, 800, 700, o)
    bx0, _, bx1, _ = box_to_canonical((roi.x0, roi.y0, roi.x1, roi.y1), o, shape)
    ref = front if front is not None else bx1
    small = plan_tiles(shape, roi, InputSpec(back_pitches=0), pitch, front=front).tiles[0]
    for back in (20.0, 40.0, 60.0):
        spec = InputSpec(back_pitches=back)
        t = plan_tiles(shape, roi, spec, pitch, front=front).tiles[0]
        left, right = t.to_canonical(np.array([[0.0, 0.0], [t.width - 1.0, 0.0]]))[:, 0]
        assert left <= ref - back * pitch + 1.0  # reaches far enough back (to a pixel)
        assert left <= small.to_canonical(np.array([[0.0, 0.0]]))[0, 0] + 1e-6  # never less than before
        assert right >= min(ref, bx1 - 1) - 1.0  # still covers the front / the ROI's far edge (to a pixel)
        assert t.width % spec.align == 0
    if front is not None:  # the front keeps its margin from the tile's right edge
        t = plan_tiles(shape, roi, InputSpec(back_pitches=60.0), pitch, front=front).tiles[0]
        u = t.to_input(np.array([[front, 300.0]]))[0, 0]
        assert u == pytest.approx(t.width - InputSpec().right_margin)


def test_tip_front_on_a_comb():
    from inspectd.tips.geometry import tip_front

    h, w, pitch = 400, 500, 10.0
    y = np.arange(h)[:, None].astype(np.float32)
    stripes = 200 - 100 * np.exp(-(np.mod(y, pitch) - pitch / 2) ** 2 / 3.0)
    img = np.repeat(stripes, w, axis=1)
    img[:, 330:] = 200  # layers end at x = 329.5
    img = np.clip(img + np.random.default_rng(0).normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    assert tip_front(img, (0, 0, w, h), pitch) == pytest.approx(329.5, abs=pitch)


def test_orientation_and_pitch_from_labels():
    a = np.array([[100.0, 10], [101, 20], [99, 30]])
    c = np.array([[40.0, 15], [41, 25]])
    assert orientation_from_labels(a, c) is Orientation.RIGHT
    assert orientation_from_labels(a * [-1, 1], c * [-1, 1]) is Orientation.LEFT
    assert orientation_from_labels(a[:, ::-1], c[:, ::-1]) is Orientation.DOWN
    assert labels_pitch(a, c) == pytest.approx(10.0)


def test_estimate_pitch_on_stripes():
    h, w = 400, 300
    y = np.arange(h)[:, None].astype(np.float32)
    for pitch in (7.3, 10.0, 18.4):
        # a dark anode line every `pitch` rows, a weaker cathode line between them, comb to the right
        img = 200 - 80 * np.exp(-((np.mod(y, pitch)) ** 2) / 2.0) - 40 * np.exp(-((np.mod(y + pitch / 2, pitch) - pitch / 2) ** 2) / 2)
        img = np.repeat(img, w, axis=1)
        img[:, 200:] = 200
        img = np.clip(img + np.random.default_rng(0).normal(0, 3, img.shape), 0, 255).astype(np.uint8)
        p, prom = estimate_pitch(img, (0, 0, w, h))
        assert p == pytest.approx(pitch, rel=0.02) and prom > 8


@pytest.mark.parametrize("o", list(Orientation))
def test_stray_back_cathodes_are_dropped_a_pulled_back_one_is_kept(o):
    """A cathode far behind the cathode front survives only alone between two anodes."""
    from inspectd.imaging.canonical import points_from_canonical
    from inspectd.tips.crop import CropPlan
    from inspectd.tips.infer import drop_stray_back_cathodes

    shape = (800, 900)
    pitch = 10.0
    plan = CropPlan(o, shape, pitch, "given", 0.8)
    ys = 100.0 + pitch * np.arange(12)
    anode_c = np.column_stack([np.full(12, 600.0), ys])  # 12 anodes
    cath_c = np.column_stack([np.full(11, 560.0), ys[:-1] + pitch / 2])  # one cathode in each gap
    pulled = [400.0, ys[4] + pitch / 2]  # the cathode of gap 4, pulled back 16 pitches
    cath_c[4] = pulled
    stray_in_slot = [420.0, ys[7] + pitch / 2 + 1.0]  # a second, far-back peak in gap 7
    stray_beyond = [430.0, ys[-1] + pitch / 2]  # beyond the last anode
    near_front = [530.0, ys[2] + pitch / 2 + 1.0]  # 3 pitches behind: not far back, untouched
    cand_c = np.vstack([cath_c, stray_in_slot, stray_beyond, near_front])

    def full(pc):
        return points_from_canonical(np.asarray(pc, float), o, shape)

    cath = np.column_stack([full(cand_c), np.linspace(0.9, 0.7, len(cand_c))])
    kept = drop_stray_back_cathodes(np.column_stack([full(anode_c), np.ones(12)]), cath, plan)
    kept_c = points_to_canonical(kept[:, :2], o, shape)
    assert len(kept) == 12  # 11 slots + the near-front one
    assert np.any(np.all(np.isclose(kept_c, pulled), axis=1))
    assert np.any(np.all(np.isclose(kept_c, near_front), axis=1))
    for stray in (stray_in_slot, stray_beyond):
        assert not np.any(np.all(np.isclose(kept_c, stray), axis=1))
    assert kept.shape[1] == 3  # scores travel with the points


def test_pitch_candidates_include_the_layers_period_when_a_slow_modulation_is_stronger():
    """guanyu-tip 20220905-09-25-09: the strongest row period in the ROI was a 79.5 px modulation across the
    stack, implausible for the frame, and the size rule gave 15.4 px for 8.7 px layers (tiles at half scale,
    25/38 anodes missed). The candidates the model then chooses between hold the layers' period; a frame
    the periodicity settles has one candidate."""
    from inspectd.imaging.canonical import Orientation
    from inspectd.imaging.region import Roi
    from inspectd.tips.crop import InputSpec, pitch_candidates

    h, w = 864, 1536
    y = np.arange(h)[:, None].astype(np.float32)
    pitch = 8.7
    stripes = 30 * np.exp(-((np.mod(y, pitch)) ** 2) / 2.0) + 15 * np.exp(-((np.mod(y + pitch / 2, pitch) - pitch / 2) ** 2) / 2)
    roi = Roi(400, 200, 700, 680, orientation=Orientation.RIGHT)
    spec = InputSpec()
    noise = np.random.default_rng(1).normal(0, 2, (h, w))
    for slow_amp, n_expected in ((70.0, None), (0.0, 1)):
        img = np.repeat(150 - stripes + slow_amp * np.sin(2 * np.pi * y / 79.5), w, axis=1)
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
        cands = pitch_candidates(img, roi, spec)
        if n_expected == 1:
            assert len(cands) == 1 and cands[0][1] == "estimate" and cands[0][0] == pytest.approx(pitch, rel=0.03)
        else:
            assert cands[0][1] == "size" and cands[0][0] == pytest.approx(15.36)
            assert any(src == "band" and p == pytest.approx(pitch, rel=0.03) for p, src in cands), cands

    # and detect_tips runs the model at each candidate, keeping the one whose tips it is surest of
    from inspectd.tips.codec import HeatmapCodec
    from inspectd.tips.infer import detect_tips

    img = np.clip(np.repeat(150 - stripes + 70 * np.sin(2 * np.pi * y / 79.5), w, axis=1) + noise, 0, 255)
    img = img.astype(np.uint8)
    cands = pitch_candidates(img, roi, spec)
    seen = []

    def fake_infer(batch):  # confident peaks only at the tile scale of the layers' pitch
        seen.append(batch.shape)
        hm = np.zeros((batch.shape[0], 2, batch.shape[2] // 2, batch.shape[3] // 2), np.float32)
        level = 0.9 if len(seen) == 2 else 0.7  # candidate 2 is the band's (8.7 px)
        hm[:, :, 10:120:6, 60] = level
        return hm

    ft = detect_tips(fake_infer, img, roi, spec, HeatmapCodec(threshold=0.5))
    assert len(seen) == len(cands) >= 2
    assert ft.plan.pitch_source == f"band/{len(cands)} tried" and ft.plan.pitch == pytest.approx(pitch, rel=0.03)
