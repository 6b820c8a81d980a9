"""OFAST spelled out step by step (what `cv2.ORB_create(..., nlevels=1, HARRIS_SCORE)` does), in NumPy.

The CPU path (corners.py) calls OpenCV's ORB in one go. A GPU implementation
(corners_cuda.py) has to redo each step, and this module is both its
reference and its host-side half:

1. FAST-9/16 segment test with threshold t on every pixel 3 px from the edge:
   a corner has 9 contiguous circle pixels all brighter than v + t or all
   darker than v - t; its score is OpenCV's `cornerScore<16>` (the largest
   threshold at which it is still a corner) (`fast_scores`).
2. Non-maximum suppression: kept when its score beats all 8 neighbours'
   (non-corners score 0); then ORB's border filter, x and y in
   [edge, size - edge) (`fast_keypoints`).
3. `retain_best(2n)` by FAST score (ties at the cut are all kept, as
   OpenCV's KeyPointsFilter does), Harris response of each on a 7x7 block
   with ORB's Sobel-like gradients and scaling, k = 0.04 (`harris`),
   `retain_best(n)` by Harris (`select`).
4. Intensity-centroid angle over ORB's radius-15 disc (`angles`); atan2 in
   double precision where OpenCV uses its ~0.3 deg `fastAtan2`.

Measured against OpenCV on simulated and real frames in tests/test_corners_cuda.py.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CIRCLE", "HARRIS_K", "fast_scores", "fast_keypoints", "retain_best", "harris", "umax", "angles", "select"]

# FAST's Bresenham circle of radius 3, (dx, dy), in OpenCV's order (pattern16).
CIRCLE = ((0, 3), (1, 3), (2, 2), (3, 1), (3, 0), (3, -1), (2, -2), (1, -3),
          (0, -3), (-1, -3), (-2, -2), (-3, -1), (-3, 0), (-3, 1), (-2, 2), (-1, 3))  # fmt: skip
HARRIS_K = 0.04
HARRIS_BLOCK = 7
HALF_PATCH = 15  # ORB's patchSize 31 // 2


def fast_scores(img8: np.ndarray, threshold: int) -> np.ndarray:
    """int32 (h, w): the FAST-9 score of every corner pixel, 0 elsewhere (and within 3 px of the edge)."""
    img = np.asarray(img8, np.int16)
    h, w = img.shape
    t = int(min(max(threshold, 0), 255))
    out = np.zeros((h, w), np.int32)
    if h < 7 or w < 7:
        return out
    v = img[3 : h - 3, 3 : w - 3]
    # d[k] = v - circle[k], the circle repeated so every 9-long arc is a slice
    d = np.stack([v - img[3 + dy : h - 3 + dy, 3 + dx : w - 3 + dx] for dx, dy in CIRCLE + CIRCLE[:9]])
    arc_min = np.stack([d[s : s + 9].min(axis=0) for s in range(16)])  # darker centre: all d > t
    arc_max = np.stack([d[s : s + 9].max(axis=0) for s in range(16)])  # brighter centre: all d < -t
    corner = (arc_min.max(axis=0) > t) | (arc_max.min(axis=0) < -t)
    # cornerScore<16>: a0 = max(t, best arc min), b0 = min(-a0, best arc max); score = -b0 - 1
    a0 = np.maximum(t, arc_min.max(axis=0))
    b0 = np.minimum(-a0, arc_max.min(axis=0))
    out[3 : h - 3, 3 : w - 3] = np.where(corner, -b0.astype(np.int32) - 1, 0)
    return out


def fast_keypoints(scores: np.ndarray, edge: int) -> np.ndarray:
    """(K, 3) int64 [x, y, score]: the local maxima of `scores` (strictly above all 8 neighbours) at least
    `edge` px inside the frame, in raster order (y, then x)."""
    s = np.asarray(scores, np.int32)
    h, w = s.shape
    if h < 2 * edge + 1 or w < 2 * edge + 1:
        return np.zeros((0, 3), np.int64)
    p = np.pad(s, 1)
    c = p[1:-1, 1:-1]
    keep = c > 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx or dy:
                keep &= c > p[1 + dy : h + 1 + dy, 1 + dx : w + 1 + dx]
    inner = np.zeros_like(keep)
    inner[edge : h - edge, edge : w - edge] = True
    ys, xs = np.nonzero(keep & inner)
    return np.column_stack([xs, ys, s[ys, xs]]).astype(np.int64)


def retain_best(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices kept by OpenCV's `KeyPointsFilter::retainBest`: the n best and every other one tied with the n-th."""
    scores = np.asarray(scores)
    if n <= 0:
        return np.zeros(0, np.int64)
    if len(scores) <= n:
        return np.arange(len(scores))
    cut = np.partition(scores, len(scores) - n)[len(scores) - n]  # the n-th largest
    return np.flatnonzero(scores >= cut)


def harris(img8: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """float32 (K,) ORB's Harris response at integer points `xy` (K, 2) (at least 4 px inside the frame)."""
    img = np.asarray(img8, np.int32)
    xy = np.asarray(xy, np.int64).reshape(-1, 2)
    if len(xy) == 0:
        return np.zeros(0, np.float32)
    r = HARRIS_BLOCK // 2
    a = np.zeros(len(xy), np.int64)
    b = np.zeros(len(xy), np.int64)
    c = np.zeros(len(xy), np.int64)
    for i in range(HARRIS_BLOCK):
        for j in range(HARRIS_BLOCK):
            y = xy[:, 1] - r + i
            x = xy[:, 0] - r + j
            ix = (img[y, x + 1] - img[y, x - 1]) * 2 + (img[y - 1, x + 1] - img[y - 1, x - 1]) + (img[y + 1, x + 1] - img[y + 1, x - 1])
            iy = (img[y + 1, x] - img[y - 1, x]) * 2 + (img[y + 1, x - 1] - img[y - 1, x - 1]) + (img[y + 1, x + 1] - img[y - 1, x + 1])
            a += ix * ix
            b += iy * iy
            c += ix * iy
    scale = 1.0 / ((1 << 2) * HARRIS_BLOCK * 255.0)
    a, b, c = (np.float32(v) for v in (a.astype(np.float32), b.astype(np.float32), c.astype(np.float32)))
    resp = (a * b - c * c - np.float32(HARRIS_K) * (a + b) * (a + b)) * np.float32(scale**4)
    return resp.astype(np.float32)


def umax(half: int = HALF_PATCH) -> np.ndarray:
    """ORB's half-widths of the circular orientation patch per row offset v = 0..half (symmetric by construction)."""
    u = np.zeros(half + 2, np.int64)
    vmax = math.floor(half * math.sqrt(2.0) / 2 + 1)
    vmin = math.ceil(half * math.sqrt(2.0) / 2)
    for v in range(vmax + 1):
        u[v] = round(math.sqrt(half * half - v * v))
    v0 = 0
    for v in range(half, vmin - 1, -1):
        while u[v0] == u[v0 + 1]:
            v0 += 1
        u[v] = v0
        v0 += 1
    return u[: half + 1]


def angles(img8: np.ndarray, xy: np.ndarray, half: int = HALF_PATCH) -> np.ndarray:
    """float32 (K,) intensity-centroid angle in degrees [0, 360), image coordinates, at integer points `xy`."""
    img = np.asarray(img8, np.int64)
    xy = np.asarray(xy, np.int64).reshape(-1, 2)
    if len(xy) == 0:
        return np.zeros(0, np.float32)
    um = umax(half)
    m01 = np.zeros(len(xy), np.int64)
    m10 = np.zeros(len(xy), np.int64)
    x, y = xy[:, 0], xy[:, 1]
    for u in range(-half, half + 1):
        m10 += u * img[y, x + u]
    for v in range(1, half + 1):
        d = int(um[v])
        for u in range(-d, d + 1):
            plus, minus = img[y + v, x + u], img[y - v, x + u]
            m01 += v * (plus - minus)
            m10 += u * (plus + minus)
    ang = np.degrees(np.arctan2(m01.astype(np.float64), m10.astype(np.float64))) % 360.0
    ang = ang.astype(np.float32)
    ang[ang >= 360.0] = 0.0
    return ang


def select(img8, kps: np.ndarray, n: int, harris_fn=harris, angles_fn=angles) -> tuple[np.ndarray, np.ndarray]:
    """Step 3 and 4 on FAST keypoints (K, 3) [x, y, fast score]: the contract's (corners (M, 3) [x, y, harris]
    sorted by score descending, ties by y then x; angles (M,)), M <= n. `harris_fn` / `angles_fn` (img8, xy):
    these NumPy ones, or the CUDA kernels' (then `img8` is the frame on the device)."""
    kps = np.asarray(kps, np.int64).reshape(-1, 3)
    if len(kps) == 0:
        return np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
    kps = kps[retain_best(kps[:, 2], 2 * n)]
    resp = harris_fn(img8, kps[:, :2])
    keep = retain_best(resp, n)
    kps, resp = kps[keep], resp[keep]
    order = np.lexsort((kps[:, 0], kps[:, 1], -resp.astype(np.float64)))[:n]
    kps, resp = kps[order], resp[order]
    corners = np.column_stack([kps[:, 0], kps[:, 1], resp]).astype(np.float32)
    return np.ascontiguousarray(corners), angles_fn(img8, kps[:, :2])


def detect_oriented_corners_ref(img8: np.ndarray, n: int, fast_threshold: int, edge: int = 31):
    """The whole of OFAST in NumPy on a uint8 frame (no work-size scaling): (corners, angles) as corners.py."""
    return select(img8, fast_keypoints(fast_scores(img8, fast_threshold), edge), n)
