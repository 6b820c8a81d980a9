"""The ``inspectd-retention`` thread: delete journal rows older than journal_keep_days.

Split from publisher.py: retention runs on a journal connection of its own
and shares nothing with the PUB and query threads but the stop event that
Publisher.close() sets.
"""

from __future__ import annotations

import threading
import time

from inspectd.publish.journal import Journal, JournalError, Synchronous
from inspectd.osthread import named_thread


def retention_thread(
    journal_path, *, synchronous: Synchronous, keep_s: float, interval_s: float, stop: threading.Event, metrics, log
) -> threading.Thread:
    """The ``inspectd-retention`` daemon thread running `run_retention` (not started)."""
    return named_thread(
        run_retention,
        "inspectd-retention",
        args=(journal_path,),
        kwargs={
            "synchronous": synchronous,
            "keep_s": keep_s,
            "interval_s": interval_s,
            "stop": stop,
            "metrics": metrics,
            "log": log,
        },
    )


def run_retention(
    journal_path, *, synchronous: Synchronous, keep_s: float, interval_s: float, stop: threading.Event, metrics, log
) -> None:
    """Prune verdicts older than `keep_s` now and every `interval_s` until `stop` is set."""
    try:
        journal = Journal(journal_path, synchronous=synchronous)
    except JournalError as e:
        metrics.error("retention")
        log.error("journal_retention_failed", error=str(e))
        return
    try:
        while not stop.is_set():
            cutoff = time.time_ns() - int(keep_s * 1e9)
            try:
                n = journal.prune(cutoff)
                if n:
                    log.info("journal_pruned", verdicts=n, keep_days=keep_s / 86400.0)
            except JournalError as e:
                metrics.error("retention")
                log.error("journal_retention_failed", error=str(e))
            stop.wait(interval_s)
    finally:
        journal.close()
