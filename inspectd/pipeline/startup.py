"""Bringing the daemon's parts up, in order, each failure named: ring, metrics, publisher, workers, source,
NG archive writer.

Each function either returns the running part or raises `StartupFailed`
with the exit code the daemon must return (1: could not run here; 2: the
configuration or the source is wrong) after logging the event an operator
greps for.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Callable

from inspectd.config import Config, ObservabilityConfig
from inspectd.observability import Metrics
from inspectd.pipeline.ng_archiver import NgArchiver
from inspectd.pipeline.shm_ring import FrameRing, RingError, slot_bytes_for
from inspectd.pipeline.supervisor import WorkerPool
from inspectd.pipeline.workers import WorkerSpec
from inspectd.publish.archive import NgArchive
from inspectd.publish.metrics import PublishMetrics
from inspectd.publish.publisher import Publisher, PublishError
from inspectd.publish.sockets import PlaintextBeyondLoopback
from inspectd.sources import FrameSource, SourceError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "StartupFailed", "create_ring", "open_source",
           "serve_metrics", "start_archiver", "start_publisher", "start_workers"]  # fmt: skip

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class StartupFailed(Exception):
    def __init__(self, exit_code: int, msg: str):
        super().__init__(msg)
        self.exit_code = exit_code


def create_ring(slots: int, frame_bytes: int, log) -> FrameRing:
    try:
        ring = FrameRing(slots, slot_bytes_for(frame_bytes))
    except RingError as e:
        log.error("ring_failed", msg=str(e))
        raise StartupFailed(EXIT_FAILED, str(e)) from e
    if ring.stale_removed:
        log.warning("stale_shm_removed", segments=ring.stale_removed)
    log.info("ring_created", name=ring.name, slots=ring.slots, slot_mib=round(ring.slot_bytes / 2**20, 2))
    return ring


def start_archiver(archive: NgArchive, ring: FrameRing, metrics: Metrics, cfg: Config, log) -> NgArchiver:
    """The NG archive's writer process, with slots the size of the ring's."""
    obs = cfg.observability
    try:
        archiver = NgArchiver(archive, metrics, log, slot_bytes=ring.slot_bytes, log_level=obs.log_level,
                              log_json=obs.log_json)  # fmt: skip
    except RingError as e:
        log.error("archive_failed", msg=str(e))
        raise StartupFailed(EXIT_FAILED, str(e)) from e
    archiver.start()
    return archiver


def serve_metrics(metrics: Metrics, obs: ObservabilityConfig, log) -> str:
    """Serve Prometheus metrics if configured; returns the URL (or "off")."""
    if obs.metrics_port is None:
        return "off"
    try:
        port = metrics.serve(obs.metrics_port, obs.metrics_addr)
    except OSError as e:
        msg = f"cannot serve metrics on {obs.metrics_addr}:{obs.metrics_port}: {e}"
        log.error("metrics_failed", msg=msg)
        raise StartupFailed(EXIT_FAILED, msg) from e
    log.info("metrics_serving", addr=obs.metrics_addr, port=port)
    return f"http://{obs.metrics_addr}:{port}/metrics"


def start_publisher(cfg: Config, metrics: Metrics, log, *, new_journal: bool = False) -> Publisher:
    publisher = Publisher(
        cfg.publish,
        cfg.station.name,
        log=log,
        metrics=PublishMetrics(metrics.registry),
        journal_synchronous=cfg.publish.journal_sync,
        journal_keep_days=cfg.publish.journal_keep_days,
        new_journal=new_journal,
    )
    try:
        publisher.start()
    except (PublishError, OSError) as e:
        log.error("publisher_failed", msg=str(e))
        if isinstance(e.__cause__, PlaintextBeyondLoopback):  # the station file's choice, not a fault here
            print(f"inspectd: {e}", file=sys.stderr)
            raise StartupFailed(EXIT_USAGE, str(e)) from e
        raise StartupFailed(EXIT_FAILED, str(e)) from e
    return publisher


def start_workers(current_cfg: Callable[[], Config], ring: FrameRing, detector_factory, log) -> WorkerPool:
    """Spawn the inspection workers; a restarted worker gets the recipe current at its restart."""
    cfg = current_cfg()
    obs = cfg.observability

    def make_spec(wid: int) -> WorkerSpec:
        return WorkerSpec(
            wid=wid,
            cfg_json=current_cfg().model_dump_json(),
            ring_name=ring.name,
            slots=ring.slots,
            slot_bytes=ring.slot_bytes,
            detector_factory=detector_factory,
            log_level=obs.log_level,
            log_json=obs.log_json,
            cv_threads=max(1, (os.cpu_count() or 1) // cfg.pipeline.workers),
        )

    pool = WorkerPool(mp.get_context("spawn"), make_spec, cfg.pipeline.workers, cfg.pipeline.max_restarts_per_min)
    pool.start()
    log.info("workers_starting", workers=cfg.pipeline.workers, pids=[h.pid for h in pool.handles])
    return pool


def open_source(source: FrameSource, ring: FrameRing, log) -> None:
    """Open the source and check its frames fit the ring's slots (a camera knows its size only once open)."""
    try:
        source.open()
    except SourceError as e:
        log.error("source_open_failed", msg=str(e))
        raise StartupFailed(EXIT_USAGE, str(e)) from e
    except Exception as e:
        log.error("source_open_failed", msg=f"{type(e).__name__}: {e}")
        raise StartupFailed(EXIT_FAILED, str(e)) from e
    log.info("source_opened", source=source.name)
    fb = getattr(source, "frame_bytes", None)
    if isinstance(fb, int) and fb > ring.slot_bytes:
        msg = (
            f"source {source.name} delivers frames of {fb / 2**20:.1f} MiB but the frame ring's slots hold "
            f"{ring.slot_bytes / 2**20:.1f} MiB: give width= and height= in the source URI (they size the slots)"
        )
        log.error("source_frames_too_large", msg=msg)
        print(f"inspectd: {msg}", file=sys.stderr)
        raise StartupFailed(EXIT_USAGE, msg)
