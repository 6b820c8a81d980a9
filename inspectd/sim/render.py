"""X-ray frame synthesis: scene -> transmission -> detector -> pixels, plus exact labels.

Pipeline (canonical frame: layers horizontal, tips pointing right)::

    attenuation A = sum mu*t of layers (rendered per layer, only in its band of rows,
                    in the un-bent stack coordinate u, then warped to y with one remap)
                  + clutter (clamp, screw, tray, jaw, wire, dust)
    I  = I0 * flat(x, y) * exp(-A)           flat: FOV circle, vignetting, gradient, bands
    I  = PSF(I)                              Gaussian (sigma varies per frame), sometimes motion blur
    I  = Poisson(I) + read noise             Gaussian approximation of the photon noise
    I  = grain(I)                            small blur: intensifier/phosphor correlation of the noise
    px = offset + gain * I                   random window, quantised to 8 / 12 / 16 bit

The finished canonical image is rotated/flipped to the requested orientation and
the labels are transformed exactly (pixel centres at integer coordinates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from inspectd.config import RecipeConfig
from inspectd.sim import variety
from inspectd.sim.scene import (
    DEFECT_KINDS,
    ORIENTATIONS,
    Layer,
    Scene,
    cathode_profile,
    sample_scene,
)

__all__ = ["SimFrame", "SimOptions", "render_frame", "render_debug", "transform_points"]


@dataclass(frozen=True)
class SimOptions:
    size: int = 2048  # output is size x size
    bit_depth: int = 12  # 8 -> uint8; 12 -> uint16 in 0..4095; 16 -> uint16 full range
    defect_rate: float = 0.3  # probability that a frame carries one defect
    orientation: str = "any"  # "any" | "right" | "left" | "up" | "down": direction the tips point
    mm_per_px: float | None = None  # None -> 0.02 / (size / 1000)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    families: tuple[str, ...] = ()  # domain-randomisation families that may appear (variety.FAMILIES)
    family_rate: float = 0.35  # probability that each allowed family appears on a frame

    def __post_init__(self):
        if int(self.size) < 256:
            raise ValueError(f"size must be >= 256, got {self.size}")
        if self.bit_depth not in (8, 12, 16):
            raise ValueError(f"bit_depth must be 8, 12 or 16, got {self.bit_depth}")
        if not (0.0 <= float(self.defect_rate) <= 1.0):
            raise ValueError(f"defect_rate must be in [0, 1], got {self.defect_rate}")
        if self.orientation != "any" and self.orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be 'any' or one of {ORIENTATIONS}, got {self.orientation!r}")
        if self.mm_per_px is not None and not (self.mm_per_px > 0):
            raise ValueError(f"mm_per_px must be > 0, got {self.mm_per_px}")
        variety.check_families(self.families)
        if not (0.0 <= float(self.family_rate) <= 1.0):
            raise ValueError(f"family_rate must be in [0, 1], got {self.family_rate}")


@dataclass
class SimFrame:
    image: np.ndarray  # (size, size) uint8 or uint16 mono
    anode_tips: np.ndarray  # (Na, 2) float64 [x, y], ordered along the stack
    cathode_tips: np.ndarray  # (Nc, 2)
    expected: str  # "OK" | "NG"
    defects: list[str]
    mm_per_px: float
    bit_depth: int
    orientation: str  # "right" | "left" | "up" | "down"
    overhang_mm: np.ndarray  # (Nc,) ground-truth min overhang per cathode, mm
    families: tuple[str, ...] = ()  # domain-randomisation families on this frame


# =========================================================================== helpers


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _stamp_const(band: np.ndarray, U0: int, u: float, half: float, x0: int, amp: np.ndarray) -> None:
    """Add a straight band (centre u, half-width half) with along-x amplitude amp starting at column x0."""
    H, W = band.shape
    x1 = x0 + len(amp)
    if x1 <= 0 or x0 >= W or len(amp) == 0:
        return
    if x0 < 0:
        amp = amp[-x0:]
        x0 = 0
    if x1 > W:
        amp = amp[: W - x0]
        x1 = W
    r0 = max(0, int(math.floor(u - half - 1.0 - U0)))
    r1 = min(H, int(math.ceil(u + half + 1.0 - U0)) + 1)
    if r1 <= r0:
        return
    rows = np.arange(r0, r1, dtype=np.float32) + np.float32(U0)
    cov = np.clip(np.float32(half + 0.5) - np.abs(rows - np.float32(u)), 0.0, 1.0)
    band[r0:r1, x0:x1] += cov[:, None] * amp[None, :]


def _stamp_var(band: np.ndarray, U0: int, uc: np.ndarray, half: np.ndarray, x0: int, amp: np.ndarray) -> None:
    """Add a band whose centre uc, half-width and amplitude vary along x (arrays over columns x0..)."""
    H, W = band.shape
    n = len(amp)
    if n == 0:
        return
    x1 = x0 + n
    if x1 <= 0 or x0 >= W:
        return
    s0 = max(0, -x0)
    s1 = n - max(0, x1 - W)
    uc, half, amp = uc[s0:s1], half[s0:s1], amp[s0:s1]
    x0 = x0 + s0
    x1 = x0 + len(amp)
    r0 = max(0, int(math.floor(float(np.min(uc - half)) - 1.0 - U0)))
    r1 = min(H, int(math.ceil(float(np.max(uc + half)) + 1.0 - U0)) + 1)
    if r1 <= r0:
        return
    rows = (np.arange(r0, r1, dtype=np.float32) + np.float32(U0))[:, None]
    cov = np.clip(half[None, :] + np.float32(0.5) - np.abs(rows - uc[None, :]), 0.0, 1.0)
    band[r0:r1, x0:x1] += cov * amp[None, :]


def _smooth_noise_1d(rng: np.random.Generator, n: int, corr: float) -> np.ndarray:
    v = rng.standard_normal(n + 8).astype(np.float32)
    k = max(1, int(corr))
    v = cv2.GaussianBlur(v.reshape(1, -1), (0, 0), sigmaX=k, borderType=cv2.BORDER_REFLECT).ravel()[4 : 4 + n]
    sd = float(v.std()) or 1.0
    return v / sd


def _rounded_rect(x0, y0, x1, y1, r, n=6) -> np.ndarray:
    r = max(0.0, min(r, 0.5 * (x1 - x0), 0.5 * (y1 - y0)))
    pts = []
    for cx, cy, a0 in ((x1 - r, y0 + r, -90), (x1 - r, y1 - r, 0), (x0 + r, y1 - r, 90), (x0 + r, y0 + r, 180)):
        for t in np.linspace(a0, a0 + 90, n):
            pts.append((cx + r * math.cos(math.radians(t)), cy + r * math.sin(math.radians(t))))
    return np.asarray(pts, dtype=np.float64)


class _Canvas:
    """Transmission image T (canonical), multiplied in place by shapes drawn as anti-aliased masks."""

    SHIFT = 4

    def __init__(self, S: int):
        self.S = S
        self.T = np.ones((S, S), dtype=np.float32)

    def _bbox(self, pts_list, pad=3):
        allp = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in pts_list])
        x0 = max(0, int(math.floor(allp[:, 0].min())) - pad)
        y0 = max(0, int(math.floor(allp[:, 1].min())) - pad)
        x1 = min(self.S, int(math.ceil(allp[:, 0].max())) + pad + 1)
        y1 = min(self.S, int(math.ceil(allp[:, 1].max())) + pad + 1)
        return x0, y0, x1, y1

    def polys(self, pts_list, a: float, soft: float = 0.0, grad: tuple[float, float] = (0.0, 0.0)) -> None:
        """Multiply T by exp(-a) inside the union of polygons (anti-aliased edge, optional extra softness,
        optional linear thickness gradient grad = (gx, gy) relative change across the bounding box)."""
        pad = 3 + int(3 * soft)
        x0, y0, x1, y1 = self._bbox(pts_list, pad)
        if x1 <= x0 or y1 <= y0:
            return
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        sc = 1 << self.SHIFT
        ipts = [
            np.round((np.asarray(p, np.float64).reshape(-1, 2) - (x0, y0)) * sc).astype(np.int32) for p in pts_list
        ]
        cv2.fillPoly(m, ipts, 255, lineType=cv2.LINE_AA, shift=self.SHIFT)
        mf = m.astype(np.float32) * np.float32(1.0 / 255.0)
        if soft > 0.3:
            mf = cv2.GaussianBlur(mf, (0, 0), soft)
        if grad[0] or grad[1]:
            h, w = mf.shape
            gx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :] * np.float32(grad[0])
            gy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None] * np.float32(grad[1])
            mf = mf * (1.0 + gx + gy)
        self.T[y0:y1, x0:x1] *= np.exp(np.float32(-a) * mf)

    def polyline(self, pts, thickness: float, a: float) -> None:
        pts = np.asarray(pts, np.float64)
        pad = int(thickness) + 3
        x0, y0, x1, y1 = self._bbox([pts], pad)
        if x1 <= x0 or y1 <= y0:
            return
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        sc = 1 << self.SHIFT
        ip = np.round((pts - (x0, y0)) * sc).astype(np.int32)
        th = max(1, int(round(thickness)))
        cv2.polylines(m, [ip], False, 255, thickness=th, lineType=cv2.LINE_AA, shift=self.SHIFT)
        self.T[y0:y1, x0:x1] *= np.exp(np.float32(-a / 255.0) * m.astype(np.float32))

    def blob(self, cx: float, cy: float, sx: float, sy: float, a: float, angle: float = 0.0) -> None:
        r = int(math.ceil(3.5 * max(sx, sy))) + 1
        x0, y0 = max(0, int(cx) - r), max(0, int(cy) - r)
        x1, y1 = min(self.S, int(cx) + r + 1), min(self.S, int(cy) + r + 1)
        if x1 <= x0 or y1 <= y0:
            return
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = xx - np.float32(cx), yy - np.float32(cy)
        ca, sa = math.cos(angle), math.sin(angle)
        u = (dx * ca + dy * sa) / sx
        v = (-dx * sa + dy * ca) / sy
        self.T[y0:y1, x0:x1] *= np.exp(np.float32(-a) * np.exp(-0.5 * (u * u + v * v)))


# =========================================================================== stack


def _render_stack(scene: Scene, tex_rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Attenuation of the stack in y-space for rows [Y0, Y1) (float32), warped from the u-space band."""
    S, s = scene.size, scene.s
    lo, hi = scene.u_range()
    drift = max((abs(sp["slope"]) * (sp["x1"] - sp["x_tip"]) for sp in scene.separators), default=0.0)
    m = 4.0 + drift
    U0 = int(math.floor(lo - m))
    U1 = int(math.ceil(hi + m))
    band = np.zeros((U1 - U0 + 1, S), dtype=np.float32)
    xs_all = np.arange(S, dtype=np.float32)

    layers = scene.layers
    cath = [ly for ly in layers if ly.kind == "c"]
    x_c_min = min((ly.tip for ly in cath), default=min(ly.tip for ly in layers))

    # -- stack body: overlap of many layers + casing, darker toward the far side
    b = scene.body
    xb1 = x_c_min - b["gap"]
    if xb1 > 0:
        nx = int(min(S, math.ceil(xb1)))
        x = xs_all[:nx]
        t = np.clip((xb1 - x) / b["len"], 0.0, 1.0)
        amp = b["a"] * t * t * (3.0 - 2.0 * t) + b["a_far"] * np.clip((xb1 - b["len"] - x) / (0.5 * S), 0.0, 1.0)
        u_top = layers[0].u - layers[0].w / 2
        u_bot = layers[-1].u + layers[-1].w / 2
        r0 = max(0, int(math.floor(u_top - 1 - U0)))
        r1 = min(band.shape[0], int(math.ceil(u_bot + 1 - U0)) + 1)
        rows = np.arange(r0, r1, dtype=np.float32) + U0
        cov = np.clip(np.minimum(rows - u_top, u_bot - rows) + 0.5, 0.0, 1.0)
        mod = 1.0 + b["row_var"] * _smooth_noise_1d(tex_rng, r1 - r0, 3.0 * s)
        band[r0:r1, :nx] += (cov * np.clip(mod, 0.3, 2.0))[:, None] * _f32(amp)[None, :]
    else:
        _smooth_noise_1d(tex_rng, 4, 1.0)

    # -- electrode layers
    for ly in layers:
        if ly.kind == "a":
            _stamp_anode(band, U0, ly, S)
        else:
            x_end = int(min(S, math.ceil(ly.tip + ly.taper) + 2))
            if x_end <= 0:
                continue
            xe0 = int(max(0, math.floor(ly.tip - ly.taper - ly.shoulder_len)))
            if xe0 > 0:
                _stamp_const(band, U0, ly.u, ly.w / 2, 0, np.full(xe0, ly.a, np.float32))
            x = np.arange(xe0, x_end, dtype=np.float64)
            g = cathode_profile(x, ly)
            edge = np.clip((ly.tip - x) / ly.taper + 0.5, 0.0, 1.0)
            half = np.maximum(0.5 * ly.w * (1.0 - ly.narrow * (1.0 - edge)), 0.6)
            _stamp_var(band, U0, np.full(len(x), ly.u, np.float32), _f32(half), xe0, _f32(ly.a * g))

    # -- separators: faint lines beside every anode, continuing (and drifting) past its tip
    x_sep0 = int(max(0, math.floor(x_c_min - 40 * s)))
    for sp in scene.separators:
        xt = int(math.floor(sp["x_tip"]))
        x1 = int(math.ceil(sp["x1"]))
        L = max(sp["x1"] - sp["x_tip"], 1.0)
        if xt > x_sep0:
            n = xt - x_sep0
            _stamp_const(band, U0, sp["u"], sp["w"] / 2, x_sep0, np.full(n, sp["a"], np.float32))
        xa = max(xt, x_sep0)
        if x1 > xa:
            x = np.arange(xa, x1, dtype=np.float32)
            amp = _f32(sp["a"] * np.clip((sp["x1"] - x) / (0.5 * L), 0.0, 1.0))
            uc = _f32(sp["u"] + sp["slope"] * np.maximum(x - sp["x_tip"], 0.0))
            _stamp_var(band, U0, uc, np.full(len(x), sp["w"] / 2, np.float32), xa, amp)

    # -- inter-anode fill (separators, electrolyte) up to the shorter of two neighbouring anodes
    a_fill = scene.extra.get("fill", 0.0)
    fill_ramp = scene.extra.get("fill_ramp", 0.0)
    anodes = [ly for ly in layers if ly.kind == "a"]
    if a_fill > 0:
        for la, lb in zip(anodes[:-1], anodes[1:]):
            top, bot = la.u + la.w / 2, lb.u - lb.w / 2
            if bot <= top:
                continue
            xe = min(la.x_end, lb.x_end)
            xcs = [ly.tip for ly in layers if ly.kind == "c" and la.u < ly.u < lb.u]
            xc = min(xcs) if xcs else xe - 60 * s
            soft = 6.0 * s
            n = int(min(S, math.ceil(xe + soft)))
            if n <= x_sep0:
                continue
            x = xs_all[x_sep0:n]
            ramp = 1.0 + fill_ramp * np.clip((xe - x) / max(xe - xc, 1.0), 0.0, 1.0)
            amp = _f32(a_fill * np.clip((xe - x) / soft, 0.0, 1.0) * ramp)
            _stamp_const(band, U0, 0.5 * (top + bot), 0.5 * (bot - top), x_sep0, amp)

    # -- separator shadows: many faint irregular streaks continuing past the anode tips
    st = scene.extra.get("streaks")
    if st and st["a"] > 0:
        x_tip_a = [ly.x_end for ly in layers if ly.kind == "a"]
        xs0 = int(max(0, math.floor(min(x_tip_a) - 30 * s)))
        xe = max(x_tip_a)
        xs1 = int(min(S, math.ceil(xe + st["len"])))
        u_a = layers[0].u - 2 * s
        u_b = layers[-1].u + 2 * s
        r0 = max(0, int(math.floor(u_a - U0)))
        r1 = min(band.shape[0], int(math.ceil(u_b - U0)) + 1)
        if xs1 > xs0 and r1 > r0:
            v = tex_rng.standard_normal(r1 - r0).astype(np.float32)
            v = cv2.GaussianBlur(v.reshape(-1, 1), (1, 0), sigmaX=0, sigmaY=st["sig"]).ravel()
            v = np.maximum(v / (float(v.std()) + 1e-6), 0.0)
            x = xs_all[xs0:xs1]
            fade = np.clip((xe + st["len"] - x) / (0.7 * st["len"]), 0.0, 1.0) * np.clip((x - xs0) / (20 * s), 0, 1)
            band[r0:r1, xs0:xs1] += (st["a"] * v)[:, None] * _f32(fade)[None, :]

    # -- films / pouch above and below the stack
    for f in scene.films:
        x_end = int(min(S, math.ceil(f["x_end"] + 12 * s)))
        if x_end <= 0:
            continue
        x = xs_all[:x_end]
        amp = _f32(f["a"] * np.clip((f["x_end"] - x) / (12 * s) + 0.5, 0.0, 1.0))
        _stamp_const(band, U0, f["u"], f["w"] / 2, 0, amp)

    # -- warp the u-space band into y-space (one remap, only over the stack's rows)
    w = scene.warp
    xs_probe = np.linspace(0, S - 1, 33)
    Y0 = int(math.floor(min(w.y(U0, xs_probe).min(), U0))) - 2
    Y1 = int(math.ceil(max(w.y(U1, xs_probe).max(), U1))) + 3
    Y0, Y1 = max(0, Y0), min(S, Y1)
    if Y1 <= Y0:
        return np.zeros((0, S), np.float32), 0, 0
    step = 8
    nC = max(2, S // step)
    xc = (np.arange(nC) + 0.5) * (S / nC) - 0.5
    ys = np.arange(Y0, Y1, dtype=np.float64)
    u = w.inverse_grid(ys, xc)
    map_y_c = (u - U0).astype(np.float32)
    map_y = cv2.resize(map_y_c, (S, Y1 - Y0), interpolation=cv2.INTER_LINEAR)
    map_x = np.broadcast_to(xs_all, (Y1 - Y0, S)).copy()
    A = cv2.remap(band, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return A, Y0, Y1


def _stamp_anode(band: np.ndarray, U0: int, ly: Layer, S: int) -> None:
    xs = ly.taper_start
    x_end = ly.x_end
    nplat = int(min(S, max(0, math.floor(xs))))
    # left of the taper the line gets darker and a little wider toward the body over darken_len
    nflat = int(min(nplat, max(0, math.floor(xs - ly.darken_len))))
    if nflat > 0:
        amp = np.full(nflat, ly.a * (1.0 + ly.darken), np.float32)
        _stamp_const(band, U0, ly.u, 0.5 * ly.w * (1.0 + ly.widen * ly.darken), 0, amp)
    if nplat > nflat:
        x = np.arange(nflat, nplat, dtype=np.float32)
        r = np.clip((np.float32(xs) - x) / np.float32(ly.darken_len), 0.0, 1.0)
        amp = np.float32(ly.a) * (1.0 + np.float32(ly.darken) * r)
        half = np.float32(0.5 * ly.w) * (1.0 + np.float32(ly.widen * ly.darken) * r)
        _stamp_var(band, U0, np.full(len(x), ly.u, np.float32), half, nflat, amp)
    xa = max(0, nplat)
    xb = int(min(S, math.ceil(x_end) + 1))
    if xb > xa:
        x = np.arange(xa, xb, dtype=np.float64)
        xi = np.clip((x - xs) / ly.taper, 0.0, 1.0)
        f = (1.0 - xi) ** ly.q
        dark = 1.0 + ly.darken * np.clip((xs - x) / ly.darken_len, 0.0, 1.0)
        half = 0.5 * ly.w * (1.0 - ly.narrow * (1.0 - f))
        uc = ly.u + ly.curl_offset(x) if ly.curl else np.full(len(x), ly.u)
        _stamp_var(band, U0, _f32(uc), _f32(half), xa, _f32(ly.a * f * dark))
    if ly.fork is not None:  # the prong: leaves the strand, bends away, fades out short of the tip
        fk = ly.fork
        xa = int(max(0, math.floor(fk.start)))
        xb = int(min(S, math.ceil(fk.end) + 1))
        if xb - xa > 1:
            x = np.arange(xa, xb, dtype=np.float64)
            t = np.clip((x - fk.start) / max(fk.end - fk.start, 1.0), 0.0, 1.0)
            f = (1.0 - np.clip((x - xs) / ly.taper, 0.0, 1.0)) ** ly.q
            fade = np.clip(np.minimum(t * 4.0, (1.0 - t) * 3.0), 0.0, 1.0)
            uc = ly.u + (ly.curl_offset(x) if ly.curl else 0.0) + fk.off * t * t
            _stamp_var(band, U0, _f32(uc), np.full(len(x), 0.45 * ly.w, np.float32), xa, _f32(ly.a * fk.a * f * fade))
    if ly.fold is not None:
        fd = ly.fold
        xa = int(max(0, math.floor(fd.x_end - fd.length - 2)))
        xb = int(min(S, math.ceil(fd.x_end) + 1))
        if xb > xa:
            x = np.arange(xa, xb, dtype=np.float64)
            taper_f = np.where(x < xs, 1.0, (1.0 - np.clip((x - xs) / ly.taper, 0, 1)) ** ly.q)
            amp = fd.a * taper_f * np.clip((x - (fd.x_end - fd.length)) / 2.0, 0.0, 1.0)
            _stamp_var(band, U0, _f32(fd.centre(x, ly.u)), np.full(len(x), fd.w / 2, np.float32), xa, _f32(amp))


# =========================================================================== clutter


def _sample_clutter(scene: Scene, rng: np.random.Generator) -> dict:
    """Clutter and detector parameters (drawn in a fixed order, independent of the render flags)."""
    S, s = scene.size, scene.s
    w = scene.warp
    lay = scene.layers
    x_tips = np.array([ly.tip for ly in lay])
    x_c_min = float(min((ly.tip for ly in lay if ly.kind == "c"), default=x_tips.min()))
    x_min_tip = float(x_tips.min())
    x_max_end = float(max(ly.x_end for ly in lay))
    u_top = lay[0].u - lay[0].w / 2
    u_bot = lay[-1].u + lay[-1].w / 2
    for f in scene.films:
        u_top = min(u_top, f["u"] - f["w"] / 2)
        u_bot = max(u_bot, f["u"] + f["w"] / 2)
    xs_chk = np.linspace(x_min_tip - 10 * s, x_max_end + 15 * s, 24)
    y_bot_tips = float(np.max(w.y(u_bot, xs_chk)))
    y_top_tips = float(np.min(w.y(u_top, xs_chk)))
    c: dict = {"fov": scene.clutter["fov"]}

    # clamp block (+ screw) over the body, above or below the stack
    on, above = rng.random() < 0.75, rng.random() < 0.8
    x1 = x_c_min - _u(rng, 40, 350) * s
    x0 = x1 - _u(rng, 150, 550) * s
    gap = _u(rng, 0, 25) * s if rng.random() < 0.6 else 0.0
    h = _u(rng, 80, 380) * s
    a = _u(rng, 0.12, 0.6) if rng.random() < 0.65 else _u(rng, 1.5, 3.5)
    rad = _u(rng, 0, 30) * s
    screw = rng.random() < 0.7
    sw, sh = _u(rng, 35, 70) * s, _u(rng, 16, 34) * s
    sx = _u(rng, 0.2, 0.8)
    s_at_far = rng.random() < 0.5
    shank_len = _u(rng, 30, 150) * s
    a_screw = _u(rng, 2.5, 4.0)
    c["clamp"] = {
        "on": on and x1 > 0.08 * S,
        "above": above,
        "x0": x0,
        "x1": x1,
        "gap": gap,
        "h": h,
        "a": a,
        "r": rad,
        "screw": screw,
        "sw": sw,
        "sh": sh,
        "sx": sx,
        "far": s_at_far,
        "shank": shank_len,
        "a_screw": a_screw,
        "grad": (_u(rng, -0.5, 0.5), _u(rng, -0.5, 0.5)),
    }
    # lower jaw under the body (opposite side of the clamp)
    c["jaw"] = {
        "on": rng.random() < 0.45,
        "x1": x_c_min - _u(rng, 40, 300) * s,
        "h": _u(rng, 25, 130) * s,
        "a": _u(rng, 1.2, 3.5),
        "r": _u(rng, 0, 15) * s,
    }
    # tray below the stack; sometimes very close to the lowest layer (never over a tip)
    close = rng.random() < 0.22
    w_low = lay[-1].w
    if close:
        tgap = _u(rng, 2.5, 8.0) * s + 0.5 * w_low
    else:
        tgap = _u(rng, 15, 160) * s
    c["tray"] = {
        "on": rng.random() < 0.85,
        "y_top": y_bot_tips + tgap,
        "slope": float(rng.normal(0, 0.004)),
        "x_r": x_max_end + _u(rng, -0.1, 0.6) * S,
        "a": _u(rng, 1.2, 3.5),
        "r": _u(rng, 5, 40) * s,
        "band": rng.random() < 0.45,
        "band_h": _u(rng, 8, 70) * s,
        "band_a": _u(rng, 0.08, 0.6),
        "band_x_r": x_max_end + _u(rng, -0.2, 0.4) * S,
        "step": rng.random() < 0.5,
        "step_x": x_c_min - _u(rng, 0, 250) * s,
        "step_h": _u(rng, 10, 60) * s,
        "close": close,
        "grad": (_u(rng, -0.4, 0.4), _u(rng, -0.2, 0.2)),
    }
    # wire / cable in the upper region away from the tips
    pts = rng.uniform(0, 1, size=(4, 2))
    c["wire"] = {
        "on": rng.random() < 0.2,
        "pts": pts,
        "th": _u(rng, 6, 18) * s,
        "a": _u(rng, 1.0, 3.0),
        "loops": [(_u(rng, 0.2, 0.9), _u(rng, 10, 28) * s) for _ in range(int(rng.integers(0, 3)))],
    }
    # dust: a few small dark blobs, some near the tips; sometimes a "bird"-shaped speck
    nd = int(rng.poisson(3.0))
    dust = []
    for _ in range(nd):
        near = rng.random() < 0.35
        if near:
            cx = _u(rng, x_min_tip - 30 * s, x_max_end + 30 * s)
            cy = _u(rng, y_top_tips, y_bot_tips)
            sig = _u(rng, 0.8, 2.5) * s
            aa = _u(rng, 0.03, 0.15)
        else:
            cx, cy = _u(rng, 0, S), _u(rng, 0, S)
            sig = _u(rng, 1.0, 5.0) * s
            aa = _u(rng, 0.05, 0.35)
        dust.append((cx, cy, sig, sig * _u(rng, 0.6, 1.6), aa, _u(rng, 0, math.pi)))
    if rng.random() < 0.4:
        bx, by = _u(rng, 0.15, 0.85) * S, _u(rng, 0.15, 0.45) * S
        for _ in range(int(rng.integers(3, 7))):
            dust.append(
                (
                    bx + _u(rng, -10, 10) * s,
                    by + _u(rng, -6, 6) * s,
                    _u(rng, 1.5, 4.5) * s,
                    _u(rng, 0.8, 2.5) * s,
                    _u(rng, 0.05, 0.2),
                    _u(rng, 0, math.pi),
                )
            )
    else:
        rng.random()
    c["dust"] = dust
    # flat field
    c["flat"] = {
        "vignette": _u(rng, 0.0, 0.25),
        "grad": _u(rng, -0.15, 0.15),
        "grad_dir": _u(rng, 0, 2 * math.pi),
        "lowfreq": _u(rng, 0.0, 0.05),
        "outside": _u(rng, 0.0, 0.035),
        "edge": _u(rng, 2.0, 10.0) * s,
    }
    bands = []
    if rng.random() < 0.15:
        for _ in range(int(rng.integers(1, 3))):
            bands.append((_u(rng, 0, S), _u(rng, 5, 80) * s, _u(rng, -0.08, 0.08), _u(rng, 1, 8) * s))
    else:
        rng.random()
    c["bands"] = bands
    return c


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _draw_clutter(cv: _Canvas, scene: Scene, c: dict) -> None:
    S, s = scene.size, scene.s
    w = scene.warp
    lay = scene.layers
    u_top = lay[0].u - lay[0].w / 2
    u_bot = lay[-1].u + lay[-1].w / 2
    for f in scene.films:
        u_top = min(u_top, f["u"] - f["w"] / 2)
        u_bot = max(u_bot, f["u"] + f["w"] / 2)

    def y_top(x):
        return float(w.y(u_top, x))

    def y_bot(x):
        return float(w.y(u_bot, x))

    cl = c["clamp"]
    if cl["on"]:
        x0, x1 = cl["x0"], cl["x1"]
        if cl["above"]:
            yb = min(y_top(max(x0, 0)), y_top(x1)) - cl["gap"]
            ya = yb - cl["h"]
        else:
            ya = max(y_bot(max(x0, 0)), y_bot(x1)) + cl["gap"]
            yb = ya + cl["h"]
        cv.polys([_rounded_rect(x0, ya, x1, yb, cl["r"])], cl["a"], soft=0.6 * s, grad=cl["grad"])
        if cl["screw"]:
            scx = x0 + cl["sx"] * (x1 - x0) if x0 > 0 else max(x1 * cl["sx"], cl["sw"])
            sw, sh = cl["sw"], cl["sh"]
            near_y = yb if cl["above"] else ya  # block edge next to the stack
            far_y = ya if cl["above"] else yb
            sign = -1.0 if cl["above"] else 1.0  # direction away from the stack
            if cl["far"]:
                hy0 = far_y + sign * sh
                head = _rounded_rect(scx - sw / 2, min(far_y, hy0), scx + sw / 2, max(far_y, hy0), 0.25 * sh)
                # threaded shank from the head into the block, toward the stack
                sy0, sy1 = far_y, far_y - sign * min(cl["shank"], cl["h"])
            else:
                hy0 = near_y - sign * sh
                head = _rounded_rect(scx - sw / 2, min(near_y, hy0), scx + sw / 2, max(near_y, hy0), 0.25 * sh)
                sy0, sy1 = hy0, hy0 - sign * min(cl["shank"], max(cl["h"] - sh, 0.0))
            shank = _thread_poly(scx, sy0, sy1, 0.28 * sw, 0.06 * sw, 4.0 * s)
            cv.polys([head, shank], cl["a_screw"], soft=0.5 * s)

    jw = c["jaw"]
    if jw["on"] and jw["x1"] > 0.05 * S:
        above = not cl["above"]
        x1 = jw["x1"]
        if above:
            yb = y_top(x1)
            poly = _rounded_rect(-20, yb - jw["h"], x1, yb + 1, jw["r"])
        else:
            ya = y_bot(x1)
            poly = _rounded_rect(-20, ya - 1, x1, ya + jw["h"], jw["r"])
        cv.polys([poly], jw["a"], soft=0.6 * s)

    tr = c["tray"]
    if tr["on"]:
        xr = min(tr["x_r"], S + 50)
        xref = w.x_ref
        yt = tr["y_top"]
        slope = tr["slope"]

        def ty(x):
            return yt + slope * (x - xref)

        polys = []
        # main slab (rounded right end), with an optional step toward the body
        r = tr["r"]
        top = [(-20, ty(-20))]
        if tr["step"] and tr["step_x"] > 0:
            top += [(tr["step_x"], ty(tr["step_x"])), (tr["step_x"], ty(tr["step_x"]) + tr["step_h"])]
            top[0] = (-20, ty(-20) + tr["step_h"])
            top[1] = (tr["step_x"], ty(tr["step_x"]) + tr["step_h"])
            top[2] = (tr["step_x"], ty(tr["step_x"]))
        for t in np.linspace(-90, 0, 6):
            top.append((xr - r + r * math.cos(math.radians(t)), ty(xr) + r + r * math.sin(math.radians(t))))
        poly = top + [(xr, S + 40), (-20, S + 40)]
        # keep the tray from climbing over the tip region when it slopes
        polys.append(np.asarray(poly))
        cv.polys(polys, tr["a"], soft=0.8 * s, grad=tr["grad"])
        if tr["band"]:
            bh = tr["band_h"]
            by = ty(0) + bh * 1.2
            bx = min(tr["band_x_r"], S + 50)
            band = np.asarray([(-20, by), (bx, by + slope * bx), (bx, S + 40), (-20, S + 40)])
            cv.polys([band], tr["band_a"], soft=1.0 * s)

    wi = c["wire"]
    if wi["on"]:
        # a curved cable in the upper-left area, well away from the tips
        y_lim = y_top(w.x_ref) - 40 * s
        x_lim = min(ly.tip for ly in lay) - 40 * s
        if y_lim > 0.1 * S and x_lim > 0.1 * S:
            p = wi["pts"] * np.array([x_lim, y_lim])
            t = np.linspace(0, 1, 60)[:, None]
            bez = (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]
            cv.polyline(bez, wi["th"], wi["a"])
            for tl, rr in wi["loops"]:  # pigtail rings hanging on the cable
                i = int(tl * (len(bez) - 1))
                c0 = bez[i] + np.array([rr, 0.0])
                ang = np.linspace(0, 2 * np.pi, 40)
                ring = np.stack([c0[0] + rr * np.cos(ang), c0[1] + rr * 1.2 * np.sin(ang)], 1)
                cv.polyline(ring, 0.8 * wi["th"], wi["a"])

    for cx, cy, sx, sy, a, ang in c["dust"]:
        cv.blob(cx, cy, sx, sy, a, ang)


def _thread_poly(cx, y0, y1, half, tooth, pitch):
    """Outline of a threaded shank between y0 and y1 (sawtooth flanks)."""
    ya, yb = min(y0, y1), max(y0, y1)
    n = max(2, int((yb - ya) / max(pitch, 1.0)))
    ys = np.linspace(ya, yb, 2 * n + 1)
    right = [(cx + half + (tooth if i % 2 else 0.0), y) for i, y in enumerate(ys)]
    left = [(cx - half - (tooth if i % 2 else 0.0), y) for i, y in enumerate(ys[::-1])]
    return np.asarray(right + left)


def _flat_field(scene: Scene, c: dict, clutter: bool) -> np.ndarray:
    S = scene.size
    if not clutter:
        return np.ones((S, S), np.float32)
    f = c["flat"]
    fov = c["fov"]
    n = max(64, S // 4)
    g = (np.arange(n, dtype=np.float32) + 0.5) * (S / n) - 0.5
    X, Y = np.meshgrid(g, g)
    cx, cy, R = fov["cx"], fov["cy"], fov["r"]
    r = np.sqrt((X - cx) ** 2 + (Y - cy) ** 2)
    inner = 1.0 - f["vignette"] * (r / R) ** 2
    inner *= 1.0 + f["grad"] * ((X - cx) * math.cos(f["grad_dir"]) + (Y - cy) * math.sin(f["grad_dir"])) / S
    if fov["on"]:
        mask = np.clip((R - r) / f["edge"] + 0.5, 0.0, 1.0)
        F = f["outside"] + (inner - f["outside"]) * mask
    else:
        F = inner
    return cv2.resize(F.astype(np.float32), (S, S), interpolation=cv2.INTER_LINEAR)


# =========================================================================== detector


def _sample_detector(scene: Scene, rng: np.random.Generator, bit_depth: int) -> dict:
    s = scene.s
    pitch2 = 2 * scene.pitch
    blurry = rng.random() < 0.3
    sigma = (_u(rng, 1.4, 2.6) if blurry else _u(rng, 0.6, 1.4)) * s
    sigma = min(sigma, 0.28 * pitch2)
    motion = rng.random() < 0.12
    d = {
        "sigma": sigma,
        "motion": motion,
        "m_len": _u(rng, 2, 8) * s,
        "m_ang": _u(rng, 0, math.pi),
        "grain": _u(rng, 0.55, 0.68),
        "aniso": _u(rng, 1.0, 1.6),
        "n0": float(math.exp(rng.uniform(math.log(500), math.log(3000)))),
        "read": _u(rng, 0.5, 4.0),
    }
    full = {8: 255.0, 12: 4095.0, 16: 65535.0}[bit_depth]
    r = rng.random()
    lvl = _u(rng, 1.0, 1.12) if r < 0.2 else (_u(rng, 0.85, 1.0) if r < 0.8 else _u(rng, 0.5, 0.85))
    d["bg"] = lvl * full
    # the real 8-bit frames are JPEGs: sometimes round-trip 8-bit output through JPEG
    d["jpeg"] = bit_depth == 8 and rng.random() < 0.5
    d["jpeg_q"] = int(rng.integers(75, 96))
    d["offset"] = _u(rng, 0.0, 0.05) * full
    d["full"] = full
    return d


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    n = int(math.ceil(length)) | 1
    k = np.zeros((n, n), np.float32)
    c = n // 2
    for t in np.linspace(-0.5, 0.5, 4 * n):
        x = c + t * length * math.cos(angle)
        y = c + t * length * math.sin(angle)
        xi, yi = int(round(x)), int(round(y))
        if 0 <= xi < n and 0 <= yi < n:
            k[yi, xi] += 1.0
    return k / k.sum()


# =========================================================================== orientation


def transform_points(pts: np.ndarray, orientation: str, size: int) -> np.ndarray:
    """Canonical [x, y] (tips pointing right) -> image [x, y] for the given orientation."""
    p = np.asarray(pts, np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    W = size - 1
    if orientation == "right":
        out = np.stack([x, y], 1)
    elif orientation == "left":  # horizontal flip
        out = np.stack([W - x, y], 1)
    elif orientation == "up":  # np.rot90(k=1): counter-clockwise
        out = np.stack([y, W - x], 1)
    elif orientation == "down":  # np.rot90(k=-1): clockwise
        out = np.stack([W - y, x], 1)
    else:
        raise ValueError(orientation)
    return out


def _orient_image(img: np.ndarray, orientation: str) -> np.ndarray:
    if orientation == "right":
        return img
    if orientation == "left":
        return cv2.flip(img, 1)
    if orientation == "up":
        return cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    if orientation == "down":
        return cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    raise ValueError(orientation)


# =========================================================================== main entry


def render_debug(
    seed: int,
    index: int,
    opts: SimOptions = SimOptions(),
    *,
    force_defect: str | None = None,
    noise: bool = True,
    clutter: bool = True,
    blur: bool = True,
) -> tuple[SimFrame, dict]:
    """`render_frame` with test/debug hooks.

    force_defect: one of DEFECT_KINDS, or "none" for a healthy stack (overrides the draw).
    noise / clutter / blur: switch off photon+read noise, clutter (clamp, tray, dust, FOV,
    flat field, bands), PSF blur.  The scene (stack geometry and labels) is the same for
    every combination of flags.  Returns (frame, info) with info holding the scene,
    the canonical image and the FOV circle in output coordinates.
    """
    if force_defect is not None and force_defect != "none" and force_defect not in DEFECT_KINDS:
        raise ValueError(f"unknown defect {force_defect!r}")
    S = int(opts.size)
    root = np.random.default_rng([int(seed), int(index)])
    scene_rng, clutter_rng, tex_rng, det_rng, noise_rng = root.spawn(5)
    # the families' own stream: a sixth child, so the five above are the base simulator's
    var = variety.sample_variety(root.spawn(1)[0], tuple(opts.families), float(opts.family_rate))
    scene = sample_scene(
        scene_rng, S, opts.recipe, opts.defect_rate, opts.orientation, opts.mm_per_px, force_defect,
        overrides=variety.scene_overrides(var),
    )
    variety.apply_shapes(scene, var)
    c = _sample_clutter(scene, clutter_rng)
    det = _sample_detector(scene, det_rng, opts.bit_depth)
    variety.adjust_detector(det, scene, var)
    scene.clutter.update(c)
    scene.detector = det

    # -- transmission
    cv = _Canvas(S)
    A, Y0, Y1 = _render_stack(scene, tex_rng)
    if Y1 > Y0:
        cv.T[Y0:Y1] = np.exp(-A)
    if clutter:
        _draw_clutter(cv, scene, c)
        variety.draw_teeth(cv, scene, var)
    shadow = variety.shadow_attenuation(scene, var)
    if shadow is not None:
        cv.T *= np.exp(-shadow)
    I = cv.T
    if clutter:
        cv2.multiply(I, _flat_field(scene, c, clutter), I)
    if clutter and c["bands"]:
        rows = np.arange(S, dtype=np.float32)
        fac = np.ones(S, np.float32)
        for y0, h, amp, soft in c["bands"]:
            t = np.clip(np.minimum(rows - y0, y0 + h - rows) / soft + 0.5, 0, 1)
            fac *= 1.0 + amp * t
        I *= fac[:, None]

    # -- optics / detector blur
    if blur:
        if det["sigma"] > 0.2:
            sx = det["sigma"] * det["aniso"]  # along the layers (canonical x) the tips smear a little more
            I = cv2.GaussianBlur(I, (0, 0), sigmaX=sx, sigmaY=det["sigma"], borderType=cv2.BORDER_REFLECT)
        if det["motion"]:
            I = cv2.filter2D(I, -1, _motion_kernel(det["m_len"], det["m_ang"]), borderType=cv2.BORDER_REFLECT)

    # -- photon + read noise, grain.  I is in units of the open beam (I0 = n0 photons per pixel);
    # the noise sd is sqrt(n0 * I + read^2) / n0 (Gaussian approximation of Poisson).  The unit
    # noise comes from the sum of two uniform bytes (fast; the grain blur makes it Gaussian).
    n0 = det["n0"]
    if noise:
        b = np.frombuffer(noise_rng.bytes(2 * S * S), np.uint8).reshape(2, S, S)
        k = 1.0 / 104.5121  # sd of the sum of two uniform bytes
        z = cv2.addWeighted(b[0], k, b[1], k, -255.0 * k, dtype=cv2.CV_32F)
        sd = cv2.addWeighted(I, 1.0 / n0, I, 0.0, (det["read"] / n0) ** 2)
        cv2.sqrt(sd, sd)
        cv2.multiply(sd, z, sd)
        cv2.add(I, sd, I)
        del z, sd, b
        I = cv2.GaussianBlur(I, (0, 0), det["grain"], borderType=cv2.BORDER_REFLECT)

    gain = variety.gain_field(S, var)
    if gain is not None:
        I *= gain

    # -- window to the output bit depth (+0.5: truncation below rounds)
    full = det["full"]
    out = cv2.addWeighted(I, det["bg"] - det["offset"], I, 0.0, det["offset"] + 0.5)
    np.clip(out, 0.0, full + 0.499, out=out)
    if opts.bit_depth == 8:
        img = out.astype(np.uint8)
        if det["jpeg"] and noise:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, det["jpeg_q"]])
            img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    else:
        img = out.astype(np.uint16)
    img = variety.invert(img, full, var)
    img = _orient_image(img, scene.orientation)

    # -- labels
    orient = scene.orientation
    an = transform_points(scene.tip_points("a"), orient, S)
    ca = transform_points(scene.tip_points("c"), orient, S)
    ov = scene.truth.overhang_mm.copy()
    if orient == "down":
        an, ca, ov = an[::-1].copy(), ca[::-1].copy(), ov[::-1].copy()
    img, (an, ca) = variety.rotate(img, [an, ca], var, margin=0.02 * S)
    frame = SimFrame(
        image=img,
        anode_tips=an,
        cathode_tips=ca,
        expected=scene.truth.expected,
        defects=[scene.defect] if scene.defect else [],
        mm_per_px=float(scene.mm_per_px),
        bit_depth=int(opts.bit_depth),
        orientation=orient,
        overhang_mm=ov,
        families=var.active,
    )
    fov = c["fov"]
    info = {
        "scene": scene,
        "fov": None
        if not (fov["on"] and clutter)
        else {"center": transform_points([[fov["cx"], fov["cy"]]], orient, S)[0], "r": fov["r"]},
        "detector": det,
        "reasons": list(scene.truth.reasons),
    }
    return frame, info


def render_frame(seed: int, index: int, opts: SimOptions = SimOptions()) -> SimFrame:
    """Render frame `index` of the simulated stream `seed` (deterministic)."""
    return render_debug(seed, index, opts)[0]

