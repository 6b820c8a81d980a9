"""ROI around the electrode tips: corner cluster + row-wise grey accumulation (paper §2.1).

The paper finds the ROI in three moves: the centre (x0, y0) of the OFAST
corners (eq. 1), the stack's upper and lower bounds b, a from a row-wise
accumulated grey profile walked by two pointers with steps Δb, Δa and a
threshold τ (eq. 2), and the width from the height: c, d = x0 ∓ λ|b − a|
(eq. 3-4; the paper writes λ(b − a), which is negative for b < a, so |b − a|).

On real frames (clamps, screws, the tray, the intensifier circle, noise in the
bright background) each move needs to be made robust. What is done here, all
in the canonical frame (`orientation.py`: layers horizontal, tips -> +x),
S = max(H, W):

1. Centre: the densest corner cluster (`corners.dense_clusters`: mode of the
   smoothed 2-D corner histogram, median of the corners within 0.08 S of it),
   not the mean. On the 52 real frames the mean of the N = 512 corners lies
   outside the mask box on 10 frames, the cluster median on 1 (it lands on
   the stack's edge; the steps below still find the stack). Up to 3 clusters
   are tried, densest first; the first that shows a layered stack (>= 6 dark
   lines across the comb, step 4) wins. Real frames never need the second;
   synthetic frames with wire clutter and few corners on the tips do. Stacks
   with the same two fronts and rows close together are one comb: joined.
2. Tip front x_a (the anode tips' end): the layers are a stripe texture
   across y; past the tips there is none. Per column, the median over the
   stack rows of |vertical high-pass| of sqrt(grey) (sqrt: Poisson noise the
   same in bright and dark; median: a horizontal edge such as the tray's top
   is on few rows, the stripes on most) gives a texture profile V(x). Walking
   right from its maximum near x0, x_a is where V, normalised between that
   maximum and the noise floor, stays below 0.25 for 0.01 S px. Flat clutter
   (a grey fixture block past the tips, the tray's end) does not stop it.
3. Bounds b, a (eq. 2): grey values (sqrt) are accumulated row-wise over the
   band of columns left of x_a (0.35 h + 0.02 S wide: the comb and the body's
   end, where every layer is present). The "pattern" is the accumulated
   stripe energy E(y) (mean |high-pass| over the band, smoothed), normalised
   between its floor and its level near the centre; a row belongs to the stack
   while E >= τ and the row is darker than the background (the band's
   brightest rows) by at least a quarter of the stack's contrast (this stops
   the pointer at a bright gap between stack and tray). The pointers start at
   the centre and move out with steps Δb (up) and Δa (down) until the
   condition fails for more than 0.01 S px. Walking out from the centre, not
   in from the image border as in the paper, is deliberate: from the border the
   first "significant change" is the intensifier circle or the tray. Steps 2
   and 3 alternate (x_a needs the rows, the rows need x_a) until the rows stop
   changing, at most twice.
4. Cathode front x_c: the steepest rise of the column-mean profile over rows
   [b, a] in [x_a - 0.6 h, x_a - 0.03 S] (dark stack body -> comb). The dark
   lines across [x_c, x_a] are counted (the stack check of step 1). The box
   takes its x_c from the same search reaching 1.5 h back: a comb longer than
   0.6 h (long tails, 3 mm overhangs on a short stack) keeps its cathode tips.
   The layers must go on behind x_c: in a stack the anodes and cathodes run
   into the body, so the row profiles of bands just behind x_c have power at
   the comb's period (or its half or double); a toothed rack or a threaded rod
   ends its "comb" at a plain block. Below MIN_BODY_LAYERING (that power over
   the median spectral power) the candidate is no stack. Combs finer than
   6 px are not checked: their bodies' layers blur away.
5. Box (eq. 3-4 with |b - a|): centre x_m = (x_c + x_a)/2, y_m = (a + b)/2,
   half-width max(λ h, (x_a - x_c)/2 + 0.1 h) + margin_frac S + margin_px,
   half-height (1/2 + pad_y) h + margin_px, h = |a - b|, clipped to the frame
   and mapped back to the full frame exactly. The annotated masks are centred
   on (x_m, y_m) to 0.03 h (std) and 0.61 h wide, hence the paper's form with
   the centre moved from the corner mean to the tip zone.

Returns None (never raises on a valid frame) when there are too few corners,
no stripe texture stands out of the noise, no candidate shows layers, or the
extent is degenerate.
Tuned figures and the per-image results are in docs/roi.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from inspectd.config import RoiConfig
from inspectd.imaging.canonical import (
    Orientation,
    box_from_canonical,
    canonical_shape,
    points_to_canonical,
    to_canonical,
)
from inspectd.imaging.region import Roi
from inspectd.inspection.corners import dense_clusters
from inspectd.inspection.layer_profiles import (
    MIN_BODY_LAYERING,
    SQRT_LUT,
    body_layering,
    gauss1d,
    highpass_y,
    row_profile,
)
from inspectd.inspection.orientation import detect_orientation

__all__ = ["Roi", "RoiDetail", "find_roi", "find_roi_detail"]


# Internal tuning constants (the station-tunable ones are RoiConfig fields); see docs/roi.md.
CANDIDATES = 3  # corner clusters tried, densest first
SURE_LAYERS = 2  # a cluster showing this many times min_layers layers ends the search
BAND_BACK = 0.5  # the tip band reaches this fraction of the comb length behind the cathode front
CATHODE_REACH = 0.6  # the stack check's x_c (layers counted from it) is looked for this many stack heights behind x_a
BOX_REACH = 1.5  # the box's x_c: this far back, so a comb longer than 0.6 h (long tails) keeps its cathode tips
TIP_PAD = 0.10  # the box reaches at least this fraction of h beyond both tip fronts
BAND_H, BAND_S = 0.35, 0.02  # row-profile band left of x_a: BAND_H * h + BAND_S * S wide
FLOOR_PCT = 10.0  # noise floor of the column texture profile: this percentile right of the start
FRONT_LEVEL = 0.25  # tip front: normalised stripe energy below this
MIN_STRIPE_SNR = 1.5  # stripe energy at the centre / noise floor, below: no stack
MIN_CONTRAST_SQRT = 0.3  # background - stack rows in the comb band, sqrt(grey) units (~10 levels near white)


@dataclass(frozen=True)
class RoiDetail:
    """`find_roi`'s intermediate results, canonical-frame pixels (for evaluation and overlays)."""

    roi: Roi
    centre: tuple[float, float]  # corner-cluster centre (x0, y0), canonical
    top: int  # b
    bottom: int  # a
    tip_front: int  # x_a, anode tips' end
    cathode_front: int  # x_c
    layers: int  # dark lines counted across the comb
    box_canonical: tuple[int, int, int, int]


def _tip_front(c: np.ndarray, rows: tuple[int, int], x0: float, size: int) -> int | None:
    """x_a: where the stripe texture of rows [b, a] fades, walking right from near x0 (step 2)."""
    w_c = c.shape[1]
    b, a = rows
    xl, xr = max(0, int(x0 - 0.1 * size)), min(w_c, int(x0 + 0.35 * size))
    i0 = int(x0) - xl
    if a - b < 4 or xr - xl < 8 or not 0 <= i0 < xr - xl:
        return None
    stride = 2 if size >= 800 else 1  # columns; the profile is smoothed over more than that
    sub = SQRT_LUT[np.asarray(c[b : a + 1, xl:xr:stride])]  # sqrt: Poisson noise equal in bright and dark
    hp = highpass_y(sub, max(1.5, 0.006 * size))
    # Median over rows: a stripe texture is on most rows, a horizontal edge (tray, clamp) on a few.
    v = gauss1d(np.median(np.abs(hp[::2]), axis=0), max(1.0, 0.003 * size / stride))
    reach = max(1, int(0.05 * size / stride))
    lo = max(0, i0 // stride - reach)
    # Start at the strongest texture near x0: the centre may sit just past the tips.
    j0 = lo + int(np.argmax(v[lo : i0 // stride + reach + 1]))
    ref = float(v[j0])
    floor = float(np.percentile(v[j0:], FLOOR_PCT))
    if ref <= floor * MIN_STRIPE_SNR:
        return None
    vn = (v - floor) / (ref - floor)
    run = max(2, int(0.01 * size / stride))
    below = vn < FRONT_LEVEL
    count = 0
    for j in range(j0 + 1, len(vn)):
        count = count + 1 if below[j] else 0
        if count >= run:
            return xl + (j - count + 1) * stride
    return None


def _stack_rows(
    c: np.ndarray, x_a: int, y0: float, size: int, h_est: float, cfg: RoiConfig
) -> tuple[int, int] | None:
    """(b, a): the stack's rows, by two pointers walking out from the centre (step 3)."""
    h_c, w_c = c.shape
    width = max(6, int(BAND_H * h_est + BAND_S * size))
    xl, xr = max(0, x_a - width), max(1, min(w_c, x_a))
    if xr - xl < 3:
        return None
    sub = SQRT_LUT[np.asarray(c[:, xl:xr:2])]  # every 2nd column: a row mean needs no more
    sigma = max(1.5, 0.006 * size)
    energy = gauss1d(np.abs(highpass_y(sub, sigma)).mean(axis=1), sigma)
    grey = gauss1d(sub.mean(axis=1), sigma)

    yc = int(round(min(max(y0, 0), h_c - 1)))
    r = max(4, int(0.1 * size))
    lo, hi = max(0, yc - r), min(h_c, yc + r + 1)
    e_ref = float(np.percentile(energy[lo:hi], 75))
    e_floor = float(np.percentile(energy, 10))
    if e_ref <= e_floor * MIN_STRIPE_SNR:
        return None
    g_bg = float(grey.max())  # the background: brightest rows of the band, anywhere
    g_stack = float(np.percentile(grey[lo:hi], 20))
    if g_bg - g_stack < MIN_CONTRAST_SQRT:
        return None
    on = ((energy - e_floor) / (e_ref - e_floor) >= cfg.tau) & (grey <= g_bg - 0.25 * (g_bg - g_stack))

    cand = np.flatnonzero(on[lo:hi])
    if cand.size == 0:
        return None
    start = lo + int(cand[np.argmin(np.abs(cand + lo - yc))])
    gap = max(1, int(0.01 * size))

    def walk(step: int) -> int:
        y, last, miss = start, start, 0
        while 0 <= y + step < h_c:
            y += step
            if on[y]:
                last, miss = y, 0
            else:
                miss += abs(step)
                if miss > gap:
                    break
        return last

    return walk(-int(cfg.step_top)), walk(int(cfg.step_bottom))


def _cathode_fronts(c: np.ndarray, rows: tuple[int, int], x_a: int, size: int, reaches: tuple[float, ...]) -> list[int]:
    """x_c per reach: steepest rise of the column-mean profile within `reach` stack heights left of x_a
    (body -> comb) (step 4). The column means are taken once, over the longest reach."""
    b, a = rows
    h = a - b + 1
    los = [max(0, int(x_a - r * h)) for r in reaches]
    his = [max(lo + 2, int(x_a - 0.03 * size)) for lo in los]
    lo0 = min(los)
    means = np.asarray(c[b : a + 1, lo0 : max(his)], dtype=np.float32).mean(axis=0)
    out = []
    for lo, hi in zip(los, his):
        prof = gauss1d(means[lo - lo0 : hi - lo0], max(1.0, 0.004 * size))
        out.append(x_a if prof.size < 3 else lo + int(np.argmax(np.gradient(prof))))
    return out


def _count_layers(c: np.ndarray, rows: tuple[int, int], x_c: int, x_a: int, size: int) -> int:
    """Dark lines (layers) crossing the comb band [x_c - 0.02 S, x_a) over rows [b, a]."""
    from scipy.signal import find_peaks

    b, a = rows
    if a - b < 5:
        return 0
    hp = row_profile(c, rows, x_c - int(0.02 * size), x_a, size)
    scale = float(np.median(np.abs(hp))) + 1e-6
    return int(len(find_peaks(-hp, prominence=scale, distance=2)[0]))


@dataclass(frozen=True)
class _Stack:
    o: Orientation
    centre: tuple[float, float]
    rows: tuple[int, int]
    x_a: int
    x_c: int
    layers: int


def _search(img: np.ndarray, pts: np.ndarray, cluster, o_fixed: Orientation | None, cfg: RoiConfig) -> _Stack | None:
    """Steps 2-4 from one corner cluster; None when no stack is found there."""
    size = max(img.shape)
    o = o_fixed if o_fixed is not None else detect_orientation(img, pts, cluster=cluster)
    c = to_canonical(img, o)
    h_c, _ = canonical_shape(img.shape, o)
    members = points_to_canonical(np.vstack([[cluster.x, cluster.y], pts[cluster.members, :2]]), o, img.shape)
    x0, y0 = float(members[0, 0]), float(members[0, 1])

    ylo, yhi = np.percentile(members[1:, 1], [10, 90])
    rows = (max(0, int(min(ylo, y0 - 0.03 * size))), min(h_c - 1, int(max(yhi, y0 + 0.03 * size))))
    x_a = _tip_front(c, rows, x0, size)
    if x_a is None:
        return None
    h_est = float(rows[1] - rows[0])
    for _ in range(2):
        found = _stack_rows(c, x_a, y0, size, h_est, cfg)
        if found is None:
            return None
        if found == rows:
            break  # converged: x_a would come out the same
        rows = found
        x_a = _tip_front(c, rows, x0, size)
        if x_a is None:
            return None
        h_est = float(rows[1] - rows[0] + 1)
    if rows[1] - rows[0] < max(4, 0.01 * size):
        return None
    x_c, x_far = _cathode_fronts(c, rows, x_a, size, (CATHODE_REACH, BOX_REACH))
    if body_layering(c, rows, x_c, x_a, size) < MIN_BODY_LAYERING:
        return None  # a comb that ends at a plain block: a rack or a thread, not a stack
    x_box = min(x_c, x_far)
    return _Stack(o, (x0, y0), rows, x_a, x_box, _count_layers(c, rows, x_c, x_a, size))


JOIN_FRONT, JOIN_GAP = 0.03, 0.04  # of S: two pieces of one comb (both fronts this close, rows this close)


def _joined(stack: _Stack, seen: list[_Stack], size: int) -> _Stack:
    """`stack` grown by the pieces of the same comb other clusters found (same orientation, both fronts
    within JOIN_FRONT S, rows within JOIN_GAP S): a row walk stopped at a faint stretch gives two stacks."""
    grown = True
    while grown:
        grown = False
        for piece in seen:
            (b, a), (pb, pa) = stack.rows, piece.rows
            near = max(abs(piece.x_a - stack.x_a), abs(piece.x_c - stack.x_c)) <= JOIN_FRONT * size
            if piece.o == stack.o and near and (pb < b or pa > a) and max(pb, b) - min(pa, a) <= JOIN_GAP * size:
                stack = _Stack(stack.o, stack.centre, (min(b, pb), max(a, pa)), max(stack.x_a, piece.x_a),
                               min(stack.x_c, piece.x_c), stack.layers + piece.layers)  # fmt: skip
                grown = True
    return stack


def find_roi_detail(
    img8: np.ndarray,
    corners: np.ndarray,
    cfg: RoiConfig,
    *,
    orientation: Orientation | None = None,
) -> RoiDetail | None:
    """`find_roi` with its intermediate results; same arguments."""
    img = np.asarray(img8)
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"find_roi expects a 2-D uint8 frame, got {img.dtype} {img.shape}")
    pts = np.asarray(corners, dtype=np.float64)
    min_corners, min_layers = cfg.min_corners, cfg.min_layers
    if img.size == 0 or pts.ndim != 2 or pts.shape[1] < 2 or len(pts) < max(3, min_corners):
        return None
    size = max(img.shape)
    o_fixed = Orientation(orientation) if orientation is not None else None

    # Densest cluster first; the next ones while no cluster shows a clear stack (SURE_LAYERS x
    # min_layers layers), and then the most layers wins (ties: the denser). Stopping at the first
    # cluster with min_layers let a clamp corner with a barred plate (7 "layers") beat a short
    # 19-layer stack (sim 903 #19 at 1000²: every tip outside the ROI); searching every cluster on
    # every frame tripled the ROI stage's time.
    stack, seen = None, []
    for cluster in dense_clusters(pts, img.shape, k=CANDIDATES):
        if cluster.count < max(3, min_corners // 2):
            continue
        found = _search(img, pts, cluster, o_fixed, cfg)
        if found is not None:
            seen.append(found)
            if found.layers >= min_layers and (stack is None or found.layers > stack.layers):
                stack = found
        if stack is not None and stack.layers >= SURE_LAYERS * min_layers:
            break
    if stack is None:
        return None
    stack = _joined(stack, seen, size)

    o, (b, a), x_a, x_c = stack.o, stack.rows, stack.x_a, stack.x_c
    h_c, w_c = canonical_shape(img.shape, o)
    h = abs(a - b)
    x_m, y_m = 0.5 * (x_c + x_a), 0.5 * (a + b)
    half_w = max(cfg.lam * h, 0.5 * (x_a - x_c) + TIP_PAD * h) + cfg.margin_frac * size + cfg.margin_px
    half_h = (0.5 + cfg.pad_y) * h + cfg.margin_px
    bx0 = max(0, int(math.floor(x_m - half_w)))
    bx1 = min(w_c, int(math.ceil(x_m + half_w)) + 1)
    by0 = max(0, int(math.floor(y_m - half_h)))
    by1 = min(h_c, int(math.ceil(y_m + half_h)) + 1)
    if bx1 - bx0 < 2 or by1 - by0 < 2:
        return None
    box_c = (bx0, by0, bx1, by1)
    fx0, fy0, fx1, fy1 = box_from_canonical(box_c, o, img.shape)
    band_pad = max(8.0, 0.01 * size)
    tx0 = max(bx0, int(math.floor(x_c - BAND_BACK * (x_a - x_c) - band_pad)))
    tx1 = min(bx1, int(math.ceil(x_a + band_pad)) + 1)
    band = box_from_canonical((tx0, by0, tx1, by1), o, img.shape) if tx1 - tx0 >= 2 else None
    return RoiDetail(Roi(fx0, fy0, fx1, fy1, o, band), stack.centre, int(b), int(a), int(x_a), int(x_c), stack.layers, box_c)


def find_roi(img8: np.ndarray, corners: np.ndarray, cfg: RoiConfig, *, orientation: Orientation | None = None) -> Roi | None:
    """ROI around the tips in full-frame pixels, or None when no stack is found.

    img8: 2-D uint8 frame; corners: (K, 2+) ``[x, y, ...]`` full-frame corners
    (`detect_corners` output); cfg: `RoiConfig` (step_top = Δb, step_bottom = Δa,
    tau = τ on the normalised row stripe energy, lam = λ, margin_px).
    ``orientation`` skips orientation detection. Never raises on a valid 2-D uint8 frame.
    """
    img = np.asarray(img8)
    if cfg.work_size and img.ndim == 2 and img.dtype == np.uint8 and max(img.shape) > cfg.work_size:
        return _find_roi_downscaled(img, corners, cfg, orientation)
    detail = find_roi_detail(img8, corners, cfg, orientation=orientation)
    return None if detail is None else detail.roi


def _find_roi_downscaled(img: np.ndarray, corners, cfg: RoiConfig, orientation) -> Roi | None:
    """`find_roi` on a copy whose long side is cfg.work_size; the boxes are mapped back, rounded outwards."""
    h, w = img.shape
    s = cfg.work_size / max(h, w)
    ws, hs = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(img, (ws, hs), interpolation=cv2.INTER_AREA)
    fx, fy = w / ws, h / hs
    pts = np.array(corners, dtype=np.float64, copy=True)
    if pts.ndim == 2 and pts.shape[1] >= 2:
        pts[:, 0] = (pts[:, 0] + 0.5) / fx - 0.5
        pts[:, 1] = (pts[:, 1] + 0.5) / fy - 0.5
    detail = find_roi_detail(small, pts, cfg, orientation=orientation)
    if detail is None:
        return None

    def up(box):
        x0, y0, x1, y1 = box
        return (
            max(0, int(math.floor(x0 * fx))),
            max(0, int(math.floor(y0 * fy))),
            min(w, int(math.ceil(x1 * fx))),
            min(h, int(math.ceil(y1 * fy))),
        )

    r = detail.roi
    band = up(r.tip_band) if r.tip_band is not None else None
    return Roi(*up((r.x0, r.y0, r.x1, r.y1)), r.orientation, band)
