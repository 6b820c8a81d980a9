"""How the daemon stops: drain (acquisition stops, every frame owed is published), or fail (exit 1).

A mixin of `Daemon`. Draining ends when every acquired frame has its verdict
on the wire, the cells the PLC triggered without a frame have theirs, and
results still running for frames already published as TIMEOUT have had
LATE_GRACE_S to reach the journal's late table. A failure first resolves
every frame still owed as ERROR INTERNAL naming it, then drains.
"""

from __future__ import annotations

import time

from inspectd.pipeline.entry import Phase
from inspectd.pipeline.startup import EXIT_FAILED

__all__ = ["LATE_GRACE_S", "Draining"]

LATE_GRACE_S = 2.0  # on drain, how long to wait for results of frames already published as TIMEOUT


class Draining:
    def begin_drain(self, reason: str) -> None:
        if self.phase in (Phase.DRAINING, Phase.DONE):
            return
        self.phase = Phase.DRAINING
        self.drain_reason = reason
        self._drain_started = time.monotonic()
        if self.acquisition is not None:
            self.acquisition.stop()
        self.sd.stopping(f"draining: {reason}")
        self.log.info("draining", reason=reason, in_flight=self.acquired - self.next_pub, running=len(self.pool.busy()))
        if self.acquisition is None:
            self._acq_done = True

    def fail(self, msg: str, publishable: bool = True) -> None:
        """Stop with exit 1: every frame still owed gets ERROR INTERNAL naming the failure (if publishable).

        A second call can only make it final: `publishable=False` (the publisher itself has failed for
        a while) ends the drain even when an earlier failure started it.
        """
        if self.fatal_msg is not None:
            if not publishable and self.phase != Phase.DONE:
                self.log.critical("daemon_failed", msg=msg, first=self.fatal_msg)
                self.phase = Phase.DONE
            return
        self.fatal_msg = msg
        self.exit_code = EXIT_FAILED
        self.log.critical("daemon_failed", msg=msg)
        self.begin_drain(f"failure: {msg}")
        if self.phase == Phase.DRAINING:
            for e in list(self.entries.values()):
                if e.verdict is None:
                    self._resolve(e, self._internal(e, f"daemon stopping: {msg}"))
            self._pending_clear()
        if not publishable:
            self.phase = Phase.DONE

    def _check_done(self, now: float) -> None:
        if self.phase != Phase.DRAINING:
            return
        if not self._acq_done:
            if self.acquisition is not None and self.acquisition.died():
                self._acq_done = True  # it died without its last record
            else:
                return
        self._take_acquired()
        if self.next_pub < self.acquired:
            return
        if self.identity.triggered or self.identity.owed:
            self.identity.drain()  # the cells still waiting for a frame are owed a verdict too
            self._publish_ready()
            if self.identity.owed:
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
        self.phase = Phase.DONE
