"""Window/level and OFAST corners: the contract other stages (and a GPU drop-in) rely on."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspectd.config import CornerConfig
from inspectd.inspection.corners import dense_cluster, dense_clusters, detect_corners, detect_oriented_corners
from inspectd.evaluation.roi_eval import corner_recall
from inspectd.imaging.window import to_8bit, window_limits


def _blocks(size: int = 400, seed: int = 0) -> np.ndarray:
    """Bright rectangles on a dark, slightly noisy background: corners at known places."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 40, np.uint8)
    for x0, y0, x1, y1 in ((60, 80, 160, 200), (220, 50, 330, 120), (200, 250, 350, 350)):
        img[y0:y1, x0:x1] = 200
    noise = rng.normal(0, 2, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- to_8bit


def test_to_8bit_uint8_full_range_is_passed_through_without_copy():
    img = _blocks()
    img[0, 0], img[-1, -1] = 0, 255
    assert to_8bit(img) is img


def test_to_8bit_stretches_narrow_uint8():
    img = (np.arange(256, dtype=np.uint8)[None, :] // 8 + 100).repeat(64, axis=0).astype(np.uint8)  # 100..131
    out = to_8bit(img)
    assert out.dtype == np.uint8 and out.shape == img.shape
    lo, hi = window_limits(out)
    assert lo <= 2 and hi >= 253


def test_to_8bit_16bit_window_matches_full_percentiles():
    rng = np.random.default_rng(1)
    img = np.clip(rng.normal(2000, 300, (1024, 1024)), 0, 4095).astype(np.uint16)
    img[:10, :10] = 4095  # hot pixels must not stretch the window
    out = to_8bit(img, bit_depth=12)
    assert out.dtype == np.uint8 and out.shape == img.shape and out.flags["C_CONTIGUOUS"]
    lo, hi = np.percentile(img, [0.5, 99.5])
    ref = np.clip(np.rint((img.astype(np.float64) - lo) * 255.0 / (hi - lo)), 0, 255)
    assert np.abs(ref - out).max() <= 2  # subsample window within ~1 level of the exact one
    assert np.mean(out == 0) < 0.02 and np.mean(out == 255) < 0.02


def test_to_8bit_constant_and_empty_frames():
    assert to_8bit(np.full((8, 8), 4095, np.uint16), bit_depth=12)[0, 0] == 255
    assert to_8bit(np.full((8, 8), 7, np.uint8))[0, 0] == 7
    assert to_8bit(np.zeros((0, 5), np.uint16)).shape == (0, 5)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32), np.zeros(4, np.uint8), np.zeros((4, 4), bool)]
)
def test_to_8bit_rejects_non_2d_or_non_integer(bad):
    with pytest.raises(ValueError, match="to_8bit expects"):
        to_8bit(bad)


# --------------------------------------------------------------------------- detect_corners contract


def test_detect_corners_contract():
    img = _blocks()
    cfg = CornerConfig(n=64)
    c = detect_corners(img, cfg)
    assert c.dtype == np.float32 and c.ndim == 2 and c.shape[1] == 3 and c.flags["C_CONTIGUOUS"]
    assert 0 < len(c) <= cfg.n
    assert np.all(np.diff(c[:, 2]) <= 0), "rows must be sorted by score, descending"
    h, w = img.shape
    assert np.all((c[:, 0] >= 0) & (c[:, 0] <= w - 1) & (c[:, 1] >= 0) & (c[:, 1] <= h - 1))
    # the strongest corners are the rectangles' corners
    true = np.array([(x, y) for x0, y0, x1, y1 in ((60, 80, 160, 200), (220, 50, 330, 120), (200, 250, 350, 350))
                     for x, y in ((x0, y0), (x1 - 1, y0), (x0, y1 - 1), (x1 - 1, y1 - 1))], float)
    d = np.linalg.norm(c[:12, None, :2] - true[None], axis=2).min(axis=1)
    assert np.all(d <= 3.0)
    # deterministic
    np.testing.assert_array_equal(c, detect_corners(img, cfg))


def test_detect_corners_n_limits_the_count():
    yy, xx = np.mgrid[0:400, 0:400]
    img = cv2.GaussianBlur(np.where((yy // 20 + xx // 20) % 2, 200, 40).astype(np.uint8), (0, 0), 1.0)
    big = detect_corners(img, CornerConfig(n=256))
    small = detect_corners(img, CornerConfig(n=16))
    assert len(small) == 16 and len(big) == 256
    # the few kept are among the many (same detector, fewer kept)
    d = np.linalg.norm(small[:, None, :2] - big[None, :, :2], axis=2).min(axis=1)
    assert np.all(d == 0)


def test_detect_corners_work_size_maps_to_full_frame_pixels():
    img = cv2.resize(_blocks(), (800, 800), interpolation=cv2.INTER_NEAREST)
    cfg = CornerConfig(n=64, work_size=400, fast_threshold=10)
    c = detect_corners(img, cfg)
    # exactly the corners of the same detector on the downscaled work image, mapped by (x + 0.5) * f - 0.5
    work = cv2.resize(img, (400, 400), interpolation=cv2.INTER_AREA)
    ref = detect_corners(work, CornerConfig(n=64, fast_threshold=10)).astype(np.float64)
    np.testing.assert_allclose(c[:, :2], (ref[:, :2] + 0.5) * 2.0 - 0.5, atol=1e-4)
    np.testing.assert_allclose(c[:, 2], ref[:, 2], rtol=1e-6)
    # and every one sits on a corner of the scaled rectangles (work px are 2 full-frame px)
    true = np.array([(x, y) for x0, y0, x1, y1 in ((120, 160, 320, 400), (440, 100, 660, 240), (400, 500, 700, 700))
                     for x, y in ((x0, y0), (x1 - 1, y0), (x0, y1 - 1), (x1 - 1, y1 - 1))], float)
    d = np.linalg.norm(c[:, None, :2] - true[None], axis=2).min(axis=1)
    assert len(c) >= 8 and np.all(d <= 5.0)


def test_detect_corners_work_size_no_upscale():
    img = _blocks()
    full = detect_corners(img, CornerConfig(n=64))
    np.testing.assert_array_equal(detect_corners(img, CornerConfig(n=64, work_size=1000)), full)


@pytest.mark.parametrize(
    "img",
    [
        np.zeros((0, 0), np.uint8),
        np.zeros((20, 20), np.uint8),
        np.zeros((500, 500), np.uint8),
        np.full((500, 500), 128, np.uint8),
        np.tile(np.linspace(0, 255, 500).astype(np.uint8), (500, 1)),
    ],
    ids=["empty", "tiny", "black", "constant", "ramp"],
)
def test_detect_corners_nothing_to_find(img):
    c = detect_corners(img, CornerConfig())
    assert c.shape == (0, 3) and c.dtype == np.float32


def test_detect_corners_noise_frame():
    img = np.random.default_rng(0).integers(0, 256, (300, 300)).astype(np.uint8)
    c = detect_corners(img, CornerConfig(n=100))
    assert c.shape == (100, 3) and np.all(np.diff(c[:, 2]) <= 0)


@pytest.mark.parametrize("bad", [np.zeros((64, 64), np.uint16), np.zeros((64, 64, 3), np.uint8)])
def test_detect_corners_rejects_non_uint8_mono(bad):
    with pytest.raises(ValueError):
        detect_corners(bad, CornerConfig())


def test_oriented_corners_angle_points_to_the_bright_side():
    img = np.full((200, 200), 30, np.uint8)
    img[100:, 100:] = 220  # bright quadrant to the lower right of the corner at (100, 100)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)  # FAST finds no corner on an ideal, unblurred step
    c, ang = detect_oriented_corners(img, CornerConfig(n=16))
    assert len(c) == len(ang) and ang.dtype == np.float32
    assert np.all((ang >= 0) & (ang < 360))
    i = int(np.argmin(np.hypot(c[:, 0] - 100, c[:, 1] - 100)))
    assert np.hypot(c[i, 0] - 100, c[i, 1] - 100) <= 2
    assert abs(ang[i] - 45.0) <= 20.0  # +x +y, image coordinates


def test_dense_cluster_ignores_spread_clutter():
    rng = np.random.default_rng(2)
    blob = rng.normal((700, 300), 15, (150, 2))
    clutter = rng.uniform(0, 1000, (300, 2))
    c = dense_cluster(np.vstack([clutter, blob]), (1000, 1000))
    assert c is not None and abs(c.x - 700) < 15 and abs(c.y - 300) < 15
    assert abs(np.vstack([clutter, blob]).mean(axis=0)[0] - 700) > 100  # the plain mean would be far off
    two = dense_clusters(np.vstack([blob, rng.normal((200, 800), 15, (100, 2))]), (1000, 1000), k=3)
    assert len(two) == 2 and abs(two[1].x - 200) < 15
    assert dense_cluster(np.zeros((2, 3)), (10, 10)) is None


# --------------------------------------------------------------------------- real frames


def test_corner_recall_of_labelled_real_tips(real_dir):
    """N=512, FAST threshold 10: measured 0.746 (δ = 3 px) / 0.925 (δ = 5 px) on the 8 labelled frames."""
    rec = corner_recall(real_dir / "images", real_dir / "labels", ns=(128, 512))
    assert rec["frames"] == 8 and rec["tips"] == 334
    assert rec[512]["all"][3.0] >= 0.72 and rec[512]["all"][5.0] >= 0.90
    assert rec[512]["all"][3.0] > rec[128]["all"][3.0]
