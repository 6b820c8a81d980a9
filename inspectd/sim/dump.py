"""Write simulator frames as a dump (DESIGN.md §3), labels and expected verdict in the sidecars."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from inspectd.frames import Frame, Sidecar, TipLabels, write_frame
from inspectd.sim import SimFrame, SimOptions, render_frame

# Simulated acquisition clock: fixed origin so a dump is reproducible byte for byte.
T0_NS = 1_764_000_000_000_000_000
FRAME_PERIOD_NS = 100_000_000


def sim_frame_to_frame(sim: SimFrame, seed: int, index: int, station: str) -> Frame:
    meta = Sidecar(
        part_id=f"SIM-{seed}-{index:05d}",
        station=station,
        mm_per_px=sim.mm_per_px,
        bit_depth=sim.bit_depth,
        t_acquired_ns=T0_NS + index * FRAME_PERIOD_NS,
        labels=TipLabels(
            anode_tips=[(round(float(x), 3), round(float(y), 3)) for x, y in sim.anode_tips],
            cathode_tips=[(round(float(x), 3), round(float(y), 3)) for x, y in sim.cathode_tips],
        ),
        expected=sim.expected,
        defects=list(sim.defects),
        sim={
            "seed": seed,
            "index": index,
            "orientation": sim.orientation,
            "overhang_mm": [round(float(v), 4) for v in sim.overhang_mm],
        },
    )
    return Frame(frame_id=f"sim-{seed:04d}-{index:05d}", image=sim.image, meta=meta)


def simulate_dump(
    out_dir: Path,
    count: int,
    seed: int,
    opts: SimOptions,
    station: str = "SIM",
    on_frame: Callable[[], None] | None = None,
) -> dict:
    """Render `count` frames into `out_dir`; returns counts of expected results and the time taken."""
    stats = {"OK": 0, "NG": 0}
    t0 = time.perf_counter()
    for i in range(count):
        sim = render_frame(seed, i, opts)
        write_frame(out_dir, sim_frame_to_frame(sim, seed, i, station))
        stats[sim.expected] += 1
        if on_frame:
            on_frame()
    stats["seconds"] = time.perf_counter() - t0
    return stats
