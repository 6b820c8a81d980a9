"""One acquired frame's record in the daemon, and the daemon's phases.

An `Entry` lives from acquisition until its verdict is published and no worker
holds the frame; every part of the daemon (acquisition, dispatch, the
watchdog, publishing) reads and writes the same record, so its fields say
where the frame is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from inspectd.pipeline.shm_ring import SlotRef
from inspectd.verdict import Reason, ReasonCode, Result, Verdict

if TYPE_CHECKING:
    from inspectd.pipeline.ng_archiver import ArchiveGrab

__all__ = ["Entry", "Phase", "owed_verdict"]


class Phase(StrEnum):
    """STARTING (workers warming up) -> RUNNING (acquiring) -> DRAINING (no new frames; publish what is owed) -> DONE."""

    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    DONE = "done"


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
    ng_image: ArchiveGrab | None = None  # the NG frame, copied into an archive slot at its result
    preview: object | None = None  # preview.Grab: a decimated copy taken when the preview's rate allowed
    stage_ms: dict = field(default_factory=dict)
    t_start: float | None = None  # monotonic, worker began / finished inspecting
    t_end: float | None = None
    t_result: float | None = None  # monotonic, result received by the loop
    source_ms: float = 0.0  # acquisition stamp -> frame written to its slot
    t_host_ns: int = 0  # acquisition on the host clock (trigger matching)
    trigger_checked: bool = False  # matched against the PLC triggers (once, just before publishing)
    acquired_id: int | None = None  # its journal row "acquired, verdict owed" (closed by the verdict's commit)

    def timing(self, now: float) -> dict | None:
        """Where the latency went, ms: source (acquisition stamp -> frame in its ring slot: read,
        decode, copy), queue (-> a worker starts), inspect (worker), return (-> the loop has the
        result), publish (-> journaled and sent, at `now`)."""
        if self.t_start is None:
            return None
        return {
            "source": round(self.source_ms, 1),
            "queue": round((self.t_start - self.t_recv) * 1000, 1),
            "inspect": round((self.t_end - self.t_start) * 1000, 1),
            "return": round((self.t_result - self.t_end) * 1000, 1),
            "publish": round((now - self.t_result) * 1000, 1),
        }


def owed_verdict(
    e: Entry, station: str, model: str, result: Result, code: ReasonCode, message: str, **reason
) -> Verdict:
    """The verdict the daemon itself gives a frame it could not inspect (ERROR, TIMEOUT), with one reason."""
    return Verdict(
        seq=0,
        frame_id=e.frame_id,
        part_id=e.part_id,
        station=station,
        result=result,
        reasons=[Reason(code=code, message=message, **reason)],
        t_acquired_ns=e.t_acq_ns,
        model=model,
    )
