"""Selecting the correction's corners: angle gate and NMS in every orientation."""

import numpy as np
import pytest

from inspectd.inspection.corner_select import _nms, canonical_angle, select_tip_corners
from inspectd.imaging.canonical import Orientation


@pytest.mark.parametrize(
    "o,img_angle,expected",
    [
        (Orientation.RIGHT, 10.0, 10.0),
        (Orientation.LEFT, 10.0, 170.0),  # x mirrored
        (Orientation.DOWN, 80.0, 10.0),  # x and y swapped
        (Orientation.UP, 280.0, 10.0),  # (dx, dy) -> (-dy, dx)
    ],
)
def test_canonical_angle_follows_the_orientation_maps(o, img_angle, expected):
    assert canonical_angle(np.array([img_angle]), o)[0] == pytest.approx(expected)


def test_nms_keeps_the_strongest_of_each_cluster_and_isolated_points():
    xy = np.array([[0, 0], [1, 0], [10, 0], [2.5, 0], [10.5, 0.5], [30, 30]], float)  # strongest first
    keep = _nms(xy, 2.0)
    # 0 suppresses 1; 3 is 2.5 from 0 (kept); 2 suppresses 4; 5 isolated
    assert keep.tolist() == [True, False, True, True, False, True]
    assert _nms(xy, 0.0).all()


def test_select_suppresses_then_puts_on_axis_corners_first_then_cuts_to_n():
    corners = np.array(
        [[100, 100, 9.0], [101, 100, 8.0], [200, 100, 7.0], [300, 100, 6.0], [400, 100, 5.0]], np.float32
    )
    # image angles for a DOWN stack: layer axis is the image y axis (90° / 270°)
    angles = np.array([90.0, 90.0, 0.0, 265.0, 100.0], np.float32)
    got = select_tip_corners(corners, angles, Orientation.DOWN, 10, nms_radius=3.0, max_angle_deg=20.0)
    assert got[:, 0].tolist() == [100.0, 300.0, 400.0, 200.0]  # 101 suppressed by 100; 200 (0°) off-axis: last
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    got = select_tip_corners(corners, angles, Orientation.DOWN, 2, nms_radius=3.0, max_angle_deg=20.0)
    assert got[:, 0].tolist() == [100.0, 300.0]
    got = select_tip_corners(corners, angles, Orientation.DOWN, 2, nms_radius=0.0, max_angle_deg=180.0)
    assert got[:, 0].tolist() == [100.0, 101.0]
    assert select_tip_corners(np.zeros((0, 3)), np.zeros(0), Orientation.RIGHT, 5, nms_radius=2, max_angle_deg=45).shape == (0, 3)
