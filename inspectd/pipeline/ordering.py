"""The daemon's verdict side: each frame's verdict decided once, published strictly in acquisition order.

A mixin of `Daemon` (daemon.py holds the state and the loop that calls these).
A frame's verdict is decided by its result, an ERROR (crash, unreadable,
daemon stopping) or the deadline watchdog's TIMEOUT, whichever comes first
(`_resolve`); `_publish_ready` then publishes decided verdicts from the head
of the acquisition order, with the NO_FRAME verdicts owed to PLC triggers
slotted in before, journal first; a run of decided verdicts is group-committed
(one journal transaction, one fsync) and only then sent; a result that arrives
after its TIMEOUT is recorded in the journal's late table, never sent.
"""

from __future__ import annotations

import time

from inspectd.pipeline.entry import Entry, owed_verdict
from inspectd.publish.publisher import PublishError
from inspectd.verdict import ReasonCode, Result, Verdict

__all__ = ["Ordering"]

PUBLISH_FAIL_FATAL_S = 10.0  # the publisher failing this long stops the daemon (exit 1)
PUBLISH_BATCH = 64  # verdicts group-committed at most per journal transaction


class Ordering:
    def _make(self, e: Entry, result: Result, code: ReasonCode, message: str, **reason) -> Verdict:
        return owed_verdict(e, self.station, self.model_name, result, code, message, **reason)

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
            self._room()

    def _record_late(self, e: Entry, v: Verdict) -> None:
        try:
            self.publisher.record_late(v, e.published_seq)
        except Exception as err:
            self.log.error("late_record_failed", frame_id=e.frame_id, seq=e.published_seq, msg=str(err))
        e.late = None

    def _forget_if_done(self, e: Entry) -> None:
        if e.published_seq is not None and not e.running:
            self.entries.pop(e.acq, None)

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

    def _publish_ready(self) -> None:
        if self.identity.triggered:
            self.identity.take()
            if self.next_pub == self.acquired:  # no frame waiting to claim a trigger
                self.identity.expire_idle()
        while True:
            if not self._publish_no_frame_owed():
                return
            batch = self._ready_run()
            if not batch:
                return
            published = self._try_publish_many(batch)
            if published is None:
                return
            for e, v in zip(batch, published):
                self._published(e, v)

    def _ready_run(self) -> list[Entry]:
        """The decided verdicts at the head of the acquisition order, to be group-committed (at most
        PUBLISH_BATCH); it ends before a frame whose trigger matching left NO_FRAME verdicts owed ahead of it."""
        run: list[Entry] = []
        while len(run) < PUBLISH_BATCH:
            e = self.entries.get(self.next_pub + len(run))
            if e is None or e.verdict is None:
                break
            if not e.trigger_checked:
                self.identity.identify(e, self.publisher.last_seq + 1 + len(run))
                if self.identity.owed:  # they go out first (next pass), then this frame
                    break
            run.append(e)
        return run

    def _published(self, e: Entry, v: Verdict) -> None:
        e.published_seq = v.seq
        self.next_pub += 1
        self._observe(e, v)
        if e.ng_image is not None:
            img, e.ng_image = e.ng_image, None
            self.archiver.offer(v, img)
        if e.preview is not None:  # never waits: a busy preview drops the frame
            self.preview.offer(e.preview, v)
            e.preview = None
        if e.late is not None:
            self._record_late(e, e.late)
        self._forget_if_done(e)

    def _try_publish(self, verdict: Verdict, frame_id: str, acquired_id: int | None = None) -> Verdict | None:
        """Publish one verdict (journal + wire, closing the frame's acquired row): it with its seq, or None
        while the publisher fails (retried next pass, fatal after a while)."""
        return self._publishing(lambda: self.publisher.publish(verdict, acquired_id), frame_id)

    def _try_publish_many(self, run: list[Entry]) -> list[Verdict] | None:
        """Publish the frames of `run` in one group commit; None while the publisher fails."""
        items = [(e.verdict, e.acquired_id) for e in run]
        return self._publishing(lambda: self.publisher.publish_many(items), run[0].frame_id)

    def _publishing(self, call, frame_id: str):
        try:
            published = call()
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

    def _publish_no_frame_owed(self) -> bool:
        """Publish the NO_FRAME verdicts owed to triggers that got no frame; False if publishing failed."""
        while self.identity.owed:
            published = self._try_publish(self.identity.no_frame_verdict(self.identity.owed[0], self.model_name), "")
            if published is None:
                return False
            self.identity.no_frame_published(published)
        return True

    def _observe(self, e: Entry, v: Verdict) -> None:
        m = self.metrics
        m.frames_out.inc()
        m.verdicts.labels(result=v.result.value).inc()
        if v.result == Result.ERROR:
            for r in v.reasons:
                m.errors.labels(code=r.code.value).inc()
        m.e2e_latency.observe(max(0.0, v.latency_ms) / 1000.0)
        # OK and NG are the line's normal output (the PUB socket, the journal and the metrics carry them): a log
        # line each would be 1000 lines/s at line rate, over journald's default rate limit (10 000 per 30 s)
        problem = v.result in (Result.ERROR, Result.TIMEOUT)
        emit = self.log.info if problem or self.cfg.observability.verdict_log == "all" else self.log.debug
        emit(
            "verdict",
            frame_id=v.frame_id,
            seq=v.seq,
            result=v.result.value,
            reasons=[r.code.value for r in v.reasons],
            latency_ms=v.latency_ms,
            part_id=v.part_id,
            worker=e.worker,
            stage_ms=e.stage_ms or None,
            timing_ms=e.timing(time.monotonic()),
            message=v.reasons[0].message if v.reasons and problem else None,
        )
