"""After a crash: the frames the last run took but never answered, and where a replay picks up.

The journal holds a row for every frame from the moment it was acquired
until its verdict is committed (`Journal.record_acquired`). A row still there
at start means the previous run was killed (kill -9, power cut, OOM) between
the two: that frame is published now, before any new frame, as ERROR
INTERRUPTED, so the line gets one verdict per acquired frame even across a
crash. A replay source then resumes after the last frame the journal has a
verdict for (``replay:DIR?resume=0`` plays from the first frame again).
"""

from __future__ import annotations

import datetime as dt
import time

from inspectd.publish.publisher import Publisher
from inspectd.verdict import Reason, ReasonCode, Result, Verdict

__all__ = ["publish_interrupted", "resume_source"]


def _iso(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(t_ns / 1e9, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def publish_interrupted(publisher: Publisher, station: str, metrics, log) -> int:
    """Publish ERROR INTERRUPTED for every frame journaled as acquired without a verdict; returns how many.

    Raises PublishError when the journal cannot take them (the daemon must
    not start taking new frames ahead of frames it still owes).
    """
    rows = publisher.unfinished()
    if not rows:
        return 0
    now = _iso(time.time_ns())
    for r in rows:
        msg = (
            f"acquired at {_iso(r['t_journaled_ns'])} from {r['source']} by a previous run of the daemon, which "
            f"stopped (killed or crashed) before this frame's verdict; published at the restart of {now}"
        )
        v = Verdict(
            seq=0,
            frame_id=r["frame_id"],
            part_id=r["part_id"],
            station=station,
            result=Result.ERROR,
            reasons=[Reason(code=ReasonCode.INTERRUPTED, message=msg)],
            t_acquired_ns=r["t_acquired_ns"],
            model="none",
        )
        published = publisher.publish(v, acquired_id=r["id"])
        metrics.interrupted.inc()
        metrics.verdicts.labels(result=Result.ERROR.value).inc()
        metrics.errors.labels(code=ReasonCode.INTERRUPTED.value).inc()
        log.warning("frame_interrupted", frame_id=r["frame_id"], part_id=r["part_id"], seq=published.seq, msg=msg)
    log.warning("interrupted_frames_published", frames=len(rows), last_seq=publisher.last_seq)
    return len(rows)


def resume_source(source, publisher: Publisher, log) -> None:
    """A source that can resume (`resume_after(frame_id)`, replay) goes on after the last frame with a verdict."""
    resume = getattr(source, "resume_after", None)
    if not callable(resume):
        return
    last = publisher.last_frame_id()
    if last is None:
        return
    position = resume(last)
    if position is None:
        log.info("source_from_start", source=source.name, last_journaled=last,
                 why="the journal's last frame is not in this source, or the source was told to start over")  # fmt: skip
    else:
        log.info("source_resumed", source=source.name, after=last, position=position)
