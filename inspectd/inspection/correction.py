"""Corner-guided post-correction with local-pattern confidence (paper §2.3).

For every predicted tip ``p_i`` (HRNet) the nearest detected corner ``q_i``
within radius δ (``cfg.delta_px``) is its reference corner; a tip with no
corner within δ is left as it is.  Each point gets a *local pattern*: the
normalised brightness histogram (``cfg.bins`` bins over 0..255) of the
``cfg.patch_px`` × ``cfg.patch_px`` square patch centred on it, sampled
bilinearly at sub-pixel positions (coordinates clipped to the image at the
borders).  The *reference pattern* ``r`` is the mean pattern of all predicted
tips of the image (the paper averages the patterns of both classes; a caller
may pass its own, per class or per point).

Confidences and fusion — our reading of eq. (5)/(6)
----------------------------------------------------
The paper writes ``α_i = <v_i/|v_i|, r/|r|>``, ``β_i = <u_i/|u_i|, r/|r|>``
and fuses ``x̂_i = (α_i x_i + β_i x'_i) / (α_i + β_i)`` with ``(x_i, y_i) = p_i``
and ``(x'_i, y'_i) = q_i``.  Its sentence introducing the features ("extract
the local features u_i, v_i for p_i and q_i individually") would, read
literally in that order, make ``α`` (weight of ``p``) the confidence of ``q``
and vice versa — a crossed weighting that contradicts the stated purpose
("evaluate the confidence of the two pole position estimates before a
potential fusion").  We take that as a naming slip and implement the
own-pattern reading:

* ``v_i`` = pattern of the **prediction** ``p_i``;  ``α_i = cos(v_i, r)``
  weights ``p_i``;
* ``u_i`` = pattern of the **corner** ``q_i``;  ``β_i = cos(u_i, r)`` weights
  ``q_i``;
* ``p̂_i = (α_i p_i + β_i q_i) / (α_i + β_i)``.

Each estimate is weighted by how tip-like its own neighbourhood looks.

Guarantees: α and β are clamped to ≥ 0 (histograms are non-negative, so this
only matters for a caller-supplied reference with negative entries), so the
fused point is a convex combination of ``p_i`` and a corner within δ of it and
never moves more than δ.  When ``α_i + β_i`` is 0 (both patterns orthogonal to
the reference) the point is left unchanged.  A disabled config is the
identity.  Two predictions may share one corner (the paper does not forbid
it; tips of one class are ~10 px apart in 2-D, far beyond δ = 3 px).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from inspectd.config import CorrectionConfig

__all__ = ["CorrectionResult", "correct", "correct_tips", "local_patterns", "cosine"]


@dataclass(frozen=True, eq=False)
class CorrectionResult:
    points: np.ndarray  # (N, 2) float64 corrected [x, y]
    moved: np.ndarray  # (N,) bool: the point had a reference corner and changed
    corner_index: np.ndarray  # (N,) int: row of `corners` used as q_i, -1 if none within δ
    corner_distance: np.ndarray  # (N,) float: |p_i - q_i|, NaN if none
    alpha: np.ndarray  # (N,) confidence of the prediction p_i (weights p_i); NaN if no corner
    beta: np.ndarray  # (N,) confidence of the corner q_i (weights q_i); NaN if no corner
    reference: np.ndarray | None  # (bins,) or (N, bins) reference pattern used; None if not computed

    @property
    def n_moved(self) -> int:
        return int(self.moved.sum())

    def __post_init__(self) -> None:  # arrays read-only
        for name in ("points", "moved", "corner_index", "corner_distance", "alpha", "beta"):
            getattr(self, name).setflags(write=False)


def _points(a, name: str) -> np.ndarray:
    arr = np.asarray(a if a is not None else [], dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{name} must be an (N, 2) array, got shape {arr.shape}")
    return arr


def _gray(image8: np.ndarray) -> np.ndarray:
    img = np.asarray(image8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3:  # a 3-channel JPEG of grey content
        img = img.astype(np.float32).mean(axis=2)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"image8 must be a 2-D mono image, got shape {img.shape}")
    return img.astype(np.float32, copy=False)


def local_patterns(image8: np.ndarray, points, patch_px: int, bins: int) -> np.ndarray:
    """(N, bins) normalised brightness histograms of the patches centred on `points`.

    The patch is ``patch_px × patch_px`` samples at offsets
    ``k - (patch_px - 1) / 2`` (k = 0..patch_px-1) from the point, sampled
    bilinearly (sub-pixel points), with sample coordinates clipped to the
    image.  Values are brightness 0..255 (uint8 scale); bin ``b`` covers
    ``[256 b / bins, 256 (b+1) / bins)``.  Each row sums to 1.
    """
    img = _gray(image8)
    p = _points(points, "points")
    n = len(p)
    if n == 0:
        return np.zeros((0, bins), dtype=np.float64)
    h, w = img.shape
    off = np.arange(patch_px, dtype=np.float64) - (patch_px - 1) / 2.0
    xs = np.clip(p[:, 0, None, None] + off[None, None, :], 0.0, w - 1.0)  # (N, 1, P)
    ys = np.clip(p[:, 1, None, None] + off[None, :, None], 0.0, h - 1.0)  # (N, P, 1)
    xs, ys = np.broadcast_arrays(xs, ys)
    x0 = np.minimum(np.floor(xs).astype(np.int64), w - 1)
    y0 = np.minimum(np.floor(ys).astype(np.int64), h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = xs - x0
    fy = ys - y0
    v = (
        img[y0, x0] * (1 - fx) * (1 - fy)
        + img[y0, x1] * fx * (1 - fy)
        + img[y1, x0] * (1 - fx) * fy
        + img[y1, x1] * fx * fy
    )
    b = np.clip((np.clip(v, 0, 255) * (bins / 256.0)).astype(np.int64), 0, bins - 1).reshape(n, -1)
    flat = (np.arange(n)[:, None] * bins + b).ravel()
    hist = np.bincount(flat, minlength=n * bins).reshape(n, bins).astype(np.float64)
    return hist / hist.sum(axis=1, keepdims=True)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, K) and (N, K) or (K,); 0 where a norm is 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    num = np.sum(a * b, axis=-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _identity(p: np.ndarray) -> CorrectionResult:
    n = len(p)
    return CorrectionResult(
        points=p.copy(),
        moved=np.zeros(n, bool),
        corner_index=np.full(n, -1, np.int64),
        corner_distance=np.full(n, np.nan),
        alpha=np.full(n, np.nan),
        beta=np.full(n, np.nan),
        reference=None,
    )


def correct(points, corners, image8: np.ndarray, cfg: CorrectionConfig, reference=None) -> CorrectionResult:
    """Refine predicted tips with detected corners (paper §2.3, eq. 5-6).

    `points`: (N, 2) predicted tips ``[x, y]``, full-frame px.
    `corners`: (K, 3) ``[x, y, score]`` (or (K, 2)), full-frame px — the corner
    detector's output contract; may be empty.
    `image8`: the frame as 8-bit mono (brightness 0..255), full frame.
    `reference`: None -> mean pattern of all `points` (pass all tips of the
    image, both classes, for the paper's reference); a (bins,) pattern used for
    every point; or an (N, bins) array, one reference per point (e.g. per-class
    references: ``np.where(is_anode[:, None], r_anode, r_cathode)``).

    Confidence α_i = cos(pattern(p_i), r) weights the prediction p_i,
    β_i = cos(pattern(q_i), r) weights the corner q_i; the result is
    (α_i p_i + β_i q_i) / (α_i + β_i) (see the module docstring for why this
    is our reading of eq. 5/6).  Never moves a point more than δ.
    """
    p = _points(points, "points")[:, :2].astype(np.float64)
    if not np.all(np.isfinite(p)):
        raise ValueError("points hold non-finite coordinates")
    n = len(p)
    q_all = _points(corners, "corners")
    if not cfg.enabled or n == 0 or len(q_all) == 0:
        return _identity(p)
    q_all = q_all[:, :2].astype(np.float64)
    finite = np.all(np.isfinite(q_all), axis=1)
    if not finite.all():
        keep = np.flatnonzero(finite)
        q_all = q_all[keep]
    else:
        keep = None
    if len(q_all) == 0:
        return _identity(p)

    delta = float(cfg.delta_px)
    tree = cKDTree(q_all)
    # distance_upper_bound is a strict bound in scipy; widen it a hair and
    # apply the inclusive test ourselves.
    pfin = np.all(np.isfinite(p), axis=1)
    dist, idx = tree.query(np.where(pfin[:, None], p, 0.0), k=1, distance_upper_bound=np.nextafter(delta, np.inf) * (1 + 1e-12))
    has = np.isfinite(dist) & (dist <= delta) & pfin
    idx = np.where(has, idx, -1)

    v = local_patterns(image8, p, cfg.patch_px, cfg.bins)  # predictions' patterns
    if reference is None:
        ref = v.mean(axis=0)
    else:
        ref = np.asarray(reference, dtype=np.float64)
        if ref.shape not in ((cfg.bins,), (n, cfg.bins)):
            raise ValueError(f"reference must have shape ({cfg.bins},) or ({n}, {cfg.bins}), got {ref.shape}")

    out = p.copy()
    alpha = np.full(n, np.nan)
    beta = np.full(n, np.nan)
    sel = np.flatnonzero(has)
    if sel.size:
        q = q_all[idx[sel]]
        u = local_patterns(image8, q, cfg.patch_px, cfg.bins)  # corners' patterns
        r_sel = ref if ref.ndim == 1 else ref[sel]
        a = np.maximum(cosine(v[sel], r_sel), 0.0)
        b = np.maximum(cosine(u, r_sel), 0.0)
        alpha[sel], beta[sel] = a, b
        wsum = a + b
        good = wsum > 0
        fused = p[sel].copy()
        fused[good] = (a[good, None] * p[sel][good] + b[good, None] * q[good]) / wsum[good, None]
        # Convex combination, so |fused - p| <= |q - p| <= δ up to rounding;
        # make the guarantee exact against floating-point error.
        step = fused - p[sel]
        norm = np.hypot(step[:, 0], step[:, 1])
        over = norm > delta
        if over.any():
            step[over] *= (delta / norm[over])[:, None]
        out[sel] = p[sel] + step
    moved = np.any(out != p, axis=1)
    cidx = idx.copy()
    if keep is not None:
        cidx[has] = keep[idx[has]]
    cdist = np.where(has, dist, np.nan)
    return CorrectionResult(
        points=out,
        moved=moved,
        corner_index=cidx,
        corner_distance=cdist,
        alpha=alpha,
        beta=beta,
        reference=ref,
    )


def correct_tips(
    anode_tips,
    cathode_tips,
    corners,
    image8: np.ndarray,
    cfg: CorrectionConfig,
    per_class_reference: bool = False,
) -> tuple[CorrectionResult, CorrectionResult]:
    """Correct both classes of one image at once.

    The reference pattern is the mean over the tips of both classes (the
    paper), or, with `per_class_reference`, each class's own mean.
    """
    a = _points(anode_tips, "anode_tips")[:, :2]
    c = _points(cathode_tips, "cathode_tips")[:, :2]
    both = np.concatenate([a, c])
    if per_class_reference and len(both):
        pats = local_patterns(image8, both, cfg.patch_px, cfg.bins)
        ref = np.empty_like(pats)
        if len(a):
            ref[: len(a)] = pats[: len(a)].mean(axis=0)
        if len(c):
            ref[len(a) :] = pats[len(a) :].mean(axis=0)
    else:
        ref = None
    res = correct(both, corners, image8, cfg, reference=ref)
    return _slice(res, slice(0, len(a))), _slice(res, slice(len(a), len(both)))


def _slice(r: CorrectionResult, s: slice) -> CorrectionResult:
    ref = r.reference
    if ref is not None and ref.ndim == 2:
        ref = ref[s]
    return CorrectionResult(
        points=r.points[s].copy(),
        moved=r.moved[s].copy(),
        corner_index=r.corner_index[s].copy(),
        corner_distance=r.corner_distance[s].copy(),
        alpha=r.alpha[s].copy(),
        beta=r.beta[s].copy(),
        reference=ref,
    )
