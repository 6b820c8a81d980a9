"""The benchmark's frames: simulator dumps, rendered once per (size, bit depth, seed, count) and cached.

A dump is deterministic (same seed, same frames, same labels), so a cached one
is reused across runs; a directory without its ``.complete`` marker (an
interrupted render) is rendered again.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from inspectd.bench.machine import REPO
from inspectd.sim import SimOptions
from inspectd.sim.dump import simulate_dump
from inspectd.sources.sim import SimSourceConfig

DEFAULT_CACHE = REPO / "runs" / "bench-cache"
MARKER = ".complete"


def cache_root(explicit: Path | None = None) -> Path:
    """Absolute: the daemon and naive-loop subprocesses run in their own working directories."""
    if explicit is not None:
        return Path(explicit).resolve()
    env = os.environ.get("INSPECTD_BENCH_CACHE")
    return Path(env).resolve() if env else DEFAULT_CACHE.resolve()


def sim_options(size: int, bit_depth: int):
    """The simulator options of the bench dumps: those of the `sim:` source's defaults, so both agree."""

    d = SimSourceConfig()
    return SimOptions(size=size, bit_depth=bit_depth, defect_rate=d.defect_rate, orientation=d.orientation)


def dump_dir(root: Path, size: int, bit_depth: int, seed: int, count: int) -> Path:
    return root / f"sim-{size}-{bit_depth}b-seed{seed}-n{count}"


def ensure_dump(
    root: Path, size: int, bit_depth: int, seed: int, count: int, on_frame: Callable[[], None] | None = None
) -> tuple[Path, bool]:
    """The cached dump (rendered now if missing); returns (path, rendered_now)."""

    d = dump_dir(root, size, bit_depth, seed, count)
    params = {"size": size, "bit_depth": bit_depth, "seed": seed, "count": count, "station": "BENCH"}
    marker = d / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == params:
                return d, False
        except ValueError:
            pass
    if d.exists():
        shutil.rmtree(d)
    tmp = d.with_name(d.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    simulate_dump(tmp, count, seed, sim_options(size, bit_depth), station="BENCH", on_frame=on_frame)
    (tmp / MARKER).write_text(json.dumps(params))
    tmp.rename(d)
    return d, True
