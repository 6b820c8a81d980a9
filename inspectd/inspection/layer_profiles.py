"""Grey profiles of the stack's rows, and whether its layers run on behind the cathode front (roi.py).

The ROI search (inspection/roi.py) reads the stack through 1-D profiles in
the canonical frame (layers horizontal, tips -> +x): the column mean of
sqrt(grey) over a band of columns, high-passed along y, is the layers'
stripe signal. sqrt: Poisson noise is the same in bright and dark rows.
`body_layering` uses it to tell a stack from a comb-like clutter part (a
toothed rack, a threaded rod): a stack's anodes and cathodes run on into its
body, a rack's teeth end at a plain block (docs/roi.md, "Clutter alone").
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["MIN_BODY_LAYERING", "SQRT_LUT", "body_layering", "gauss1d", "highpass_y", "row_profile"]

SQRT_LUT = np.sqrt(np.arange(256, dtype=np.float32))
BODY_DEPTH, BODY_SUBBANDS = 0.15, 3  # the body check: 3 column bands filling 0.15 h right behind x_c
MIN_BODY_LAYERING = 6.0  # body power at the comb's period / its median power; below: not a stack (docs/roi.md)
MIN_BODY_PERIOD = 6.0  # px; a finer comb's body layers (period/2 < 3 px) blur away: the check is not made


def gauss1d(v: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a 1-D float32 profile (replicated borders)."""
    v = np.ascontiguousarray(v, dtype=np.float32).reshape(-1, 1)
    return cv2.GaussianBlur(v, (1, 0), sigmaX=0.01, sigmaY=float(sigma), borderType=cv2.BORDER_REPLICATE).ravel()


def _box_size(sigma: float) -> int:
    """Odd width of the box filter with the variance of a Gaussian of this sigma."""
    return 2 * int(round(sigma * math.sqrt(12.0) / 2.0)) + 1


def highpass_y(sub: np.ndarray, sigma: float) -> np.ndarray:
    """sub - its low-pass along y (axis 0); float32. A box filter of the Gaussian's
    variance: O(1) per pixel whatever sigma (a sigma-12 Gaussian costs 5x more)."""
    low = cv2.blur(sub, (1, _box_size(sigma)), borderType=cv2.BORDER_REPLICATE)
    return sub - low


def row_profile(c: np.ndarray, rows: tuple[int, int], xl: int, xr: int, size: int) -> np.ndarray:
    """Column mean of sqrt(grey) over [xl, xr) for rows [b, a], high-passed along y: the layers' stripes."""
    b, a = rows
    xl = max(0, xl)
    prof = SQRT_LUT[np.asarray(c[b : a + 1, xl : max(xl + 2, xr)])].mean(axis=1)
    return prof - gauss1d(prof, max(1.5, 0.006 * size))


def body_layering(c: np.ndarray, rows: tuple[int, int], x_c: int, x_a: int, size: int) -> float:
    """How plainly the comb's layers go on behind x_c: the power spectra of the row profiles of
    BODY_SUBBANDS column bands filling BODY_DEPTH h behind x_c are summed (noise averages out, layers
    that run on through the body do not), and the largest power at the comb's period, its half or its
    double is divided by the sum's median over periods 3 px to h/4. docs/roi.md has the figures. A comb finer
    than MIN_BODY_PERIOD gives inf: its body's layers are below what the detector resolves (sim at 512²,
    4-5 px: the body is a plain dark block), so a plain body proves nothing there."""
    b, a = rows
    h = a - b
    comb = row_profile(c, rows, x_c, x_a, size)
    n = len(comb)
    freq = np.fft.rfftfreq(n)
    band = (freq >= 1.0 / max(4.0, h / 4.0)) & (freq <= 1.0 / 3.0)
    if band.sum() < 4:
        return 0.0
    window = np.hanning(n)
    f0 = float(freq[band][np.argmax(np.abs(np.fft.rfft((comb - comb.mean()) * window))[band])])
    if f0 * MIN_BODY_PERIOD > 1.0:
        return math.inf
    step = max(2, int(BODY_DEPTH * h) // BODY_SUBBANDS)
    power = np.zeros(len(freq))
    for k in range(BODY_SUBBANDS):
        x1 = x_c - 2 - k * step
        body = row_profile(c, rows, x1 - step, x1, size)
        power += np.abs(np.fft.rfft((body - body.mean()) * window)) ** 2
    median = float(np.median(power[band])) + 1e-12
    best = 0.0
    for f in (0.5 * f0, f0, 2.0 * f0):
        near = np.abs(freq - f) <= max(1.0 / n, 0.06 * f)
        if near.any():
            best = max(best, float(power[near].max()) / median)
    return best
