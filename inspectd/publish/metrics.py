"""Metric hooks of the publisher and the NG archive.

`Publisher(..., metrics=None)` and `NgArchive(..., metrics=None)` call these
methods; with None they call `NullMetrics` (nothing).  `PublishMetrics`
records them in Prometheus (pass the daemon's registry):

=====================================================  =========  =====================
name                                                   type       labels
=====================================================  =========  =====================
inspectd_publish_verdicts_total                        counter    result
inspectd_publish_seconds                               histogram  (publish() wall time)
inspectd_publish_last_seq                              gauge      station
inspectd_publish_late_total                            counter    result
inspectd_publish_heartbeats_total                      counter
inspectd_publish_queries_total                         counter    op, outcome (ok/error)
inspectd_publish_errors_total                          counter    kind
inspectd_archive_saved_total                           counter
inspectd_archive_evicted_total                         counter
inspectd_archive_failed_total                          counter    reason
inspectd_archive_bytes                                 gauge
=====================================================  =========  =====================
"""

from __future__ import annotations


class NullMetrics:
    """Every hook, doing nothing."""

    def published(self, station: str, seq: int, result: str, seconds: float) -> None: ...
    def late(self, result: str) -> None: ...
    def heartbeat(self) -> None: ...
    def query(self, op: str, ok: bool) -> None: ...
    def error(self, kind: str) -> None: ...
    def archive_saved(self, total_bytes: int) -> None: ...
    def archive_evicted(self, n: int, total_bytes: int) -> None: ...
    def archive_failed(self, reason: str) -> None: ...


class PublishMetrics(NullMetrics):
    """The hooks as Prometheus metrics, registered in `registry` (default: the global one)."""

    def __init__(self, registry=None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = REGISTRY if registry is None else registry
        self.verdicts = Counter(
            "inspectd_publish_verdicts_total", "Verdicts published, by result", ["result"], registry=reg
        )
        self.seconds = Histogram(
            "inspectd_publish_seconds",
            "Wall time of Publisher.publish() (journal commit + hand-off to the PUB thread)",
            buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0),
            registry=reg,
        )
        self.last_seq = Gauge("inspectd_publish_last_seq", "Last published seq", ["station"], registry=reg)
        self.late_total = Counter(
            "inspectd_publish_late_total", "Results after their TIMEOUT (journaled, not published)", ["result"],
            registry=reg,
        )
        self.heartbeats = Counter("inspectd_publish_heartbeats_total", "Heartbeats sent", registry=reg)
        self.queries = Counter(
            "inspectd_publish_queries_total", "Query-socket requests", ["op", "outcome"], registry=reg
        )
        self.errors = Counter("inspectd_publish_errors_total", "Publisher faults", ["kind"], registry=reg)
        self.archive_saved_total = Counter("inspectd_archive_saved_total", "NG frames archived", registry=reg)
        self.archive_evicted_total = Counter(
            "inspectd_archive_evicted_total", "NG archive entries deleted to stay under the bound", registry=reg
        )
        self.archive_failed_total = Counter(
            "inspectd_archive_failed_total", "NG frames not archived", ["reason"], registry=reg
        )
        self.archive_bytes = Gauge("inspectd_archive_bytes", "Bytes held by the NG archive", registry=reg)

    def published(self, station: str, seq: int, result: str, seconds: float) -> None:
        self.verdicts.labels(result).inc()
        self.seconds.observe(seconds)
        self.last_seq.labels(station).set(seq)

    def late(self, result: str) -> None:
        self.late_total.labels(result).inc()

    def heartbeat(self) -> None:
        self.heartbeats.inc()

    def query(self, op: str, ok: bool) -> None:
        self.queries.labels(op, "ok" if ok else "error").inc()

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def archive_saved(self, total_bytes: int) -> None:
        self.archive_saved_total.inc()
        self.archive_bytes.set(total_bytes)

    def archive_evicted(self, n: int, total_bytes: int) -> None:
        self.archive_evicted_total.inc(n)
        self.archive_bytes.set(total_bytes)

    def archive_failed(self, reason: str) -> None:
        self.archive_failed_total.labels(reason).inc()
