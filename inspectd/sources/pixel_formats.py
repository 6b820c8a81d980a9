"""Mono pixel formats of GenICam (PFNC) payloads: names, bit depths, and unpacking into numpy images.

Split out of `inspectd.sources.genicam` (the `genicam:` source plugin), which
re-exports `PixelFormatError` and `payload_to_image`. Pure numpy: no
Harvesters or GenICam import, so it works (and is tested) without the
`genicam` extra. Not a source plugin: it defines no ``SCHEME``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

# name -> (bits per pixel, layout): "u8"/"u16" unpacked, "lsb" PFNC packed (Mono10p...), "gige" GigE Vision packed
PIXEL_FORMATS: dict[str, tuple[int, str]] = {
    "Mono8": (8, "u8"),
    "Mono10": (10, "u16"),
    "Mono12": (12, "u16"),
    "Mono14": (14, "u16"),
    "Mono16": (16, "u16"),
    "Mono10p": (10, "lsb"),
    "Mono12p": (12, "lsb"),
    "Mono14p": (14, "lsb"),
    "Mono10Packed": (10, "gige"),
    "Mono12Packed": (12, "gige"),
}
# `auto` picks the first of these the device offers: deepest first, unpacked before packed (less CPU)
AUTO_ORDER = ["Mono16", "Mono14", "Mono14p", "Mono12", "Mono12p", "Mono12Packed", "Mono10", "Mono10p", "Mono10Packed", "Mono8"]
PixelFormatName = Literal[
    "auto", "Mono8", "Mono10", "Mono12", "Mono14", "Mono16",
    "Mono10p", "Mono12p", "Mono14p", "Mono10Packed", "Mono12Packed",
]  # fmt: skip


class PixelFormatError(ValueError):
    """A payload that cannot be turned into a mono image (unsupported format, short buffer)."""


def _packed_bytes(npx: int, bits: int, layout: str) -> int:
    """Bytes that hold `npx` packed pixels (GigE Vision "Packed" spends 3 bytes per 2 pixels even at 10 bits)."""
    if layout == "gige":
        return -(-npx // 2) * 3
    return -(-npx * bits // 8)


def _unpack_groups(rows: np.ndarray, bits: int, layout: str, npx: int) -> np.ndarray:
    """Unpack each row of packed bytes `rows` (2-D uint8) into `npx` pixels (2-D uint16)."""
    if layout == "lsb":  # PFNC "p": a little-endian bit stream, pixel i at bits [i*b, (i+1)*b)
        group_px = 8 // math.gcd(bits, 8)
        group_bytes = group_px * bits // 8
    else:  # GigE Vision "Packed": 2 pixels in 3 bytes, high bits in bytes 0 and 2, low bits in byte 1
        group_px, group_bytes = 2, 3
    h, nbytes = rows.shape
    groups = -(-npx // group_px)
    if nbytes < groups * group_bytes:  # the last group of a row may be partial: pad with zeros
        rows = np.concatenate([rows, np.zeros((h, groups * group_bytes - nbytes), np.uint8)], axis=1)
    g = rows[:, : groups * group_bytes].reshape(h, groups, group_bytes)
    if layout == "lsb":
        v = np.zeros((h, groups), np.uint64)
        for i in range(group_bytes):
            v |= g[:, :, i].astype(np.uint64) << np.uint64(8 * i)
        mask = np.uint64((1 << bits) - 1)
        px = np.stack([(v >> np.uint64(bits * j)) & mask for j in range(group_px)], axis=-1).astype(np.uint16)
    else:
        lo_bits = bits - 8
        lo_mask = (1 << lo_bits) - 1
        b0, b1, b2 = (g[:, :, i].astype(np.uint16) for i in range(3))
        p0 = (b0 << lo_bits) | (b1 & lo_mask)
        p1 = (b2 << lo_bits) | ((b1 >> 4) & lo_mask)
        px = np.stack([p0, p1], axis=-1)
    return px.reshape(h, groups * group_px)[:, :npx]


def payload_to_image(
    raw: np.ndarray | bytes | memoryview,
    pixel_format: str,
    width: int,
    height: int,
    padding_x: int = 0,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """A GenTL image payload as a new 2-D uint8/uint16 array (never a view of `raw`), and its bit depth.

    `out`: a (height, width) array of the right dtype to fill instead (a frame-ring slot: the frame is
    then copied out of the producer's buffer once, straight into the shared memory the workers read).

    `raw` holds the payload bytes from the start of the image; `padding_x` is
    GenTL's BUFFER_INFO_PADDING_X (bytes appended to every line). Unpacked
    10–16-bit formats are little-endian 16-bit words; packed formats are the
    PFNC LSB-first ``...p`` layout (lines packed back to back when there is no
    line padding) or the GigE Vision ``...Packed`` layout.
    """
    if pixel_format not in PIXEL_FORMATS:
        supported = ", ".join(PIXEL_FORMATS)
        raise PixelFormatError(f"pixel format {pixel_format!r} is not supported (supported: {supported})")
    bits, layout = PIXEL_FORMATS[pixel_format]
    if width <= 0 or height <= 0:
        raise PixelFormatError(f"{pixel_format} payload with an empty size {width}x{height}")
    if padding_x < 0:
        raise PixelFormatError(f"negative line padding {padding_x}")
    buf = np.frombuffer(raw, np.uint8) if not isinstance(raw, np.ndarray) else raw.reshape(-1).view(np.uint8)
    if layout in ("u8", "u16"):
        bpp = 1 if layout == "u8" else 2
        line = width * bpp
        stride = line + padding_x
        need = stride * height
        if buf.size < need:
            raise PixelFormatError(
                f"{pixel_format} {width}x{height}: payload holds {buf.size} bytes, needs {need}"
                + (f" (lines of {line} + {padding_x} padding bytes)" if padding_x else "")
            )
        rows = buf[:need].reshape(height, stride)[:, :line]
        dtype = np.uint8 if bpp == 1 else np.uint16
        if out is not None and out.shape == (height, width) and out.dtype == dtype:
            src = rows if bpp == 1 else rows.view(np.dtype("<u2")).reshape(height, width)
            np.copyto(out, src, casting="same_kind")  # the one copy, into the caller's memory
            return out, bits
        img = np.array(rows, copy=True, order="C")  # the copy: the buffer goes back to the producer after this
        if bpp == 2:
            img = img.view(np.dtype("<u2")).astype(np.uint16, copy=False).reshape(height, width)
        return img, bits
    if padding_x == 0:  # packed back to back: the whole image is one bit stream
        need = _packed_bytes(width * height, bits, layout)
        if buf.size < need:
            raise PixelFormatError(f"{pixel_format} {width}x{height}: payload holds {buf.size} bytes, needs {need}")
        img = _unpack_groups(buf[:need].reshape(1, need), bits, layout, width * height).reshape(height, width)
    else:  # every line starts on a byte boundary, followed by padding_x bytes
        line = _packed_bytes(width, bits, layout)
        stride = line + padding_x
        if buf.size < stride * height:
            raise PixelFormatError(
                f"{pixel_format} {width}x{height}: payload holds {buf.size} bytes, needs {stride * height} "
                f"(lines of {line} + {padding_x} padding bytes)"
            )
        img = _unpack_groups(buf[: stride * height].reshape(height, stride)[:, :line], bits, layout, width)
    return np.ascontiguousarray(img, dtype=np.uint16), bits

