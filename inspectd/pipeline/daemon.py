"""The inspection daemon: acquire, inspect in worker processes, publish one verdict per frame, in order.

Processes and threads (docs/daemon.md has the diagram):

- main process, main thread: the event loop. Dispatches frames to idle workers,
  receives results, keeps the reorder buffer (keyed by acquisition index),
  runs the deadline watchdog, publishes strictly in acquisition order,
  supervises the workers, handles signals, pings systemd.
- main process, ``inspectd-acquire`` thread: reads the source, stamps each
  frame, takes a ring slot and copies the pixels into it (or, when no slot is
  free, applies the overload policy), and hands a small record to the loop.
- main process, ``inspectd-archive`` thread: renders overlays of NG frames and
  writes them to the NG archive (bounded queue; full = skipped and counted).
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

Entry points: `run_daemon(cfg, ...)` (the CLI's ``inspectd run``) and
``python -m inspectd.pipeline.daemon`` (same flags; used by the tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from inspectd.config import Config, ConfigError, load_config
from inspectd.frames import Frame, FrameReadError
from inspectd.imaging.overlay import render_overlay
from inspectd.imaging.window import to_8bit
from inspectd.observability import Metrics, SdNotify, configure_logging, get_logger
from inspectd.pipeline.shm_ring import FrameRing, FrameTooLarge, RingError, SlotRef, slot_bytes_for
from inspectd.pipeline.supervisor import WorkerHandle, WorkerPool
from inspectd.pipeline.triggers import Trigger, TriggerListener, TriggerMatcher
from inspectd.pipeline.workers import WorkerSpec, default_detector_factory, load_default_detector
from inspectd.publish.metrics import PublishMetrics
from inspectd.publish.publisher import Publisher, PublishError
from inspectd.sources import EndOfStream, SourceError, open_source, parse_source_uri
from inspectd.tips.detector import LabelOracle
from inspectd.verdict import Reason, ReasonCode, Result, Verdict

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "Daemon", "main", "run_daemon"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

TICK_S = 0.2  # the loop wakes at least this often (watchdog, health, sd_notify)
READ_TIMEOUT_S = 0.2  # source.read() bound: how fast the acquisition thread sees a stop
WORKER_START_TIMEOUT_S = 120.0  # acquisition starts when every worker is warm, or after this
LATE_GRACE_S = 2.0  # on drain, how long to wait for results of frames already published as TIMEOUT
PUBLISH_FAIL_FATAL_S = 10.0  # the publisher failing this long stops the daemon (exit 1)
ARCHIVE_QUEUE = 4
STUCK_MIN_S = 30.0  # a worker holding one frame longer than max(this, 20 x deadline) is killed (-9) and restarted
AGE_LIMIT_S = 10.0  # a source timestamp older than this is another clock: count from reception


@dataclass(eq=False)
class Entry:
    """One acquired frame, from acquisition until it is published and no worker holds it."""

    acq: int
    frame_id: str
    part_id: str | None
    t_acq_ns: int
    t_recv: float  # monotonic: at acquisition, then when the frame is in its slot
    deadline: float  # monotonic
    ref: SlotRef | None = None  # ring slot while held
    meta_json: str | None = None
    running: bool = False  # a worker holds it
    worker: int | None = None
    dispatched: float | None = None
    verdict: Verdict | None = None  # decided (result, ERROR or TIMEOUT); published when its turn comes
    published_seq: int | None = None
    late: Verdict | None = None  # result that came after the TIMEOUT, before the TIMEOUT was published
    ng_image: np.ndarray | None = None
    preview: object | None = None  # preview.Grab: a decimated copy taken when the preview's rate allowed
    stage_ms: dict = field(default_factory=dict)
    t_start: float | None = None  # monotonic, worker began / finished inspecting
    t_end: float | None = None
    t_result: float | None = None  # monotonic, result received by the loop
    source_ms: float = 0.0  # acquisition stamp -> frame written to its slot
    t_host_ns: int = 0  # acquisition on the host clock (trigger matching)
    trigger_checked: bool = False  # matched against the PLC triggers (once, just before publishing)


class _Acquired:
    """Records the acquisition thread hands to the loop."""

    __slots__ = ("kind", "entry", "message")

    def __init__(self, kind: str, entry: Entry | None = None, message: str = ""):
        self.kind, self.entry, self.message = kind, entry, message


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


class Daemon:
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
    ):
        self.cfg = cfg
        self.config_path = Path(config_path) if config_path is not None else None
        self.detector_factory = detector_factory or default_detector_factory(cfg.engine.model_dump(mode="json"))
        _check_picklable(self.detector_factory)
        self.stop_after = stop_after
        self.exit_at_end = exit_at_end
        self.slot_bytes_override = slot_bytes
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
        self.phase = "starting"  # starting -> running -> draining -> done
        self.drain_reason = ""
        self.fatal_msg: str | None = None
        self._acq_q: queue.SimpleQueue = queue.SimpleQueue()
        self._acq_stop = threading.Event()
        self._acq_thread: threading.Thread | None = None
        self._acq_done = False
        self._source_ended = False
        self._signals: deque[int] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._cap = threading.Condition()  # "block" overload policy: backlog capacity
        self._backlog = 0  # frames admitted with a slot, not yet dispatched or dropped (guarded by _cap)
        self._archive_q: queue.Queue | None = None
        self._archive_thread: threading.Thread | None = None
        self._publish_failing_since: float | None = None
        self._last_health = 0.0
        self._drain_started: float | None = None
        self._all_published_at: float | None = None
        self._start_t = time.monotonic()
        self.ring: FrameRing | None = None
        self.pool: WorkerPool | None = None
        self.publisher = None
        self.source = None
        self.preview = None  # inspectd.publish.preview.Preview when [preview] enabled
        self._reload_file_cfg: Config | None = None
        self.triggers: TriggerListener | None = None
        self.matcher: TriggerMatcher | None = None
        self._no_frame_owed: deque[Trigger] = deque()  # triggers owed a NO_FRAME verdict, oldest first

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
            return self._run()
        finally:
            self._teardown()

    def _run(self) -> int:
        cfg = self.cfg
        hint = self.source_cfg.max_frame_bytes()
        slot_bytes = slot_bytes_for(self.slot_bytes_override or hint)
        try:
            self.ring = FrameRing(cfg.pipeline.ring_slots, slot_bytes)
        except RingError as e:
            self.log.error("ring_failed", msg=str(e))
            return EXIT_FAILED
        if self.ring.stale_removed:
            self.log.warning("stale_shm_removed", segments=self.ring.stale_removed)
        self.log.info(
            "ring_created", name=self.ring.name, slots=self.ring.slots, slot_mib=round(self.ring.slot_bytes / 2**20, 2)
        )
        if cfg.observability.metrics_port is not None:
            try:
                port = self.metrics.serve(cfg.observability.metrics_port, cfg.observability.metrics_addr)
                self.log.info("metrics_serving", addr=cfg.observability.metrics_addr, port=port)
            except OSError as e:
                where = f"{cfg.observability.metrics_addr}:{cfg.observability.metrics_port}"
                self.log.error("metrics_failed", msg=f"cannot serve metrics on {where}: {e}")
                return EXIT_FAILED

        self.publisher = Publisher(
            cfg.publish,
            self.station,
            log=self.log,
            metrics=PublishMetrics(self.metrics.registry),
            journal_synchronous=cfg.publish.journal_sync,
            journal_keep_days=cfg.publish.journal_keep_days,
        )
        try:
            self.publisher.start()
        except (PublishError, OSError) as e:
            self.log.error("publisher_failed", msg=str(e))
            self.publisher = None
            return EXIT_FAILED
        if cfg.trigger.address:
            t = cfg.trigger
            self.matcher = TriggerMatcher(t.match_window_ms, t.late_ms, t.no_frame_ms)
            self.triggers = TriggerListener(t.address, on_message=self._wake, on_reject=self._trigger_rejected)
            try:
                bound = self.triggers.start()
            except Exception as e:
                self.log.error("trigger_failed", msg=str(e))
                self.triggers = None
                return EXIT_FAILED
            self.log.info("trigger_listening", address=bound)
        metrics_url = (
            f"http://{cfg.observability.metrics_addr}:{self.metrics.port}/metrics" if self.metrics.port else "off"
        )
        print(
            f"inspectd {self.station}: pub {self.publisher.pub_address} query {self.publisher.query_address} "
            f"metrics {metrics_url} journal {cfg.publish.journal}"
            + (f" trigger {self.triggers.bound}" if self.triggers else ""),
            file=self.out,
            flush=True,
        )
        # workers
        ctx = mp.get_context("spawn")
        obs = cfg.observability

        def make_spec(wid: int) -> WorkerSpec:
            return WorkerSpec(
                wid=wid,
                cfg_json=self.cfg.model_dump_json(),  # the current recipe, for restarted workers too
                ring_name=self.ring.name,
                slots=self.ring.slots,
                slot_bytes=self.ring.slot_bytes,
                detector_factory=self.detector_factory,
                log_level=obs.log_level,
                log_json=obs.log_json,
                cv_threads=max(1, (os.cpu_count() or 1) // cfg.pipeline.workers),
            )

        self.pool = WorkerPool(ctx, make_spec, cfg.pipeline.workers, cfg.pipeline.max_restarts_per_min)
        self.pool.start()
        self.log.info("workers_starting", workers=cfg.pipeline.workers, pids=[h.pid for h in self.pool.handles])
        try:
            self.source.open()
        except SourceError as e:
            self.log.error("source_open_failed", msg=str(e))
            return EXIT_USAGE
        except Exception as e:
            self.log.error("source_open_failed", msg=f"{type(e).__name__}: {e}")
            return EXIT_FAILED
        self.log.info("source_opened", source=self.source.name)
        fb = getattr(self.source, "frame_bytes", None)  # known only once open (e.g. a camera's configured size)
        if isinstance(fb, int) and fb > self.ring.slot_bytes:
            msg = (
                f"source {self.source.name} delivers frames of {fb / 2**20:.1f} MiB but the frame ring's slots hold "
                f"{self.ring.slot_bytes / 2**20:.1f} MiB: give width= and height= in the source URI (they size the slots)"
            )
            self.log.error("source_frames_too_large", msg=msg)
            print(f"inspectd: {msg}", file=sys.stderr)
            return EXIT_USAGE
        if self.config_path is not None:
            try:  # what the file said at start: a reload reports the sections it cannot apply live
                self._reload_file_cfg = load_config(self.config_path)
            except ConfigError:
                self._reload_file_cfg = None
        self._install_signals()
        if self.publisher.archive is not None:
            self._archive_q = queue.Queue(maxsize=ARCHIVE_QUEUE)
            self._archive_thread = threading.Thread(target=self._archive_main, name="inspectd-archive", daemon=True)
            self._archive_thread.start()
        if cfg.preview.enabled:  # its own process; a failure there is logged, never fatal
            from inspectd.publish.preview import Preview

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
        self.phase = "running"
        self._acq_thread = threading.Thread(target=self._acquire_main, name="inspectd-acquire", daemon=True)
        self._acq_thread.start()
        ready = len(self.pool.ready())
        status = f"running: {ready}/{self.pool.n} workers, source {self.source.name}"
        self.sd.ready(status)
        self.log.info("daemon_ready", workers_ready=ready, model=self.model_name, source=self.source.name)

    def _teardown(self) -> None:
        self._acq_stop.set()
        if self.ring is not None:
            self.ring.wake()
        if self._acq_thread is not None:
            self._acq_thread.join(timeout=3.0)
        if self.source is not None:
            with contextlib.suppress(Exception):
                self.source.close()
        if self.pool is not None:
            self.pool.stop(timeout_s=3.0)
        if self._archive_thread is not None:
            with contextlib.suppress(queue.Full):
                self._archive_q.put(None, timeout=5.0)
            self._archive_thread.join(timeout=10.0)
        if self.preview is not None:
            self.preview.close()
        if self.triggers is not None:
            self.triggers.close()
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
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.log.info("daemon_exit", exit_code=self.exit_code, frames=self.acquired, published=self.next_pub)

    # ================================================================== signals

    def _install_signals(self) -> None:
        def handler(signum, _frame):
            self._signals.append(signum)
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"s")

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, handler)

    def _handle_signals(self) -> None:
        while self._signals:
            sig = self._signals.popleft()
            if sig == signal.SIGHUP:
                self._reload()
            elif self.phase in ("starting", "running"):
                self.begin_drain(f"signal {signal.Signals(sig).name}")
            else:
                self.log.warning("signal_while_draining", signal=signal.Signals(sig).name)

    def _reload(self) -> None:
        if self.config_path is None:
            self.log.warning("reload_ignored", msg="SIGHUP: no config file to reload (started on defaults/flags)")
            self.metrics.recipe_reloads.labels(outcome="no_file").inc()
            return
        self.sd.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as e:
            self.log.error(
                "reload_failed", msg=f"keeping the current recipe; {self.config_path} is invalid", problems=e.problems
            )
            self.metrics.recipe_reloads.labels(outcome="invalid").inc()
            self.sd.ready("running (recipe reload failed: invalid file)")
            return
        before = self._reload_file_cfg
        others = [
            k
            for k in type(new).model_fields
            if k != "recipe" and before is not None and getattr(new, k) != getattr(before, k)
        ]
        old = self.cfg.recipe
        self.cfg = self.cfg.model_copy(update={"recipe": new.recipe})
        self.pool.broadcast(("recipe", new.recipe.model_dump_json()))
        self.metrics.recipe_reloads.labels(outcome="ok").inc()
        self.log.info(
            "recipe_reloaded",
            path=str(self.config_path),
            changed=old != new.recipe,
            recipe=new.recipe.model_dump(),
            not_reloaded=others or None,
            msg=("sections other than [recipe] changed and need a restart: " + ", ".join(others)) if others else None,
        )
        self._reload_file_cfg = new
        self.sd.ready("running (recipe reloaded)")

    # ================================================================== acquisition thread

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"a")

    def _backlog_full(self) -> bool:
        # frames admitted (in the hand-off queue or in `pending`) and not yet at a worker
        return self._backlog >= max(1, len(self.pool.ready()) if self.pool else 1)

    def _acquire_main(self) -> None:
        block = self.cfg.pipeline.overload == "block"
        src = self.source
        n = 0
        consecutive_errors = 0
        try:
            while not self._acq_stop.is_set():
                if self.stop_after is not None and n >= self.stop_after:
                    self._acq_q.put(_Acquired("stopped", message=f"stop_after={self.stop_after} frames"))
                    return
                slot = None
                if block:  # take the slot (and backlog room) first: the source waits, nothing times out in a queue
                    with self._cap:
                        while self._backlog_full() and not self._acq_stop.is_set():
                            self._cap.wait(0.1)
                    slot = self.ring.acquire(n, timeout=None, stop=self._acq_stop)
                    if slot is None:
                        continue
                try:
                    item = src.read(READ_TIMEOUT_S)
                    consecutive_errors = 0
                except EndOfStream:
                    if slot is not None:
                        self.ring.release(slot)
                    self._acq_q.put(_Acquired("eos", message=src.name))
                    return
                except Exception as e:
                    if slot is not None:
                        self.ring.release(slot)
                    consecutive_errors += 1
                    self._acq_q.put(_Acquired("source_error", message=f"{type(e).__name__}: {e}"))
                    self._wake()
                    self._acq_stop.wait(min(5.0, 0.2 * consecutive_errors))
                    continue
                if item is None:
                    if slot is not None:
                        self.ring.release(slot)
                    continue
                self._admit(item, n, slot)
                n += 1
            self._acq_q.put(_Acquired("stopped", message="stop requested"))
        except Exception as e:  # a bug here must not leave the loop waiting for acquisition forever
            self._acq_q.put(_Acquired("failed", message=f"acquisition thread failed: {type(e).__name__}: {e}"))
        finally:
            self._wake()

    def _admit(self, item: Frame | FrameReadError, acq: int, slot: int | None) -> None:
        t_recv = time.monotonic()
        now_ns = time.time_ns()
        meta = getattr(item, "meta", None)
        t_acq_ns = int(getattr(meta, "t_acquired_ns", 0) or 0) or now_ns
        age = (now_ns - t_acq_ns) / 1e9
        if not 0.0 <= age <= AGE_LIMIT_S:
            age = 0.0
        e = Entry(
            acq=acq,
            frame_id=item.frame_id,
            part_id=getattr(meta, "part_id", None),
            t_acq_ns=t_acq_ns,
            t_recv=t_recv,
            deadline=t_recv - age + self.deadline_s,
            t_host_ns=now_ns - int(age * 1e9),
        )
        if isinstance(item, FrameReadError):
            if slot is not None:
                self.ring.release(slot)
            self._acq_q.put(_Acquired("unreadable", e, item.message))
            self._wake()
            return
        if slot is None:
            slot = self.ring.acquire(acq, timeout=0.0)
            if slot is None:
                self._acq_q.put(_Acquired("overload", e))
                self._wake()
                return
        try:
            e.ref = self.ring.write(slot, item.image)
        except FrameTooLarge as err:
            self.ring.release(slot)
            self._acq_q.put(_Acquired("too_large", e, str(err)))
            self._wake()
            return
        e.meta_json = item.meta.model_dump_json(by_alias=True, exclude_none=True)
        e.source_ms = (age + time.monotonic() - t_recv) * 1000.0
        e.t_recv = time.monotonic()
        with self._cap:
            self._backlog += 1
        self._acq_q.put(_Acquired("frame", e))
        self._wake()

    # ================================================================== the loop

    def _loop(self) -> None:
        start_deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while self.phase != "done":
            now = time.monotonic()
            self._handle_signals()
            if self.phase == "starting":
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
            if self.phase == "done":
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
            ready = mp_wait([*objs.keys(), self._wake_r], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
            return
        for obj in ready:
            if obj == self._wake_r:
                with contextlib.suppress(BlockingIOError, OSError):
                    while os.read(self._wake_r, 4096):
                        pass
                continue
            h = objs.get(obj)
            if h is None or h.state == "dead":
                continue
            if obj is h.conn:
                self._read_worker(h)
            elif not h.proc.is_alive():  # sentinel
                self._on_worker_death(h)

    # ---------------------------------------------------------------- acquisition records

    def _take_acquired(self) -> None:
        while True:
            try:
                rec: _Acquired = self._acq_q.get_nowait()
            except queue.Empty:
                return
            if rec.kind == "failed":
                self._acq_done = True
                self.fail(rec.message)
                continue
            if rec.kind in ("eos", "stopped"):
                self._acq_done = True
                if rec.kind == "eos":
                    self._source_ended = True
                    self.log.info("source_ended", source=rec.message, frames=self.acquired)
                    if self.exit_at_end:
                        self.begin_drain("source ended")
                    else:
                        self.sd.status(f"idle: source {rec.message} ended after {self.acquired} frames")
                else:
                    self.log.info("acquisition_stopped", reason=rec.message, frames=self.acquired)
                    self.begin_drain(rec.message)
                continue
            if rec.kind == "source_error":
                self.metrics.source_errors.inc()
                self.log.error("source_error", msg=rec.message, source=self.source.name)
                continue
            e = rec.entry
            assert e is not None and e.acq == self.acquired, (e, self.acquired)
            self.acquired += 1
            self.entries[e.acq] = e
            self.metrics.frames_in.inc()
            if rec.kind == "frame":
                self.pending.append(e.acq)
                if self.fatal_msg is not None:
                    self._resolve(e, self._internal(e, f"daemon stopping: {self.fatal_msg}"))
            elif rec.kind == "unreadable":
                self._resolve(e, self._make(e, Result.ERROR, ReasonCode.UNREADABLE_FRAME, rec.message))
            elif rec.kind == "too_large":
                self._resolve(e, self._internal(e, rec.message))
            elif rec.kind == "overload":
                self.metrics.dropped.inc()
                self.metrics.timeouts.labels(cause="overload").inc()
                self.log.warning("overload", frame_id=e.frame_id, msg="no free frame slot: TIMEOUT without inspection")
                self._resolve(
                    e,
                    self._make(
                        e,
                        Result.TIMEOUT,
                        ReasonCode.DEADLINE,
                        f"overload: all {self.ring.slots} frame slots busy, frame not inspected",
                        value=0.0,
                        limit=self.cfg.station.deadline_ms,
                    ),
                )

    # ---------------------------------------------------------------- verdict helpers

    def _make(self, e: Entry, result: Result, code: ReasonCode, message: str, **reason) -> Verdict:
        return Verdict(
            seq=0,
            frame_id=e.frame_id,
            part_id=e.part_id,
            station=self.station,
            result=result,
            reasons=[Reason(code=code, message=message, **reason)],
            t_acquired_ns=e.t_acq_ns,
            model=self.model_name,
        )

    def _internal(self, e: Entry, message: str) -> Verdict:
        return self._make(e, Result.ERROR, ReasonCode.INTERNAL, message)

    def _resolve(self, e: Entry, v: Verdict) -> None:
        if e.verdict is None:
            e.verdict = v
        if not e.running and e.ref is not None:
            self._free_slot(e)

    def _free_slot(self, e: Entry) -> None:
        if e.ref is not None:
            self.ring.release(e.ref.slot)
            e.ref = None
            with self._cap:
                self._cap.notify_all()

    # ---------------------------------------------------------------- dispatch

    def _pending_pop(self) -> None:
        self.pending.popleft()
        with self._cap:
            self._backlog -= 1
            self._cap.notify_all()

    def _pending_clear(self) -> None:
        with self._cap:
            self._backlog -= len(self.pending)
            self.pending.clear()
            self._cap.notify_all()

    def _dispatch(self) -> None:
        if not self.pending:
            return
        idle = self.pool.idle()
        while self.pending:
            acq = self.pending[0]
            e = self.entries.get(acq)
            if e is None or e.verdict is not None or e.ref is None:
                self._pending_pop()  # timed out or failed while waiting: nothing to do
                continue
            if not idle:
                break
            h = idle.pop(0)
            msg = ("task", e.acq, e.ref, e.frame_id, e.meta_json, e.deadline)
            if not self.pool.send(h, msg):
                continue  # its pipe broke: the sentinel reports the death next; try the next worker
            self._pending_pop()
            h.current, e.running, e.worker, e.dispatched = e.acq, True, h.wid, time.monotonic()
            e.meta_json = None
        with self._cap:
            self._cap.notify_all()
        if self.pending and not self.pool.alive() and self.fatal_msg is not None:
            for acq in list(self.pending):
                e = self.entries.get(acq)
                if e is not None and e.verdict is None:
                    self._resolve(e, self._internal(e, f"no inspection worker left: {self.fatal_msg}"))
            self._pending_clear()

    # ---------------------------------------------------------------- worker messages

    def _read_worker(self, h: WorkerHandle) -> None:
        try:
            while h.conn.poll():
                self._on_message(h, h.conn.recv())
        except (EOFError, OSError, pickle.UnpicklingError):
            self._on_worker_death(h)

    def _on_message(self, h: WorkerHandle, msg: tuple) -> None:
        kind = msg[0]
        if kind == "result":
            _, acq, verdict_json, stage_ms, t0, t1 = msg
            self._on_result(h, acq, verdict_json, stage_ms, t0, t1)
        elif kind == "skipped":
            acq = msg[1]
            h.current = None
            e = self.entries.get(acq)
            if e is not None:
                e.running = False
                self._free_slot(e)
                if e.verdict is None:  # cannot happen (the worker skips only past the deadline); be safe
                    self._timeout(e, time.monotonic())
                self._forget_if_done(e)
        elif kind == "ready":
            _, pid, detector, warm_ms = msg
            h.state, h.pid, h.detector = "ready", pid, detector
            self.model_name = detector
            self.log.info(
                "worker_ready",
                worker=h.wid,
                pid=pid,
                detector=detector,
                warm_ms=round(warm_ms, 1),
                generation=h.generation,
            )
            if detector == "none":
                self.log.warning(
                    "no_tip_detector", worker=h.wid, msg="no tip detector: frames get ERROR DETECTION_UNAVAILABLE"
                )
        elif kind == "fatal":
            self.log.error("worker_fatal", worker=h.wid, pid=h.pid, msg=msg[1])

    def _on_result(self, h: WorkerHandle, acq: int, verdict_json, stage_ms: dict, t0: float, t1: float) -> None:
        h.current = None
        e = self.entries.get(acq)
        if e is None:
            self.log.error("unknown_result", worker=h.wid, acq=acq)
            return
        e.running = False
        if verdict_json is None:
            v = self._internal(e, f"worker {h.wid} failed on this frame: {stage_ms.get('error', '?')}")
            stage_ms = {}
        else:
            v = Verdict.from_json(verdict_json).model_copy(
                update={"t_acquired_ns": e.t_acq_ns, "station": self.station, "seq": 0}
            )
        for stage, ms in stage_ms.items():
            self.metrics.stage_latency.labels(stage=stage).observe(ms / 1000.0)
        e.stage_ms = {k: round(v_, 2) for k, v_ in stage_ms.items()}
        e.t_start, e.t_end, e.t_result = t0, t1, time.monotonic()
        if e.verdict is None:
            if v.result == Result.NG and self._archive_q is not None and e.ref is not None:
                e.ng_image = self.ring.view(e.ref).copy()
            if self.preview is not None and e.ref is not None and self.preview.due():
                e.preview = self.preview.grab(self.ring.view(e.ref))  # copied only when the preview wants it
            self._free_slot(e)
            e.verdict = v
            return
        # late: the frame was already decided (TIMEOUT)
        self._free_slot(e)
        self.metrics.late.inc()
        if e.published_seq is not None:
            self._record_late(e, v)
            self._forget_if_done(e)
        else:
            e.late = v

    def _record_late(self, e: Entry, v: Verdict) -> None:
        try:
            self.publisher.record_late(v, e.published_seq)
        except Exception as err:
            self.log.error("late_record_failed", frame_id=e.frame_id, seq=e.published_seq, msg=str(err))
        e.late = None

    def _forget_if_done(self, e: Entry) -> None:
        if e.published_seq is not None and not e.running:
            self.entries.pop(e.acq, None)

    def _on_worker_death(self, h: WorkerHandle) -> None:
        if h.state == "dead":
            return
        # a result sent just before dying still counts
        try:
            while h.conn.poll():
                self._on_message(h, h.conn.recv())
        except (EOFError, OSError, pickle.UnpicklingError):
            pass
        stopping = h.state == "stopping"
        how = self.pool.mark_dead(h)
        if stopping:
            return
        self.metrics.worker_crashes.inc()
        lost = self.entries.get(h.current) if h.current is not None else None
        self.log.error(
            "worker_crashed",
            worker=h.wid,
            pid=h.pid,
            how=how,
            frame_id=lost.frame_id if lost else None,
            msg=f"inspection worker {h.wid} (pid {h.pid}) {how}",
        )
        if lost is not None:
            lost.running = False
            self._free_slot(lost)
            if lost.verdict is None:
                self._resolve(
                    lost,
                    self._internal(lost, f"inspection worker {h.wid} (pid {h.pid}) crashed ({how}) on this frame"),
                )
            else:
                self.log.warning("late_result_lost", frame_id=lost.frame_id, msg="worker crashed after the TIMEOUT")
                self._forget_if_done(lost)
        h.current = None
        if self.phase == "draining" and self.fatal_msg is not None:
            return
        new = self.pool.restart(h)
        if new is None:
            self.fail(
                f"worker restart budget exhausted: {self.pool.max_restarts_per_min} restarts in the last minute "
                f"(pipeline.max_restarts_per_min); worker {h.wid} {how}"
            )
            return
        self.metrics.worker_restarts.inc()
        self.log.warning("worker_restarted", worker=new.wid, old_pid=h.pid, pid=new.pid, generation=new.generation)

    # ---------------------------------------------------------------- deadline watchdog

    def _timeout(self, e: Entry, now: float) -> None:
        waited_ms = (now - e.deadline) * 1000.0 + self.cfg.station.deadline_ms
        where = "at a worker" if e.running else "waiting for a worker"
        self.metrics.timeouts.labels(cause="deadline").inc()
        self.log.warning("deadline_missed", frame_id=e.frame_id, waited_ms=round(waited_ms, 1), where=where)
        self._resolve(
            e,
            self._make(
                e,
                Result.TIMEOUT,
                ReasonCode.DEADLINE,
                f"no verdict {self.cfg.station.deadline_ms:g} ms after acquisition (frame {where})",
                value=round(waited_ms, 1),
                limit=self.cfg.station.deadline_ms,
            ),
        )

    def _watchdog(self, now: float) -> None:
        for e in list(self.entries.values()):
            if e.verdict is None and now >= e.deadline:
                self._timeout(e, now)

    # ---------------------------------------------------------------- publishing

    def _publish_ready(self) -> None:
        if self.matcher is not None:
            self._take_triggers()
            if self.next_pub == self.acquired:  # no frame waiting to claim a trigger
                self._no_frame_owed.extend(self.matcher.expire_idle(time.time_ns()))
        while True:
            if not self._publish_no_frame_owed():
                return
            e = self.entries.get(self.next_pub)
            if e is None or e.verdict is None:
                return
            if not e.trigger_checked:
                self._identify(e)
                if not self._publish_no_frame_owed():
                    return
            v = self._try_publish(e.verdict, e.frame_id)
            if v is None:
                return
            e.published_seq = v.seq
            self.next_pub += 1
            self._observe(e, v)
            if e.ng_image is not None:
                self._archive(e, v)
            if e.preview is not None:  # never waits: a busy preview drops the frame
                self.preview.offer(e.preview, v)
                e.preview = None
            if e.late is not None:
                self._record_late(e, e.late)
            self._forget_if_done(e)

    def _try_publish(self, verdict: Verdict, frame_id: str) -> Verdict | None:
        """Publish (journal + wire): the verdict with its seq, or None while the publisher fails (retried next
        pass, fatal after a while)."""

        try:
            published = self.publisher.publish(verdict)
        except PublishError as err:
            now = time.monotonic()
            if self._publish_failing_since is None:
                self._publish_failing_since = now
            self.metrics.publish_failures.inc()
            self.log.error("publish_failed", frame_id=frame_id, msg=str(err))
            if now - self._publish_failing_since > PUBLISH_FAIL_FATAL_S:
                self.fail(f"publisher failing for {PUBLISH_FAIL_FATAL_S:g} s: {err}", publishable=False)
            return None
        self._publish_failing_since = None
        return published

    # ---------------------------------------------------------------- part identity (PLC triggers)

    def _take_triggers(self) -> None:
        """Move the triggers the listener thread received into the matcher (the loop owns the matcher)."""
        for t in self.triggers.take():
            self.metrics.triggers.labels(outcome="received").inc()
            self.matcher.push(t)

    def _trigger_rejected(self, msg: str) -> None:  # called from the trigger thread
        self.metrics.triggers.labels(outcome="rejected").inc()
        self.log.warning("trigger_rejected", msg=msg)

    def _identify(self, e: Entry) -> None:
        """Give the frame's verdict its part id, once, just before it is published (triggers.py has the rules)."""
        e.trigger_checked = True
        v = e.verdict
        part_id = v.part_id or e.part_id
        if self.matcher is not None:
            expired, trig = self.matcher.match(e.t_host_ns)
            self._no_frame_owed.extend(expired)
            if trig is None:
                self.metrics.triggers.labels(outcome="frame_without_trigger").inc()
                self.log.warning(
                    "untriggered_frame", frame_id=e.frame_id, msg="no PLC trigger for this frame: part_id null"
                )
                part_id = None
            else:
                self.metrics.triggers.labels(outcome="matched").inc()
                if part_id is not None and part_id != trig.part_id:
                    self.log.warning(
                        "part_id_mismatch", frame_id=e.frame_id, source_part_id=part_id, trigger_part_id=trig.part_id
                    )
                part_id = trig.part_id
        elif part_id is None and self.cfg.trigger.generate_part_id:
            part_id = f"{self.station}-{self.publisher.last_seq + 1 + len(self._no_frame_owed)}"
        if part_id != v.part_id:
            e.verdict = v.model_copy(update={"part_id": part_id})
        e.part_id = part_id

    def _publish_no_frame_owed(self) -> bool:
        """Publish the NO_FRAME verdicts owed to triggers that got no frame; False if publishing failed."""
        while self._no_frame_owed:
            t = self._no_frame_owed[0]
            v = Verdict(
                seq=0,
                frame_id="",
                part_id=t.part_id,
                station=self.station,
                result=Result.ERROR,
                reasons=[
                    Reason(
                        code=ReasonCode.NO_FRAME,
                        message=f"PLC trigger for part {t.part_id} got no frame "
                        f"(no frame acquired within {self.cfg.trigger.match_window_ms:g} ms after it)",
                    )
                ],
                t_acquired_ns=t.t_ns,
                model=self.model_name,
            )
            published = self._try_publish(v, "")
            if published is None:
                return False
            self._no_frame_owed.popleft()
            self.metrics.triggers.labels(outcome="no_frame").inc()
            self.metrics.verdicts.labels(result=Result.ERROR.value).inc()
            self.metrics.errors.labels(code=ReasonCode.NO_FRAME.value).inc()
            self.log.warning("no_frame", part_id=t.part_id, seq=published.seq, msg=v.reasons[0].message)
        return True

    def _observe(self, e: Entry, v: Verdict) -> None:
        m = self.metrics
        m.frames_out.inc()
        m.verdicts.labels(result=v.result.value).inc()
        if v.result == Result.ERROR:
            for r in v.reasons:
                m.errors.labels(code=r.code.value).inc()
        m.e2e_latency.observe(max(0.0, v.latency_ms) / 1000.0)
        self.log.info(
            "verdict",
            frame_id=v.frame_id,
            seq=v.seq,
            result=v.result.value,
            reasons=[r.code.value for r in v.reasons],
            latency_ms=v.latency_ms,
            part_id=v.part_id,
            worker=e.worker,
            stage_ms=e.stage_ms or None,
            timing_ms=self._timing(e),
            message=v.reasons[0].message if v.reasons and v.result in (Result.ERROR, Result.TIMEOUT) else None,
        )

    @staticmethod
    def _timing(e: Entry) -> dict | None:
        """Where the latency went, ms: source (acquisition stamp -> frame in its ring slot: read,
        decode, copy), queue (-> a worker starts), inspect (worker), return (-> the loop has the
        result), publish (-> journaled and sent)."""
        if e.t_start is None:
            return None
        return {
            "source": round(e.source_ms, 1),
            "queue": round((e.t_start - e.t_recv) * 1000, 1),
            "inspect": round((e.t_end - e.t_start) * 1000, 1),
            "return": round((e.t_result - e.t_end) * 1000, 1),
            "publish": round((time.monotonic() - e.t_result) * 1000, 1),
        }

    # ---------------------------------------------------------------- NG archive

    def _archive(self, e: Entry, v: Verdict) -> None:
        img, e.ng_image = e.ng_image, None
        try:
            self._archive_q.put_nowait((v, img))
        except queue.Full:
            self.metrics.archive_dropped.inc()
            self.log.warning(
                "archive_skipped", frame_id=v.frame_id, seq=v.seq, msg="archive writer behind; not archived"
            )

    def _archive_main(self) -> None:
        archive = self.publisher.archive
        while True:
            item = self._archive_q.get()
            if item is None:
                return
            v, img = item
            overlay = None
            try:
                bit_depth = 8 if img.dtype == np.uint8 else 16
                roi = SimpleNamespace(x0=v.roi[0], y0=v.roi[1], x1=v.roi[2], y1=v.roi[3]) if v.roi else None
                overlay = render_overlay(to_8bit(img, bit_depth), v, roi=roi)
            except Exception as err:  # an overlay bug must not cost the archive entry
                self.log.warning("overlay_failed", frame_id=v.frame_id, msg=f"{type(err).__name__}: {err}")
            if not archive.save(v.frame_id, v.seq, img, overlay, v):
                self.metrics.archive_dropped.inc()

    # ---------------------------------------------------------------- housekeeping

    def _periodic(self, now: float) -> None:
        self.sd.watchdog(now)
        if now - self._last_health < 1.0:
            return
        self._last_health = now
        self._kill_stuck(now)
        m = self.metrics
        inflight = len(self.pool.busy())
        pending = sum(1 for a in self.pending if (x := self.entries.get(a)) is not None and x.verdict is None)
        unpublished = self.acquired - self.next_pub
        m.queue_depth.labels(queue="pending").set(pending)
        m.queue_depth.labels(queue="inflight").set(inflight)
        m.queue_depth.labels(queue="reorder").set(unpublished)
        m.queue_depth.labels(queue="archive").set(self._archive_q.qsize() if self._archive_q else 0)
        m.ring_free.set(self.ring.free_count)
        ready = len(self.pool.ready())
        m.workers_alive.set(ready)
        state = self.phase if not (self._source_ended and self.phase == "running") else "idle"
        with contextlib.suppress(Exception):
            self.publisher.set_health(
                state=state,
                workers=self.pool.n,
                workers_ready=ready,
                worker_restarts=self.pool.restarts_total,
                frames_in=self.acquired,
                pending=pending,
                inflight=inflight,
                ring_free=self.ring.free_count,
                model=self.model_name,
                source=self.source.name,
                source_health=self._source_health(),
                deadline_ms=self.cfg.station.deadline_ms,
            )
        if self.phase == "running" and self.sd.enabled:
            self.sd.status(
                f"{state}: {self.acquired} frames, {ready}/{self.pool.n} workers, ring {self.ring.free_count} free"
            )

    def _source_health(self) -> dict | None:
        """A source's own health counters (e.g. a camera's connected/reconnects/timeouts) for the heartbeat."""
        h = getattr(self.source, "health", None)
        if h is None:
            return None
        with contextlib.suppress(Exception):
            return dataclasses.asdict(h) if dataclasses.is_dataclass(h) else dict(h)
        return None

    def _kill_stuck(self, now: float) -> None:
        """A worker hung in a stage (not crashed) would hold its slot forever: kill it; supervision restarts it."""
        limit = max(STUCK_MIN_S, 20.0 * self.deadline_s)
        for h in self.pool.busy():
            e = self.entries.get(h.current)
            if e is not None and e.dispatched is not None and now - e.dispatched > limit and h.state == "ready":
                self.log.error(
                    "worker_stuck",
                    worker=h.wid,
                    pid=h.pid,
                    frame_id=e.frame_id,
                    seconds=round(now - e.dispatched, 1),
                    msg=f"worker {h.wid} has held one frame for more than {limit:g} s: killing it",
                )
                h.state = "killing"
                with contextlib.suppress(Exception):
                    h.proc.kill()

    # ---------------------------------------------------------------- drain / fail

    def begin_drain(self, reason: str) -> None:
        if self.phase in ("draining", "done"):
            return
        self.phase = "draining"
        self.drain_reason = reason
        self._drain_started = time.monotonic()
        self._acq_stop.set()
        self.ring.wake()
        with self._cap:
            self._cap.notify_all()
        self.sd.stopping(f"draining: {reason}")
        self.log.info("draining", reason=reason, in_flight=self.acquired - self.next_pub, running=len(self.pool.busy()))
        if self._acq_thread is None:
            self._acq_done = True

    def fail(self, msg: str, publishable: bool = True) -> None:
        """Stop with exit 1: every frame still owed gets ERROR INTERNAL naming the failure (if publishable)."""
        if self.fatal_msg is not None:
            return
        self.fatal_msg = msg
        self.exit_code = EXIT_FAILED
        self.log.critical("daemon_failed", msg=msg)
        self.begin_drain(f"failure: {msg}")
        if self.phase == "draining":
            for e in list(self.entries.values()):
                if e.verdict is None:
                    self._resolve(e, self._internal(e, f"daemon stopping: {msg}"))
            self._pending_clear()
        if not publishable:
            self.phase = "done"

    def _check_done(self, now: float) -> None:
        if self.phase != "draining":
            return
        if not self._acq_done:
            if self._acq_thread is not None and not self._acq_thread.is_alive():
                self._acq_done = True  # it died without its last record
            else:
                return
        self._take_acquired()
        if self.next_pub < self.acquired:
            return
        if self.matcher is not None or self._no_frame_owed:
            if self.matcher is not None:  # the cells still waiting for a frame are owed a verdict too
                self._take_triggers()
                self._no_frame_owed.extend(self.matcher.drain())
            self._publish_ready()
            if self._no_frame_owed:
                return
        if self._all_published_at is None:
            self._all_published_at = now
        late_waiting = [e for e in self.entries.values() if e.running]
        grace = 0.0 if self.fatal_msg else LATE_GRACE_S
        if late_waiting and now - self._all_published_at < grace:
            return
        if late_waiting:
            self.log.warning("late_results_not_awaited", frames=[e.frame_id for e in late_waiting], grace_s=grace)
        self.log.info(
            "drained", reason=self.drain_reason, frames=self.acquired, seconds=round(now - self._drain_started, 3)
        )
        self.phase = "done"


# ====================================================================== entry points


def run_daemon(
    cfg: Config,
    *,
    config_path: Path | None,
    detector_factory: Callable[[], object] | None = None,
    stop_after: int | None = None,
    exit_at_end: bool = False,
    slot_bytes: int | None = None,
) -> int:
    """Run the daemon until SIGTERM/SIGINT (or `stop_after` frames, or the source's end with `exit_at_end`).

    Returns the exit code: 0 drained cleanly; 1 failed at run time (worker restart
    budget, publisher, ring); 2 bad source URI. Must be called from the main thread
    (it installs signal handlers). `detector_factory` must be picklable; default:
    HrnetDetector from `cfg.engine`. Without a factory the model must exist and
    load here first, or the daemon refuses to start (exit 2): a station whose
    every frame says ERROR DETECTION_UNAVAILABLE looks alive and rejects every cell.
    """
    configure_logging(cfg.observability.log_level, cfg.observability.log_json)
    if detector_factory is None:
        det = load_default_detector(cfg.engine.model_dump())
        if det.name == "none":
            get_logger(proc="main").error(
                "daemon_refused", reason="no_tip_model", error=det.why, model=str(cfg.engine.model),
                hint="set [engine] model to an .onnx with its card, or run with --tips labels",
            )  # fmt: skip
            return EXIT_USAGE
        del det
    d = Daemon(
        cfg,
        config_path=config_path,
        detector_factory=detector_factory,
        stop_after=stop_after,
        exit_at_end=exit_at_end,
        slot_bytes=slot_bytes,
    )
    return d.run()


def _detector_from_spec(spec: str):
    """'labels' -> LabelOracle; 'model' -> default; 'module:attr' -> that importable factory."""
    if spec == "model":
        return None
    if spec == "labels":
        return LabelOracle
    mod, _, attr = spec.partition(":")
    if not mod or not attr:
        raise SystemExit(f"--tips must be model, labels or MODULE:FACTORY, not {spec!r}")
    import importlib

    return getattr(importlib.import_module(mod), attr)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m inspectd.pipeline.daemon", description="Run the inspection daemon.")
    p.add_argument("--config", type=Path)
    p.add_argument("--source")
    p.add_argument("--pub")
    p.add_argument("--query")
    p.add_argument("--journal")
    p.add_argument("--archive-dir")
    p.add_argument("--station")
    p.add_argument("--trigger", help="PULL address for PLC trigger messages {\"part_id\": ...}")
    p.add_argument("--deadline-ms", type=float)
    p.add_argument("--workers", type=int)
    p.add_argument("--ring-slots", type=int)
    p.add_argument("--overload", choices=["timeout", "block"])
    p.add_argument("--max-restarts-per-min", type=int)
    p.add_argument("--metrics-port", type=int, help="-1 disables")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--tips", default="model", help="model | labels (oracle) | MODULE:FACTORY")
    p.add_argument("--stop-after", type=int)
    p.add_argument("--exit-at-end", action="store_true")
    p.add_argument("--slot-mb", type=float)
    a = p.parse_args(argv)
    overrides = {
        "source.uri": a.source,
        "publish.pub": a.pub,
        "publish.query": a.query,
        "publish.journal": a.journal,
        "publish.archive_dir": a.archive_dir,
        "station.name": a.station,
        "trigger.address": a.trigger,
        "station.deadline_ms": a.deadline_ms,
        "pipeline.workers": a.workers,
        "pipeline.ring_slots": a.ring_slots,
        "pipeline.overload": a.overload,
        "pipeline.max_restarts_per_min": a.max_restarts_per_min,
        "observability.log_level": a.log_level,
    }
    if a.metrics_port is not None:
        overrides["observability.metrics_port"] = None if a.metrics_port < 0 else a.metrics_port
    try:
        cfg = load_config(a.config, {k: v for k, v in overrides.items() if v is not None})
        if a.metrics_port is not None and a.metrics_port < 0:
            cfg = cfg.model_copy(update={"observability": cfg.observability.model_copy(update={"metrics_port": None})})
    except ConfigError as e:
        print(f"config error\n{e}", file=sys.stderr)
        return EXIT_USAGE
    return run_daemon(
        cfg,
        config_path=a.config,
        detector_factory=_detector_from_spec(a.tips),
        stop_after=a.stop_after,
        exit_at_end=a.exit_at_end,
        slot_bytes=int(a.slot_mb * 2**20) if a.slot_mb else None,
    )


if __name__ == "__main__":
    sys.exit(main())
