"""The inspection daemon: acquire, inspect in worker processes, publish one verdict per frame, in order.

Processes and threads (docs/daemon.md has the diagram):

- main process, main thread: the event loop. Dispatches frames to idle workers,
  receives results, keeps the reorder buffer (keyed by acquisition index),
  runs the deadline watchdog, publishes strictly in acquisition order,
  supervises the workers, handles signals, pings systemd.
- main process, ``inspectd-acquire`` thread: reads the source, stamps each
  frame, takes a ring slot and copies the pixels into it (or, when no slot is
  free, applies the overload policy), and hands a small record to the loop.
- the ``inspectd-archive`` process (spawned, nice +10): renders overlays of NG
  frames and writes them to the NG archive; an NG frame reaches it through one
  of 4 shared-memory slots (none free = skipped and counted).
- the publisher's own threads (PUB + heartbeats, ROUTER query).
- N worker processes (spawn): the whole `Inspector` per frame, on a zero-copy
  view of the frame's ring slot.

Guarantees: every acquired frame gets exactly one published verdict, in
acquisition order, with the publisher's gap-free seq. A verdict not ready
``station.deadline_ms`` after acquisition is published as TIMEOUT (reason
DEADLINE); a result arriving after that goes to the journal's late table
(`Publisher.record_late`), never to the wire. A worker that dies costs the frame
it held an ERROR (reason INTERNAL naming the crash) and is restarted within
``pipeline.max_restarts_per_min``; past that the daemon publishes what it owes
and exits 1.

The parts, one file each: `acquisition` (the source thread, into the ring),
`entry` (a frame's record and the daemon's phases), `dispatch` (frames to
workers, results and crashes back), `ordering` (verdicts decided once and
published in order), `supervisor` (worker processes and the restart budget),
`identity` (PLC part ids), `ng_archiver` (the NG archive writer process), `signals`,
`draining` (drain and fail), `health` (gauges, heartbeat health, systemd), `startup`. This module holds the
state they share, the start and stop, and the event loop that calls them.
Entry points: `inspectd.pipeline.run` (``run_daemon``, the CLI's
``inspectd run``, and ``python -m inspectd.pipeline.run`` with the same flags;
used by the tests and the bench).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from inspectd.config import Config, ConfigError, load_config
from inspectd.observability import Metrics, SdNotify, get_logger
from inspectd.pipeline import recovery, startup
from inspectd.pipeline.acquisition import Acquisition
from inspectd.pipeline.dispatch import Dispatching
from inspectd.pipeline.draining import Draining
from inspectd.pipeline.entry import Entry, Phase
from inspectd.pipeline.health import Housekeeping
from inspectd.pipeline.identity import PartIdentity
from inspectd.pipeline.ng_archiver import NgArchiver
from inspectd.pipeline.ordering import Ordering
from inspectd.pipeline.shm_ring import FrameRing
from inspectd.pipeline.signals import Signals
from inspectd.pipeline.startup import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from inspectd.pipeline.supervisor import WorkerPool, WorkerState
from inspectd.pipeline.waitset import WaitSet
from inspectd.pipeline.workers import default_detector_factory, worker_engine_settings
from inspectd.publish.journal_space import journal_space_problem
from inspectd.publish.publisher import Publisher, PublishError
from inspectd.publish.sockets import PlaintextBeyondLoopback
from inspectd.sources import FrameSource, SourceError, open_source, parse_source_uri

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "Daemon"]


TICK_S = 0.2  # the loop wakes at least this often (watchdog, health, sd_notify)
WORKER_START_TIMEOUT_S = 120.0  # acquisition starts when every worker is warm, or after this


def _check_picklable(factory) -> None:
    if factory is None:
        return
    try:
        pickle.dumps(factory)
    except Exception as e:
        raise TypeError(
            f"detector_factory must be picklable (a module-level function or class, or functools.partial of one): "
            f"workers are spawned processes ({type(e).__name__}: {e})"
        ) from e


class Daemon(Dispatching, Ordering, Signals, Housekeeping, Draining):
    def __init__(
        self,
        cfg: Config,
        *,
        config_path: Path | None = None,
        detector_factory: Callable[[], object] | None = None,
        stop_after: int | None = None,
        exit_at_end: bool = False,
        slot_bytes: int | None = None,
        environ: dict[str, str] | None = None,
        out=None,
        new_journal: bool = False,
    ):
        self.cfg = cfg
        self.config_path = Path(config_path) if config_path is not None else None
        self.detector_factory = detector_factory or default_detector_factory(worker_engine_settings(cfg))
        _check_picklable(self.detector_factory)
        self.stop_after = stop_after
        self.exit_at_end = exit_at_end
        self.slot_bytes_override = slot_bytes
        self.new_journal = new_journal
        self.out = out if out is not None else sys.stdout
        self.station = cfg.station.name
        self.deadline_s = cfg.station.deadline_ms / 1000.0
        self.log = get_logger(proc="main", station=self.station)
        self.metrics = Metrics()
        self.sd = SdNotify(environ)
        self.model_name = "none"
        # state
        self.entries: dict[int, Entry] = {}
        self.pending: deque[int] = deque()
        self.next_pub = 0
        self.acquired = 0  # frames handed to the loop
        self.exit_code = EXIT_OK
        self.phase = Phase.STARTING
        self.drain_reason = ""
        self.fatal_msg: str | None = None
        self.acq_paused: str | None = None  # why no frames are being taken (journal space), while so
        self.acquisition: Acquisition | None = None  # started once the workers are warm
        self._acq_done = False
        self._source_ended = False
        self._signals: deque[int] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._waitset = WaitSet()
        self.archiver: NgArchiver | None = None
        self._publish_failing_since: float | None = None
        self._last_health = 0.0
        self._drain_started: float | None = None
        self._all_published_at: float | None = None
        self._start_t = time.monotonic()
        self.ring: FrameRing | None = None
        self.pool: WorkerPool | None = None
        self.publisher: Publisher | None = None
        self.source: FrameSource | None = None
        self.preview = None  # inspectd.publish.preview.Preview when [preview] enabled
        self._reload_file_cfg: Config | None = None
        self.identity = PartIdentity(cfg.trigger, self.station, self.metrics, self.log, self._wake)

    # ================================================================== start / stop

    def run(self) -> int:
        try:
            self.source_cfg = parse_source_uri(self.cfg.source.uri)
            self.source = open_source(self.source_cfg)
        except SourceError as e:
            self.log.error("source_invalid", msg=str(e))
            print(f"inspectd: {e}", file=sys.stderr)
            return EXIT_USAGE
        try:
            self.exit_code = self._run()  # a start-up failure too: daemon_exit must log the real code
        finally:
            self._teardown()
        return self.exit_code

    def _run(self) -> int:
        cfg = self.cfg
        try:
            self.ring = startup.create_ring(
                cfg.pipeline.ring_slots, self.slot_bytes_override or self.source_cfg.max_frame_bytes(), self.log
            )
            metrics_url = startup.serve_metrics(self.metrics, cfg.observability, self.log)
            self.publisher = startup.start_publisher(cfg, self.metrics, self.log, new_journal=self.new_journal)
            if cfg.trigger.address:
                try:
                    bound = self.identity.listen(
                        self.publisher.zmq_context,
                        self.publisher.curve_server_keys,
                        cfg.publish.allow_plaintext_beyond_loopback,
                    )
                except PlaintextBeyondLoopback as e:
                    self.log.error("trigger_refused", msg=str(e))
                    print(f"inspectd: {e}", file=sys.stderr)
                    return EXIT_USAGE
                except Exception as e:
                    self.log.error("trigger_failed", msg=str(e))
                    return EXIT_FAILED
                self.log.info("trigger_listening", address=bound)
            print(
                f"inspectd {self.station}: pub {self.publisher.pub_address} query {self.publisher.query_address} "
                f"metrics {metrics_url} journal {cfg.publish.journal}"
                + (f" trigger {self.identity.listener.bound}" if self.identity.triggered else ""),
                file=self.out,
                flush=True,
            )
            self.pool = startup.start_workers(lambda: self.cfg, self.ring, self.detector_factory, self.log)
            startup.open_source(self.source, self.ring, self.log)
        except startup.StartupFailed as e:
            return e.exit_code
        try:  # frames the last run took and never answered go out first, then a replay resumes after them
            recovery.publish_interrupted(self.publisher, self.station, self.metrics, self.log)
        except PublishError as e:
            self.log.error("interrupted_publish_failed", msg=str(e))
            return EXIT_FAILED
        recovery.resume_source(self.source, self.publisher, self.log)
        if self.config_path is not None:
            try:  # what the file said at start: a reload reports the sections it cannot apply live
                self._reload_file_cfg = load_config(self.config_path)
            except ConfigError:
                self._reload_file_cfg = None
        self._install_signals()
        if self.publisher.archive is not None:  # its own process, fed through its own shared-memory slots
            try:
                self.archiver = startup.start_archiver(self.publisher.archive, self.ring, self.metrics, cfg, self.log)
            except startup.StartupFailed as e:
                return e.exit_code
        if cfg.preview.enabled:  # its own process; a failure there is logged, never fatal
            from inspectd.publish.preview import Preview

            obs = cfg.observability
            self.preview = Preview(cfg.preview, log=self.log, log_level=obs.log_level, log_json=obs.log_json)
            self.preview.start()
        try:
            self._loop()
        except Exception as e:  # a bug in the loop: say so, still publish what is owed, exit 1
            self.log.critical("daemon_bug", msg=f"{type(e).__name__}: {e}", exc_info=True)
            try:
                self.fail(f"internal error in the main loop: {type(e).__name__}: {e}")
                self._publish_ready()
            except Exception as e2:
                self.log.critical("daemon_bug", msg=f"could not publish the owed verdicts: {e2}", exc_info=True)
            self.exit_code = EXIT_FAILED
        return self.exit_code

    def _start_acquisition(self) -> None:
        self.phase = Phase.RUNNING
        self.acquisition = Acquisition(
            self.source,
            self.ring,
            deadline_s=self.deadline_s,
            block=self.cfg.pipeline.overload == "block",
            stop_after=self.stop_after,
            capacity=lambda: len(self.pool.ready()),
            wake=self._wake,
            account=self._account,
            hold=functools.partial(journal_space_problem, self.cfg.publish),
        )
        self.acquisition.start()
        ready = len(self.pool.ready())
        status = f"running: {ready}/{self.pool.n} workers, source {self.source.name}"
        self.sd.ready(status)
        self.log.info("daemon_ready", workers_ready=ready, model=self.model_name, source=self.source.name)

    def _account(self, e: Entry) -> None:
        """Journal a frame as acquired (the acquisition thread, before the frame is inspected)."""
        e.acquired_id = self.publisher.record_acquired(e.frame_id, e.part_id, e.t_acq_ns, self.source.name)

    def _teardown(self) -> None:
        if self.acquisition is not None:
            self.acquisition.stop()
            self.acquisition.join(timeout=3.0)
        if self.source is not None:
            with contextlib.suppress(Exception):
                self.source.close()
        if self.pool is not None:
            self.pool.stop(timeout_s=3.0)
        if self.archiver is not None:
            self.archiver.close()
        if self.preview is not None:
            self.preview.close()
        self.identity.close()
        if self.publisher is not None:
            try:
                self.publisher.close()
            except Exception as e:
                self.log.error("publisher_close_failed", msg=f"{type(e).__name__}: {e}")
                self.exit_code = self.exit_code or EXIT_FAILED
        if self.ring is not None:
            for e in self.entries.values():
                e.ng_image = None
            self.ring.close()
        self.metrics.close()
        self._waitset.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.log.info("daemon_exit", exit_code=self.exit_code, frames=self.acquired, published=self.next_pub)

    # ================================================================== signals

    def _wake(self) -> None:
        """Wake the loop from another thread (acquisition, triggers)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"a")

    # ================================================================== the loop

    def _loop(self) -> None:
        start_deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while self.phase != Phase.DONE:
            now = time.monotonic()
            self._handle_signals()
            if self.phase == Phase.STARTING:
                if len(self.pool.ready()) == self.pool.n or now > start_deadline:
                    if now > start_deadline:
                        self.log.warning("workers_slow_to_start", ready=len(self.pool.ready()), workers=self.pool.n)
                    self._start_acquisition()
            self._take_acquired()
            self._dispatch()
            self._watchdog(time.monotonic())
            self._publish_ready()
            self._periodic(time.monotonic())
            self._check_done(time.monotonic())
            if self.phase == Phase.DONE:
                break
            self._wait(self._next_timeout(time.monotonic()))

    def _next_timeout(self, now: float) -> float:
        t = TICK_S
        for e in self.entries.values():
            if e.verdict is None:
                t = min(t, e.deadline - now)
        if self._publish_failing_since is not None:
            t = min(t, 0.1)
        return max(0.0, t)

    def _wait(self, timeout: float) -> None:
        objs = self.pool.wait_objects() if self.pool else {}
        try:
            ready = self._waitset.wait([*objs.keys(), self._wake_r], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
            return
        for obj in ready:
            if obj == self._wake_r:
                with contextlib.suppress(BlockingIOError, OSError):
                    while os.read(self._wake_r, 4096):
                        pass
                continue
            h = objs.get(obj)
            if h is None or h.state == WorkerState.DEAD:
                continue
            if obj is h.conn:
                self._read_worker(h)
            elif not h.proc.is_alive():  # sentinel
                self._on_worker_death(h)
