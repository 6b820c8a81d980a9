"""Where one frame's inspection time goes, one level below the stages (single process, one core's view).

``python -m inspectd.bench.parts DUMP [--frames N] [--threads T]`` times, per
frame of a bench dump, interleaved so background load hits every part alike:

- preprocess: ``to_8bit`` (window from a subsampled histogram);
- locate = corners (OFAST, ``corners.work_size``) + ROI search (``find_roi``,
  row/column profiles at full resolution); ``roi@half`` is the same search on a
  2x-downsampled frame (timing only: what a half-resolution ROI pass would cost);
- detect = crop (pitch-normalised tiles, ``make_batch``) + engine (ONNX Runtime,
  ``T`` threads) + decode (peaks, DARK, back to full-frame px).

Prints one JSON object of medians (ms) and the tile count. No figures are
asserted; bench/README.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from inspectd.config import Config
from inspectd.frames import list_dump, read_frame
from inspectd.imaging.window import to_8bit
from inspectd.inspection.corners import detect_corners
from inspectd.inspection.roi import find_roi
from inspectd.pipeline.workers import load_default_detector
from inspectd.tips.infer import make_batch, merge_tiles


def time_parts(dump: Path, frames: int, threads: int) -> dict:
    import cv2

    cfg = Config()
    cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"threads": threads})})
    det = load_default_detector(cfg.engine.model_dump(mode="json"))
    if not hasattr(det, "engine"):
        raise SystemExit(f"no HRNet detector: {det.name}")
    det.engine.load()
    fr = [read_frame(p) for p in list_dump(dump)[:frames]]
    t: dict[str, list[float]] = {k: [] for k in ("preprocess", "corners", "roi", "roi@half", "crop", "engine",
                                                 "decode")}  # fmt: skip
    tiles = []
    for rep in range(2):  # the first pass warms caches and lazy imports; only the second is kept
        for f in fr:
            keep = rep == 1
            t0 = time.perf_counter()
            img8 = to_8bit(f.image, f.bit_depth)
            t1 = time.perf_counter()
            corners = detect_corners(img8, cfg.corners)
            t2 = time.perf_counter()
            roi = find_roi(img8, corners, cfg.roi)
            t3 = time.perf_counter()
            half = cv2.resize(img8, (img8.shape[1] // 2, img8.shape[0] // 2), interpolation=cv2.INTER_AREA)
            c2 = corners.copy()
            c2[:, :2] /= 2.0
            find_roi(half, c2, cfg.roi)
            t4 = time.perf_counter()
            if roi is None:
                continue
            batch, plan = make_batch(img8, roi, det.spec)
            t5 = time.perf_counter()
            hm = np.asarray(det.engine.infer(batch), np.float32)
            t6 = time.perf_counter()
            merge_tiles(hm, plan, det.codec, det.threshold, det.decoder)
            t7 = time.perf_counter()
            if keep:
                for k, a, b in (("preprocess", t0, t1), ("corners", t1, t2), ("roi", t2, t3), ("roi@half", t3, t4),
                                ("crop", t4, t5), ("engine", t5, t6), ("decode", t6, t7)):  # fmt: skip
                    t[k].append((b - a) * 1000.0)
                tiles.append(int(batch.shape[0]))
    out = {k: round(float(np.median(v)), 2) for k, v in t.items() if v}
    out["tiles_median"] = float(np.median(tiles)) if tiles else None
    out["tile_shape"] = list(batch.shape[1:]) if tiles else None
    out["frames"] = len(tiles)
    out["engine_threads"] = threads
    out["frame"] = f"{fr[0].image.shape[1]}x{fr[0].image.shape[0]} {fr[0].bit_depth}-bit"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inspectd.bench.parts")
    p.add_argument("dump", type=Path)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (1: one core's view)")
    p.add_argument("--out", type=Path, help="also write the JSON here (with the machine description)")
    a = p.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)  # one core's view, as a daemon worker on this machine
    res = time_parts(a.dump, a.frames, a.threads)
    print(json.dumps(res))
    if a.out:
        from inspectd.bench.machine import describe_machine, machine_busy_pct

        res = {"parts_ms": res, "machine": describe_machine(), "machine_cpu_pct_after": machine_busy_pct(1.0),
               "dump": str(a.dump)}  # fmt: skip
        a.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
