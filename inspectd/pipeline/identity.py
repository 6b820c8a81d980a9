"""Which cell a verdict is for: PLC triggers matched to frames, and the NO_FRAME verdicts owed to triggers.

The event loop owns a `PartIdentity`. With ``[trigger] address`` set it binds
the PULL socket (`triggers.TriggerListener`, its own thread) and matches
(`triggers.TriggerMatcher`, the rules) each frame's verdict to a trigger just
before publishing; triggers that get no frame pile up in `owed`, and the loop
publishes an ERROR / NO_FRAME for each, in order, before the next frame.
Without an address the source's part id is used, or one is generated when
``generate_part_id`` is on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from inspectd.config import TriggerConfig
from inspectd.observability import Metrics
from inspectd.pipeline.entry import Entry
from inspectd.pipeline.triggers import Trigger, TriggerListener, TriggerMatcher
from inspectd.publish.sockets import check_beyond_loopback
from inspectd.verdict import Reason, ReasonCode, Result, Verdict

__all__ = ["PartIdentity"]


class PartIdentity:
    def __init__(self, cfg: TriggerConfig, station: str, metrics: Metrics, log, wake: Callable[[], None]):
        self.cfg, self.station, self.metrics, self.log, self._wake = cfg, station, metrics, log, wake
        self.matcher: TriggerMatcher | None = None
        self.listener: TriggerListener | None = None
        self.owed: deque[Trigger] = deque()  # triggers owed a NO_FRAME verdict, oldest first

    @property
    def triggered(self) -> bool:
        """Part ids come from PLC triggers (a listener is bound)."""
        return self.matcher is not None

    def listen(self, ctx=None, curve: tuple[bytes, bytes] | None = None, allow_plaintext: bool = False) -> str:
        """Bind the trigger socket (a CURVE server with `curve`, on the publisher's `ctx`); returns the endpoint.

        Errors raise, naming the address. Beyond loopback without CURVE, anyone who
        can reach the port could set the part id of the next cell: refused
        (PlaintextBeyondLoopback) unless `allow_plaintext`, and then logged.
        """
        t = self.cfg
        check_beyond_loopback(self.log, (("trigger", t.address),), curve, allow_plaintext)
        self.matcher = TriggerMatcher(t.match_window_ms, t.late_ms, t.no_frame_ms)
        self.listener = TriggerListener(t.address, on_message=self._wake, on_reject=self._rejected, ctx=ctx, curve=curve)
        try:
            bound = self.listener.start()
        except BaseException:
            self.matcher = self.listener = None
            raise
        return bound

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def _rejected(self, msg: str) -> None:  # called from the listener's thread
        self.metrics.triggers.labels(outcome="rejected").inc()
        self.log.warning("trigger_rejected", msg=msg)

    def take(self) -> None:
        """Move the triggers the listener received into the matcher (the loop owns the matcher)."""
        if self.listener is None:
            return
        for t in self.listener.take():
            self.metrics.triggers.labels(outcome="received").inc()
            self.matcher.push(t)

    def expire_idle(self) -> None:
        """With no frame waiting to claim one, triggers older than ``no_frame_ms`` are owed NO_FRAME."""
        if self.matcher is not None:
            self.owed.extend(self.matcher.expire_idle(time.time_ns()))

    def drain(self) -> None:
        """At shutdown every trigger still waiting for a frame is owed NO_FRAME."""
        if self.matcher is not None:
            self.take()
            self.owed.extend(self.matcher.drain())

    def identify(self, e: Entry, next_seq: int) -> None:
        """Give the frame's verdict its part id, once, just before it is published (triggers.py has the rules).

        `next_seq` is the seq the next published verdict gets (for generated part ids).
        """
        e.trigger_checked = True
        v = e.verdict
        part_id = v.part_id or e.part_id
        if self.matcher is not None:
            expired, trig = self.matcher.match(e.t_host_ns)
            self.owed.extend(expired)
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
        elif part_id is None and self.cfg.generate_part_id:
            part_id = f"{self.station}-{next_seq + len(self.owed)}"
        if part_id != v.part_id:
            e.verdict = v.model_copy(update={"part_id": part_id})
        e.part_id = part_id

    def no_frame_verdict(self, t: Trigger, model: str) -> Verdict:
        return Verdict(
            seq=0,
            frame_id="",
            part_id=t.part_id,
            station=self.station,
            result=Result.ERROR,
            reasons=[
                Reason(
                    code=ReasonCode.NO_FRAME,
                    message=f"PLC trigger for part {t.part_id} got no frame "
                    f"(no frame acquired within {self.cfg.match_window_ms:g} ms after it)",
                )
            ],
            t_acquired_ns=t.t_ns,
            model=model,
        )

    def no_frame_published(self, v: Verdict) -> None:
        """The oldest owed trigger's NO_FRAME verdict went out as `v`."""
        self.owed.popleft()
        self.metrics.triggers.labels(outcome="no_frame").inc()
        self.metrics.verdicts.labels(result=Result.ERROR.value).inc()
        self.metrics.errors.labels(code=ReasonCode.NO_FRAME.value).inc()
        self.log.warning("no_frame", part_id=v.part_id, seq=v.seq, msg=v.reasons[0].message)
