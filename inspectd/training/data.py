"""Training data: frames of a dump -> cached canonical crops -> augmented (tile, heatmap) samples.

Each labelled frame is read once and reduced to the canonical (tips right)
region around its tips, in the frame's raw bit depth, large enough for any
tile the augmentation can draw (rotation, ±scale, centre jitter). A sample is
then a function of (frame, rng) only:

1. geometry: scale s = pitch_in / P_labels · exp(U(±ln(1+scale_jitter))),
   rotation U(±rot_deg), reflection along the stack axis (p = flip_p), tile
   centre jittered across (±x_jitter input px) and drawn along the stack;
2. intensities, on the raw source region (before windowing, as on the
   detector): flat-field gradient (×(1 + a·x + b·y)), extra noise with
   Poisson-like level dependence;
3. windowing to 8 bit as `vision.window.to_8bit` does, with the window's ends
   jittered (8/16-bit windowing variation) and quantised;
4. the tile via `crop.render_tile` (anti-aliased affine, as at inference);
5. on the tile: Gaussian blur, contrast/gamma; then `crop.normalise`.

Targets: `HeatmapCodec.encode` of the labelled tips mapped by the same affine.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from inspectd.forking import forked_pool, result_or_raise
from inspectd.frames import iter_dump
from inspectd.frames.dumps import FrameReadError, list_dump, read_frame
from inspectd.frames.model import FrameError
from inspectd.imaging.canonical import points_to_canonical, to_canonical
from inspectd.imaging.window import window_limits
from inspectd.tips.codec import HeatmapCodec
from inspectd.tips.crop import InputSpec, aa_sigma, normalise, render_tile, source_box
from inspectd.tips.geometry import affine, labels_pitch, orientation_from_labels

__all__ = ["AugConfig", "CachedFrame", "load_frames", "find_dumps", "sample", "make_batch_train", "frame_weights"]


@dataclass(frozen=True)
class AugConfig:
    scale_jitter: float = 0.15  # ± fraction (log-uniform)
    rot_deg: float = 4.0
    flip_p: float = 0.5
    x_mode: str = "anchor"  # "centre": tips' centre ± x_jitter; "anchor": right-most anode tip at U(x_lo·w, w − x_hi)
    x_jitter: float = 28.0  # input px, tile centre across the stack ("centre")
    x_lo: float = 0.42  # ("anchor") fraction of the tile width
    x_hi: float = 12.0  # ("anchor") input px from the right edge
    y_reach: float = 0.2  # tile centre may sit this fraction of the tile height beyond the end tips
    flat_p: float = 0.5
    flat_max: float = 0.25  # max |gradient| over the region, fraction
    noise_p: float = 0.4
    noise_max: float = 0.04  # extra noise sd at full window level, fraction of the window
    window_jitter: float = 0.08  # window ends moved by up to this fraction of its width
    blur_p: float = 0.3
    blur_max: float = 1.2  # sigma, input px
    gamma_p: float = 0.5
    gamma_max: float = 1.4  # gamma in [1/g, g]
    contrast_p: float = 0.3  # random linear contrast compression (before quantisation)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CachedFrame:
    frame_id: str
    raw: np.ndarray  # canonical region (raw dtype), C-contiguous
    anode: np.ndarray  # (N, 2) canonical tips in `raw` coordinates
    cathode: np.ndarray
    pitch: float  # same-class pitch from the labels, canonical px
    lo: float  # to_8bit window of the full frame
    hi: float
    identity8: bool  # uint8 frame that to_8bit leaves unchanged
    shape: tuple[int, int]  # full frame (H, W)
    defects: tuple[str, ...] = ()  # the sidecar's defect kinds (training may oversample some)
    source: str = ""  # the dump it came from (training may weight dumps: real beside simulated)


def find_dumps(path: Path | str | list) -> list[Path]:
    """Dump directories under `path` (itself if it holds frames, else its subdirectories, recursively)."""
    if isinstance(path, (list, tuple)):
        out: list[Path] = []
        for p in path:
            out += find_dumps(p)
        return out
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"no dump directory at {p}")
    exts = {".tiff", ".tif", ".png", ".jpg", ".jpeg", ".bmp"}
    if any(f.suffix.lower() in exts for f in p.iterdir() if f.is_file()) or (p / "img").is_dir():
        return [p]
    out = []
    for sub in sorted(q for q in p.iterdir() if q.is_dir()):
        out += find_dumps(sub)
    return out


def _window(image: np.ndarray) -> tuple[float, float, bool]:
    lo, hi = window_limits(image)
    if image.dtype == np.uint8 and hi - lo >= 128:
        return 0.0, 255.0, True
    if hi <= lo:
        hi = lo + 1
    return float(lo), float(hi), False


def cache_frame(frame, spec: InputSpec, aug: AugConfig) -> CachedFrame | None:
    if frame.meta.labels is None:
        return None
    a, c = frame.meta.labels.arrays()
    if len(a) + len(c) < 4:
        return None
    o = orientation_from_labels(a, c)
    if o is None:
        return None
    img = frame.image
    canon = to_canonical(img, o)
    ac = points_to_canonical(a, o, img.shape)
    cc = points_to_canonical(c, o, img.shape)
    p = labels_pitch(ac, cc)
    if p is None:
        return None
    s_min = spec.pitch_in / p / (1.0 + aug.scale_jitter)
    allp = np.vstack([ac, cc])
    half_diag = 0.5 * math.hypot(spec.tile_w, spec.tile_h) / s_min
    pad = half_diag + 3 * aa_sigma(s_min) + 4
    # any tile centre either mode can draw: ("centre") tips' centre ± x_jitter, ("anchor") right-most
    # anode minus [(x_lo - 1/2)·w, (1/2)·w - x_hi] / s
    reach_l = max(aug.x_jitter, 0.5 * spec.tile_w) / s_min
    reach_r = max(aug.x_jitter, (0.5 - aug.x_lo) * spec.tile_w) / s_min
    my = half_diag + aug.y_reach * spec.tile_h / s_min + 3 * aa_sigma(s_min) + 4
    h_c, w_c = canon.shape
    x0 = max(0, int(allp[:, 0].min() - reach_l - pad))
    x1 = min(w_c, int(math.ceil(allp[:, 0].max() + reach_r + pad)) + 1)
    y0 = max(0, int(allp[:, 1].min() - my))
    y1 = min(h_c, int(math.ceil(allp[:, 1].max() + my)) + 1)
    raw = np.ascontiguousarray(canon[y0:y1, x0:x1])
    lo, hi, ident = _window(img)
    off = np.array([x0, y0], np.float64)
    return CachedFrame(
        frame.frame_id, raw, ac - off, cc - off, float(p), lo, hi, ident, tuple(img.shape), tuple(frame.meta.defects)
    )


def _cache_file(path: Path, spec: InputSpec, aug: AugConfig) -> CachedFrame | None:
    try:
        return cache_frame(read_frame(path), spec, aug)
    except FrameError:
        return None


def load_frames(
    dumps: list[Path], spec: InputSpec, aug: AugConfig, limit: int | None = None, log=None, workers: int = 1
) -> list[CachedFrame]:
    """Cache every labelled frame of `dumps` (at most `limit` per dump), in dump order.

    `workers` > 1 reads and crops in that many processes (without `limit`):
    decoding thousands of TIFFs is most of a training run's start-up.
    """
    out: list[CachedFrame] = []
    for d in dumps:
        t0, n = time.perf_counter(), 0
        if workers > 1 and limit is None:
            paths = list_dump(d)
            with forked_pool(workers) as pool:
                futures = [pool.submit(_cache_file, p, spec, aug) for p in paths]
                got = [c for c in (result_or_raise(pool, f) for f in futures) if c is not None]
            for c in got:
                c.source = str(d)
            out += got
            n = len(got)
        else:
            for fr in iter_dump(d):
                if isinstance(fr, FrameReadError):
                    continue
                cf = cache_frame(fr, spec, aug)
                if cf is not None:
                    cf.source = str(d)
                    out.append(cf)
                    n += 1
                if limit is not None and n >= limit:
                    break
        if log:
            log(f"cached {n} frames from {d} in {time.perf_counter() - t0:.1f} s")
    return out


def _log_uniform(rng: np.random.Generator, r: float) -> float:
    return float(math.exp(rng.uniform(-math.log(r), math.log(r))))


def sample(
    cf: CachedFrame, spec: InputSpec, codec: HeatmapCodec, aug: AugConfig, rng: np.random.Generator, augment: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """One (1, th, tw) normalised tile and its (2, th/s, tw/s) targets."""
    tw, th = spec.tile_w, spec.tile_h
    s = spec.pitch_in / cf.pitch
    ang, flip = 0.0, False
    allp = np.vstack([cf.anode, cf.cathode])
    xm = 0.5 * (allp[:, 0].min() + allp[:, 0].max())
    ylo, yhi = allp[:, 1].min(), allp[:, 1].max()
    if augment:
        s *= _log_uniform(rng, 1.0 + aug.scale_jitter)
        ang = float(rng.uniform(-aug.rot_deg, aug.rot_deg))
        flip = bool(rng.random() < aug.flip_p)
        if aug.x_mode == "anchor":
            # u(x) = s·(x − xc) + (tw − 1)/2 for the right-most anode tip lands in [x_lo·tw, tw − x_hi]
            u = rng.uniform(aug.x_lo * tw, tw - aug.x_hi)
            xc = float(cf.anode[:, 0].max() if len(cf.anode) else allp[:, 0].max()) - (u - (tw - 1) / 2.0) / s
        else:
            xc = xm + rng.uniform(-aug.x_jitter, aug.x_jitter) / s
    else:
        xc = xm
    reach = aug.y_reach * th / s
    yc = float(rng.uniform(ylo - reach, yhi + reach)) if augment else 0.5 * (ylo + yhi)
    A = affine(s, (xc, yc), ((tw - 1) / 2.0, (th - 1) / 2.0), ang, flip, th)

    sig = aa_sigma(s)
    x0, y0, x1, y1 = source_box(A, tw, th, cf.raw.shape, 3.0 * sig + 2.0)
    reg = cf.raw[y0:y1, x0:x1].astype(np.float32)
    lo, hi = cf.lo, cf.hi
    span = hi - lo
    if augment:
        rh, rw = reg.shape
        if rng.random() < aug.flat_p and rh > 1 and rw > 1:
            ga, gb = rng.uniform(-aug.flat_max, aug.flat_max, size=2)
            gx = np.linspace(-0.5, 0.5, rw, dtype=np.float32) * np.float32(ga)
            gy = np.linspace(-0.5, 0.5, rh, dtype=np.float32) * np.float32(gb)
            reg = lo + (reg - lo) * (1.0 + gy[:, None] + gx[None, :])
        if rng.random() < aug.noise_p:
            sd = rng.uniform(0.0, aug.noise_max) * span
            level = np.sqrt(np.clip((reg - lo) / span, 0.02, 1.0))
            reg = reg + (rng.standard_normal(reg.shape).astype(np.float32) * np.float32(sd)) * level
        j = aug.window_jitter * span
        lo = lo + rng.uniform(-j, j)
        hi = hi + rng.uniform(-j, j)
        if rng.random() < aug.contrast_p:
            c = rng.uniform(0.5, 1.0)  # compress the histogram: fewer grey levels after quantisation
            mid = 0.5 * (lo + hi)
            lo, hi = mid - (mid - lo) / c, mid + (hi - mid) / c
        if hi - lo < 4:
            hi = lo + 4
    g8 = np.clip(np.floor((reg - lo) * (255.0 / (hi - lo)) + 0.5), 0, 255).astype(np.float32)
    tile = render_tile(None, A, tw, th, region=(g8, x0, y0))
    if augment:
        if rng.random() < aug.blur_p:
            import cv2

            tile = cv2.GaussianBlur(tile, (0, 0), float(rng.uniform(0.3, aug.blur_max)), borderType=cv2.BORDER_REPLICATE)
        if rng.random() < aug.gamma_p:
            g = _log_uniform(rng, aug.gamma_max)
            tile = 255.0 * np.power(np.clip(tile / 255.0, 0.0, 1.0), g, dtype=np.float32)
    x = normalise(tile, spec.std_floor)[None]
    tgt = codec.encode([_apply(A, cf.anode), _apply(A, cf.cathode)], (th, tw))
    return x.astype(np.float32), tgt


def _apply(A: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, np.float64).reshape(-1, 2)
    return p @ A[:, :2].T + A[:, 2]


def frame_weights(
    frames: list[CachedFrame], oversample: dict[str, float], dump_weights: dict[str, float] | None = None
) -> np.ndarray | None:
    """Sampling probabilities: defect weight (`oversample`) times dump weight (`dump_weights`), else 1.

    Rare geometry (two same-class tips 0.6-0.8 pitch apart in `extra_layer` cells: ~6 % of
    frames) is what the model gets wrong; drawing those frames more often is the cheap fix.
    `dump_weights` maps a part of a dump's path (e.g. "real") to the weight of each of its
    frames: a few dozen labelled real frames beside thousands of simulated ones.
    """
    if not oversample and not dump_weights:
        return None

    def dump_w(src: str) -> float:
        return next((float(w) for key, w in (dump_weights or {}).items() if key in src), 1.0)

    w = np.array(
        [max([float(oversample.get(d, 1.0)) for d in f.defects] or [1.0]) * dump_w(f.source) for f in frames],
        np.float64,
    )
    return w / w.sum()


def make_batch_train(
    frames: list[CachedFrame],
    spec: InputSpec,
    codec: HeatmapCodec,
    aug: AugConfig,
    rng: np.random.Generator,
    n: int,
    p: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A training batch of `n` samples; frames drawn uniformly, or with probabilities `p` (`frame_weights`)."""
    idx = rng.integers(0, len(frames), size=n) if p is None else rng.choice(len(frames), size=n, p=p)
    xs, ys = zip(*(sample(frames[i], spec, codec, aug, rng) for i in idx))
    return np.stack(xs), np.stack(ys)
