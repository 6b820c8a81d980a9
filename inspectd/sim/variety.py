"""Domain randomisation for the simulator: scene *families* a renderer alone would never teach (#16).

A model trained on one renderer learns the renderer. Each family here widens
one axis of the scene distribution that real stations and other simulators
show and ours did not: tip shapes, layer pitch and density, periodic clutter
near the stack, shadows across the tips, optics, dose, gain drift, small
rotations and inverted polarity. They are named so that training can hold
whole families out and evaluation can score on them (leave-one-family-out).

`SimOptions.families` lists the families that may appear and
`SimOptions.family_rate` how often each one does; the default (none) leaves
every frame byte-identical to the base simulator. All parameters are drawn
for every family on every frame, in a fixed order, from a stream of their
own, so allowing or forbidding one family never changes the others' draws.

Labels stay exact: tip shapes change the along-layer profile and width with
the labelled tip (the 25 % foot of an anode, the half-height of a cathode
edge) kept where the geometry puts it; clutter and shadows are kept away
from or drawn over the tips without moving them; the rotation moves the
labels with the pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from inspectd.sim.scene import Fork, Scene

__all__ = ["FAMILIES", "Variety", "apply_shapes", "check_families", "parse_families", "sample_variety"]

FAMILIES = (
    "tail",  # long faint anode tails (slow taper, high exponent)
    "blunt",  # square-cut ends: very short tapers on both classes
    "rounded",  # rounded ends: the strand stays thick, then narrows and fades quickly
    "curl",  # anode ends bent toward a neighbour
    "pitch",  # layer pitch anywhere in 3-20 px (the base draws 4-7.5 px at 1000 px)
    "dense",  # densely packed stacks: 40-70 cathodes at a 3-5 px pitch
    "teeth",  # periodic clutter near the stack: a threaded rod, a toothed rack, tray ribs
    "shadow",  # broad separator shadows across the tip zone
    "defocus",  # heavy defocus and motion blur
    "dose",  # low dose: few photons per pixel
    "gain",  # detector gain drift: column/row gain stripes and a slow ramp
    "tilt",  # small rotations of the whole frame (+-5 degrees)
    "invert",  # inverted polarity: bright layers on a dark background
    "fork",  # forked anode ends: a shorter second prong splits off the strand (the label stays on the longer one)
)
_FIRST_RELEASE = 13  # families whose draws were fixed before "fork": theirs come first, so old dumps regenerate


def check_families(families) -> tuple[str, ...]:
    """`families` as a tuple; ValueError naming any that is not in FAMILIES."""
    fams = tuple(families)
    bad = set(fams) - set(FAMILIES)
    if bad:
        raise ValueError(f"unknown simulator families {sorted(bad)}; choose from {', '.join(FAMILIES)}")
    return fams


def parse_families(spec: str) -> tuple[str, ...]:
    """'' -> (), 'all' -> every family, 'all-tail,teeth' -> all but those, 'tail,teeth' -> those."""
    spec = spec.strip()
    if not spec:
        return ()
    if spec == "all" or spec.startswith("all-"):
        drop = set(check_families(f.strip() for f in spec[4:].split(",") if f.strip()))
        return tuple(f for f in FAMILIES if f not in drop)
    return check_families(f.strip() for f in spec.split(",") if f.strip())


@dataclass(frozen=True)
class Variety:
    """The families active on one frame and every family's parameters (drawn whether active or not)."""

    active: tuple[str, ...] = ()
    params: dict = field(default_factory=dict)

    def on(self, name: str) -> bool:
        return name in self.active


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def sample_variety(rng: np.random.Generator, families: tuple[str, ...], rate: float) -> Variety:
    """Which families this frame shows and their parameters; same draws whatever `families` allows."""
    families = check_families(families)
    coin = rng.random(_FIRST_RELEASE)
    p = {
        "tail": {"q": (2.0, 3.5), "taper": _u(rng, 40.0, 130.0), "fade": _u(rng, 0.5, 1.0), "seed": int(rng.integers(2**31))},
        "blunt": {"taper": _u(rng, 1.2, 3.5), "edge": _u(rng, 1.2, 3.0)},
        "rounded": {"q": _u(rng, 0.3, 0.6), "narrow": _u(rng, 0.6, 0.95)},
        "curl": {"amp": _u(rng, 0.15, 0.45), "share": _u(rng, 0.3, 1.0), "seed": int(rng.integers(2**31))},
        "pitch": {"px": float(math.exp(rng.uniform(math.log(3.0), math.log(20.0))))},
        "dense": {"px": _u(rng, 3.0, 5.0), "nc": int(rng.integers(40, 71))},
        "teeth": {
            "kind": ("rod", "rack", "ribs")[int(rng.integers(3))],
            "side": 1.0 if rng.random() < 0.5 else -1.0,
            "pitch": _u(rng, 0.7, 2.5),  # in layer pitches
            "gap": _u(rng, 1.5, 6.0),  # clearance from the nearest tip, in layer pitches (>= 1.5)
            "len": _u(rng, 0.5, 1.5),  # extent, in stack heights
            "a": _u(rng, 1.0, 3.0),
            "depth": _u(rng, 0.5, 2.0),  # tooth depth, in layer pitches
            "dx": _u(rng, -0.3, 0.3),  # rack/ribs offset along the layers, in stack heights
        },
        "shadow": {
            "n": int(rng.integers(1, 4)),
            "bands": [
                (_u(rng, -0.6, 0.6), _u(rng, 50.0, 130.0), _u(rng, 6.0, 60.0), _u(rng, 0.08, 0.45))
                for _ in range(3)
            ],  # (position across the tip zone, angle to the layers in degrees, width px at 1000, attenuation)
        },
        "defocus": {"sigma": _u(rng, 0.3, 0.5), "motion": rng.random() < 0.4, "m_len": _u(rng, 4.0, 14.0)},
        "dose": {"n0": float(math.exp(rng.uniform(math.log(40.0), math.log(300.0))))},
        "gain": {
            "col": _u(rng, 0.005, 0.04),
            "row": _u(rng, 0.0, 0.02),
            "ramp": _u(rng, -0.15, 0.15),
            "dir": _u(rng, 0.0, 2 * math.pi),
            "seed": int(rng.integers(2**31)),
        },
        "tilt": {"deg": _u(rng, -5.0, 5.0)},
        "invert": {},
    }
    coin = np.append(coin, rng.random())  # families added later draw after the first release's, in order
    p["fork"] = {
        "share": _u(rng, 0.2, 0.8),  # of the anodes
        "split": _u(rng, 3.0, 9.0),  # how far before the tip the prong leaves the strand, in layer pitches
        "off": _u(rng, 0.6, 1.1),  # how far it ends up, in layer pitches (toward a neighbour; 3-6 px at 1000)
        "short": _u(rng, 0.45, 0.85),  # its length as a share of the strand's from the split to the tip
        "a": _u(rng, 0.6, 1.0),  # its darkness as a share of the strand's
        "seed": int(rng.integers(2**31)),
    }
    active = tuple(f for f, c in zip(FAMILIES, coin) if f in families and c < rate)
    return Variety(active, p)


def scene_overrides(v: Variety) -> dict:
    """Stack-size overrides for `sample_scene` (pitch in px at any frame size, cathode count)."""
    if v.on("dense"):
        return {"pitch_px": v.params["dense"]["px"], "nc": v.params["dense"]["nc"]}
    if v.on("pitch"):
        return {"pitch_px": v.params["pitch"]["px"]}
    return {}


# --------------------------------------------------------------------------- tip shapes


def apply_shapes(scene: Scene, v: Variety) -> None:
    """Change the layers' end shapes in place. Every labelled tip stays where it is: an anode's taper
    starts where its (new) exponent and length put the 25 % foot on the tip (`Layer.taper_start`)."""
    s = scene.s
    anodes = [ly for ly in scene.layers if ly.kind == "a" and ly.fold is None]
    if v.on("tail"):
        p = v.params["tail"]
        r = np.random.default_rng(p["seed"])
        for ly in anodes:
            ly.q = float(r.uniform(*p["q"]))
            ly.taper = p["taper"] * s * float(r.uniform(0.8, 1.2))
            ly.a *= p["fade"]
    elif v.on("blunt"):
        p = v.params["blunt"]
        for ly in anodes:
            ly.q, ly.taper, ly.narrow = 1.0, p["taper"] * s, 0.1
        for ly in scene.layers:
            if ly.kind == "c":
                ly.taper = p["edge"] * s
    elif v.on("rounded"):
        p = v.params["rounded"]
        for ly in anodes:
            ly.q, ly.narrow = p["q"], p["narrow"]
    if v.on("curl"):
        p = v.params["curl"]
        r = np.random.default_rng(p["seed"])
        for ly in anodes:
            if r.random() < p["share"]:
                ly.curl = float(r.choice([-1.0, 1.0])) * p["amp"] * scene.pitch * float(r.uniform(0.6, 1.0))
    if v.on("fork"):
        p = v.params["fork"]
        r = np.random.default_rng(p["seed"])
        for ly in anodes:
            if r.random() < p["share"]:
                off = float(r.choice([-1.0, 1.0])) * p["off"] * scene.pitch * float(r.uniform(0.7, 1.0))
                length = p["split"] * scene.pitch * float(r.uniform(0.8, 1.2))
                start = ly.tip - length
                ly.fork = Fork(off, start, min(ly.tip - 1.0, start + p["short"] * length), p["a"])


# --------------------------------------------------------------------------- clutter and shadows


def tip_zone(scene: Scene) -> tuple[float, float, float, float]:
    """Canonical (x0, y0, x1, y1) box of every labelled tip."""
    pts = np.vstack([scene.tip_points("a"), scene.tip_points("c")])
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def _rect(x0, y0, x1, y1):
    return np.asarray([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64)


def draw_teeth(canvas, scene: Scene, v: Variety) -> None:
    """Periodic clutter next to the stack, never over a tip: a threaded rod across the layers past the
    tips, a toothed rack above/below the stack whose teeth end like a comb, or ribs on the tray."""
    if not v.on("teeth"):
        return
    p = v.params["teeth"]
    S, d = scene.size, scene.pitch
    x0, y0, x1, y1 = tip_zone(scene)
    x_end = max(ly.x_end for ly in scene.layers)
    h = y1 - y0
    per = max(2.5, p["pitch"] * 2 * d)
    depth = max(1.5, p["depth"] * 2 * d)
    gap = max(1.5, p["gap"]) * 2 * d
    shapes = []
    if p["kind"] == "rod":  # vertical threaded rod beyond the tips: teeth stick out toward the stack
        cx = x_end + gap + depth + 0.04 * S
        half = 0.02 * S + depth
        ya, yb = y0 - p["len"] * h * 0.5, y1 + p["len"] * h * 0.5
        n = max(2, int((yb - ya) / per))
        ys = np.linspace(ya, yb, 2 * n + 1)
        left = [(cx - half - (depth if i % 2 else 0.0), y) for i, y in enumerate(ys)]
        right = [(cx + half, yb), (cx + half, ya)]
        shapes.append(np.asarray(left + right))
    else:  # a rack above or below the stack; its teeth point along the layers like a comb of tips
        side = p["side"]
        edge = (y0 - gap) if side < 0 else (y1 + gap)
        L = p["len"] * h + 4 * per
        xr = x1 + p["dx"] * h
        if p["kind"] == "rack":  # teeth: horizontal bars of the layer's direction, stacked across
            n = max(3, int(L / per))
            body_w = 0.05 * S
            for k in range(n):
                yk = edge + side * (k * per + 0.5 * per)
                xt = xr - body_w + depth * (1.0 + 0.3 * math.sin(1.7 * k))
                shapes.append(_rect(xr - body_w - 0.2 * S, yk - 0.25 * per, xt, yk + 0.25 * per))
            yb0, yb1 = sorted((edge + side * 0.25 * per, edge + side * (n * per)))
            shapes.append(_rect(xr - body_w - 0.35 * S, yb0, xr - body_w - 0.2 * S, yb1))
        else:  # ribs: vertical ribs on a slab, periodic along the layers
            ya, yb = sorted((edge, edge + side * (0.05 * S + depth)))
            n = max(3, int(0.3 * S / per))
            for k in range(n):
                xk = xr - k * per
                shapes.append(_rect(xk - 0.3 * per, ya, xk + 0.3 * per, yb))
            yc0, yc1 = sorted((edge + side * (0.05 * S + depth), edge + side * 0.2 * S))
            shapes.append(_rect(xr - n * per, yc0, xr + 0.3 * per, yc1))
    canvas.polys(shapes, p["a"], soft=0.4 * scene.s)


def shadow_attenuation(scene: Scene, v: Variety) -> np.ndarray | None:
    """(S, S) float32 extra attenuation of broad shadows crossing the tip zone, or None."""
    if not v.on("shadow"):
        return None
    p = v.params["shadow"]
    S, s = scene.size, scene.s
    x0, y0, x1, y1 = tip_zone(scene)
    n = max(64, S // 4)
    g = (np.arange(n, dtype=np.float32) + 0.5) * (S / n) - 0.5
    X, Y = np.meshgrid(g, g)
    A = np.zeros((n, n), np.float32)
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    for pos, ang, width, a in p["bands"][: p["n"]]:
        t = math.radians(ang)
        nx, ny = math.sin(t), -math.cos(t)  # normal of a band at `ang` degrees to the layers (x axis)
        off = pos * 0.5 * max(x1 - x0 + 40 * s, y1 - y0)
        dist = (X - cx) * nx + (Y - cy) * ny - off
        A += np.float32(a) * np.exp(-0.5 * (dist / np.float32(width * s)) ** 2)
    return cv2.resize(A, (S, S), interpolation=cv2.INTER_LINEAR)


# --------------------------------------------------------------------------- detector


def adjust_detector(det: dict, scene: Scene, v: Variety) -> None:
    """Heavier blur, lower dose (in place on the detector parameters)."""
    if v.on("defocus"):
        p = v.params["defocus"]
        det["sigma"] = p["sigma"] * 2 * scene.pitch
        det["motion"] = det["motion"] or p["motion"]
        det["m_len"] = max(det["m_len"], p["m_len"] * scene.s)
    if v.on("dose"):
        det["n0"] = v.params["dose"]["n0"]


def gain_field(S: int, v: Variety) -> np.ndarray | None:
    """(S, S) float32 multiplicative gain: column and row stripes and a slow ramp, or None."""
    if not v.on("gain"):
        return None
    p = v.params["gain"]
    r = np.random.default_rng(p["seed"])
    col = 1.0 + p["col"] * r.standard_normal(S).astype(np.float32)
    row = 1.0 + p["row"] * r.standard_normal(S).astype(np.float32)
    t = (np.arange(S, dtype=np.float32) / S) - 0.5
    ramp_x = 1.0 + p["ramp"] * math.cos(p["dir"]) * t
    ramp_y = 1.0 + p["ramp"] * math.sin(p["dir"]) * t
    return np.outer(row * ramp_y, col * ramp_x).astype(np.float32)


# --------------------------------------------------------------------------- geometry of the output


def rotate(img: np.ndarray, pts: list[np.ndarray], v: Variety, margin: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Rotate the frame about its centre (labels with it); unchanged where a tip would leave the frame."""
    if not v.on("tilt"):
        return img, pts
    h, w = img.shape
    M = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), v.params["tilt"]["deg"], 1.0)
    moved = [np.asarray(p, np.float64).reshape(-1, 2) @ M[:, :2].T + M[:, 2] for p in pts]
    allp = np.vstack(moved)
    if len(allp) and (allp.min() < margin or allp[:, 0].max() > w - 1 - margin or allp[:, 1].max() > h - 1 - margin):
        return img, pts
    out = cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out, moved


def invert(img: np.ndarray, full: float, v: Variety) -> np.ndarray:
    if not v.on("invert"):
        return img
    return (np.asarray(full, img.dtype) - img).astype(img.dtype)
