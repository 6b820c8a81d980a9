"""Scene geometry of the X-ray simulator: the stack of layers, its defects and the ground truth.

Everything here lives in the *canonical frame*: layers horizontal, tips pointing
right (+x), pixel centres at integer coordinates, square image of side ``S``.
The renderer (``render.py``) turns a :class:`Scene` into pixels and rotates the
result to the requested orientation.

Coordinates
-----------
``u`` is the position of a layer across the stack *before bending* (canonical
y of a straight stack).  The stack is bent and tilted by a smooth warp
``y = u + delta(u, x)`` (:class:`Warp`), monotonic in ``u`` for every ``x``.
A layer's centre line is ``y(x) = u_k + delta(u_k, x)``.

Tip definitions (docs/contracts.md §1), computed from the geometry, never from pixels
---------------------------------------------------------------------------
* anode: the point on the centre line where the layer's own attenuation
  (mu * t along the line) has fallen to 25 % of its plateau (foot of the taper);
* cathode: where its thickness along the centre line is 50 % (half-maximum of
  its edge).

The overhang of a cathode is ``x_anode_tip - x_cathode_tip`` (along the layer
axis) for the nearest anode before it and the nearest anode after it in the
stack sequence (the existing one on both sides when one is missing, the same
pairing as ``inspectd.inspection.measure``); the verdict uses the smaller one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from inspectd.config import RecipeConfig

ORIENTATIONS = ("right", "left", "up", "down")
DEFECT_KINDS = ("overhang_short", "overhang_long", "missing_layer", "extra_layer", "folded_tip")

# Margins that keep healthy frames clearly inside the recipe and defects clearly outside.
HEALTHY_MARGIN_MIN_MM = 0.15
HEALTHY_MARGIN_MAX_MM = 0.30

__all__ = [
    "DEFECT_KINDS",
    "ORIENTATIONS",
    "Fold",
    "Layer",
    "Scene",
    "Truth",
    "Warp",
    "anode_profile",
    "cathode_profile",
    "judge_truth",
    "sample_scene",
]


# --------------------------------------------------------------------------- profiles


def taper_foot_fraction(q: float) -> float:
    """Fraction xi* of the taper length at which (1 - xi)^q == 0.25."""
    return 1.0 - 0.25 ** (1.0 / q)


def anode_profile(x: np.ndarray, layer: Layer) -> np.ndarray:
    """Along-layer attenuation of an anode's main strand at x (no cross-section), float64."""
    x = np.asarray(x, dtype=np.float64)
    xs = layer.taper_start
    xi = np.clip((x - xs) / layer.taper, 0.0, 1.0)
    f = (1.0 - xi) ** layer.q
    # extra darkening toward the stack body (left of the taper)
    dark = 1.0 + layer.darken * np.clip((xs - x) / layer.darken_len, 0.0, 1.0)
    return layer.a * f * dark


def cathode_profile(x: np.ndarray, layer: Layer) -> np.ndarray:
    """Along-layer thickness of a cathode as a fraction of its full thickness: a shoulder (the block
    thins by `shoulder` over `shoulder_len` before its edge), then a linear edge of width `taper`
    centred on the tip.  At the tip the thickness is half of the level just before the edge."""
    x = np.asarray(x, dtype=np.float64)
    edge = np.clip((layer.tip - x) / layer.taper + 0.5, 0.0, 1.0)
    x_e = layer.tip - 0.5 * layer.taper  # edge starts here
    sh = 1.0 - layer.shoulder * np.clip((x - (x_e - layer.shoulder_len)) / layer.shoulder_len, 0.0, 1.0)
    return edge * sh


def coverage(half_width, dist):
    """Fraction of a unit pixel (along the stack) covered by a band of half-width `half_width` at distance `dist`."""
    return np.clip(half_width + 0.5 - np.abs(dist), 0.0, 1.0)


# --------------------------------------------------------------------------- data


@dataclass
class Fold:
    """Folded-back end of an anode: a strand running back from the fold toward the body."""

    x_end: float  # where the material ends (the fold), canonical x
    length: float  # length of the returning strand
    offset: float  # signed u offset of the strand from the layer centre
    radius: float  # x distance over which the strand joins the main line at the fold
    w: float  # strand thickness
    a: float  # strand attenuation

    def centre(self, x: np.ndarray, u0: float) -> np.ndarray:
        t = np.clip((self.x_end - x) / self.radius, 0.0, 1.0)
        return u0 + self.offset * np.sqrt(t)


@dataclass(frozen=True)
class Fork:
    """A shorter second prong splitting off an anode's strand (a forked tip); the labelled tip stays the
    strand's own 25 % foot, the layer's farthest end (the labelling convention for forked layers)."""

    off: float  # u displacement of the prong's end, px
    start: float  # x where it leaves the strand
    end: float  # x where it ends (before the labelled tip)
    a: float  # its darkness, as a share of the strand's at the same x


@dataclass
class Layer:
    kind: str  # "a" anode | "c" cathode
    u: float  # centre across the stack (before bending)
    w: float  # thickness, px
    a: float  # plateau attenuation (mu * t)
    tip: float  # labelled tip x (canonical)
    taper: float  # anode: taper length; cathode: edge width (px)
    q: float = 1.0  # anode taper exponent: f = (1 - xi)^q
    darken: float = 0.0  # anode: relative extra attenuation toward the body
    widen: float = 0.0  # anode: relative extra width per unit of darken
    darken_len: float = 1.0
    narrow: float = 0.35  # relative loss of width over the taper (anode) / edge (cathode)
    shoulder: float = 0.0  # cathode: relative thinning before the edge
    shoulder_len: float = 1.0
    fold: Fold | None = None
    curl: float = 0.0  # anode: u displacement of the strand's end (bent tip), growing as t^2 over the taper
    fork: Fork | None = None  # anode: a second, shorter prong (forked tip)
    label: bool = True  # False: not visible/labelled (reserved; the sampler keeps every tip labelled)

    @property
    def taper_start(self) -> float:
        """Anode: x where the taper begins."""
        if self.fold is not None:
            return self.fold.x_end - self.taper
        return self.tip - taper_foot_fraction(self.q) * self.taper

    def curl_offset(self, x):
        """u displacement of a bent anode's centre line at x (0 before its taper)."""
        if self.curl == 0.0:
            return np.zeros_like(np.asarray(x, np.float64))
        t = np.clip((np.asarray(x, np.float64) - self.taper_start) / max(self.x_end - self.taper_start, 1.0), 0.0, 1.0)
        return self.curl * t * t

    @property
    def x_end(self) -> float:
        """Right-most x with material."""
        if self.kind == "c":
            return self.tip + 0.5 * self.taper
        return self.taper_start + self.taper


@dataclass
class Warp:
    """y = u + delta(u, x): global tilt/bow plus bending of the outer layers near the tips."""

    x_ref: float  # anode tip column (where tilt/bow are zero)
    tilt: float
    bow: float  # px of displacement at |x - x_ref| = S
    size: int
    u_mid: float
    half: float  # half-height of the stack (u units)
    bend: float  # displacement (px) of the outermost layer at x = x_ref (+: toward the middle plane)
    power: float
    x_bend0: float  # bending starts here
    bend_sat: float = 0.8  # beyond the tips the bending saturates at 1 + 2 * bend_sat

    def _g(self, x):
        """0 left of x_bend0, t^2 up to the tips (t = 1), then saturating smoothly (C1) at 1 + 2k."""
        t = np.maximum((np.asarray(x, np.float64) - self.x_bend0) / max(self.x_ref - self.x_bend0, 1.0), 0.0)
        k = self.bend_sat
        return np.where(t <= 1.0, t * t, 1.0 + 2.0 * k * (1.0 - np.exp(-(t - 1.0) / k)))

    def _lin(self, x):
        dx = np.asarray(x, np.float64) - self.x_ref
        return self.tilt * dx + self.bow * (dx / self.size) ** 2

    def _phi(self, u):
        v = (np.asarray(u, np.float64) - self.u_mid) / self.half
        av = np.abs(v)
        p = self.power
        inner = av**p
        outer = 1.0 + p * (av - 1.0)
        return -np.sign(v) * np.where(av <= 1.0, inner, outer)

    def _dphi(self, u):
        v = (np.asarray(u, np.float64) - self.u_mid) / self.half
        av = np.abs(v)
        p = self.power
        d = np.where(av <= 1.0, p * av ** (p - 1.0), p)
        return -d / self.half

    def delta(self, u, x):
        return self._lin(x) + self.bend * self._g(x) * self._phi(u)

    def y(self, u, x):
        return np.asarray(u, np.float64) + self.delta(u, x)

    def inverse(self, y, x, iters: int = 6):
        """u such that y(u, x) == y (Newton; y, x broadcastable), float64."""
        y = np.asarray(y, np.float64)
        x = np.asarray(x, np.float64)
        lin = self._lin(x)
        bg = self.bend * self._g(x)
        u = y - lin
        for _ in range(iters):
            f = u + lin + bg * self._phi(u) - y
            df = 1.0 + bg * self._dphi(u)
            u = u - f / df
        return u

    def inverse_grid(self, ys: np.ndarray, xs: np.ndarray, du: float = 0.5) -> np.ndarray:
        """u(y, x) on the grid ys (rows) x xs (columns): forward warp on a fine u grid, inverted
        column by column by interpolation (y(u) is monotonic).  Shape (len(ys), len(xs)), float64."""
        ys = np.asarray(ys, np.float64)
        xs = np.asarray(xs, np.float64)
        probe_u = np.array([ys[0], ys[-1]])
        dmax = float(np.max(np.abs(self.delta(probe_u[:, None], xs[None, :]))))
        u = np.arange(ys[0] - 2 * dmax - 4.0, ys[-1] + 2 * dmax + 4.0 + du, du)
        phi = self._phi(u)
        lin = self._lin(xs)
        bg = self.bend * self._g(xs)
        out = np.empty((len(ys), len(xs)), np.float64)
        for j in range(len(xs)):
            out[:, j] = np.interp(ys, u + lin[j] + bg[j] * phi, u)
        return out

    def max_slope(self) -> float:
        """Largest |d delta / d u| (must stay < 1 for a monotonic warp)."""
        return abs(self.bend) * (1.0 + 2.0 * self.bend_sat) * self.power / self.half


@dataclass
class Truth:
    expected: str
    overhang_mm: np.ndarray  # (Nc,) min overhang per cathode, stack order
    overhang_pair_mm: np.ndarray  # (Nc, 2) before/after
    reasons: list[str]


@dataclass
class Scene:
    size: int
    s: float  # size / 1000
    mm_per_px: float
    orientation: str
    defect: str | None
    layers: list[Layer]  # stack order (top -> bottom in the canonical frame)
    warp: Warp
    pitch: float  # adjacent-layer spacing d
    body: dict
    films: list[dict]  # extra faint layers outside the stack (pouch/film), each {u, w, a, x_end}
    separators: list[dict]  # {u, w, a, x0, x1, x_tip, slope}
    clutter: dict = field(default_factory=dict)
    detector: dict = field(default_factory=dict)
    truth: Truth | None = None
    extra: dict = field(default_factory=dict)

    # ----------------------------------------------------------------- tips
    def tip_points(self, kind: str) -> np.ndarray:
        """(N, 2) canonical [x, y] of the labelled tips of one class, stack order."""
        pts = [
            (ly.tip, float(self.warp.y(ly.u + ly.curl_offset(ly.tip), ly.tip)))
            for ly in self.layers
            if ly.kind == kind and ly.label
        ]
        return np.asarray(pts, dtype=np.float64).reshape(-1, 2)

    def u_range(self) -> tuple[float, float]:
        lo = min(ly.u - ly.w / 2 for ly in self.layers)
        hi = max(ly.u + ly.w / 2 for ly in self.layers)
        for f in self.films:
            lo = min(lo, f["u"] - f["w"] / 2)
            hi = max(hi, f["u"] + f["w"] / 2)
        return lo, hi


# --------------------------------------------------------------------------- truth


def judge_truth(kinds: list[str], tips_x: list[float], recipe: RecipeConfig, mm_per_px: float) -> Truth:
    """Verdict from the ground-truth sequence (stack order) and along-layer tip positions.

    Same pairing as ``inspectd.inspection.measure``: every cathode takes the nearest
    anode before and after it in the sequence (the existing one on both sides
    when one side has none).
    """
    n = len(kinds)
    reasons: list[str] = []
    ov_pair = []
    for i, k in enumerate(kinds):
        if k != "c":
            continue
        before = next((tips_x[j] for j in range(i - 1, -1, -1) if kinds[j] == "a"), None)
        after = next((tips_x[j] for j in range(i + 1, n) if kinds[j] == "a"), None)
        if before is None:
            before = after
        if after is None:
            after = before
        if before is None:
            ov_pair.append((math.nan, math.nan))
        else:
            ov_pair.append(((before - tips_x[i]) * mm_per_px, (after - tips_x[i]) * mm_per_px))
    pair = np.asarray(ov_pair, dtype=np.float64).reshape(-1, 2)
    ov = pair.min(axis=1) if len(pair) else np.zeros(0)
    lo, hi = recipe.overhang_min_mm, recipe.overhang_max_mm
    for k, v in enumerate(ov):
        if not np.isfinite(v):
            reasons.append(f"cathode {k}: no anode")
        elif v < lo:
            reasons.append(f"OVERHANG_MIN cathode {k}: {v:.3f} mm")
        elif v > hi:
            reasons.append(f"OVERHANG_MAX cathode {k}: {v:.3f} mm")
    na, nc = kinds.count("a"), kinds.count("c")
    if na != nc + recipe.anode_excess:
        reasons.append(f"COUNT_MISMATCH {na} anodes, {nc} cathodes")
    for i in range(1, n):
        if kinds[i] == kinds[i - 1]:
            reasons.append(f"ALTERNATION at {i} ({kinds[i]})")
    if recipe.layers_min is not None and nc < recipe.layers_min:
        reasons.append(f"LAYERS_MIN {nc}")
    if recipe.layers_max is not None and nc > recipe.layers_max:
        reasons.append(f"LAYERS_MAX {nc}")
    if na == 0 or nc == 0:
        reasons.append("NO_TIPS")
    return Truth(expected="NG" if reasons else "OK", overhang_mm=ov, overhang_pair_mm=pair, reasons=reasons)


# --------------------------------------------------------------------------- sampling helpers


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _fold_label(layer: Layer, n: int = 2001) -> float:
    """Numeric anode tip (25 % foot) of a folded anode: main strand + returning strand on the centre line."""
    f = layer.fold
    assert f is not None
    x = np.linspace(layer.taper_start - 2.0 * layer.taper - 4.0, f.x_end + 2.0, n)
    main = anode_profile(x, layer)
    xi = np.clip((x - layer.taper_start) / layer.taper, 0, 1)
    strand_amp = f.a * np.where(x < layer.taper_start, 1.0, (1.0 - xi) ** layer.q)
    strand_amp *= np.clip((x - (f.x_end - f.length)) / 2.0, 0.0, 1.0)
    cov = coverage(f.w / 2, f.centre(x, layer.u) - layer.u)
    total = main + strand_amp * cov
    above = np.flatnonzero(total >= 0.25 * layer.a)
    i = int(above[-1])
    if i + 1 >= n:
        return float(x[-1])
    # linear interpolation of the last crossing
    x0, x1, v0, v1 = x[i], x[i + 1], total[i], total[i + 1]
    t = (v0 - 0.25 * layer.a) / max(v0 - v1, 1e-12)
    return float(x0 + t * (x1 - x0))


def _healthy_px(recipe: RecipeConfig, mpp: float) -> tuple[float, float]:
    lo = (recipe.overhang_min_mm + HEALTHY_MARGIN_MIN_MM) / mpp
    hi = (recipe.overhang_max_mm - HEALTHY_MARGIN_MAX_MM) / mpp
    if hi <= lo:  # degenerate recipe: aim at the middle of the OK range
        mid = 0.5 * (recipe.overhang_min_mm + recipe.overhang_max_mm) / mpp
        lo = hi = mid
    return lo, hi


def _short_target_mm(recipe: RecipeConfig, rng) -> float:
    lo_mm = recipe.overhang_min_mm
    hi_t = lo_mm - max(0.12, 0.35 * lo_mm)
    lo_t = max(0.1 * lo_mm, hi_t - 0.3) if hi_t > 0.05 else hi_t - 0.3
    return _u(rng, lo_t, hi_t)


def _long_target_mm(recipe: RecipeConfig, rng) -> float:
    m = recipe.overhang_max_mm
    return _u(rng, m + max(0.35, 0.08 * m), m + max(1.1, 0.25 * m))


def _neighbour_anode_tips(kinds, xs, i):
    n = len(kinds)
    b = next((xs[j] for j in range(i - 1, -1, -1) if kinds[j] == "a"), None)
    a = next((xs[j] for j in range(i + 1, n) if kinds[j] == "a"), None)
    return [v for v in (b, a) if v is not None]


# --------------------------------------------------------------------------- the sampler


def sample_scene(
    rng: np.random.Generator,
    size: int,
    recipe: RecipeConfig,
    defect_rate: float,
    orientation: str,
    mm_per_px: float | None,
    force_defect: str | None = None,
    overrides: dict | None = None,
) -> Scene:
    """Draw one scene.  `overrides` (from `variety.scene_overrides`) may set the pitch in px
    (`pitch_px`) and the cathode count (`nc`); the base draws are made all the same.  The draws do not depend on `orientation` (nor on the render flags), so
    one (seed, index) gives the same stack in every orientation.  Defect-specific draws come from
    their own stream, so a forced defect changes the stack as little as the defect requires."""
    S = int(size)
    s = S / 1000.0
    mpp = float(mm_per_px) if mm_per_px is not None else 0.02 / s

    # -- draws that must happen in a fixed order ------------------------------------
    o_draw = ORIENTATIONS[int(rng.integers(4))]
    has_defect = bool(rng.random() < defect_rate)
    kind_draw = DEFECT_KINDS[int(rng.integers(len(DEFECT_KINDS)))]
    drng = np.random.default_rng(int(rng.integers(2**63)))  # defect-specific draws
    if orientation == "any":
        orient = o_draw
    elif orientation in ORIENTATIONS:
        orient = orientation
    else:
        raise ValueError(f"orientation must be 'any' or one of {ORIENTATIONS}, got {orientation!r}")
    if force_defect is not None:
        if force_defect == "none":
            defect = None
        elif force_defect in DEFECT_KINDS:
            defect = force_defect
        else:
            raise ValueError(f"unknown defect {force_defect!r}; choose from {DEFECT_KINDS} or 'none'")
    else:
        defect = kind_draw if has_defect else None

    # -- stack size and density --------------------------------------------------------
    lo_n = recipe.layers_min if recipe.layers_min is not None else 15
    hi_n = recipe.layers_max if recipe.layers_max is not None else 70
    if recipe.layers_min is None and recipe.layers_max is not None:
        lo_n = min(15, hi_n)
    if recipe.layers_max is None and recipe.layers_min is not None:
        hi_n = max(70, lo_n)
    lo_n, hi_n = max(2, lo_n), max(2, hi_n)
    # most real frames show ~20 cathodes; the tail goes to many thin layers
    if rng.random() < 0.6:
        nc = int(rng.integers(lo_n, max(lo_n, min(hi_n, 32)) + 1))
    else:
        nc = int(rng.integers(lo_n, hi_n + 1))
    zoom = rng.random() < 0.15  # YXTP-like stations: coarser pitch, longer overhang
    d = (_u(rng, 6.0, 7.5) if zoom else _u(rng, 4.0, 6.0)) * s
    ov_ = overrides or {}
    if "nc" in ov_:
        nc = int(np.clip(int(ov_["nc"]), lo_n, hi_n))
    if "pitch_px" in ov_:
        d = float(ov_["pitch_px"])
    # the stack must fit well inside the field of view
    max_height = 0.62 * S
    if 2 * nc * d > max_height:
        d = max(min(3.4 * s, d), max_height / (2 * nc))
        if 2 * nc * d > max_height:
            nc = max(lo_n if lo_n * 2 * d <= max_height else 2, int(max_height / (2 * d)))
    excess = recipe.anode_excess if recipe.anode_excess in (-1, 0, 1) else 1

    # -- sequence of kinds -------------------------------------------------------------
    if excess == 1:
        kinds = ["a"] + ["c", "a"] * nc
    elif excess == 0:
        kinds = ["a", "c"] * nc
    else:  # -1
        kinds = ["c"] + ["a", "c"] * (nc - 1)
    special: dict = {}
    # gaps[i] = spacing between element i-1 and i (gaps[0] unused)
    gaps = [0.0] + [d * _u(rng, 0.94, 1.06) for _ in range(len(kinds) - 1)]
    c_idx = [i for i, k in enumerate(kinds) if k == "c"]
    a_idx = [i for i, k in enumerate(kinds) if k == "a"]
    pos_draw = drng.random()  # which layer the defect hits (fraction along the stack)
    var_draw = drng.random()  # variant draw for extra_layer
    if defect == "missing_layer":
        inner = [i for i in c_idx if 0 < i < len(kinds) - 1] or c_idx
        j = inner[min(int(pos_draw * len(inner)), len(inner) - 1)]
        kinds.pop(j)
        gaps.pop(j)
        gaps[j] = 2 * d * _u(drng, 0.5, 0.8)  # the two anodes close up where the cathode is missing
        special["missing_after"] = j - 1
    elif defect == "extra_layer":
        if var_draw < 0.5:  # extra cathode next to a cathode
            j = c_idx[min(int(pos_draw * len(c_idx)), len(c_idx) - 1)]
            kinds.insert(j + 1, "c")
            gaps.insert(j + 1, d * _u(drng, 0.75, 0.95))
            special["extra_at"] = j + 1
        else:  # extra anode next to an anode
            inner = [i for i in a_idx if 0 < i < len(kinds) - 1] or a_idx
            j = inner[min(int(pos_draw * len(inner)), len(inner) - 1)]
            kinds.insert(j + 1, "a")
            gaps.insert(j + 1, d * _u(drng, 0.6, 0.8))
            special["extra_at"] = j + 1
    n = len(kinds)
    u_rel = np.cumsum(np.asarray(gaps))

    # -- thickness and attenuation ------------------------------------------------------
    w_a = float(np.clip(2 * d * _u(rng, 0.30, 0.40), 2.4 * s, 5.5 * s))
    g_s = _u(rng, 0.2, 0.7) * s  # separator gap between anode and cathode
    w_c = max(1.5 * s, 2 * d - w_a - 2 * g_s)
    a_anode = _u(rng, 0.7, 1.4)
    a_cath = _u(rng, 1.4, 2.5)
    taper_len = _u(rng, 12.0, 30.0) * s * (1.3 if zoom else 1.0)
    q_base = _u(rng, 0.8, 1.5)
    darken = _u(rng, 0.0, 0.8)
    darken_len = _u(rng, 20.0, 100.0) * s
    widen = _u(rng, 0.0, 0.6)
    a_cath = max(a_cath, 1.15 * a_anode * (1.0 + darken))  # cathode blocks stay darker than anode lines
    narrow = _u(rng, 0.3, 0.6)
    c_edge = _u(rng, 5.0, 11.0) * s
    c_narrow = _u(rng, 0.0, 0.5)
    c_shoulder = _u(rng, 0.35, 0.65)
    c_shoulder_len = _u(rng, 10.0, 28.0) * s

    # -- tip positions along x (relative to the mean anode tip at 0) -------------------------
    lo_px, hi_px = _healthy_px(recipe, mpp)
    if zoom:
        ov_pref = (_u(rng, 80.0, 160.0)) * s
    else:
        ov_pref = (_u(rng, 35.0, 100.0)) * s
    sj_a = _u(rng, 1.2, 3.5) * s
    sj_c = _u(rng, 0.8, 2.5) * s
    margin = 2.5 * math.hypot(sj_a, sj_c) + 1.0
    if hi_px - lo_px > 2 * margin:
        ov_base = float(np.clip(ov_pref, lo_px + margin, hi_px - margin))
    else:
        ov_base = 0.5 * (lo_px + hi_px)
    trend_a = _u(rng, -6, 6) * s
    trend_a2 = _u(rng, -5, 5) * s
    trend_c = _u(rng, -4, 4) * s
    t_norm = np.linspace(-1.0, 1.0, n)
    jit = rng.standard_normal(n)
    xs = np.zeros(n)
    for i, k in enumerate(kinds):
        if k == "a":
            xs[i] = trend_a * t_norm[i] + trend_a2 * (t_norm[i] ** 2 - 0.33) + sj_a * jit[i]
        else:
            xs[i] = -ov_base + trend_c * t_norm[i] + sj_c * jit[i]
    # rounded stack corner: the outermost cathodes retreat a little
    corner = rng.random()
    corner_n = int(rng.integers(2, 7))
    corner_r = _u(rng, 8.0, 45.0) * s
    c_pos = [i for i, k in enumerate(kinds) if k == "c"]
    if corner < 0.3 and len(c_pos) > 2 * corner_n:
        top_side = rng.random() < 0.6
        seq = c_pos[:corner_n] if top_side else c_pos[::-1][:corner_n]
        for r, i in enumerate(seq):
            xs[i] -= corner_r * (1.0 - r / corner_n) ** 2
    else:
        rng.random()
    # keep every cathode clearly inside the healthy band
    for i, k in enumerate(kinds):
        if k != "c":
            continue
        nb = _neighbour_anode_tips(kinds, xs, i)
        if not nb:
            continue
        ref = min(nb)
        ov = ref - xs[i]
        if ov < lo_px:
            xs[i] = ref - (lo_px + _u(rng, 0.3, 2.0) * s)
        elif ov > hi_px:
            xs[i] = ref - (hi_px - _u(rng, 0.3, 2.0) * s)

    # -- per-layer objects ------------------------------------------------------------
    layers: list[Layer] = []
    lj = rng.uniform(0.9, 1.1, size=(n, 2))
    qj = rng.uniform(0.85, 1.15, size=n)
    tj = rng.uniform(0.8, 1.25, size=n)
    for i, k in enumerate(kinds):
        if k == "a":
            layers.append(
                Layer(
                    kind="a",
                    u=float(u_rel[i]),
                    w=w_a * lj[i, 0],
                    a=a_anode * lj[i, 1],
                    tip=float(xs[i]),
                    taper=taper_len * tj[i],
                    q=float(np.clip(q_base * qj[i], 0.6, 2.0)),
                    darken=darken,
                    darken_len=darken_len,
                    widen=widen,
                    narrow=narrow,
                )
            )
        else:
            layers.append(
                Layer(
                    kind="c",
                    u=float(u_rel[i]),
                    w=w_c * lj[i, 0],
                    a=a_cath * lj[i, 1],
                    tip=float(xs[i]),
                    taper=c_edge * tj[i],
                    narrow=c_narrow,
                    shoulder=c_shoulder,
                    shoulder_len=c_shoulder_len,
                )
            )
    # adjacent cathodes (extra_layer): no anode between them, thinner blocks
    for i in range(1, n):
        if kinds[i] == kinds[i - 1] == "c":
            for j in (i - 1, i):
                layers[j].w = min(layers[j].w, gaps[i] - g_s)
        if kinds[i] == kinds[i - 1] == "a":
            for j in (i - 1, i):
                layers[j].w = min(layers[j].w, max(1.5 * s, gaps[i] - 0.8 * s))

    # -- defects on the tips ------------------------------------------------------------
    c_layers = [i for i, k in enumerate(kinds) if k == "c"]
    if defect in ("overhang_short", "overhang_long"):
        i = c_layers[min(int(pos_draw * len(c_layers)), len(c_layers) - 1)]
        nb = _neighbour_anode_tips(kinds, xs, i)
        target = _short_target_mm(recipe, drng) if defect == "overhang_short" else _long_target_mm(recipe, drng)
        layers[i].tip = min(nb) - target / mpp
        special["defect_layer"] = i
    elif defect == "folded_tip":
        cand = [i for i in range(1, n - 1) if kinds[i] == "a" and kinds[i - 1] == "c" and kinds[i + 1] == "c"]
        if not cand:
            cand = [i for i in range(n) if kinds[i] == "a"]
        i = cand[min(int(pos_draw * len(cand)), len(cand) - 1)]
        ly = layers[i]
        cath = [layers[j].tip for j in (i - 1, i + 1) if 0 <= j < n and kinds[j] == "c"]
        cath = cath or [layers[j].tip for j in c_layers]
        target = max(cath) + _short_target_mm(recipe, drng) / mpp
        short_taper = _u(drng, 2.0, 4.0) * s
        ly.q = 1.0
        ly.taper = short_taper
        x_end = target + 0.25 * short_taper
        side = 1.0 if drng.random() < 0.5 else -1.0
        ly.fold = Fold(
            x_end=x_end,
            length=_u(drng, 15.0, 50.0) * s,
            offset=side * ly.w * _u(drng, 0.7, 1.0),
            radius=_u(drng, 3.0, 6.0) * s,
            w=ly.w * _u(drng, 0.6, 0.85),
            a=ly.a * _u(drng, 0.7, 1.0),
        )
        # the returning strand darkens the line near the fold, which can move the 25 % foot a little
        # right of the target: pull the fold back until both neighbours are clearly short
        ly.tip = _fold_label(ly)
        lim = max(cath) + (recipe.overhang_min_mm - 0.1) / mpp
        for _ in range(8):
            if ly.tip <= lim:
                break
            ly.fold.x_end -= ly.tip - lim + 0.5
            ly.tip = _fold_label(ly)
        special["defect_layer"] = i

    # -- separators and films -------------------------------------------------------------
    sep_strength = _u(rng, 0.02, 0.07) if rng.random() < 0.75 else _u(rng, 0.07, 0.16)
    separators = []
    for i, ly in enumerate(layers):
        if ly.kind != "a":
            continue
        for side in (-1.0, 1.0):
            L = _u(rng, 20.0, 200.0) * s
            separators.append(
                {
                    "u": ly.u + side * (ly.w / 2 + g_s / 2),
                    "w": max(0.8, g_s * _u(rng, 0.8, 1.4)),
                    "a": sep_strength * _u(rng, 0.6, 1.3),
                    "x_tip": ly.x_end,
                    "x1": ly.x_end + L,
                    "slope": float(rng.normal(0.0, 0.015)) * (1.0 if rng.random() < 0.5 else 0.3),
                }
            )
    films = []
    n_film_top, n_film_bot = int(rng.integers(0, 3)), int(rng.integers(0, 3))
    u_top = float(u_rel[0]) - layers[0].w / 2
    u_bot = float(u_rel[-1]) + layers[-1].w / 2
    for side, nf in ((-1.0, n_film_top), (1.0, n_film_bot)):
        edge = u_top if side < 0 else u_bot
        for _ in range(nf):
            w = _u(rng, 1.5, 10.0) * s
            gap = _u(rng, 0.5, 3.0) * s
            u = edge + side * (gap + w / 2)
            edge = u + side * w / 2
            films.append({"u": u, "w": w, "a": _u(rng, 0.04, 0.25), "x_end": _u(rng, -15.0, 120.0) * s})

    # -- stack body (overlap + casing), darker toward the far side -------------------------------
    body = {
        "gap": _u(rng, 5.0, 70.0) * s,  # body starts this far left of the shortest cathode
        "len": _u(rng, 30.0, 160.0) * s,
        "a": _u(rng, 1.5, 3.0),
        "a_far": _u(rng, 0.0, 1.5),
        "row_var": _u(rng, 0.0, 0.25),
    }

    # -- bending and tilt ------------------------------------------------------------------
    half = max(0.5 * (u_rel[-1] - u_rel[0]), 4 * d)
    bend_sign = 1.0 if rng.random() < 0.8 else -0.4
    warp = Warp(
        x_ref=0.0,  # set at placement
        tilt=float(rng.normal(0.0, 0.006)),
        bow=_u(rng, -0.02, 0.02) * S,
        size=S,
        u_mid=0.0,
        half=half,
        bend=bend_sign * _u(rng, 0.0, 7.0) * s,
        power=_u(rng, 1.5, 4.0),
        x_bend0=0.0,
    )
    bend_start = _u(rng, 10.0, 220.0) * s
    # keep the warp monotonic
    if warp.max_slope() > 0.6:
        warp.bend *= 0.6 / warp.max_slope()

    # fill between anodes (separators, electrolyte), separator-shadow streaks past the tips
    fill = _u(rng, 0.02, 0.12)
    fill_ramp = _u(rng, 0.0, 2.0)
    streak_a = _u(rng, 0.015, 0.06) if rng.random() < 0.7 else _u(rng, 0.06, 0.12)
    streaks = {"a": streak_a, "len": _u(rng, 60.0, 300.0) * s, "sig": _u(rng, 0.4, 0.9) * s}

    scene = Scene(
        size=S,
        s=s,
        mm_per_px=mpp,
        orientation=orient,
        defect=defect,
        layers=layers,
        warp=warp,
        pitch=d,
        body=body,
        films=films,
        separators=separators,
        extra={
            "special": special,
            "zoom": zoom,
            "fill": fill,
            "fill_ramp": fill_ramp,
            "streaks": streaks,
            "w_a": w_a,
            "w_c": w_c,
            "g_s": g_s,
            "bend_start": bend_start,
        },
    )
    _place(scene, rng)
    kinds_l = [ly.kind for ly in scene.layers]
    scene.truth = judge_truth(kinds_l, [ly.tip for ly in scene.layers], recipe, mpp)
    return scene


# --------------------------------------------------------------------------- placement


def _shift(scene: Scene, dx: float, du: float) -> None:
    for ly in scene.layers:
        ly.u += du
        ly.tip += dx
        if ly.fold is not None:
            ly.fold.x_end += dx
    for f in scene.films:
        f["u"] += du
        f["x_end"] += dx
    for sp in scene.separators:
        sp["u"] += du
        sp["x_tip"] += dx
        sp["x1"] += dx


def _tips_y_ordered(scene: Scene) -> bool:
    ys = np.array([scene.warp.y(ly.u, ly.tip) for ly in scene.layers], dtype=np.float64)
    return bool(np.all(np.diff(ys) > 0.3 * scene.pitch))


def _place(scene: Scene, rng: np.random.Generator) -> None:
    """Put the stack into the frame, pick the field of view; all tips stay inside both."""
    S, s = scene.size, scene.s
    lay = scene.layers
    # canonical: mean anode tip at x = 0, stack from u = 0 down; centre it first
    u_mid0 = 0.5 * (lay[0].u + lay[-1].u)
    x_a = np.array([ly.tip for ly in lay if ly.kind == "a"])
    x_ref0 = float(np.mean(x_a)) if len(x_a) else 0.0
    x_min_tip = min(ly.tip for ly in lay)
    x_max_end = max(ly.x_end for ly in lay)
    has_fov = rng.random() < 0.85
    fov_r = _u(rng, 0.45, 0.6) * S
    fov_c = (S / 2 + float(rng.normal(0, 0.02 * S)), S / 2 + float(rng.normal(0, 0.02 * S)))
    height = lay[-1].u - lay[0].u
    edge_margin = 0.035 * S
    fov_margin = 0.035 * S
    best = None
    draws = rng.uniform(size=(200, 2))
    for k in range(200):
        X = (0.42 + 0.38 * draws[k, 0]) * S
        Y = (0.30 + 0.40 * draws[k, 1]) * S
        dx = X - x_ref0
        pts_x = np.array([x_min_tip, x_max_end + 4 * s]) + dx
        pts_y = np.array([Y - height / 2 - 6 * s, Y + height / 2 + 6 * s])
        px, py = np.meshgrid(pts_x, pts_y)
        inside = (px.min() > edge_margin) and (px.max() < S - edge_margin)
        inside &= (py.min() > edge_margin) and (py.max() < S - edge_margin)
        if has_fov:
            r = np.hypot(px - fov_c[0], py - fov_c[1])
            inside &= bool(r.max() < fov_r - fov_margin)
        if inside:
            best = (X, Y)
            break
    if best is None:
        # fall back: centre the tips in the frame and drop the FOV limit where needed
        best = (0.6 * S, 0.5 * S)
        if has_fov:
            dx_far = max(abs(best[0] + x_max_end - x_ref0 - fov_c[0]), abs(best[0] + x_min_tip - x_ref0 - fov_c[0]))
            need = math.hypot(dx_far, height / 2 + 6 * s) + fov_margin
            fov_r = max(fov_r, need)
    X, Y = best
    _shift(scene, X - x_ref0, Y - u_mid0)
    w = scene.warp
    w.x_ref = X
    w.u_mid = Y
    w.x_bend0 = X - _ov_guess(scene) - scene.extra["bend_start"]
    for _ in range(10):
        if _tips_y_ordered(scene):
            break
        w.bend *= 0.6
    else:
        w.bend = 0.0
    scene.clutter["fov"] = {"on": has_fov, "cx": fov_c[0], "cy": fov_c[1], "r": fov_r}


def _ov_guess(scene: Scene) -> float:
    xa = [ly.tip for ly in scene.layers if ly.kind == "a"]
    xc = [ly.tip for ly in scene.layers if ly.kind == "c"]
    if not xa or not xc:
        return 0.0
    return float(np.median(xa) - np.median(xc))
