"""Spend the correction's corner budget on tips: ranking, non-maximum suppression and angle priority before the top-N cut.

Harris ranking alone gives the strongest corners, and in a tip band those
cluster: several on one cathode-edge defect or clamp edge, and on blurred
bands the noise grain outranks the soft tips. What the pipeline uses
(stages.roi_corners, measured in docs/vision.md):

- **rank_by**: an order other than the detector's score; the pipeline passes
  the line-end contrast of each candidate (inspection/line_end.py: bright ahead,
  dark behind along the layer axis). N = 512, δ 5 px per 1000: sim 1000²
  0.94 -> 0.97 of tips with a corner (0.99 with the snap onto line ends);
- **non-maximum suppression**: a corner suppresses lower-ranked ones within
  `radius` px, so one strong feature does not take many slots;
- **angle priority** (off by default since end-contrast order): an electrode
  tip's OFAST intensity-centroid angle points along the layers (canonical 0°
  or 180°); corners within `max_angle_deg` of that axis go first.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from inspectd.imaging.canonical import Orientation

__all__ = ["canonical_angle", "select_tip_corners"]


def canonical_angle(angles_deg: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Image-frame angles (0 = +x, 90 = +y) as angles in the canonical frame (tips facing +x).

    The maps of orientation.py on directions: LEFT mirrors x; DOWN swaps x and
    y; UP maps (dx, dy) to (-dy, dx).
    """
    a = np.asarray(angles_deg, np.float64)
    o = Orientation(orientation)
    out = {Orientation.RIGHT: a, Orientation.LEFT: 180.0 - a, Orientation.DOWN: 90.0 - a, Orientation.UP: a + 90.0}[o]
    return np.mod(out, 360.0)


def _nms(xy: np.ndarray, radius: float) -> np.ndarray:
    """Greedy NMS over points already sorted strongest first: mask of the points kept."""
    keep = np.ones(len(xy), bool)
    if radius <= 0 or len(xy) < 2:
        return keep
    pairs = cKDTree(xy).query_pairs(radius, output_type="ndarray")
    if len(pairs) == 0:
        return keep
    pairs = np.sort(pairs, axis=1)  # (stronger, weaker): lower index = higher score
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    starts = np.searchsorted(pairs[:, 0], np.arange(len(xy) + 1))
    for i in np.unique(pairs[:, 0]):
        if keep[i]:
            keep[pairs[starts[i] : starts[i + 1], 1]] = False
    return keep


def select_tip_corners(
    corners: np.ndarray,
    angles_deg: np.ndarray,
    orientation: Orientation,
    n: int,
    *,
    nms_radius: float,
    max_angle_deg: float,
    rank_by: np.ndarray | None = None,
) -> np.ndarray:
    """At most `n` rows of `corners` ([x, y, score], sorted by score descending), tip-like ones first.

    `rank_by` (K,), when given, replaces the score order (larger first, ties
    keep the score order), e.g. `line_end.end_contrast`. Greedy NMS with
    `nms_radius` px first (0 disables); then the corners whose
    canonical angle is within `max_angle_deg` of the layer axis come first and
    the others only fill what is left of the budget (180: off), each group in
    rank order. Returns a (K, 3) float32 array.
    """
    c = np.asarray(corners, np.float32).reshape(-1, 3)
    if len(c) == 0:
        return c
    angles_deg = np.asarray(angles_deg, np.float64).reshape(-1)
    if rank_by is not None:
        rank = np.asarray(rank_by, np.float64).reshape(-1)
        if len(rank) != len(c):
            raise ValueError(f"rank_by has {len(rank)} values for {len(c)} corners")
        order = np.argsort(-rank, kind="stable")
        c, angles_deg = c[order], angles_deg[order]
    keep = _nms(c[:, :2].astype(np.float64), nms_radius)
    c = c[keep]
    if max_angle_deg < 180.0:
        ca = canonical_angle(angles_deg, orientation)
        dev = np.abs(np.mod(ca + 90.0, 180.0) - 90.0)  # distance to 0° or 180°
        on_axis = dev <= max_angle_deg
        c = np.concatenate([c[on_axis[keep]], c[~on_axis[keep]]])
    return np.ascontiguousarray(c[: int(n)])
