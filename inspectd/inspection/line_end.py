"""Line-end evidence for corners: how tip-like a corner is, and where the line end it sits on is.

An electrode tip is the end of a dark line: along the layer axis the line is
dark behind the tip and the gap in front of it is bright. FAST fires wherever
its radius-3 circle test passes, which on a blurred tip is 2-5 px behind the
end, and Harris ranks the noise grain of a blurred band as high as the tips.
Both functions here look at the profile *along the layer axis* instead:

- `end_contrast`: mean brightness ahead of a point minus behind it (a strip
  2..6 px ahead, 1..5 px behind, ±1 px across). Large at line ends, about 0
  on a line's flank or in the background: the correction's corner pass ranks
  its candidates by it (inspection/corner_select.py).
- `snap_to_line_end`: moves a corner onto the end of the line it sits on:
  first across the axis onto the line's dark ridge, then along the axis to
  where the darkness falls to `frac` of the line's own contrast against the
  gap ahead. A point with no line end within reach keeps its position.

Distances are given for 1000-px frames and scaled by `scale` (= max(H, W) /
1000, as the corner NMS radius is). Measured in docs/vision.md (corner recall
and what the snap does to corner-to-tip distances).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import map_coordinates

__all__ = ["smoothed", "end_contrast", "snap_to_line_end"]

_STEP = 0.25  # profile sampling step, px (at scale 1)


def smoothed(img8: np.ndarray, scale: float) -> np.ndarray:
    """The float32 image both functions sample: a light Gaussian (σ 0.6 px × scale) against grain."""
    return cv2.GaussianBlur(np.asarray(img8, np.float32), (0, 0), 0.6 * max(scale, 1e-3))


def _sample(img: np.ndarray, xy: np.ndarray, along: np.ndarray, across: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Bilinear samples at xy + along·d + across·n for every point: (K, len(along) * len(across))."""
    n = np.array([-d[1], d[0]])
    a, c = np.meshgrid(along, across, indexing="ij")
    ox = (a * d[0] + c * n[0]).ravel()
    oy = (a * d[1] + c * n[1]).ravel()
    xs = xy[:, 0, None] + ox[None]
    ys = xy[:, 1, None] + oy[None]
    v = map_coordinates(img, [ys.ravel(), xs.ravel()], order=1, mode="nearest")
    return v.reshape(len(xy), -1)


def _points(xy) -> np.ndarray:
    p = np.asarray(xy, np.float64)
    if p.size == 0:
        return np.zeros((0, 2))
    return p[:, :2] if p.ndim == 2 else p.reshape(-1, 2)


def end_contrast(img: np.ndarray, xy, direction, scale: float = 1.0) -> np.ndarray:
    """(K,) brightness ahead minus behind each point along `direction` (the way the tips face).

    `img`: `smoothed(...)` of the 8-bit frame (grey levels); `xy`: (K, 2+) points;
    `direction`: an axis direction ((±1, 0) or (0, ±1)). Ahead = the mean of a
    box 2..6 px ahead, behind = 1..5 px behind, both ±1 px across (px ×
    scale): one box filter of the image, sampled twice per point, so ranking
    tens of thousands of candidates costs about one blur of the band.
    """
    p = _points(xy)
    if len(p) == 0:
        return np.zeros(0, np.float64)
    d = np.asarray(direction, np.float64)
    s = float(scale)
    # odd box sides: cv2.blur centres an even kernel half a pixel off, towards -x / -y, which would
    # make the contrast depend on which way the tips face (frames of 768, 800, 1200 px ...)
    along, across = 2 * int(round(2.0 * s)) + 1, 2 * int(round(s)) + 1
    ksize = (along, across) if abs(d[0]) > abs(d[1]) else (across, along)
    box = cv2.blur(np.asarray(img, np.float32), ksize, borderType=cv2.BORDER_REPLICATE)

    def at(offset: float) -> np.ndarray:
        q = p + offset * d
        return map_coordinates(box, [q[:, 1], q[:, 0]], order=1, mode="nearest")

    return at(4.0 * s) - at(-3.0 * s)


def snap_to_line_end(img: np.ndarray, xy, direction, scale: float = 1.0, frac: float = 0.35) -> np.ndarray:
    """(K, 2) points moved onto the end of the dark line each sits on (see the module docstring).

    Steps, in px × scale: centre across the axis on the darkness-weighted
    ridge of a ±1.5 px profile 1 px behind the point; take the axial profile
    from -8 to +8 px through it; background = median of +3..+7 px; the
    line's contrast = the largest darkness in -5..+0.5 px; walk outward from
    that darkest sample to the first crossing of `frac` × contrast
    (interpolated). No crossing, a contrast under max(3 grey levels, 6 × the
    profile's grain) or a move of
    more than 4 px leave the point where it was.

    Known limit (review, 2026-11-26): the background window is measured from
    the start, so from 4-5 px behind a blurred end it still holds the line's
    own falling edge and the point lands short (σ 2.5 px: +0.7 px from 1 px
    behind, -1.2 px from 5 px behind). A second pass from the landing point
    removes that spread but lands +1.1 px beyond the sim labels (+2.4 px at
    2048²) and made the noisy-label correction worse; with `frac` 0.5 the
    bias is gone but sharp tapered ends (the comb) land behind their apex.
    Measured in docs/vision.md; single pass kept.
    """
    p = _points(xy)
    k = len(p)
    if k == 0:
        return np.zeros((0, 2), np.float64)
    d = np.asarray(direction, np.float64)
    n = np.array([-d[1], d[0]])
    s = float(scale)
    # 1. across: onto the ridge of the line
    lat = np.arange(-1.5, 1.5 + 1e-9, _STEP) * s
    prof = _sample(img, p - s * d, np.zeros(1), lat, d)
    dark = prof.max(axis=1, keepdims=True) - prof
    w = np.clip(dark - 0.5 * dark.max(axis=1, keepdims=True), 0.0, None)
    ws = w.sum(axis=1)
    off = np.divide((w * lat).sum(axis=1), ws, out=np.zeros(k), where=ws > 0)
    centred = p + off[:, None] * n
    # 2. along: the frac-of-contrast crossing beyond the darkest point
    t = np.arange(-8.0, 8.0 + 1e-9, _STEP) * s
    prof = _sample(img, centred, t, np.zeros(1), d)
    bg = np.median(prof[:, (t >= 3.0 * s) & (t <= 7.0 * s)], axis=1)
    # grain level from the differences of samples 1 px × scale apart (robust: MAD), so that a
    # grain dip inside a line or in the gap is not taken for a line end
    step_px = int(round(1.0 / _STEP))
    diffs = np.abs(prof[:, step_px:] - prof[:, :-step_px])
    grain = 1.4826 * np.median(diffs, axis=1) / np.sqrt(2.0)
    min_core = np.maximum(3.0, 6.0 * grain)
    dark = bg[:, None] - prof
    inside = (t >= -5.0 * s) & (t <= 0.5 * s)
    masked = np.where(inside[None], dark, -np.inf)
    i0 = masked.argmax(axis=1)
    core = masked.max(axis=1)
    lvl = (frac * core)[:, None]
    idx = np.arange(len(t) - 1)[None]
    cross = (dark[:, :-1] >= lvl) & (dark[:, 1:] < lvl) & (idx >= i0[:, None])
    found = cross.any(axis=1) & (core >= min_core)
    i = cross.argmax(axis=1)
    rows = np.arange(k)
    d0, d1 = dark[rows, i], dark[rows, i + 1]
    denom = np.where(d0 - d1 > 0, d0 - d1, 1.0)
    u = t[i] + _STEP * s * (d0 - lvl[:, 0]) / denom
    out = centred + u[:, None] * d
    moved = np.hypot(*(out - p).T)
    keep = ~found | (moved > 4.0 * s)
    out[keep] = p[keep]
    return out
