"""Frames and frame dumps: the unit of work and its on-disk form (docs/contracts.md §3)."""

from inspectd.frames.dumps import FrameReadError, iter_dump, list_dump, read_frame, read_image, write_frame
from inspectd.frames.model import FRAME_SCHEMA, Frame, FrameError, Sidecar, TipLabels

__all__ = [
    "FRAME_SCHEMA",
    "Frame",
    "FrameError",
    "FrameReadError",
    "Sidecar",
    "TipLabels",
    "iter_dump",
    "list_dump",
    "read_frame",
    "read_image",
    "write_frame",
]
