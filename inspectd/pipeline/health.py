"""The daemon's once-a-second housekeeping: systemd watchdog, stuck workers, gauges, the heartbeat's health.

A mixin of `Daemon`. What an operator sees without reading logs comes from
here: the Prometheus queue gauges, the health block of every heartbeat
(state, workers ready, restarts, ring, model, the source's own counters) and
the systemd status line.
"""

from __future__ import annotations

import contextlib
import dataclasses

from inspectd.pipeline.entry import Phase

__all__ = ["Housekeeping"]


class Housekeeping:
    def _periodic(self, now: float) -> None:
        self.sd.watchdog(now)
        if now - self._last_health < 1.0:
            return
        self._last_health = now
        self._kill_stuck(now)
        self._supervise_trigger()
        problem = self.publisher.journal_problem()
        if problem is not None and self.fatal_msg is None:
            self.publisher.set_health(state="failed", journal=problem)
            self.fail(problem)
        m = self.metrics
        inflight = len(self.pool.busy())
        pending = sum(1 for a in self.pending if (x := self.entries.get(a)) is not None and x.verdict is None)
        unpublished = self.acquired - self.next_pub
        m.queue_depth.labels(queue="pending").set(pending)
        m.queue_depth.labels(queue="inflight").set(inflight)
        m.queue_depth.labels(queue="reorder").set(unpublished)
        m.queue_depth.labels(queue="archive").set(self.archiver.qsize() if self.archiver else 0)
        m.ring_free.set(self.ring.free_count)
        ready = len(self.pool.ready())
        m.workers_alive.set(ready)
        state = "idle" if self._source_ended and self.phase == Phase.RUNNING else self.phase.value
        if self.acq_paused is not None and self.phase == Phase.RUNNING:
            state = "paused"  # taking no frames: `acquisition_paused` says why
        elif self.identity.listener is not None and not self.identity.listener.alive and self.phase == Phase.RUNNING:
            state = "degraded"  # part ids are not being read (restarted next second)
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
                trigger_health=self._trigger_health(),
                acquisition_paused=self.acq_paused,
            )
        if self.phase == Phase.RUNNING and self.sd.enabled:
            self.sd.status(
                f"{state}: {self.acquired} frames, {ready}/{self.pool.n} workers, ring {self.ring.free_count} free"
            )

    def _supervise_trigger(self) -> None:
        lis = self.identity.listener
        if lis is not None and lis.supervise():
            self.metrics.trigger_restarts.inc()
            self.log.error("trigger_listener_restarted", died_of=lis.last_death, restarts=lis.restarts)

    def _trigger_health(self) -> dict | None:
        """The PLC trigger listener: reading (alive), and what it received, rejected, failed on."""
        lis = self.identity.listener
        if lis is None:
            return None
        return {"alive": lis.alive, "received": lis.received, "rejected": lis.rejected, "errors": lis.errors,
                "restarts": lis.restarts, "last_death": lis.last_death}  # fmt: skip

    def _source_health(self) -> dict | None:
        """A source's own health counters (e.g. a camera's connected/reconnects/timeouts) for the heartbeat."""
        h = getattr(self.source, "health", None)
        if h is None:
            return None
        with contextlib.suppress(Exception):
            return dataclasses.asdict(h) if dataclasses.is_dataclass(h) else dict(h)
        return None
