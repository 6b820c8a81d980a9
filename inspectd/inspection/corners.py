"""OFAST corner points (paper §2.1): FAST corners, Harris ranking, intensity-centroid angle.

Contract (the CPU implementation here and any drop-in, e.g. a torch/CUDA one,
must keep it):

``detect_corners(img8, cfg) -> np.ndarray``
    img8: 2-D uint8 frame (window it first with `inspectd.imaging.window.to_8bit`).
    cfg: `CornerConfig` (n, fast_threshold, work_size).
    Returns a float32 C-contiguous array of shape (K, 3), rows ``[x, y, score]``:
    - x, y in full-frame pixels, docs/contracts.md §1 convention (x right, y down, pixel
      centres at integer coordinates), also when the detector ran on a
      downscaled work image (``work_size`` > 0): work-pixel centres are mapped
      back with ``x_full = (x_work + 0.5) * W / w_work - 0.5`` (same for y);
    - score = Harris response (OpenCV ORB's: 7x7 block, k = 0.04, on the image
      the detector ran on); larger is a stronger corner; it may be <= 0 for
      weak points when fewer than n corners exist;
    - K <= cfg.n, rows sorted by score descending (ties by y then x, so the
      output is deterministic);
    - an empty, constant or too-small image gives a (0, 3) array, never an
      exception. A non-uint8 or non-2-D array raises ValueError.

``detect_oriented_corners(img8, cfg) -> (corners, angles)``
    The same corners plus the OFAST orientation of each (float32 (K,), degrees
    in [0, 360), intensity-centroid angle over a radius-15 disc as ORB computes
    it, measured in image coordinates: 0 = +x, 90 = +y, i.e. clockwise on
    screen).

Implementation: ``cv2.ORB_create(nfeatures=n, scoreType=HARRIS_SCORE,
nlevels=1)`` does exactly OFAST: FAST-9/16 with non-max suppression, the best 2n
by FAST score re-ranked by Harris, the best n kept, then the intensity-centroid
angle. Measured against a hand-built FAST + cv2.cornerHarris ranking on the 8
labelled real frames the recall of tips is the same within ±3 % (see
docs/roi.md), so the one-call ORB path is used. A single pyramid level: the
tips have one scale, and the points must be at full-frame positions.

Also here: `dense_clusters` / `dense_cluster`, the robust centre(s) of the
corner cloud the ROI and orientation steps share.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspectd.config import CornerConfig

__all__ = ["detect_corners", "detect_oriented_corners", "refine_subpix", "dense_cluster", "dense_clusters", "Cluster"]

# ORB's border and orientation-patch size (px): no corner within this of the edge.
_PATCH = 31


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 3), np.float32), np.zeros((0,), np.float32)


def _check(img8: np.ndarray) -> np.ndarray:
    img8 = np.asarray(img8)
    if img8.ndim != 2:
        raise ValueError(f"detect_corners expects a 2-D mono frame, got shape {img8.shape}")
    if img8.dtype != np.uint8:
        raise ValueError(f"detect_corners expects uint8 (use window.to_8bit first), got {img8.dtype}")
    return img8


def work_image(img8: np.ndarray, cfg: CornerConfig) -> tuple[np.ndarray | None, float, float]:
    """The image the detector runs on (scaled to `work_size` when set) and the full/work scale (fx, fy);
    None when it is too small to hold a corner (shared by the CPU and CUDA paths)."""
    h, w = img8.shape
    if min(h, w) < 2 * _PATCH + 3:
        return None, 1.0, 1.0
    work = img8
    fx = fy = 1.0
    if cfg.work_size and max(h, w) > cfg.work_size:
        s = cfg.work_size / max(h, w)
        ww, wh = max(1, round(w * s)), max(1, round(h * s))
        if min(ww, wh) < 2 * _PATCH + 3:
            return None, 1.0, 1.0
        work = cv2.resize(img8, (ww, wh), interpolation=cv2.INTER_AREA)
        fx, fy = w / ww, h / wh
    if not work.flags["C_CONTIGUOUS"]:
        work = np.ascontiguousarray(work)
    return work, fx, fy


def to_full(rows: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """Rows [x, y, ...] from work-image to full-frame pixels (pixel centres, the module docstring's rule),
    as float64; unchanged when the work image is the frame."""
    out = np.array(rows, np.float64, copy=True)
    if fx != 1.0 or fy != 1.0:
        out[:, 0] = (out[:, 0] + 0.5) * fx - 0.5
        out[:, 1] = (out[:, 1] + 0.5) * fy - 0.5
    return out


def detect_oriented_corners(img8: np.ndarray, cfg: CornerConfig) -> tuple[np.ndarray, np.ndarray]:
    """OFAST corners and their angles; see the module docstring for the contract."""
    img8 = _check(img8)
    work, fx, fy = work_image(img8, cfg)
    if work is None:
        return _empty()
    orb = cv2.ORB_create(
        nfeatures=int(cfg.n),
        scaleFactor=1.2,
        nlevels=1,
        edgeThreshold=_PATCH,
        firstLevel=0,
        WTA_K=2,
        scoreType=cv2.ORB_HARRIS_SCORE,
        patchSize=_PATCH,
        fastThreshold=int(cfg.fast_threshold),
    )
    kps = orb.detect(work, None)
    if not kps:
        return _empty()
    arr = np.array([(k.pt[0], k.pt[1], k.response, k.angle) for k in kps], np.float64)
    # Score descending, ties by y then x (lexsort: last key is primary).
    order = np.lexsort((arr[:, 0], arr[:, 1], -arr[:, 2]))[: int(cfg.n)]
    arr = to_full(arr[order], fx, fy)
    corners = np.ascontiguousarray(arr[:, :3], dtype=np.float32)
    angles = np.mod(arr[:, 3], 360.0).astype(np.float32)
    angles[angles >= 360.0] = 0.0  # float32 rounding of 359.99999...
    return corners, angles


def detect_corners(img8: np.ndarray, cfg: CornerConfig) -> np.ndarray:
    """OFAST corners as a float32 (K, 3) ``[x, y, score]`` array; see the module docstring."""
    return detect_oriented_corners(img8, cfg)[0]


def refine_subpix(img8: np.ndarray, corners: np.ndarray, win: int) -> np.ndarray:
    """Corners moved to sub-pixel positions by `cv2.cornerSubPix` ((2·win+1)² window); same contract.

    Raw FAST keypoints are pixel centres that sit 2-3 px inside a sharp line
    end (the segment test fires where the radius-3 circle is mostly
    background); the gradient-orthogonality fit pulls them onto the end. A
    point the fit moves farther than `win` px (no corner structure there) keeps
    its FAST position. Rows, order and scores are unchanged.
    """
    c = np.array(corners, np.float32, copy=True).reshape(-1, 3)
    if win <= 0 or len(c) == 0:
        return c
    img8 = _check(img8)
    pts = np.ascontiguousarray(c[:, :2].reshape(-1, 1, 2))
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.01)
    cv2.cornerSubPix(img8, pts, (int(win), int(win)), (-1, -1), crit)
    new = pts.reshape(-1, 2)
    ok = np.all(np.isfinite(new), axis=1) & (np.hypot(*(new - c[:, :2]).T) <= win)
    c[ok, :2] = new[ok]
    return c


@dataclass(frozen=True)
class Cluster:
    """A dense cluster of a corner cloud."""

    x: float  # robust centre (median of the members), full-frame px
    y: float
    members: np.ndarray  # bool mask over the input corners
    radius: float  # the radius used to collect the members, px

    @property
    def count(self) -> int:
        return int(self.members.sum())


def dense_clusters(
    corners: np.ndarray,
    shape: tuple[int, int],
    *,
    k: int = 3,
    min_rel: float = 0.3,
    bins: int = 64,
    sigma_bins: float = 2.0,
    radius_frac: float = 0.08,
) -> list[Cluster]:
    """Up to `k` dense corner clusters, densest first (replaces the paper's plain mean, eq. 1).

    The tips give the densest patch of corners in a frame, but clamp edges,
    screw threads, the tray edge, the intensifier circle and noise in the bright
    background add corners too, often more of them than the tips spread over the
    frame, so the plain mean is pulled off the stack. Here: a 2-D histogram of
    the corners (bins of max(H, W)/64 px), Gaussian-smoothed (sigma 2 bins); its
    peaks are the modes, taken in decreasing height while at least `min_rel` of
    the highest, each at least ``radius_frac * max(H, W)`` from the ones before.
    A cluster's members are the corners within that radius of its peak and its
    centre is their median. Fewer than 3 corners give an empty list.
    """
    pts = np.asarray(corners, np.float64)
    if pts.ndim != 2 or pts.shape[0] < 3 or pts.shape[1] < 2:
        return []
    pts = pts[:, :2]
    h, w = int(shape[0]), int(shape[1])
    size = float(max(h, w))
    bs = size / bins
    ny, nx = max(1, int(np.ceil(h / bs))), max(1, int(np.ceil(w / bs)))
    hist, _, _ = np.histogram2d(pts[:, 1], pts[:, 0], bins=[ny, nx], range=[[0, ny * bs], [0, nx * bs]])
    smooth = cv2.GaussianBlur(hist.astype(np.float32), (0, 0), sigma_bins, borderType=cv2.BORDER_CONSTANT)
    radius = radius_frac * size
    gy, gx = np.mgrid[0:ny, 0:nx]
    out: list[Cluster] = []
    top = float(smooth.max())
    while len(out) < k and top > 0:
        iy, ix = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
        if smooth[iy, ix] < min_rel * top:
            break
        px, py = (ix + 0.5) * bs, (iy + 0.5) * bs
        members = np.hypot(pts[:, 0] - px, pts[:, 1] - py) <= radius
        if members.sum() >= 3:
            sel = pts[members]
            out.append(Cluster(float(np.median(sel[:, 0])), float(np.median(sel[:, 1])), members, radius))
        smooth[np.hypot(gx - ix, gy - iy) * bs <= radius] = 0.0
    return out


def dense_cluster(corners: np.ndarray, shape: tuple[int, int], **kwargs) -> Cluster | None:
    """The densest corner cluster (`dense_clusters`' first), or None for fewer than 3 corners."""
    found = dense_clusters(corners, shape, k=1, **kwargs)
    return found[0] if found else None
