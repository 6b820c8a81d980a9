"""Input definition of the tip model: frame + ROI -> canonical, pitch-normalised tiles, and back.

One code path for training and inference:

1. **Canonical frame** (`imaging/canonical.py`): layers horizontal, tips
   pointing right. Training canonicalises with the labels' tip direction,
   inference with ``roi.orientation``.
2. **Scale**: the canonical image is resampled so that the same-class layer
   pitch P (canonical px between consecutive anode tips) lands at
   ``spec.pitch_in`` input px (default 8). With the stride-2 heatmap head that
   is 4 heatmap px per same-class pitch (2 per adjacent layer), the density
   the peak decoder needs. P comes from:
   * ``"pitch"`` (default): `estimate_pitch` on the ROI - the period of the
     row profile of narrow column strips (power spectrum, harmonic check);
     falls back to the size rule if no period stands out;
   * ``"size"``: ``pitch_ref_1000 * max(H, W) / 1000`` (stations at the
     reference magnification only);
   * labels (training): the median spacing of consecutive same-class tips.
   Training jitters the scale by ±15 %, more than the estimator's error
   (docs/model.md).
3. **Tiles**: across the stack the whole ROI when it fits in ``max_tile_w``
   (256) input px, else 256 px placed by the tip front (`tip_front`: where the
   layers' stripe texture ends), because the ROI's centre is no guide to where
   the tips are when the box is clipped at the frame's edge (up to 11 pitches
   off on 5 % of simulator frames); along the stack one tile covers the whole
   ROI when it fits in ``max_tile_h`` input px (height rounded up to a
   multiple of 32), else tiles of ``max_tile_h`` overlapping by at least
   ``overlap`` px, each owning the canonical rows up to the middle of its
   overlaps (a tip is reported by exactly one tile).
4. **Mapping**: a tile is the 2×3 affine ``A`` with input = A · [x_c, y_c, 1]
   (canonical px -> input px, pixel centres at integers on both sides; this
   is exactly what ``cv2.warpAffine(src, A, ...)`` samples). Points map
   full -> canonical -> input and back exactly (`CropPlan.to_input`,
   `CropPlan.to_full`). Downscaling is anti-aliased by a Gaussian
   pre-blur of sigma (1/s − 1)/2 source px.
5. **Normalisation**: per tile, (x − mean) / max(std, 2) on 0..255 grey
   values of the windowed 8-bit frame (`vision.window.to_8bit`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from inspectd.imaging.canonical import (
    Orientation,
    box_to_canonical,
    points_from_canonical,
    points_to_canonical,
    to_canonical,
)

__all__ = [
    "InputSpec",
    "Tile",
    "CropPlan",
    "affine",
    "box_to_canonical",
    "estimate_pitch",
    "labels_pitch",
    "orientation_from_labels",
    "plan_tiles",
    "render_tile",
    "normalise",
    "make_batch",
]


@dataclass(frozen=True)
class InputSpec:
    """What the network sees; stored in the model card."""

    pitch_in: float = 8.0  # same-class layer pitch, input px
    tile_w: int = 192  # training tile width
    tile_h: int = 256  # training tile height
    max_tile_w: int = 256  # inference: the whole ROI width up to this, else anchored at the tip front
    min_tile_w: int = 128
    right_margin: int = 32  # inference, wide ROI: the tip front lands this many input px left of the tile's edge
    left_extra: int = 32  # inference, narrow ROI: input px added on the cathode side of the ROI
    # inference: every tile reaches at least this many same-class pitches behind the anode front
    # (the ROI's far edge when no front is measured), so a cathode pulled back beyond the ROI is still seen
    back_pitches: float = 40.0
    max_tile_h: int = 768  # inference: one tile up to this height, else overlapping tiles
    min_tile_h: int = 64
    overlap: int = 48  # input px shared by neighbouring inference tiles (6 pitches)
    align: int = 32  # network input multiple (1/32 branch)
    scale_rule: str = "pitch"  # "pitch" (estimate, fallback size) | "size"
    pitch_ref_1000: float = 10.0  # same-class pitch on a 1000 px frame (docs/contracts.md §1)
    pitch_bounds: tuple[float, float] = (3.5, 80.0)  # searched same-class pitch, canonical px
    # An estimate outside these multiples of the size rule's pitch is not trusted (size rule used):
    # the simulator spans 0.68-1.5x, the real 1000 px frames 0.84-1.1x.
    size_ratio_bounds: tuple[float, float] = (0.45, 2.2)
    std_floor: float = 2.0

    # Fields that define what the network was trained on; the rest only shape inference tiles and
    # may change after training (export takes them from the current defaults, see `for_inference`).
    TRAINED = ("pitch_in", "tile_w", "tile_h", "std_floor", "align")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_inference(cls, trained: dict, **overrides) -> InputSpec:
        """Spec for a trained model: its training fields, current inference defaults, then `overrides`."""
        return cls.from_dict({**{k: trained[k] for k in cls.TRAINED if k in trained}, **overrides})

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("pitch_bounds", "size_ratio_bounds"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


# ---------------------------------------------------------------------------- geometry


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


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.asarray(pts, np.float64).reshape(-1, 2)
    return p @ m[:, :2].T + m[:, 2]


def _invert(m: np.ndarray) -> np.ndarray:
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
    return float(nfft / _parabolic(pw, j)), prominence


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


def _parabolic(v: np.ndarray, j: int) -> float:
    if 0 < j < len(v) - 1:
        a, b, c = float(v[j - 1]), float(v[j]), float(v[j + 1])
        den = a - 2 * b + c
        if den < 0:
            return j + float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return float(j)


# ---------------------------------------------------------------------------- tiles


@dataclass(frozen=True)
class Tile:
    A: np.ndarray  # (2, 3) canonical -> input
    width: int
    height: int
    own: tuple[float, float] = (-math.inf, math.inf)  # canonical y range this tile reports

    def to_input(self, pts_c: np.ndarray) -> np.ndarray:
        return _apply(self.A, pts_c)

    def to_canonical(self, pts_in: np.ndarray) -> np.ndarray:
        return _apply(_invert(self.A), pts_in)


@dataclass(frozen=True)
class CropPlan:
    orientation: Orientation
    frame_shape: tuple[int, int]
    pitch: float  # same-class pitch, canonical px
    pitch_source: str  # "estimate" | "size" | "labels"
    scale: float  # input px per canonical px
    tiles: list[Tile] = field(default_factory=list)

    def to_input(self, pts_full: np.ndarray, k: int = 0) -> np.ndarray:
        """Full-frame [x, y] -> input px of tile k."""
        c = points_to_canonical(np.asarray(pts_full, np.float64).reshape(-1, 2), self.orientation, self.frame_shape)
        return self.tiles[k].to_input(c)

    def to_full(self, pts_in: np.ndarray, k: int = 0) -> np.ndarray:
        """Input px of tile k -> full-frame [x, y]."""
        c = self.tiles[k].to_canonical(np.asarray(pts_in, np.float64).reshape(-1, 2))
        return points_from_canonical(c, self.orientation, self.frame_shape)

    def owned(self, pts_in: np.ndarray, k: int) -> np.ndarray:
        """Bool mask of the input-px points of tile k that this tile reports (its own canonical rows)."""
        c = self.tiles[k].to_canonical(np.asarray(pts_in, np.float64).reshape(-1, 2))
        lo, hi = self.tiles[k].own
        return (c[:, 1] >= lo) & (c[:, 1] < hi)


def _ceil_to(v: float, a: int) -> int:
    return int(a * math.ceil(v / a - 1e-9))


def plan_tiles(
    shape: tuple[int, int],
    roi,
    spec: InputSpec,
    pitch: float,
    pitch_source: str = "estimate",
    front: float | None = None,
    centre_x: float | None = None,
) -> CropPlan:
    """Inference tiles over `roi` (anything with x0, y0, x1, y1, orientation) at pitch `pitch`.

    Across the stack: the ROI's whole width plus ``left_extra`` px on the
    cathode side when that fits in ``max_tile_w`` input px (rounded up to a
    multiple of 32); else
    ``max_tile_w`` wide with the tip front `front` (canonical x, `tip_front`)
    ``right_margin`` px inside its right edge (else centred on `centre_x`,
    else on the ROI). Along the stack: see the module docstring.
    """
    o = Orientation(roi.orientation)
    shape = (int(shape[0]), int(shape[1]))
    bx0, by0, bx1, by1 = box_to_canonical((roi.x0, roi.y0, roi.x1, roi.y1), o, shape)
    s = spec.pitch_in / float(pitch)
    W = s * (bx1 - bx0)
    W += spec.left_extra
    back = spec.back_pitches * spec.pitch_in  # input px the tile must reach behind the front
    wide_w = max(spec.max_tile_w, _ceil_to(back + spec.right_margin, spec.align))
    if W <= spec.max_tile_w or (front is None and centre_x is None):
        left = bx0 - spec.left_extra / s
        if back > 0:  # the ROI's far edge stands in for the front
            left = min(left, bx1 - back / s)
        Wn = s * (bx1 - left)
        tw = min(wide_w, max(spec.min_tile_w, _ceil_to(Wn, spec.align)))
        xm = 0.5 * (left + bx1 - 1)
    elif front is None:
        tw = spec.max_tile_w
        xm = float(centre_x)
    else:
        tw = wide_w
        # input u of canonical x: s * (x - xm) + (tw - 1) / 2; put u(front) = tw - right_margin
        xm = front - (tw - spec.right_margin - (tw - 1) / 2.0) / s
    ym = 0.5 * (by0 + by1 - 1)
    L = s * (by1 - by0)
    if L <= spec.max_tile_h:
        th = max(spec.min_tile_h, _ceil_to(L, spec.align))
        a = affine(s, (xm, ym), ((tw - 1) / 2.0, (th - 1) / 2.0))
        tiles = [Tile(a, tw, th)]
    else:
        th = spec.max_tile_h
        n = int(math.ceil((L - spec.overlap) / (th - spec.overlap)))
        n = max(n, 2)
        step = (L - th) / (n - 1)
        top = by0 - 0.5  # upper edge of the box, canonical
        tiles = []
        for k in range(n):
            # input row 0's centre (v = 0) sits at scaled distance k*step + 0.5 below the box's top edge
            yc = top + (k * step + 0.5 + (th - 1) / 2.0) / s
            a = affine(s, (xm, yc), ((tw - 1) / 2.0, (th - 1) / 2.0))
            lo = -math.inf if k == 0 else top + (k * step + (th - step) / 2.0) / s
            hi = math.inf if k == n - 1 else top + ((k + 1) * step + (th - step) / 2.0) / s
            tiles.append(Tile(a, tw, th, (lo, hi)))
    return CropPlan(o, shape, float(pitch), pitch_source, s, tiles)


def source_box(A: np.ndarray, w: int, h: int, shape: tuple[int, int], pad: float) -> tuple[int, int, int, int]:
    """Canonical pixel box [x0, x1) × [y0, y1) (clipped to `shape`) that the tile samples, plus `pad`."""
    inv = _invert(A)
    corners = _apply(inv, np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64))
    x0 = int(math.floor(corners[:, 0].min() - pad)) - 1
    x1 = int(math.ceil(corners[:, 0].max() + pad)) + 2
    y0 = int(math.floor(corners[:, 1].min() - pad)) - 1
    y1 = int(math.ceil(corners[:, 1].max() + pad)) + 2
    H, W = shape
    return max(0, x0), max(0, y0), min(W, max(1, x1)), min(H, max(1, y1))


def aa_sigma(scale: float) -> float:
    """Anti-alias pre-blur (source px) for a downscale by `scale` (< 1); 0 for scale >= 1."""
    return max(0.0, (1.0 / scale - 1.0) / 2.0) if scale < 1.0 else 0.0


def render_tile(canon: np.ndarray, A: np.ndarray, w: int, h: int, region=None) -> np.ndarray:
    """Sample a (h, w) float32 tile from a canonical image (any numeric dtype) through affine `A`.

    `region`: optionally an already extracted float32 source region and its
    canonical origin ``(arr, x0, y0)`` (training applies its intensity
    augmentations there first). Outside the image the border is replicated.
    """
    scale = float(math.sqrt(abs(np.linalg.det(A[:, :2]))))
    sig = aa_sigma(scale)
    if region is None:
        x0, y0, x1, y1 = source_box(A, w, h, canon.shape[:2], 3.0 * sig + 2.0)
        arr = np.asarray(canon[y0:y1, x0:x1], np.float32)
    else:
        arr, x0, y0 = region
    arr = np.ascontiguousarray(arr, np.float32)
    if sig > 0.3:
        arr = cv2.GaussianBlur(arr, (0, 0), sig, borderType=cv2.BORDER_REPLICATE)
    m = np.array(A, np.float64, copy=True)
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)  # region px -> input px
    return cv2.warpAffine(arr, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def normalise(tile: np.ndarray, std_floor: float = 2.0) -> np.ndarray:
    t = np.asarray(tile, np.float32)
    m = float(t.mean())
    s = max(float(t.std()), std_floor)
    return (t - m) / s


def pitch_for(img8: np.ndarray, roi, spec: InputSpec) -> tuple[float, str]:
    """(pitch, source) for a frame: the estimate when plausible, else the size rule."""
    shape = img8.shape[:2]
    fallback = spec.pitch_ref_1000 * max(shape) / 1000.0
    if spec.scale_rule == "size":
        return fallback, "size"
    o = Orientation(roi.orientation)
    canon = to_canonical(img8, o)
    box_c = box_to_canonical((roi.x0, roi.y0, roi.x1, roi.y1), o, shape)
    p, prom = estimate_pitch(canon, box_c, spec.pitch_bounds)
    lo, hi = spec.size_ratio_bounds
    if p is None or prom < 8.0 or not (lo * fallback <= p <= hi * fallback):
        return fallback, "size"
    return p, "estimate"


def make_batch(img8: np.ndarray, roi, spec: InputSpec, pitch: float | None = None) -> tuple[np.ndarray, CropPlan]:
    """Network input (B, 1, h, w) float32 for the tiles over `roi`, and the plan to map results back."""
    src = "given"
    if pitch is None:
        pitch, src = pitch_for(img8, roi, spec)
    o = Orientation(roi.orientation)
    canon = to_canonical(img8, o)
    box_c = box_to_canonical((roi.x0, roi.y0, roi.x1, roi.y1), o, img8.shape[:2])
    front = centre_x = None
    if spec.pitch_in / pitch * (box_c[2] - box_c[0]) > spec.max_tile_w:
        front = tip_front(canon, box_c, pitch)
        if front is not None and front > min(box_c[2], canon.shape[1]) - 1 - 2 * pitch:
            front = None  # texture up to the box's edge: clutter continues the stripes, not a front
        band = getattr(roi, "tip_band", None)
        if front is None and band is not None:
            bb = box_to_canonical(tuple(band), o, img8.shape[:2])
            centre_x = 0.5 * (bb[0] + bb[2] - 1)
    plan = plan_tiles(img8.shape[:2], roi, spec, pitch, src, front, centre_x)
    batch = np.stack(
        [normalise(render_tile(canon, t.A, t.width, t.height), spec.std_floor)[None] for t in plan.tiles]
    ).astype(np.float32)
    return batch, plan
