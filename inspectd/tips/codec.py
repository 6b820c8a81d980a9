"""Heatmap codec: tip points <-> Gaussian heatmaps (cf. mmpose codecs), and the sub-pixel decoders.

Pixel-centre convention (docs/contracts.md §1): input pixel (i, j) has its centre at
x = j, y = i. A heatmap of stride s has pixel j covering input pixels
[s·j, s·j + s), so its centre sits at input x = s·j + (s − 1)/2 (0.5 for
s = 2, 1.5 for s = 4). Hence

    heatmap coordinate  h = (x − (s − 1)/2) / s        (`to_heatmap`)
    input coordinate    x = s·h + (s − 1)/2            (`from_heatmap`)

Encoding writes, per class, the max over tips of an unnormalised Gaussian
exp(−|p − μ|² / 2σ²) (peak 1 at the exact sub-pixel centre μ, σ in heatmap
px). Decoding finds a variable number of peaks: local maxima of a 3×3 (or
larger) max-filter above a threshold (calibrated on validation data, carried
by the model card), a greedy minimum-distance suppression, then sub-pixel
refinement by one of

* ``argmax``: the integer peak (error up to ±0.5 heatmap px = ±s/2 input px);
* ``quarter``: the peak moved 0.25 px towards the higher neighbour on each
  axis (the HRNet/SimpleBaseline rule);
* ``dark``: DARK (Zhang et al. 2020): Gaussian-smooth the heatmap, take its
  log and one Newton step of the Taylor expansion at the peak,
  μ = m − H⁻¹∇ (central differences, ±1 px stencil); exact for a Gaussian
  peak. Falls back to ``quarter`` where the Hessian is not negative definite.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

__all__ = ["HeatmapCodec", "DECODERS"]

DECODERS = ("argmax", "quarter", "dark")


@dataclass(frozen=True)
class HeatmapCodec:
    stride: int = 2  # input px per heatmap px
    sigma: float = 1.0  # target Gaussian sigma, heatmap px
    threshold: float = 0.3  # peak score threshold (calibrated on validation data)
    nms_kernel: int = 3  # max-filter size for local maxima, heatmap px (odd)
    min_dist: float = 1.5  # greedy suppression radius, heatmap px (< half the same-class pitch)
    decoder: str = "dark"  # argmax | quarter | dark
    dark_blur: float = 1.0  # sigma of DARK's smoothing, heatmap px (0: none)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HeatmapCodec:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    # ------------------------------------------------------------------ coordinates
    def to_heatmap(self, pts: np.ndarray) -> np.ndarray:
        """Input-px [x, y] -> heatmap-px [x, y] (pixel-centre convention)."""
        s = float(self.stride)
        return (np.asarray(pts, np.float64) - (s - 1.0) / 2.0) / s

    def from_heatmap(self, pts: np.ndarray) -> np.ndarray:
        """Heatmap-px [x, y] -> input-px [x, y]."""
        s = float(self.stride)
        return np.asarray(pts, np.float64) * s + (s - 1.0) / 2.0

    def heatmap_shape(self, in_shape: tuple[int, int]) -> tuple[int, int]:
        h, w = int(in_shape[0]), int(in_shape[1])
        if h % self.stride or w % self.stride:
            raise ValueError(f"input shape {in_shape} is not a multiple of the stride {self.stride}")
        return h // self.stride, w // self.stride

    # ------------------------------------------------------------------ encode
    def encode(self, points: list[np.ndarray] | tuple[np.ndarray, ...], in_shape: tuple[int, int]) -> np.ndarray:
        """Targets (C, H/s, W/s) float32 for per-class (N, 2) input-px tip arrays."""
        hh, ww = self.heatmap_shape(in_shape)
        out = np.zeros((len(points), hh, ww), np.float32)
        r = int(np.ceil(3.0 * self.sigma)) + 1
        inv2s2 = 1.0 / (2.0 * self.sigma * self.sigma)
        for c, pts in enumerate(points):
            p = np.asarray(pts, np.float64).reshape(-1, 2)
            if len(p) == 0:
                continue
            hm = self.to_heatmap(p)
            for mx, my in hm:
                cx, cy = int(np.floor(mx + 0.5)), int(np.floor(my + 0.5))
                x0, x1 = max(0, cx - r), min(ww, cx + r + 1)
                y0, y1 = max(0, cy - r), min(hh, cy + r + 1)
                if x0 >= x1 or y0 >= y1:
                    continue
                gx = np.exp(-((np.arange(x0, x1) - mx) ** 2) * inv2s2)
                gy = np.exp(-((np.arange(y0, y1) - my) ** 2) * inv2s2)
                g = (gy[:, None] * gx[None, :]).astype(np.float32)
                np.maximum(out[c, y0:y1, x0:x1], g, out=out[c, y0:y1, x0:x1])
        return out

    # ------------------------------------------------------------------ decode
    def peaks(self, hm: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Integer local maxima of one (h, w) heatmap: (N, 3) [x, y, score], score-descending, after NMS."""
        thr = self.threshold if threshold is None else float(threshold)
        hm = np.ascontiguousarray(hm, np.float32)
        k = int(self.nms_kernel)
        mx = cv2.dilate(hm, np.ones((k, k), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)
        ys, xs = np.nonzero((hm >= mx) & (hm >= thr))
        if len(xs) == 0:
            return np.zeros((0, 3))
        sc = hm[ys, xs].astype(np.float64)
        order = np.argsort(-sc, kind="stable")
        xs, ys, sc = xs[order], ys[order], sc[order]
        if self.min_dist > 0 and len(xs) > 1:
            keep = np.ones(len(xs), bool)
            d2 = float(self.min_dist) ** 2
            for i in range(len(xs)):
                if not keep[i]:
                    continue
                dx = xs[i + 1 :] - xs[i]
                dy = ys[i + 1 :] - ys[i]
                keep[i + 1 :] &= (dx * dx + dy * dy) > d2
            xs, ys, sc = xs[keep], ys[keep], sc[keep]
        return np.column_stack([xs, ys, sc]).astype(np.float64)

    def refine(self, hm: np.ndarray, pk: np.ndarray, method: str | None = None) -> np.ndarray:
        """Sub-pixel heatmap-px [x, y] of integer peaks `pk` (N, 2+) on heatmap `hm` (h, w)."""
        method = method or self.decoder
        if method not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {method!r}")
        pk = np.asarray(pk, np.float64).reshape(-1, pk.shape[-1] if np.ndim(pk) == 2 else 2)
        xy = pk[:, :2].copy()
        if len(xy) == 0 or method == "argmax":
            return xy
        h, w = hm.shape
        x = xy[:, 0].astype(np.int64)
        y = xy[:, 1].astype(np.int64)
        q = _quarter(hm, x, y)
        if method == "quarter":
            return xy + q
        src = hm.astype(np.float32)
        if self.dark_blur > 0:
            src = _dark_smooth(src, self.dark_blur)
        L = np.log(np.maximum(src, 1e-10)).astype(np.float64)
        Lp = np.pad(L, 1, mode="edge")
        xp, yp = x + 1, y + 1
        c = Lp[yp, xp]
        dx = 0.5 * (Lp[yp, xp + 1] - Lp[yp, xp - 1])
        dy = 0.5 * (Lp[yp + 1, xp] - Lp[yp - 1, xp])
        dxx = Lp[yp, xp + 1] - 2 * c + Lp[yp, xp - 1]
        dyy = Lp[yp + 1, xp] - 2 * c + Lp[yp - 1, xp]
        dxy = 0.25 * (Lp[yp + 1, xp + 1] - Lp[yp + 1, xp - 1] - Lp[yp - 1, xp + 1] + Lp[yp - 1, xp - 1])
        det = dxx * dyy - dxy * dxy
        ok = (dxx < 0) & (det > 1e-12)
        off = q.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            ox = -(dyy * dx - dxy * dy) / det
            oy = -(dxx * dy - dxy * dx) / det
        good = ok & np.isfinite(ox) & np.isfinite(oy) & (np.abs(ox) <= 1.0) & (np.abs(oy) <= 1.0)
        off[good, 0] = ox[good]
        off[good, 1] = oy[good]
        # A peak on the border has one-sided differences (edge padding): keep the quarter rule there.
        border = (x == 0) | (y == 0) | (x == w - 1) | (y == h - 1)
        off[border] = q[border]
        return xy + off

    def decode(
        self, heatmaps: np.ndarray, threshold: float | None = None, method: str | None = None
    ) -> list[np.ndarray]:
        """(C, h, w) heatmaps -> per class (N, 3) [x, y, score] in input px, score-descending."""
        out = []
        for hm in np.asarray(heatmaps):
            pk = self.peaks(hm, threshold)
            xy = self.from_heatmap(self.refine(hm, pk, method)) if len(pk) else np.zeros((0, 2))
            out.append(np.column_stack([xy, pk[:, 2]]) if len(pk) else np.zeros((0, 3)))
        return out


def _quarter(hm: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = hm.shape
    xl, xr = np.clip(x - 1, 0, w - 1), np.clip(x + 1, 0, w - 1)
    yu, yd = np.clip(y - 1, 0, h - 1), np.clip(y + 1, 0, h - 1)
    ox = 0.25 * np.sign(hm[y, xr] - hm[y, xl])
    oy = 0.25 * np.sign(hm[yd, x] - hm[yu, x])
    return np.column_stack([ox, oy]).astype(np.float64)


def _dark_smooth(hm: np.ndarray, sigma: float) -> np.ndarray:
    """DARK's distribution modulation: Gaussian blur, rescaled to the original maximum."""
    k = 2 * int(np.ceil(3.0 * sigma)) + 1
    m0 = float(hm.max())
    b = cv2.GaussianBlur(hm, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    m1 = float(b.max())
    if m1 > 0 and m0 > 0:
        b *= m0 / m1
    return np.maximum(b, 1e-10)
