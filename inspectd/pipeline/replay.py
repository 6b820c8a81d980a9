"""Offline replay of a dump: one verdict line per frame, in frame order, nothing skipped."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from inspectd.config import Config
from inspectd.frames import iter_dump, list_dump
from inspectd.imaging.overlay import write_overlay
from inspectd.inspection.corner_backends import choose_corner_backend
from inspectd.inspection.stages import Inspection, Inspector
from inspectd.tips.detector import TipDetector


@dataclass
class ReplaySummary:
    frames: int = 0
    results: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    out: Path | None = None
    overlays: Path | None = None
    seconds: float = 0.0


def replay_dump(
    dump: Path,
    cfg: Config,
    detector: TipDetector,
    out: Path | None = None,
    overlays: Path | None = None,
    on_frame: Callable[[Inspection], None] | None = None,
) -> ReplaySummary:
    """Inspect every frame of `dump`; write verdicts as JSON lines to `out` (if given)."""
    inspector = Inspector(cfg, detector, choose_corner_backend(cfg.corners).backend)
    summary = ReplaySummary(out=out, overlays=overlays)
    t0 = time.perf_counter()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    if overlays is not None:
        overlays.mkdir(parents=True, exist_ok=True)
    sink = out.open("w", encoding="utf-8") if out is not None else None
    try:
        for seq, item in enumerate(iter_dump(dump), start=1):
            ins = inspector.inspect(item, seq)
            v = ins.verdict
            summary.frames += 1
            summary.results[v.result.value] += 1
            for r in v.reasons:
                summary.reasons[r.code.value] += 1
            if sink is not None:
                sink.write(v.to_json() + "\n")
                sink.flush()
            if overlays is not None and ins.img8 is not None:
                write_overlay(overlays / f"{v.frame_id}.jpg", ins)
            if on_frame is not None:
                on_frame(ins)
    finally:
        if sink is not None:
            sink.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def count_frames(dump: Path) -> int:
    return len(list_dump(dump))
