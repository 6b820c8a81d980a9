"""The daemon's frame side: acquired frames into the book, out to idle workers, results and crashes back.

A mixin of `Daemon` (daemon.py holds the state and the loop that calls these):
`_take_acquired` turns the acquisition thread's records into entries,
`_dispatch` hands pending frames to idle workers in acquisition order, and
the worker handlers take results (on time, or late after a TIMEOUT), the
"ready" handshake, and deaths (the frame held gets ERROR, the worker is
restarted within the budget). `_kill_stuck` kills a worker that has held one
frame far past its deadline, so supervision restarts it.
"""

from __future__ import annotations

import contextlib
import pickle
import time

from inspectd.pipeline.acquisition import Kind
from inspectd.pipeline.entry import Phase
from inspectd.pipeline.supervisor import WorkerHandle, WorkerState
from inspectd.verdict import ReasonCode, Result, Verdict

__all__ = ["Dispatching"]

STUCK_MIN_S = 30.0  # a worker holding one frame longer than max(this, 20 x deadline) is killed (-9) and restarted


class Dispatching:
    def _take_acquired(self) -> None:
        if self.acquisition is None:
            return
        for rec in self.acquisition.take():
            if rec.kind == Kind.FAILED:
                self._acq_done = True
                self.fail(rec.message)
                continue
            if rec.kind in (Kind.EOS, Kind.STOPPED):
                self._acq_done = True
                if rec.kind == Kind.EOS:
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
            if rec.kind in (Kind.PAUSED, Kind.RESUMED):
                if rec.kind == Kind.PAUSED:
                    self.log.error("acquisition_paused", msg=rec.message, frames=self.acquired)
                else:
                    self.log.warning("acquisition_resumed", paused_for=self.acq_paused, frames=self.acquired)
                self.acq_paused = rec.message if rec.kind == Kind.PAUSED else None
                self.metrics.acquisition_paused.set(int(self.acq_paused is not None))
                self._last_health = 0.0  # health and heartbeat say so at once, not within the second
                continue
            if rec.kind == Kind.SOURCE_ERROR:
                self.metrics.source_errors.inc()
                self.log.error("source_error", msg=rec.message, source=self.source.name)
                continue
            e = rec.entry
            assert e is not None and e.acq == self.acquired, (e, self.acquired)
            self.acquired += 1
            self.entries[e.acq] = e
            self.metrics.frames_in.inc()
            if rec.kind == Kind.JOURNAL_FAILED:
                self._acq_done = True  # the thread took no frame after this one
                msg = f"frame could not be journaled as acquired, acquisition stopped: {rec.message}"
                self.log.critical("frame_not_journaled", frame_id=e.frame_id, msg=rec.message)
                self._resolve(e, self._internal(e, msg))
                self.fail(msg)
            elif rec.kind == Kind.FRAME:
                self.pending.append(e.acq)
                if self.fatal_msg is not None:
                    self._resolve(e, self._internal(e, f"daemon stopping: {self.fatal_msg}"))
            elif rec.kind == Kind.UNREADABLE:
                self._resolve(e, self._make(e, Result.ERROR, ReasonCode.UNREADABLE_FRAME, rec.message))
            elif rec.kind == Kind.TOO_LARGE:
                self._resolve(e, self._internal(e, rec.message))
            elif rec.kind == Kind.OVERLOAD:
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

    def _room(self) -> None:
        if self.acquisition is not None:
            self.acquisition.room()

    def _pending_pop(self) -> None:
        self.pending.popleft()
        self.acquisition.dispatched()

    def _pending_clear(self) -> None:
        n = len(self.pending)
        self.pending.clear()
        if self.acquisition is not None:
            self.acquisition.dispatched(n)

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
        self._room()
        if self.pending and not self.pool.alive() and self.fatal_msg is not None:
            for acq in list(self.pending):
                e = self.entries.get(acq)
                if e is not None and e.verdict is None:
                    self._resolve(e, self._internal(e, f"no inspection worker left: {self.fatal_msg}"))
            self._pending_clear()

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
            _, pid, detector, warm_ms, corners, fallback = msg
            h.state, h.pid, h.detector = WorkerState.READY, pid, detector
            self.model_name = detector
            self.log.info(
                "worker_ready",
                worker=h.wid,
                pid=pid,
                detector=detector,
                corners=corners,
                warm_ms=round(warm_ms, 1),
                generation=h.generation,
            )
            if fallback:  # [corners] backend = "cuda" could not run there; on_unavailable = "opencv" allowed it
                self.metrics.corner_fallbacks.inc()
                self.log.warning("corner_backend_fallback", worker=h.wid, asked="cuda", running=corners, msg=fallback)
            if detector == "none":
                self.log.warning(
                    "no_tip_detector", worker=h.wid, msg="no tip detector: frames get ERROR DETECTION_UNAVAILABLE"
                )
        elif kind == "fatal":
            self.log.error("worker_fatal", worker=h.wid, pid=h.pid, msg=msg[1])
            if h.state == WorkerState.STARTING and h.generation == 0:
                # the first start cannot work at all (a corner backend that cannot run, ...): restarting
                # would only fail the same way, so stop now with the worker's reason
                self.fail(f"worker {h.wid} cannot start: {msg[1]}")

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
            if v.result == Result.NG and self.archiver is not None and e.ref is not None:
                e.ng_image = self.archiver.grab(self.ring.view(e.ref), e.frame_id)
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

    def _on_worker_death(self, h: WorkerHandle) -> None:
        if h.state == WorkerState.DEAD:
            return
        # a result sent just before dying still counts
        try:
            while h.conn.poll():
                self._on_message(h, h.conn.recv())
        except (EOFError, OSError, pickle.UnpicklingError):
            pass
        stopping = h.state == WorkerState.STOPPING
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
        if self.phase == Phase.DRAINING and self.fatal_msg is not None:
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

    def _kill_stuck(self, now: float) -> None:
        """A worker hung in a stage (not crashed) would hold its slot forever: kill it; supervision restarts it."""
        limit = max(STUCK_MIN_S, 20.0 * self.deadline_s)
        for h in self.pool.busy():
            e = self.entries.get(h.current)
            if e is not None and e.dispatched is not None and now - e.dispatched > limit and h.state == WorkerState.READY:
                self.log.error(
                    "worker_stuck",
                    worker=h.wid,
                    pid=h.pid,
                    frame_id=e.frame_id,
                    seconds=round(now - e.dispatched, 1),
                    msg=f"worker {h.wid} has held one frame for more than {limit:g} s: killing it",
                )
                h.state = WorkerState.KILLING
                with contextlib.suppress(Exception):
                    h.proc.kill()
