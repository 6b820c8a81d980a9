"""Line-end evidence: end contrast ranks line ends first, the snap lands corners on them, in every orientation."""

import cv2
import numpy as np
import pytest

from inspectd.inspection.line_end import end_contrast, smoothed, snap_to_line_end

SIGMA = 1.5  # blur of the rendered lines, px (the simulator's blurry frames: 1.4-2.6 at 1000²)


def blurred_lines(rng, n=6, pitch=12.0, width=3.0, h=120, w=200):
    """Dark horizontal lines on a bright field, each ending (tip facing +x) at a known x; blurred and noisy.

    Returns (uint8 image, (n, 2) line ends [x, y]).
    """
    ss = 4
    yy, xx = (np.mgrid[0 : h * ss, 0 : w * ss] + 0.5) / ss - 0.5
    dark = np.zeros(yy.shape, bool)
    ends = []
    for k in range(n):
        yc = 20.0 + k * pitch + rng.uniform(-0.5, 0.5)
        xe = 120.0 + rng.uniform(-10, 10)
        dark |= (np.abs(yy - yc) <= width / 2) & (xx <= xe) & (xx >= 10)
        ends.append((xe, yc))
    cover = dark.reshape(h, ss, w, ss).mean(axis=(1, 3))
    img = cv2.GaussianBlur(200.0 - 130.0 * cover, (0, 0), SIGMA) + rng.normal(0, 3.0, (h, w))
    return np.clip(np.round(img), 0, 255).astype(np.uint8), np.array(ends)


ORIENTATIONS = {  # k quarter turns of np.rot90 (counter-clockwise on screen) -> direction the tips face
    0: (1.0, 0.0),
    1: (0.0, -1.0),
    2: (-1.0, 0.0),
    3: (0.0, 1.0),
}


def rotate(img, pts, k):
    """np.rot90(img, k) and the same map on pixel-centre points [x, y]."""
    p = np.asarray(pts, float).copy()
    for _ in range(k):
        h, w = img.shape
        img = np.rot90(img)
        p = np.column_stack([p[:, 1], (w - 1) - p[:, 0]])
    return np.ascontiguousarray(img), p


@pytest.mark.parametrize("k", sorted(ORIENTATIONS))
def test_end_contrast_is_largest_at_line_ends(k):
    img, ends = blurred_lines(np.random.default_rng(1))
    at_end = ends - [1.0, 0.0]
    mid_line = ends - [40.0, 0.0]
    ahead = ends + [25.0, 0.0]
    between = ends - [1.0, 6.0]  # level with the end, in the gap between two lines
    pts = np.vstack([at_end, mid_line, ahead, between])
    rimg, rpts = rotate(img, pts, k)
    e = end_contrast(smoothed(rimg, 1.0), rpts, ORIENTATIONS[k]).reshape(4, -1)
    assert e[0].min() > 60  # ~ the line's contrast (130 grey levels, blurred)
    assert np.abs(e[1:]).max() < 0.3 * e[0].min()


@pytest.mark.parametrize("k", sorted(ORIENTATIONS))
def test_snap_moves_corners_behind_and_beside_an_end_onto_it(k):
    rng = np.random.default_rng(2)
    img, ends = blurred_lines(rng)
    # FAST-like positions: 2-4 px behind the end, up to 1 px off the line's centre
    start = ends + np.column_stack([-rng.uniform(2, 4, len(ends)), rng.uniform(-1, 1, len(ends))])
    rimg, rpts = rotate(img, np.vstack([start, ends]), k)
    snapped = snap_to_line_end(smoothed(rimg, 1.0), rpts[: len(ends)], ORIENTATIONS[k])
    err_before = np.linalg.norm(rpts[: len(ends)] - rpts[len(ends) :], axis=1)
    err_after = np.linalg.norm(snapped - rpts[len(ends) :], axis=1)
    # a Gaussian-blurred end is 35 % dark 0.39 σ beyond the geometric end
    assert err_after.max() < 1.2, err_after
    assert err_after.mean() < 0.4 * err_before.mean()


def test_snap_leaves_points_without_a_line_end_in_reach():
    img, ends = blurred_lines(np.random.default_rng(3))
    img8 = smoothed(img, 1.0)
    background = ends + [40.0, 0.0]  # bright field: no contrast
    mid_line = ends - [30.0, 0.0]  # dark ahead and behind: the end is 30 px away
    pts = np.vstack([background, mid_line])
    np.testing.assert_array_equal(snap_to_line_end(img8, pts, (1.0, 0.0)), pts)
    assert snap_to_line_end(img8, np.zeros((0, 3)), (1.0, 0.0)).shape == (0, 2)
    assert end_contrast(img8, np.zeros((0, 2)), (1.0, 0.0)).shape == (0,)


def test_distances_scale_with_the_frame():
    """A frame twice the size (scale 2) with everything twice as big snaps to the same place, doubled."""
    img, ends = blurred_lines(np.random.default_rng(4))
    start = ends - [3.0, 0.5]
    one = snap_to_line_end(smoothed(img, 1.0), start, (1.0, 0.0))
    big = cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    two = snap_to_line_end(smoothed(big, 2.0), (start + 0.5) * 2 - 0.5, (1.0, 0.0), scale=2.0)
    np.testing.assert_allclose((two + 0.5) / 2 - 0.5, one, atol=0.35)


@pytest.mark.parametrize("scale", [1.25, 0.75])
def test_end_contrast_does_not_depend_on_the_tip_direction_at_any_scale(scale):
    """An even box length would put cv2.blur's box half a pixel towards -x: mirrored frames gave up to
    16 grey levels different contrast at scale 0.75 / 1.25 (frames of 750 / 1250 px)."""
    img, ends = blurred_lines(np.random.default_rng(5))
    pts = np.vstack([ends - [1.0, 0.0], ends - [2.5, 0.3]])
    mirrored = np.ascontiguousarray(img[:, ::-1])
    mpts = np.column_stack([(img.shape[1] - 1) - pts[:, 0], pts[:, 1]])
    e = end_contrast(smoothed(img, scale), pts, (1.0, 0.0), scale)
    m = end_contrast(smoothed(mirrored, scale), mpts, (-1.0, 0.0), scale)
    np.testing.assert_allclose(e, m, atol=1e-3)
