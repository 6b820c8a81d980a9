"""Corner recall of the correction's corner pass: how many tips have a corner within δ.

`python -m inspectd.evaluation.corner_eval [--size 2048] [--frames 20]` renders
simulator frames (seed 900) and, for the 8 labelled real frames when present,
prints the fraction of labelled tips with an in-ROI OFAST corner within δ for
N = 128 ... 2048 (the in-ROI pass's N). This is the figure the correction stage lives on: a tip with
no corner within δ keeps its prediction.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from inspectd.config import Config
from inspectd.frames import FrameReadError, iter_dump
from inspectd.imaging.window import to_8bit
from inspectd.inspection.stages import locate, roi_corners
from inspectd.sim import SimOptions, render_frame

NS = (128, 256, 512, 1024, 2048)


def recall_for_frames(frames, deltas: tuple[float, ...], cfg: Config | None = None) -> dict:
    """frames: iterable of (img8, tips (N,2)); returns {N: {δ: recall}} plus counts."""
    cfg = cfg or Config()
    hits: dict = {n: {d: [] for d in deltas} for n in NS}
    n_frames = n_tips = no_roi = 0
    for img8, tips in frames:
        n_frames += 1
        n_tips += len(tips)
        try:
            _, roi = locate(img8, cfg)
        except Exception:
            no_roi += 1
            for n in NS:
                for d in deltas:
                    hits[n][d].append(np.zeros(len(tips), bool))
            continue
        for n in NS:
            c = roi_corners(img8, roi, cfg.model_copy(update={"correction": cfg.correction.model_copy(update={"n": n})}))
            dist = cKDTree(c[:, :2]).query(tips)[0] if len(c) else np.full(len(tips), np.inf)
            for d in deltas:
                hits[n][d].append(dist <= d)
    out = {n: {d: float(np.mean(np.concatenate(v))) for d, v in dd.items()} for n, dd in hits.items()}
    return {"recall": out, "frames": n_frames, "tips": n_tips, "frames_without_roi": no_roi}


def sim_frames(size: int, count: int, seed: int = 900):
    for i in range(count):
        f = render_frame(seed, i, SimOptions(size=size, bit_depth=12, defect_rate=0.3))
        yield to_8bit(f.image, 12), np.vstack([f.anode_tips, f.cathode_tips])


def real_frames(root: Path):
    for item in iter_dump(root):
        if isinstance(item, FrameReadError) or item.meta.labels is None:
            continue
        a, c = item.meta.labels.arrays()
        yield to_8bit(item.image), np.vstack([a, c])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data" / "real")
    args = ap.parse_args(argv)
    s = args.size / 1000
    deltas = (3.0 * s, 5.0 * s)
    rows = {f"sim {args.size}²": recall_for_frames(sim_frames(args.size, args.frames), deltas)}
    if (args.real / "labels").is_dir():
        rows["real 1000² (8 labelled)"] = recall_for_frames(real_frames(args.real), (3.0, 5.0))
    print(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
