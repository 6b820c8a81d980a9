"""The box every stage after the ROI search works in: `Box` (pixels) and `Roi` (a box with its orientation).

Here, below inspection, the tip runtime, training and the overlays, so all of
them can name the type instead of passing an `object`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inspectd.imaging.canonical import Orientation

__all__ = ["Box", "Roi"]


@dataclass(frozen=True)
class Box:
    """A box in full-frame pixels, [x0, x1) x [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def diagonal(self) -> float:
        """Reference distance for NME/PCK (docs/accuracy.md, Metrics)."""
        return math.hypot(self.width, self.height)

    def as_list(self) -> list[int]:
        """[x0, y0, x1, y1] as the verdict's `roi` field carries it."""
        return [self.x0, self.y0, self.x1, self.y1]

    def crop(self, img: np.ndarray) -> np.ndarray:
        """View of the box in a full-frame image (no copy)."""
        return img[self.y0 : self.y1, self.x0 : self.x1]

    def contains(self, pts: np.ndarray) -> np.ndarray:
        """Bool mask: which (N, 2+) ``[x, y]`` points lie inside (pixel centres, half-open box)."""
        p = np.asarray(pts, dtype=np.float64).reshape(len(pts), -1)
        x, y = p[:, 0] + 0.5, p[:, 1] + 0.5  # pixel i spans [i - 0.5, i + 0.5)
        return (x >= self.x0) & (x < self.x1) & (y >= self.y0) & (y < self.y1)


@dataclass(frozen=True)
class Roi(Box):
    """The region of interest the ROI stage found: its box and which way the tips point."""

    orientation: Orientation
    # Sub-box of the ROI between the cathode front (less a margin) and the anode
    # front (plus a margin): where the tips are. The correction's corner pass looks
    # only here so its corner budget is not spent on the stack body.
    tip_band: tuple[int, int, int, int] | None = None
