"""What a Harvesters buffer holds, as inspectd wants it: the mono image and the device's own frame id and clock.

Kept apart from the source's acquisition loop (genicam.py) because it is the
part that knows the GenTL buffer's layout: the payload's components, the
pixel format of each, where a packed format's raw bytes start.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inspectd.sources.base import Alloc
from inspectd.sources.pixel_formats import PIXEL_FORMATS, PixelFormatError, payload_to_image

__all__ = ["buffer_image", "buffer_stamps"]


def buffer_stamps(buf: Any) -> dict[str, int]:
    """The sidecar's device_frame_id / device_timestamp(_hz), where the producer gives them."""
    out: dict[str, int] = {}
    # A producer that lacks a node raises anything from AttributeError to its own GenTL errors: no stamp then.
    try:
        out["device_frame_id"] = int(buf.module.frame_id)
    except Exception:  # noqa: BLE001, S110
        pass
    try:
        ts = int(buf.timestamp)
        if ts:
            out["device_timestamp"] = ts
            out["device_timestamp_hz"] = int(buf.timestamp_frequency)
    except Exception:  # noqa: BLE001, S110
        pass
    return out


def buffer_image(buf: Any, alloc: Alloc | None = None) -> tuple[np.ndarray, int]:
    """(image, bit depth) of the buffer's first mono component, copied out (into `alloc`'s array when given:
    a ring slot, so the frame crosses memory once). Raises PixelFormatError or ValueError on a bad payload."""
    comps = [c for c in buf.payload.components if getattr(c, "data_format", None) in PIXEL_FORMATS]
    if not comps:
        got = [getattr(c, "data_format", "?") for c in buf.payload.components]
        raise PixelFormatError(f"no mono image component in the buffer (components: {got or 'none'})")
    c = comps[0]
    fmt = c.data_format
    layout = PIXEL_FORMATS[fmt][1]
    if layout in ("u8", "u16"):
        raw = c.data.view(np.uint8)  # Harvesters' view of the buffer; payload_to_image copies
    else:  # packed: unpack the raw bytes ourselves
        raw = np.frombuffer(buf.module.raw_buffer, np.uint8)[int(c.data_offset) :]
    w, h = int(c.width), int(c.height)
    out = None
    if alloc is not None and layout in ("u8", "u16"):  # packed formats unpack into their own array
        out = alloc((h, w), np.uint8 if layout == "u8" else np.uint16)
    return payload_to_image(raw, fmt, w, h, int(c.x_padding or 0), out=out)
