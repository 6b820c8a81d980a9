"""The naive baseline: one process, one frame at a time, the same `Inspector` the daemon's workers run.

read (from memory) -> preprocess -> corners+ROI -> HRNet engine -> refine -> measure/judge -> verdict,
on the same preloaded frames and the same model as the daemon cases. Run as its
own process (``python -m inspectd.bench.naive``) so its CPU time and memory are
its own; it writes one JSON file of raw per-frame readings and the verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

from inspectd.config import load_config
from inspectd.frames import Frame, FrameReadError, list_dump, read_frame
from inspectd.inspection.stages import Inspector
from inspectd.pipeline.workers import load_default_detector


def run_naive(dump: Path, frames: int, warmup: int, config: Path | None, verdicts_out: Path | None) -> dict:
    t_load = time.perf_counter()
    cfg = load_config(config, {"station.name": "BENCH"})
    detector = load_default_detector(cfg.engine.model_dump(mode="json"))
    inspector = Inspector(cfg, detector)
    cache = []
    for p in list_dump(dump):
        try:
            cache.append(read_frame(p))
        except Exception as e:  # noqa: BLE001 - an unreadable file is that frame's ERROR, as in the daemon
            cache.append(FrameReadError(frame_id=p.stem, path=p, message=str(e)))
    load_ms = (time.perf_counter() - t_load) * 1000.0
    sink = verdicts_out.open("w", encoding="utf-8") if verdicts_out else None
    per_frame = []
    cpu0 = wall0 = None
    try:
        for i in range(frames):
            if i == warmup:
                cpu0, wall0 = time.process_time(), time.perf_counter()
            item = cache[i % len(cache)]
            t0 = time.perf_counter()
            t_ns = time.time_ns()
            if not isinstance(item, FrameReadError):  # "read": a fresh sidecar on the shared pixels
                item = Frame(item.frame_id, item.image, item.meta.model_copy(deep=True))
                item.meta.t_acquired_ns = t_ns
            ins = inspector.inspect(item, i + 1)
            v = ins.verdict
            t1 = time.perf_counter()
            per_frame.append({
                "frame_id": v.frame_id,
                "result": v.result.value,
                "latency_ms": (t1 - t0) * 1000.0,
                "stage_ms": ins.stage_ms,
            })
            if sink is not None:
                sink.write(v.to_json() + "\n")
    finally:
        if sink is not None:
            sink.close()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    measured = frames - warmup
    return {
        "detector": detector.name,
        "load_ms": round(load_ms, 1),
        "frames": frames,
        "warmup": warmup,
        "measured_frames": measured,
        "wall_s": wall,
        "cpu_s": cpu,
        "fps": measured / wall if wall > 0 else None,
        "cpu_pct": 100.0 * cpu / wall / (os.cpu_count() or 1),
        "cores": os.cpu_count() or 1,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "per_frame": per_frame,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inspectd.bench.naive")
    p.add_argument("--dump", type=Path, required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--config", type=Path, help="station TOML (engine threads/type, the case's overrides)")
    p.add_argument("--verdicts", type=Path)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    res = run_naive(a.dump, a.frames, a.warmup, a.config, a.verdicts)
    a.out.write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
