"""A classical tip finder from intensity profiles: the second opinion beside the model when labelling.

It knows nothing the model learnt, so where the two agree a label is likely
right, and where they disagree a person looks. In the canonical frame (layers
horizontal, tips right) of a located stack:

1. **Rows.** Between the cathode front and the anode front only the anodes
   go on: the row profile of that band has a minimum per anode line and, between
   two anodes, a bright gap where a cathode ended (`RoiDetail` gives both fronts).
2. **Anode tips.** Each anode line is followed right along its dark ridge
   (re-centred every column, so tilted and bent lines are followed) to where
   its darkness against the background ahead has fallen to 25 % of its
   contrast: the foot of the taper, the labelling convention
   (engines/labels/README.md).
3. **Cathode tips.** Each gap is followed left, into the cathode's dark block,
   to the half-maximum between the gap's brightness and the block's.

It is deliberately simple and fails where a person would hesitate too
(forked tips, a tip under the tray's shadow, heavy blur): those are the
disagreements a review sheet flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.signal import find_peaks

from inspectd.imaging.canonical import points_from_canonical, to_canonical
from inspectd.inspection.line_end import smoothed
from inspectd.inspection.roi import RoiDetail

__all__ = ["ProfileTips", "profile_tips"]

ANODE_FRAC, CATHODE_FRAC = 0.25, 0.5  # the labelling convention's levels


@dataclass
class ProfileTips:
    anode: np.ndarray  # (N, 2) full-frame px, ordered along the stack
    cathode: np.ndarray
    lines: int  # anode lines found across the stack


def _band(detail: RoiDetail, scale: float) -> tuple[int, int]:
    """Columns between the cathode front and the anode front where only anode lines remain."""
    xc, xa = float(detail.cathode_front), float(detail.tip_front)
    x0 = int(round(xc + 0.2 * (xa - xc)))
    x1 = int(round(max(x0 + 3 * scale, xc + 0.5 * (xa - xc))))
    return x0, x1


def _rows(canon: np.ndarray, detail: RoiDetail, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(anode rows, gap rows): minima of the band's row profile, and the brightest row between two anodes."""
    x0, x1 = _band(detail, scale)
    y0, y1 = max(0, detail.top - int(6 * scale)), min(canon.shape[0], detail.bottom + int(6 * scale))
    if x1 <= x0 or y1 - y0 < 8:
        return np.zeros(0), np.zeros(0)
    prof = cv2.GaussianBlur(canon[y0:y1, x0:x1].astype(np.float32), (0, 0), 0.7 * scale).mean(axis=1)
    span = float(np.percentile(prof, 95) - np.percentile(prof, 5))
    if span <= 0:
        return np.zeros(0), np.zeros(0)
    peaks, _ = find_peaks(-prof, prominence=0.12 * span, distance=max(2, int(3 * scale)))
    anodes = np.array([y0 + _vertex(prof, p) for p in peaks])
    gaps = []
    for a, b in zip(peaks[:-1], peaks[1:]):
        j = a + int(np.argmax(prof[a : b + 1]))
        gaps.append(y0 + _vertex(-prof, j))
    return anodes, np.asarray(gaps)


def _vertex(v: np.ndarray, j: int) -> float:
    """Sub-sample position of the minimum of `v` at j (parabola through j-1, j, j+1)."""
    if j <= 0 or j >= len(v) - 1:
        return float(j)
    a, b, c = float(v[j - 1]), float(v[j]), float(v[j + 1])
    den = a - 2 * b + c
    return j + (0.5 * (a - c) / den if den > 0 else 0.0)


def _follow(img: np.ndarray, y: float, xs: range, dark: bool) -> tuple[np.ndarray, np.ndarray]:
    """Intensity along a ridge (dark line or bright gap) followed column by column: (values, ridge y)."""
    h = img.shape[0]
    yy, vals, ys = float(y), [], []
    for x in xs:
        yi = int(round(yy))
        lo, hi = max(0, yi - 1), min(h, yi + 2)
        col = img[lo:hi, x]
        j = int(np.argmin(col) if dark else np.argmax(col))
        yy = 0.8 * yy + 0.2 * (lo + j)
        vals.append(float(img[max(0, int(round(yy)) - 1) : int(round(yy)) + 2, x].mean()))
        ys.append(yy)
    return np.asarray(vals), np.asarray(ys)


def _crossing(vals: np.ndarray, level: float, start: int, rising: bool) -> float | None:
    """First index after `start` where `vals` crosses `level` (upwards if rising) and stays 2 samples; interpolated."""
    for i in range(max(1, start), len(vals) - 2):
        ok = (vals[i : i + 3] > level).all() if rising else (vals[i : i + 3] < level).all()
        if ok:
            a, b = vals[i - 1], vals[i]
            t = (level - a) / (b - a) if b != a else 0.0
            return i - 1 + float(np.clip(t, 0.0, 1.0))
    return None


def _anode_tip(img: np.ndarray, y: float, detail: RoiDetail, scale: float) -> tuple[float, float] | None:
    x0, _ = _band(detail, scale)
    x_stop = int(min(img.shape[1] - 1, detail.tip_front + 30 * scale))
    vals, ys = _follow(img, y, range(x0, x_stop), dark=True)
    if len(vals) < 12:
        return None
    line = float(np.median(vals[:6]))
    ahead = img[int(round(y)) - 1 : int(round(y)) + 2, int(detail.tip_front + 10 * scale) : x_stop]
    bg = float(np.median(ahead)) if ahead.size else float(vals[-5:].mean())
    if bg - line < 4.0:
        return None
    return _tip(vals, ys, line + (1.0 - ANODE_FRAC) * (bg - line), 6, x0, +1)


def _cathode_tip(img: np.ndarray, y: float, detail: RoiDetail, scale: float) -> tuple[float, float] | None:
    x0, x1 = _band(detail, scale)
    x_back = int(max(0, detail.cathode_front - 25 * scale))
    xs = range(x1, x_back, -1)  # from the gap, left into the cathode's block
    vals, ys = _follow(img, y, xs, dark=False)
    if len(vals) < 12:
        return None
    gap = float(np.median(vals[:4]))
    block = float(np.median(vals[-6:]))
    if gap - block < 4.0:
        return None
    # The block's own level 8-16 px behind its end, not the stack body deeper in (darker where the layers
    # overlap): with the body's level the half-maximum of a blurred edge landed 5-8 px inside the block.
    # On the 8 hand-labelled frames: cathode median 0.94 -> 0.84 px, p95 3.71 -> 2.85, 12 -> 10 missed
    # (the window was chosen on those frames: 4-10, 6-12 and 8-16 px tried).
    i0 = _crossing(vals, block + (1.0 - CATHODE_FRAC) * (gap - block), 2, rising=False)
    if i0 is not None:
        near = vals[int(i0) + int(8 * scale) : int(i0) + int(16 * scale) + 1]
        if len(near) >= 3 and gap - float(np.median(near)) >= 4.0:
            block = float(np.median(near))
    return _tip(vals, ys, block + (1.0 - CATHODE_FRAC) * (gap - block), 2, x1, -1)


def _tip(vals: np.ndarray, ys: np.ndarray, level: float, start: int, x0: int, step: int) -> tuple[float, float] | None:
    """Where a ridge walked from x0 in `step` direction crosses `level` (brighter ahead for anodes, darker
    behind for cathodes), with the ridge's y just before it."""
    i = _crossing(vals, level, start, rising=step > 0)
    if i is None:
        return None
    k = int(min(len(ys) - 1, max(0, round(i) - 1)))
    return x0 + step * i, float(ys[k])


def profile_tips(img8: np.ndarray, detail: RoiDetail) -> ProfileTips:
    """Anode and cathode tips of the stack `detail` (from `find_roi_detail`) located, by profiles alone."""
    o = detail.roi.orientation
    scale = max(img8.shape) / 1000.0
    canon = to_canonical(np.asarray(img8), o)
    img = smoothed(canon, scale)
    anode_rows, gap_rows = _rows(canon, detail, scale)
    a = [t for y in anode_rows if (t := _anode_tip(img, y, detail, scale)) is not None]
    c = [t for y in gap_rows if (t := _cathode_tip(img, y, detail, scale)) is not None]
    def full(pts):
        return points_from_canonical(np.asarray(pts, np.float64).reshape(-1, 2), o, img8.shape)
    return ProfileTips(anode=full(a), cathode=full(c), lines=len(anode_rows))
