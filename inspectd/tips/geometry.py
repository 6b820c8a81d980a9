"""Canonical-frame geometry of the tip model's input: affine tile maps, which way labels point, layer pitch, tip front.

Used by inference (`crop.make_batch`: pitch and tip front from the image) and
by training (the labels' orientation and pitch); `crop.py` builds tiles on it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from inspectd.imaging.canonical import Orientation

__all__ = [
    "affine", "apply_affine", "estimate_pitch", "invert_affine", "labels_pitch", "orientation_from_labels",
    "parabolic_peak", "tip_front",
]  # fmt: skip


def affine(
    scale: float,
    centre_c: tuple[float, float],
    centre_in: tuple[float, float],
    angle_deg: float = 0.0,
    flip_v: bool = False,
    tile_h: int | None = None,
) -> np.ndarray:
    """2×3 canonical -> input affine: scale and rotate about `centre_c`, which lands on `centre_in`.

    ``flip_v`` mirrors the result top-bottom (v -> tile_h - 1 - v): a reflection
    along the stack axis that keeps the tips pointing right.
    """
    a = math.radians(angle_deg)
    ca, sa = math.cos(a) * scale, math.sin(a) * scale
    m = np.array([[ca, -sa, 0.0], [sa, ca, 0.0]])
    m[:, 2] = np.asarray(centre_in, np.float64) - m[:, :2] @ np.asarray(centre_c, np.float64)
    if flip_v:
        if tile_h is None:
            raise ValueError("flip_v needs tile_h")
        m[1] = -m[1]
        m[1, 2] += tile_h - 1
    return m


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.asarray(pts, np.float64).reshape(-1, 2)
    return p @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def orientation_from_labels(anode: np.ndarray, cathode: np.ndarray) -> Orientation | None:
    """Tip direction from labelled tips: anodes stick out beyond cathodes."""
    a = np.asarray(anode, np.float64).reshape(-1, 2)
    c = np.asarray(cathode, np.float64).reshape(-1, 2)
    if len(a) == 0 or len(c) == 0:
        return None
    v = a.mean(0) - c.mean(0)
    if abs(v[0]) >= abs(v[1]):
        return Orientation.RIGHT if v[0] >= 0 else Orientation.LEFT
    return Orientation.DOWN if v[1] >= 0 else Orientation.UP


def labels_pitch(anode_c: np.ndarray, cathode_c: np.ndarray) -> float | None:
    """Same-class pitch from canonical labels: median spacing of consecutive tips along y, both classes."""
    d = []
    for p in (anode_c, cathode_c):
        p = np.asarray(p, np.float64).reshape(-1, 2)
        if len(p) >= 2:
            d.append(np.diff(np.sort(p[:, 1])))
    if not d:
        return None
    v = np.concatenate(d)
    v = v[v > 0.5]
    return float(np.median(v)) if len(v) else None


def estimate_pitch(
    canon: np.ndarray, box_c: tuple[int, int, int, int], bounds: tuple[float, float] = (3.5, 80.0), min_periods: float = 6.0
) -> tuple[float | None, float]:
    """Same-class layer pitch (canonical px) in the canonical box, from the rows' periodicity.

    Row profiles of narrow column strips (narrow enough that bent layers stay
    within a row period) are high-passed, Hann-windowed and Fourier-transformed;
    their power spectra are summed and the strongest period within `bounds`
    and at most h / `min_periods` (a stack shows >= 6 layers) is refined by
    parabolic interpolation. On 300 simulator frames and the 8 labelled real
    frames the strongest period is the same-class pitch P, never the adjacent
    pitch P/2 (power at P/2 <= 0.14 x the peak), so no octave correction is
    applied (one that doubled the period when P·2 held >= 12 % of the peak
    power was wrong on 4/300 frames and right on none). Returns (P or None,
    prominence = peak power / median power over the searched band).
    """
    x0, y0, x1, y1 = (int(v) for v in box_c)
    h_c, w_c = canon.shape
    x0, x1 = max(0, x0), min(w_c, x1)
    y0, y1 = max(0, y0), min(h_c, y1)
    h, w = y1 - y0, x1 - x0
    if h < 32 or w < 8:
        return None, 0.0
    sub = np.asarray(canon[y0:y1, x0:x1], np.float32)
    nstrip = int(np.clip(w // 12, 4, 32))
    sw = w // nstrip
    prof = sub[:, : nstrip * sw].reshape(h, nstrip, sw).mean(axis=2)
    pmax = min(bounds[1], h / float(min_periods))
    if pmax <= bounds[0]:
        return None, 0.0
    k = 2 * int(pmax) + 1
    low = cv2.blur(prof, (1, k), borderType=cv2.BORDER_REFLECT)
    hp = (prof - low) * np.hanning(h).astype(np.float32)[:, None]
    nfft = 1 << int(math.ceil(math.log2(h * 8)))
    pw = (np.abs(np.fft.rfft(hp, n=nfft, axis=0)) ** 2).sum(axis=1)
    f = np.arange(len(pw)) / nfft
    with np.errstate(divide="ignore"):
        period = np.where(f > 0, 1.0 / np.maximum(f, 1e-12), np.inf)
    valid = (period >= bounds[0]) & (period <= pmax)
    if not valid.any():
        return None, 0.0
    idx = np.flatnonzero(valid)
    j = int(idx[np.argmax(pw[idx])])
    prominence = float(pw[j]) / (float(np.median(pw[idx])) + 1e-12)
    return float(nfft / parabolic_peak(pw, j)), prominence


def tip_front(canon: np.ndarray, box_c: tuple[int, int, int, int], pitch: float, level: float = 0.3) -> float | None:
    """x (canonical px) where the layers' stripe texture ends inside the box: the anode tip front.

    Per column, the median over the box's rows of |row-wise high-pass| (layer
    stripes along y; the background beyond the tips has none), smoothed over a
    pitch along x and normalised between its 5th and 95th percentiles; the
    front is where the texture, followed rightwards from its maximum, stays
    below `level` for 2 pitches. None when the box shows no contrast. On 298
    simulator frames (find_roi boxes) it sits 0.36-2.3 pitches inside the
    right-most anode tip on 99 % of them (one outlier, 17 pitches: stripes of
    clutter continuing the texture).
    """
    x0, y0, x1, y1 = (int(v) for v in box_c)
    h_c, w_c = canon.shape
    x0, x1 = max(0, x0), min(w_c, x1)
    y0, y1 = max(0, y0), min(h_c, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    st = max(1, int(pitch / 6.0))  # decimate to >= 6 px per pitch: the result needs ~1 pitch precision
    sub = np.ascontiguousarray(canon[y0:y1:st, x0:x1:st], np.float32)
    f = 1.0 / st
    p = pitch * f
    k = 2 * int(round(p)) + 1
    hp = np.abs(sub - cv2.blur(sub, (1, k), borderType=cv2.BORDER_REFLECT))
    v = np.median(hp, axis=0).astype(np.float32)
    kx = max(1, int(round(p))) | 1
    v = cv2.blur(v.reshape(1, -1), (kx, 1), borderType=cv2.BORDER_REPLICATE).ravel()
    lo, hi = np.percentile(v, [5, 95])
    if hi - lo <= 1e-6:
        return None
    vn = (v - lo) / (hi - lo)
    # walk right from the strongest texture until it stays below `level` for 2 pitches
    run = max(2, int(round(2 * p)))
    j, below = int(np.argmax(vn)), 0
    front = j
    while j + 1 < len(vn):
        j += 1
        if vn[j] >= level:
            front, below = j, 0
        else:
            below += 1
            if below >= run:
                break
    return float(x0 + (front + 0.5) / f - 0.5)


def parabolic_peak(v: np.ndarray, j: int) -> float:
    if 0 < j < len(v) - 1:
        a, b, c = float(v[j - 1]), float(v[j]), float(v[j + 1])
        den = a - 2 * b + c
        if den < 0:
            return j + float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return float(j)
