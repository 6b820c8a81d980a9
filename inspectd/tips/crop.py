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
from inspectd.tips.geometry import affine, apply_affine, estimate_pitch, invert_affine, tip_front

__all__ = [
    "InputSpec",
    "Tile",
    "CropPlan",
    "box_to_canonical",
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


# ---------------------------------------------------------------------------- tiles


@dataclass(frozen=True)
class Tile:
    A: np.ndarray  # (2, 3) canonical -> input
    width: int
    height: int
    own: tuple[float, float] = (-math.inf, math.inf)  # canonical y range this tile reports

    def to_input(self, pts_c: np.ndarray) -> np.ndarray:
        return apply_affine(self.A, pts_c)

    def to_canonical(self, pts_in: np.ndarray) -> np.ndarray:
        return apply_affine(invert_affine(self.A), pts_in)


@dataclass(frozen=True)
class CropPlan:
    orientation: Orientation
    frame_shape: tuple[int, int]
    pitch: float  # same-class pitch, canonical px
    pitch_source: str  # "estimate" | "size" | "labels" | "given" | "band" | "strongest" (+ "/N tried", infer.py)
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
    inv = invert_affine(A)
    corners = apply_affine(inv, np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64))
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


def _size_pitch(img8: np.ndarray, spec: InputSpec) -> float:
    return spec.pitch_ref_1000 * max(img8.shape[:2]) / 1000.0


def _row_period(img8: np.ndarray, roi, spec: InputSpec):
    """The ROI in canonical orientation (image, box) and its strongest row period within `pitch_bounds`
    (period or None, prominence)."""
    o = Orientation(roi.orientation)
    canon = to_canonical(img8, o)
    box_c = box_to_canonical((roi.x0, roi.y0, roi.x1, roi.y1), o, img8.shape[:2])
    p, prom = estimate_pitch(canon, box_c, spec.pitch_bounds)
    return canon, box_c, p, prom


def _plausible(p: float | None, prom: float, size_pitch: float, spec: InputSpec) -> bool:
    lo, hi = spec.size_ratio_bounds
    return p is not None and prom >= 8.0 and lo * size_pitch <= p <= hi * size_pitch


def pitch_for(img8: np.ndarray, roi, spec: InputSpec) -> tuple[float, str]:
    """(pitch, source) for a frame: the estimate when plausible, else the size rule."""
    fallback = _size_pitch(img8, spec)
    if spec.scale_rule == "size":
        return fallback, "size"
    _, _, p, prom = _row_period(img8, roi, spec)
    return (p, "estimate") if _plausible(p, prom, fallback, spec) else (fallback, "size")


def pitch_candidates(img8: np.ndarray, roi, spec: InputSpec) -> list[tuple[float, str]]:
    """The pitch to tile at, or when the image does not settle it, the candidates to try (tips/infer.py).

    One candidate when the row periodicity gives a plausible pitch. Otherwise
    (11 % of held-out simulator frames, 1 of the 52 real ones) the size rule
    first, then the strongest period within the band the size rule allows,
    then the strongest period overall if it lies within `pitch_bounds`: on
    guanyu-tip 20220905-09-25-09 the strongest period was a 79.5 px modulation
    across the stack, the size rule said 15.4 px, the layers repeat every
    8.7 px, and the band's strongest period is 9.2 px.
    """
    fallback = _size_pitch(img8, spec)
    if spec.scale_rule == "size":
        return [(fallback, "size")]
    canon, box_c, p_all, prom = _row_period(img8, roi, spec)
    if _plausible(p_all, prom, fallback, spec):
        return [(p_all, "estimate")]
    lo, hi = spec.size_ratio_bounds
    out = [(fallback, "size")]
    band = (max(spec.pitch_bounds[0], lo * fallback), min(spec.pitch_bounds[1], hi * fallback))
    p_band, _ = estimate_pitch(canon, box_c, band) if band[0] < band[1] else (None, 0.0)
    for p, name in ((p_band, "band"), (p_all, "strongest")):
        if p is not None and all(abs(p - q) > 0.05 * q for q, _ in out):
            out.append((float(p), name))
    return out


def make_batch(
    img8: np.ndarray, roi, spec: InputSpec, pitch: float | None = None, source: str = "given"
) -> tuple[np.ndarray, CropPlan]:
    """Network input (B, 1, h, w) float32 for the tiles over `roi`, and the plan to map results back."""
    src = source
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
