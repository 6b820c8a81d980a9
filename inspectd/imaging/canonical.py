"""Exact mappings between a frame and its canonical view (layers horizontal, tips right).

Canonical frame: layers horizontal, tips pointing right (+x), the stack body on
the left. Every later stage (ROI search, HRNet crop, post-correction) works in
it; results are mapped back to the full frame.

The mappings are reflections/transposes, not rotations, chosen so that the
order along the stack is kept: canonical y grows with full-frame y for
horizontal layers (RIGHT, LEFT) and with full-frame x for vertical layers (UP,
DOWN). A list sorted top-to-bottom in the canonical frame is therefore sorted
top-to-bottom (or left-to-right) in the full frame too, with no reversal.
(X-ray transmission images have no handedness: a mirrored stack is the same
stack seen from the other side.)

With H, W the full frame's shape and pixel centres at integers:

=========  ==========================  ==============================  =================
tips point  full (x, y) -> canonical     canonical (x', y') -> full        image view
=========  ==========================  ==============================  =================
RIGHT      (x, y)                      (x', y')                        img
LEFT       (W-1-x, y)                  (W-1-x', y')                    img[:, ::-1]
DOWN       (y, x)                      (y', x')                        img.T
UP         (H-1-y, x)                  (y', H-1-x')                    img[::-1].T
=========  ==========================  ==============================  =================

so ``to_canonical(img, o)[y', x'] == img[y, x]`` exactly, at every pixel. The
point maps are exact (bit for bit, round trip included) for coordinates whose
mirror W-1-x is representable: integers, half and quarter pixels and any value
with up to ~40 fractional bits. For arbitrary float64 coordinates a mirror
costs one rounding: a round trip is off by at most 1.2e-13 px at 1536 px
(RIGHT and DOWN, pure swaps, are always exact).
"""

from __future__ import annotations

from enum import Enum

import numpy as np

__all__ = [
    "Orientation",
    "to_canonical",
    "from_canonical",
    "canonical_shape",
    "points_to_canonical",
    "points_from_canonical",
    "box_from_canonical",
]


class Orientation(str, Enum):
    """Direction the electrode tips point in the full frame."""

    RIGHT = "right"
    LEFT = "left"
    UP = "up"
    DOWN = "down"

    @property
    def horizontal_layers(self) -> bool:
        return self in (Orientation.RIGHT, Orientation.LEFT)


def canonical_shape(shape: tuple[int, ...], o: Orientation) -> tuple[int, int]:
    """(H', W') of the canonical view of a full frame of shape (H, W)."""
    h, w = int(shape[0]), int(shape[1])
    return (h, w) if Orientation(o).horizontal_layers else (w, h)


def to_canonical(img: np.ndarray, o: Orientation) -> np.ndarray:
    """View of `img` (2-D, full frame) in the canonical frame; no copy (may be non-contiguous)."""
    o = Orientation(o)
    if o is Orientation.RIGHT:
        return img
    if o is Orientation.LEFT:
        return img[:, ::-1]
    if o is Orientation.DOWN:
        return img.T
    return img[::-1].T


def from_canonical(img_c: np.ndarray, o: Orientation) -> np.ndarray:
    """Inverse of `to_canonical`: view of a canonical-frame image in the full frame."""
    o = Orientation(o)
    if o is Orientation.RIGHT:
        return img_c
    if o is Orientation.LEFT:
        return img_c[:, ::-1]
    if o is Orientation.DOWN:
        return img_c.T
    return img_c.T[::-1]


def _as_points(pts: np.ndarray) -> np.ndarray:
    p = np.array(pts, dtype=np.float64, copy=True)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"points must be an (N, 2+) array of [x, y, ...], got shape {p.shape}")
    return p


def points_to_canonical(pts: np.ndarray, o: Orientation, shape: tuple[int, ...]) -> np.ndarray:
    """Map (N, 2+) full-frame ``[x, y, ...]`` points to the canonical frame.

    `shape` is the full frame's (H, W). Extra columns (e.g. a score) are kept.
    Returns a new float64 array.
    """
    o = Orientation(o)
    p = _as_points(pts)
    h, w = int(shape[0]), int(shape[1])
    x, y = p[:, 0].copy(), p[:, 1].copy()
    if o is Orientation.LEFT:
        p[:, 0] = (w - 1) - x
    elif o is Orientation.DOWN:
        p[:, 0], p[:, 1] = y, x
    elif o is Orientation.UP:
        p[:, 0], p[:, 1] = (h - 1) - y, x
    return p


def points_from_canonical(pts: np.ndarray, o: Orientation, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `points_to_canonical`; `shape` is the full frame's (H, W)."""
    o = Orientation(o)
    p = _as_points(pts)
    h, w = int(shape[0]), int(shape[1])
    x, y = p[:, 0].copy(), p[:, 1].copy()
    if o is Orientation.LEFT:
        p[:, 0] = (w - 1) - x
    elif o is Orientation.DOWN:
        p[:, 0], p[:, 1] = y, x
    elif o is Orientation.UP:
        p[:, 0], p[:, 1] = y, (h - 1) - x
    return p


def box_from_canonical(
    box: tuple[int, int, int, int], o: Orientation, shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """Map an integer pixel box ``(x0, y0, x1, y1)`` (inclusive-exclusive) from canonical to full frame.

    The same set of pixels, exactly: canonical columns x0..x1-1 of a LEFT frame
    are full-frame columns W-x1..W-1-x0, i.e. the box [W-x1, W-x0).
    """
    o = Orientation(o)
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = int(shape[0]), int(shape[1])
    if o is Orientation.RIGHT:
        return x0, y0, x1, y1
    if o is Orientation.LEFT:
        return w - x1, y0, w - x0, y1
    if o is Orientation.DOWN:
        return y0, x0, y1, x1
    return y0, h - x1, y1, h - x0


def box_to_canonical(box: tuple[int, int, int, int], o: Orientation, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Full-frame pixel box [x0, x1) × [y0, y1) -> the same pixels as a canonical box (inverse of
    `box_from_canonical`)."""
    o = Orientation(o)
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = int(shape[0]), int(shape[1])
    if o is Orientation.RIGHT:
        return x0, y0, x1, y1
    if o is Orientation.LEFT:
        return w - x1, y0, w - x0, y1
    if o is Orientation.DOWN:
        return y0, x0, y1, x1
    return h - y1, x0, h - y0, x1  # UP: x' = H-1-y, y' = x
