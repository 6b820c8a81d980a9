"""A result that comes after its frame was published as TIMEOUT: journaled, logged, never published.

The line already acted on the TIMEOUT; a second, contradicting verdict for
the same part would be worse than none. The journal keeps it beside the
TIMEOUT row (docs/publish.md) so that a process engineer can see what the
cell would have got.
"""

from __future__ import annotations

import time
from typing import Any

from inspectd.publish.errors import PublishError
from inspectd.publish.journal import Journal, JournalError
from inspectd.verdict import Verdict

__all__ = ["record_late"]


def record_late(journal: Journal, station: str, verdict: Verdict, published_seq: int, *, metrics, log) -> None:
    """Journal `verdict` as the late result of seq `published_seq`; PublishError if the journal cannot take it."""
    now = time.time_ns()
    upd: dict[str, Any] = {"station": station, "t_published_ns": 0}
    if verdict.t_acquired_ns > 0:
        upd["latency_ms"] = round((now - verdict.t_acquired_ns) / 1e6, 3)
    v = verdict.model_copy(update=upd)
    try:
        published = journal.get(station, published_seq)
        journal.append_late(v, published_seq, now)
    except JournalError as e:
        metrics.error("journal")
        log.error("journal_late_failed", frame_id=v.frame_id, published_seq=published_seq, error=str(e))
        raise PublishError(str(e)) from e
    metrics.late(str(v.result))
    fields = {"published_seq": published_seq, "frame_id": v.frame_id, "late_result": str(v.result), "latency_ms": v.latency_ms}
    if published is None:
        log.warning("late_result_unknown_seq", **fields)
    elif published.get("frame_id") != v.frame_id:
        log.warning("late_result_frame_mismatch", published_frame_id=published.get("frame_id"), **fields)
    else:
        log.info("late_result_journaled", published_result=published.get("result"), **fields)
