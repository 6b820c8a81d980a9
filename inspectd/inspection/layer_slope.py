"""Where each tip's layer crosses the cathode front: the key that orders tips along a tilted or bent stack.

`measure` orders tips by their coordinate across the layers. That is right
for a stack square to the frame, but an anode and its cathodes are 40-150 px
apart along the layer and only 3-10 px apart across it: tilted by 5 degrees,
the anode's row passes its neighbour cathode's and the sequence reads as two
anodes in a row (ALTERNATION on a good cell). Measured on 30 simulator
frames rotated by up to 5 degrees: 12 of 20 good cells rejected, every tip
found. A single angle per frame does not fix it: bent stacks fan out, the
top layers turn one way and the bottom ones the other.

So each tip is slid back along its own layer to the cathode front, and that
point's position across the stack orders it. The layer's local direction
comes from the image's structure tensor (gradients are across the layers),
smoothed over a window a few layers high and a fraction of the comb long,
sampled on the strand behind the tip. Where the tensor is not coherent (no
layer texture) the tip keeps its own row. Cathode tips sit near the front,
so their key barely moves; the anodes' key is what changes.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from inspectd.imaging.canonical import points_from_canonical, points_to_canonical, to_canonical
from inspectd.imaging.region import Roi

__all__ = ["MAX_SLOPE_DEG", "front_points"]

MAX_SLOPE_DEG = 12.0  # a layer turned further than this from the ROI's axis is not trusted
MIN_COHERENCE = 0.3  # (l1 - l2) / (l1 + l2) of the tensor; below, no clear layer direction
BEHIND = 0.5  # the slope is sampled this fraction of the tip-to-front distance (+ 2 pitches) behind the tip


def _slopes(c8: np.ndarray, pts: np.ndarray, behind: np.ndarray, pitch: float, length: float) -> np.ndarray:
    """dy/dx of the layers (canonical) at `pts` moved `behind` px back along x; NaN where unclear."""
    g = cv2.GaussianBlur(c8.astype(np.float32), (0, 0), 1.0)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    sx, sy = max(3.0, 0.5 * length), max(3.0, 4.0 * pitch)
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), sigmaX=sx, sigmaY=sy)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), sigmaX=sx, sigmaY=sy)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), sigmaX=sx, sigmaY=sy)
    h, w = c8.shape
    xs = np.clip(np.round(pts[:, 0] - behind), 0, w - 1).astype(int)
    ys = np.clip(np.round(pts[:, 1]), 0, h - 1).astype(int)
    a, b, c = jxx[ys, xs].astype(np.float64), jxy[ys, xs].astype(np.float64), jyy[ys, xs].astype(np.float64)
    # gradient direction phi: tan(2 phi) = 2 Jxy / (Jxx - Jyy); the layers run at phi + 90 degrees
    phi = 0.5 * np.arctan2(2.0 * b, a - c)
    ang = phi + 0.5 * math.pi
    ang = (ang + 0.5 * math.pi) % math.pi - 0.5 * math.pi
    coh = np.sqrt((a - c) ** 2 + 4.0 * b * b) / np.maximum(a + c, 1e-9)
    slope = np.tan(ang)
    bad = (coh < MIN_COHERENCE) | (np.abs(ang) > math.radians(MAX_SLOPE_DEG))
    slope[bad] = np.nan
    return slope


def _median_along(slope: np.ndarray, y: np.ndarray, k: int = 2) -> np.ndarray:
    """Median of each tip's slope and its k neighbours either side along the stack (NaN: unknown -> 0)."""
    order = np.argsort(y, kind="stable")
    s = slope[order]
    out = np.zeros_like(s)
    for i in range(len(s)):
        win = s[max(0, i - k) : i + k + 1]
        win = win[np.isfinite(win)]
        out[i] = float(np.median(win)) if len(win) else 0.0
    res = np.empty_like(out)
    res[order] = out
    return res


def _linear_fit(slope: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Slope as a straight line in the stack position (tilt + fan), fitted robustly to the per-tip estimates.

    Per-tip estimates scatter by +-0.05 on dense stacks and run high at the stack's ends (the window meets
    the background); a line through them (twice, dropping the worst quarter) keeps the tilt and the fan."""
    ok = np.isfinite(slope)
    if ok.sum() < 4:
        return np.zeros_like(slope)
    yy, ss = y[ok], slope[ok]
    keep = np.ones(len(yy), bool)
    coef = np.array([0.0, float(np.median(ss))])
    for _ in range(2):
        if keep.sum() < 4 or np.ptp(yy[keep]) <= 0:
            break
        coef = np.polyfit(yy[keep], ss[keep], 1)
        res = np.abs(ss - np.polyval(coef, yy))
        keep = res <= np.quantile(res, 0.75)
    return np.polyval(coef, y)


def front_points(img8: np.ndarray, roi: Roi, anode: np.ndarray, cathode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each tip slid along its layer to the cathode front (full-frame [x, y]); the tips themselves if unclear."""
    a = np.asarray(anode, np.float64).reshape(-1, 2)
    c = np.asarray(cathode, np.float64).reshape(-1, 2)
    if len(a) < 2 or len(c) < 2:
        return a, c
    o, shape = roi.orientation, img8.shape
    x0, y0, x1, y1 = roi.x0, roi.y0, roi.x1, roi.y1
    crop = np.asarray(img8)[y0:y1, x0:x1]
    if crop.size == 0:
        return a, c
    cs = crop.shape
    ac = points_to_canonical(a - (x0, y0), o, cs)
    cc = points_to_canonical(c - (x0, y0), o, cs)
    front = float(np.median(cc[:, 0]))
    length = max(4.0, float(np.median(ac[:, 0])) - front)
    ys = np.sort(np.concatenate([ac[:, 1], cc[:, 1]]))
    pitch = float(np.median(np.diff(ys))) if len(ys) > 2 else 4.0
    c8 = to_canonical(crop, o)
    out = []
    for p in (ac, cc):
        dist = np.maximum(p[:, 0] - front, 0.0)
        slope = _slopes(c8, p, BEHIND * dist + 2.0 * pitch, pitch, length)
        slope = _linear_fit(slope, p[:, 1])
        q = p.copy()
        q[:, 1] -= slope * (p[:, 0] - front)
        q[:, 0] = front
        out.append(points_from_canonical(q, o, cs) + (x0, y0))
    return out[0], out[1]
