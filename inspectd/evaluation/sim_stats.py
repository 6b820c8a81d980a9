"""Statistics of tip regions, real against simulated: does the simulator cover what the stations show?

`inspectd.sim.compare` puts crops side by side for the eye; this module puts numbers on
the same question. Per labelled frame, in the canonical view (tips pointing
right, found with the pipeline's own `locate`):

* pitch: median spacing of same-class tips along the stack, px
* overhang: median anode tip minus median cathode tip along the layers, px
* contrast: (background - anode strand) / background halfway between the
  cathode front and the anode tips
* tail: how far beyond its labelled tip an anode's mean darkness profile
  stays above 10 % of its strand's darkness, px (long faint tails)
* edge: 25 %-75 % width of that profile around the tip, px (blur and taper)
* noise: robust sd of the background's high-pass beyond the tips / background

`coverage` reports, per statistic, the share of real frames whose value lies
inside the simulated set's 2.5-97.5 % range: the real frames the simulator
never draws anything like. Run
``python -m inspectd.evaluation.sim_stats --real runs/ft/real52 --sim base=DIR --sim broad=DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from inspectd.config import Config
from inspectd.frames import FrameReadError, iter_dump
from inspectd.imaging.canonical import points_to_canonical, to_canonical
from inspectd.inspection.stages import StageError, locate, preprocess

__all__ = ["STATS", "coverage", "dump_stats", "frame_stats"]

STATS = ("pitch", "overhang", "contrast", "tail", "edge", "noise")


def _profile(c8: np.ndarray, x: float, y: float, back: int, ahead: int) -> np.ndarray | None:
    """Grey values along row y (3-row mean) from x - back to x + ahead; None near the border."""
    h, w = c8.shape
    xi, yi = int(round(x)), int(round(y))
    if yi < 1 or yi >= h - 1 or xi - back < 0 or xi + ahead >= w:
        return None
    return c8[yi - 1 : yi + 2, xi - back : xi + ahead + 1].astype(np.float64).mean(axis=0)


def frame_stats(img8: np.ndarray, anode: np.ndarray, cathode: np.ndarray, cfg: Config) -> dict | None:
    """The six statistics of one labelled frame; None when no stack is found or too few tips."""
    if len(anode) < 4 or len(cathode) < 3:
        return None
    try:
        _, roi = locate(img8, cfg)
    except StageError:
        return None
    o = roi.orientation
    c8 = to_canonical(img8, o)
    a = points_to_canonical(anode, o, img8.shape)
    c = points_to_canonical(cathode, o, img8.shape)
    pitch = float(np.median(np.diff(np.sort(a[:, 1]))))
    front, tips = float(np.median(c[:, 0])), float(np.median(a[:, 0]))
    over = tips - front
    back, ahead = max(4, int(0.5 * over)), max(8, int(3 * pitch))
    profs = [p for p in (_profile(c8, x, y, back, ahead) for x, y in a[:, :2]) if p is not None]
    if len(profs) < 3:
        return None
    prof = np.median(np.vstack(profs), axis=0)  # aligned at the labelled tip (index `back`)
    x_bg = int(round(tips + 2 * pitch + 5))
    bg_patch = c8[max(0, int(a[:, 1].min())) : int(a[:, 1].max()) + 1, x_bg : x_bg + 20].astype(np.float64)
    if bg_patch.size < 20:
        return None
    bg = float(np.median(bg_patch))
    strand = float(prof[: max(1, back // 2)].min())
    dark = np.clip((bg - prof) / max(bg - strand, 1e-6), 0.0, None)
    beyond = np.flatnonzero(dark[back:] >= 0.10)
    tail = float(beyond.max()) if len(beyond) else 0.0
    i75 = np.flatnonzero(dark >= 0.75)
    i25 = np.flatnonzero(dark >= 0.25)
    edge = float(i25.max() - i75.max()) if len(i75) and len(i25) else float("nan")
    hp = bg_patch - np.median(bg_patch, axis=1, keepdims=True)
    noise = float(1.4826 * np.median(np.abs(hp - np.median(hp)))) / max(bg, 1e-6)
    return {
        "pitch": pitch,
        "overhang": over,
        "contrast": (bg - strand) / max(bg, 1e-6),
        "tail": tail,
        "edge": edge,
        "noise": noise,
    }


def dump_stats(dump: Path | str, cfg: Config | None = None, limit: int | None = None) -> list[dict]:
    cfg = cfg or Config()
    out = []
    for item in iter_dump(dump):
        if isinstance(item, FrameReadError) or item.meta.labels is None:
            continue
        a, c = item.meta.labels.arrays()
        s = frame_stats(preprocess(item), np.asarray(a), np.asarray(c), cfg)
        if s is not None:
            out.append(s)
        if limit and len(out) >= limit:
            break
    return out


def coverage(real: list[dict], sim: list[dict]) -> dict[str, float]:
    """Per statistic: share of real frames inside the simulated frames' 2.5-97.5 % range."""
    res = {}
    for k in STATS:
        s = np.array([d[k] for d in sim if np.isfinite(d[k])])
        r = np.array([d[k] for d in real if np.isfinite(d[k])])
        if len(s) < 5 or len(r) == 0:
            res[k] = float("nan")
            continue
        lo, hi = np.percentile(s, [2.5, 97.5])
        res[k] = float(np.mean((r >= lo) & (r <= hi)))
    return res


def _summary(rows: list[dict]) -> dict[str, tuple[float, float, float]]:
    return {k: tuple(np.nanpercentile([d[k] for d in rows], [5, 50, 95])) for k in STATS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", required=True, help="labelled real dump")
    ap.add_argument("--sim", action="append", default=[], help="NAME=DIR[,DIR...] of simulated dumps (repeat)")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    real = dump_stats(args.real, limit=args.limit)
    print(f"real: {len(real)} frames; 5 / 50 / 95 %")
    for k, v in _summary(real).items():
        print(f"  {k:9s} {v[0]:8.3f} {v[1]:8.3f} {v[2]:8.3f}")
    for spec in args.sim:
        name, dirs = spec.split("=", 1)
        sim = [s for d in dirs.split(",") for s in dump_stats(d, limit=args.limit)]
        cov = coverage(real, sim)
        print(f"sim {name}: {len(sim)} frames; 5 / 50 / 95 %   | real frames inside its 2.5-97.5 % range")
        for k, v in _summary(sim).items():
            print(f"  {k:9s} {v[0]:8.3f} {v[1]:8.3f} {v[2]:8.3f}   | {cov[k]:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
