"""Window/level: any integer mono frame -> uint8, the way a line engineer expects.

X-ray detectors deliver 8-, 12- or 16-bit mono frames whose useful content
rarely spans the nominal range: a 12-bit frame in a uint16 container uses at
most 4096 of 65536 levels, and within that the cell occupies a band set by the
tube voltage and the detector gain. The corner detector (absolute FAST
threshold in grey levels) and the ROI step (row/column grey profiles) expect a
frame whose dark stack body and bright background span most of 0..255.

`to_8bit` therefore sets the window from robust percentiles of the frame
(default 0.5 % / 99.5 %: a few hot/dead pixels, a saturated corner or the black
outside the image-intensifier circle cannot stretch or squash it) and maps it
linearly, clipped, to 0..255. The percentiles come from a histogram of a
strided subsample (~65 k pixels: every 3rd pixel of every 3rd row at 1000^2,
every 8th at 2048^2): a full-frame `np.percentile` costs 26-65 ms at 2048^2, the
subsample histogram well under 1 ms, and on 2048^2 16-bit upscales of the real
frames the window differs from the full-frame one by at most 0.2 output grey
levels (X-ray histograms are smooth and noise-dominated). The whole 16-bit ->
8-bit conversion takes ~4 ms at 2048^2.

uint8 input whose window already spans at least `min_span_8bit` levels is
returned unchanged, as the same object (no copy): such frames were windowed by
the acquisition software already, re-stretching them cannot add grey levels
(only amplify noise and quantisation steps), and it would shift what the FAST
threshold and ROI thresholds mean on the frames they were tuned on (all 52
real development frames are in this case: their 0.5 %-99.5 % windows span
229-254 levels). Only badly under-exposed 8-bit frames are stretched.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["to_8bit", "window_limits"]

# Number of pixels the percentile subsample aims for.
_SAMPLE_TARGET = 1 << 16


def _check(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(
            f"to_8bit expects a 2-D mono frame, got shape {image.shape}"
            + (" (convert colour/3-channel frames to mono first, e.g. cv2.cvtColor)" if image.ndim == 3 else "")
        )
    if not np.issubdtype(image.dtype, np.integer) or image.dtype == np.bool_:
        raise ValueError(f"to_8bit expects an integer frame (uint8/uint16), got dtype {image.dtype}")
    return image


def _subsample(image: np.ndarray) -> np.ndarray:
    step = max(1, int(np.sqrt(image.size / _SAMPLE_TARGET)))
    return image[::step, ::step]


def window_limits(image: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> tuple[int, int]:
    """(low, high) grey levels at the given percentiles of a strided subsample."""
    image = _check(image)
    if image.size == 0:
        return 0, 0
    sample = _subsample(image)
    if image.dtype in (np.uint8, np.uint16):
        hist = np.bincount(sample.ravel(), minlength=1 << (8 * image.dtype.itemsize))
        cdf = np.cumsum(hist)
        n = cdf[-1]
        lo = int(np.searchsorted(cdf, low_pct / 100.0 * n, side="left"))
        hi = int(np.searchsorted(cdf, high_pct / 100.0 * n, side="left"))
        return lo, hi
    lo, hi = np.percentile(sample, [low_pct, high_pct])
    return int(np.floor(lo)), int(np.ceil(hi))


def to_8bit(
    image: np.ndarray,
    bit_depth: int | None = None,
    *,
    low_pct: float = 0.5,
    high_pct: float = 99.5,
    min_span_8bit: int = 128,
) -> np.ndarray:
    """Window/level an integer mono frame to uint8 (see the module docstring for why).

    image: 2-D uint8/uint16 (any integer dtype is accepted) mono frame.
    bit_depth: significant bits of the detector (e.g. 12 for 12-bit data in a
        uint16). Only used to map a frame with no contrast (constant, window of
        zero width) by its nominal range instead of dividing by zero; defaults to
        the dtype's width.
    low_pct, high_pct: the window's percentiles.
    min_span_8bit: uint8 frames whose window spans at least this many levels
        are returned unchanged (the same object).

    Returns a C-contiguous uint8 array of the same shape (or `image` itself, see
    above). Raises ValueError for non-2-D or non-integer input.
    """
    image = _check(image)
    if image.size == 0:
        return np.zeros(image.shape, np.uint8)
    lo, hi = window_limits(image, low_pct, high_pct)
    if image.dtype == np.uint8 and hi - lo >= min_span_8bit:
        return image
    if hi <= lo:
        # No contrast at all: keep the level, scaled from the nominal range.
        bits = bit_depth if bit_depth else 8 * image.dtype.itemsize
        top = float((1 << bits) - 1)
        level = np.clip(np.rint(float(lo) * 255.0 / top), 0, 255)
        return np.full(image.shape, level, np.uint8)
    scale = 255.0 / float(hi - lo)
    if image.dtype in (np.uint8, np.uint16):
        # Saturating subtract then scale-and-saturate: two SIMD passes, no float image.
        shifted = cv2.subtract(image, np.array([lo], dtype=image.dtype)) if lo > 0 else image
        return cv2.convertScaleAbs(shifted, alpha=scale)
    out = (image.astype(np.float32) - np.float32(lo)) * np.float32(scale)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
