"""OFAST corners on an NVIDIA GPU: numba-cuda kernels with the contract of corners.py (the `gpu` extra).

Why numba-cuda: its kernels are plain Python, and its CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) runs the very same kernel source on a CPU, so CI,
which has no GPU, checks the kernels against the NumPy reference (ofast.py)
and that against OpenCV's ORB. CuPy's RawKernel would need a GPU for every
test; Triton targets dense tensor blocks, not a per-pixel segment test with
data-dependent control flow.

Kernels, one thread per pixel or per keypoint:

1. `_fast` — FAST-9/16 segment test and OpenCV's cornerScore<16> per pixel.
2. `_nms` — strict 8-neighbour maximum + ORB's border; survivors appended
   with an atomic counter (their order is not raster order; the selection
   below does not depend on it).
3. `_harris` — ORB's 7x7 Harris response per surviving keypoint.
4. `_angle` — the intensity-centroid angle over the radius-15 disc.

Between 2 and 3 the survivors (a few thousand [x, y, score] rows) come to the
host, and `ofast.select` (the reference's own selection) runs there with
kernels 3 and 4 in place of its NumPy Harris and angle.
The frame itself is uploaded once per call. Scaling to `work_size`, when set,
is done on the host before the upload (cv2.resize, as the CPU path).

**Not run on a GPU on this project's machines yet**: tested through the CUDA
simulator on small frames (tests/test_corners_cuda.py); the GPU test is in
bench/gpu_check.sh for the next session with a lent device.
"""

from __future__ import annotations

import math

import numpy as np

from inspectd.config import CornerConfig
from inspectd.inspection import ofast

__all__ = ["cuda_available", "CudaCorners"]

try:  # guarded: numba-cuda is the optional `gpu` extra
    from numba import cuda
except ImportError:  # pragma: no cover - exercised where the extra is missing
    cuda = None

_EDGE = 31  # ORB's edgeThreshold (corners.py _PATCH)
_MAX_KPS = 1 << 16  # survivors of the NMS kept at most per frame (a 2048² frame has a few thousand)


def cuda_available() -> tuple[bool, str]:
    """(usable, why not): numba-cuda importable and a GPU present (or the simulator enabled)."""
    if cuda is None:
        return False, "numba-cuda is not installed (pip install 'inspectd[gpu]')"
    try:
        if cuda.is_available():
            return True, ""
    except Exception as e:  # driver missing or broken
        return False, f"CUDA is not usable: {type(e).__name__}: {e}"
    return False, "no CUDA GPU is visible (numba.cuda.is_available() is False)"


if cuda is not None:
    _CX = np.array([c[0] for c in ofast.CIRCLE], np.int32)
    _CY = np.array([c[1] for c in ofast.CIRCLE], np.int32)

    @cuda.jit
    def _fast(img, t, cx, cy, scores):
        x, y = cuda.grid(2)
        h, w = img.shape
        if y >= h or x >= w:
            return
        scores[y, x] = 0
        if y < 3 or y >= h - 3 or x < 3 or x >= w - 3:
            return
        v = np.int32(img[y, x])
        d = cuda.local.array(25, np.int32)
        for k in range(25):
            kk = k % 16
            d[k] = v - np.int32(img[y + cy[kk], x + cx[kk]])
        best_min = -1000  # over the 16 arcs of 9: the largest arc minimum / the smallest arc maximum
        best_max = 1000
        for s in range(16):
            lo = 1000
            hi = -1000
            for j in range(9):
                e = d[s + j]
                lo = min(lo, e)
                hi = max(hi, e)
            best_min = max(best_min, lo)
            best_max = min(best_max, hi)
        if best_min > t or best_max < -t:
            a0 = max(t, best_min)
            b0 = min(-a0, best_max)
            scores[y, x] = -b0 - 1

    @cuda.jit
    def _nms(scores, edge, out, counter):
        x, y = cuda.grid(2)
        h, w = scores.shape
        if y < edge or y >= h - edge or x < edge or x >= w - edge:
            return
        s = scores[y, x]
        if s <= 0:
            return
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                if (dx != 0 or dy != 0) and scores[y + dy, x + dx] >= s:
                    return
        i = cuda.atomic.add(counter, 0, 1)
        if i < out.shape[0]:
            out[i, 0] = x
            out[i, 1] = y
            out[i, 2] = s

    @cuda.jit
    def _harris(img, xy, resp):
        i = cuda.grid(1)
        if i >= xy.shape[0]:
            return
        x0 = xy[i, 0]
        y0 = xy[i, 1]
        a = 0
        b = 0
        c = 0
        for r in range(7):
            for q in range(7):
                y = y0 - 3 + r
                x = x0 - 3 + q
                ix = (np.int32(img[y, x + 1]) - np.int32(img[y, x - 1])) * 2 + (
                    np.int32(img[y - 1, x + 1]) - np.int32(img[y - 1, x - 1])
                ) + (np.int32(img[y + 1, x + 1]) - np.int32(img[y + 1, x - 1]))
                iy = (np.int32(img[y + 1, x]) - np.int32(img[y - 1, x])) * 2 + (
                    np.int32(img[y + 1, x - 1]) - np.int32(img[y - 1, x - 1])
                ) + (np.int32(img[y + 1, x + 1]) - np.int32(img[y - 1, x + 1]))
                a += ix * ix
                b += iy * iy
                c += ix * iy
        fa = np.float32(a)
        fb = np.float32(b)
        fc = np.float32(c)
        scale = np.float32(1.0 / (4.0 * 7.0 * 255.0))
        s4 = scale * scale * scale * scale
        resp[i] = (fa * fb - fc * fc - np.float32(ofast.HARRIS_K) * (fa + fb) * (fa + fb)) * s4

    @cuda.jit
    def _angle(img, xy, um, out):
        i = cuda.grid(1)
        if i >= xy.shape[0]:
            return
        x = xy[i, 0]
        y = xy[i, 1]
        half = um.shape[0] - 1
        m01 = 0
        m10 = 0
        for u in range(-half, half + 1):
            m10 += u * np.int32(img[y, x + u])
        for v in range(1, half + 1):
            d = um[v]
            for u in range(-d, d + 1):
                plus = np.int32(img[y + v, x + u])
                minus = np.int32(img[y - v, x + u])
                m01 += v * (plus - minus)
                m10 += u * (plus + minus)
        a = math.atan2(np.float64(m01), np.float64(m10)) * 180.0 / math.pi
        if a < 0:
            a += 360.0
        out[i] = a


class CudaCorners:
    """`detect_oriented_corners` / `detect_corners` (corners.py's contract) with the per-pixel work on the GPU.

    `cfg` is the default; each call may pass its own (the ROI search retries with lower thresholds)."""

    name = "cuda"

    def __init__(self, cfg: CornerConfig | None = None):
        ok, why = cuda_available()
        if not ok:
            raise RuntimeError(f"CUDA corners unavailable: {why}")
        self.cfg = cfg or CornerConfig()
        self._umax = cuda.to_device(ofast.umax().astype(np.int32))
        self._cx = cuda.to_device(_CX)
        self._cy = cuda.to_device(_CY)
        self._shape: tuple[int, int] | None = None

    def _buffers(self, shape: tuple[int, int]) -> None:
        if self._shape != shape:
            self._scores = cuda.device_array(shape, np.int32)
            self._kps = cuda.device_array((_MAX_KPS, 3), np.int32)
            self._counter = cuda.device_array(1, np.int32)
            self._shape = shape

    def detect_oriented_corners(self, img8: np.ndarray, cfg: CornerConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
        from inspectd.inspection.corners import _check, _empty, to_full, work_image

        cfg = cfg or self.cfg
        img8 = _check(img8)
        work, fx, fy = work_image(img8, cfg)
        if work is None:
            return _empty()
        h, w = work.shape
        self._buffers((h, w))
        d_img = cuda.to_device(work)  # work_image: C-contiguous
        tpb = (16, 16)
        grid = ((w + 15) // 16, (h + 15) // 16)
        _fast[grid, tpb](d_img, np.int32(min(max(int(cfg.fast_threshold), 0), 255)), self._cx, self._cy, self._scores)
        self._counter.copy_to_device(np.zeros(1, np.int32))
        _nms[grid, tpb](self._scores, np.int32(_EDGE), self._kps, self._counter)
        k = int(min(self._counter.copy_to_host()[0], _MAX_KPS))
        if k == 0:
            return _empty()
        kps = self._kps[:k].copy_to_host().astype(np.int64)
        corners, ang = ofast.select(d_img, kps, int(cfg.n), self._device_harris, self._device_angles)
        return np.ascontiguousarray(to_full(corners, fx, fy), dtype=np.float32), ang

    @staticmethod
    def _device_harris(d_img, xy: np.ndarray) -> np.ndarray:
        """ofast.harris on the device: the frame `d_img` is there already, only the points go over."""
        d_xy = cuda.to_device(np.ascontiguousarray(xy.astype(np.int32)))
        d_resp = cuda.device_array(len(xy), np.float32)
        _harris[(len(xy) + 127) // 128, 128](d_img, d_xy, d_resp)
        return d_resp.copy_to_host()

    def _device_angles(self, d_img, xy: np.ndarray) -> np.ndarray:
        """ofast.angles on the device."""
        d_xy = cuda.to_device(np.ascontiguousarray(xy.astype(np.int32)))
        d_ang = cuda.device_array(len(xy), np.float64)
        _angle[(len(xy) + 127) // 128, 128](d_img, d_xy, self._umax, d_ang)
        ang = d_ang.copy_to_host().astype(np.float32)
        ang[ang >= 360.0] = 0.0
        return ang

    def detect_corners(self, img8: np.ndarray, cfg: CornerConfig | None = None) -> np.ndarray:
        return self.detect_oriented_corners(img8, cfg)[0]
