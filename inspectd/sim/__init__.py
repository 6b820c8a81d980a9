"""X-ray scene simulator: synthetic frames of stacked-cell corners with exact tip labels.

``render_frame(seed, index, opts)`` -> :class:`SimFrame` (image, labels, expected verdict).
See ``render.py`` for the image chain and ``scene.py`` for the geometry and ground truth.
"""

from inspectd.sim.render import SimFrame, SimOptions, render_frame
from inspectd.sim.scene import DEFECT_KINDS, ORIENTATIONS

__all__ = ["DEFECT_KINDS", "ORIENTATIONS", "SimFrame", "SimOptions", "render_frame"]
