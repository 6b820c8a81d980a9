"""The verdict publisher: journal first, then ZeroMQ PUB; heartbeats; the query socket.

Threads and sockets (a ZeroMQ socket is used by exactly one thread):

- the caller's thread(s): `publish()` commits the verdict to the journal (which
  assigns its seq) and puts the encoded message on a `queue.SimpleQueue`;
  a lock keeps journal order == queue order when several threads publish;
- ``inspectd-pub``: owns the PUB socket; sends queued verdicts and, when due,
  a heartbeat.  It tracks the seq of the last verdict it *sent*, so a
  heartbeat's ``last_seq`` never runs ahead of the verdicts on the wire;
- ``inspectd-query``: owns the ROUTER socket and its own read-only journal
  connection; answers ``since`` / ``health`` / ``stats``; an inproc PAIR
  wakes it for shutdown;
- ``inspectd-retention`` (with journal_keep_days): prunes old journal rows.

Publisher holds the state the threads share; their loops are in sender.py,
query_server.py and retention.py; socket options, CURVE and thread start-up in
sockets.py; opening the journal in station_journal.py; PublishError in errors.py
(re-exported here).

PUB never blocks: a subscriber that cannot keep up loses messages beyond the
high-water mark (SNDHWM); everything is in the journal, and the subscriber
notices the seq gap and asks ``since``.
"""

from __future__ import annotations

import functools
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

import structlog
import zmq

from inspectd.config import PublishConfig
from inspectd.publish.archive import NgArchive
from inspectd.publish.errors import PublishError
from inspectd.publish.journal import Journal, JournalError, Synchronous
from inspectd.publish.keys import CurveKeyError, check_clients_dir
from inspectd.publish.late import record_late
from inspectd.publish.metrics import NullMetrics
from inspectd.publish.query_server import run_query_server, stop_query_server
from inspectd.publish.retention import retention_thread
from inspectd.publish.sender import HEARTBEAT_SCHEMA, STOP, run_sender
from inspectd.publish.sockets import curve_setup, start_authenticator, start_socket_thread
from inspectd.publish.station_journal import open_station_journal
from inspectd.verdict import Verdict


class Publisher:
    """Publishes verdicts of one station; see the module docstring and docs/publish.md."""

    def __init__(
        self,
        cfg: PublishConfig,
        station: str,
        *,
        log=None,
        metrics=None,
        journal_synchronous: Synchronous = "FULL",
        journal_keep_days: float | None = None,
        retention_interval_s: float = 3600.0,
        new_journal: bool = False,
    ) -> None:
        if not station:
            raise ValueError("station must be a non-empty string")
        self.cfg = cfg
        self.station = station
        self._topic = f"verdict.{station}".encode()
        self._log = (log if log is not None else structlog.get_logger()).bind(component="publish", station=station)
        self._metrics = metrics if metrics is not None else NullMetrics()
        self._sync = journal_synchronous
        self._new_journal = new_journal  # the operator's go-ahead to start a journal other than the last one
        self.previous_journal_id: str | None = None
        self._keep_s = None if journal_keep_days is None else float(journal_keep_days) * 86400.0
        self._retention_interval_s = retention_interval_s
        self._retention_stop = threading.Event()
        self._retention: threading.Thread | None = None
        self._lock = threading.Lock()  # publish(): journal order == send order
        self._health: dict[str, Any] = {}
        self._health_lock = threading.Lock()
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._state = "new"  # new -> running -> closed
        self._journal: Journal | None = None
        self._lockfile = None
        self._ctx: zmq.Context | None = None
        self._auth = None
        self._threads: list[threading.Thread] = []
        self._pub_address = ""
        self._query_address = ""
        self._ctrl_address = f"inproc://inspectd-query-ctrl-{id(self)}"
        self._last_seq = 0  # last seq handed to the sender (journaled)
        self._sent_seq = 0  # last seq the sender put on the wire (heartbeats report this)
        self._published = 0
        self._t_start = 0.0
        self._foreign_stations: set[str] = set()
        self._curve: tuple[bytes, bytes] | None = None
        self._sender: threading.Thread | None = None
        self.archive: NgArchive | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Open the journal, bind PUB and ROUTER, start the sender and query threads."""
        if self._state != "new":
            raise PublishError(f"Publisher.start(): already {self._state}")
        cfg = self.cfg
        try:
            opened = open_station_journal(Path(cfg.journal), self._sync, allow_new=self._new_journal)
            self._journal, self._lockfile = opened.journal, opened.lockfile
            self.previous_journal_id = opened.previous_journal_id
            if self.previous_journal_id is not None:
                self._log.warning("journal_new", journal=str(cfg.journal), journal_id=self._journal.journal_id,
                                  previous_journal_id=self.previous_journal_id, seq_from=self._journal.last_seq(self.station) + 1)  # fmt: skip
                self._health["previous_journal_id"] = self.previous_journal_id
            self._last_seq = self._sent_seq = self._journal.last_seq(self.station)
            self._curve, clients = curve_setup(cfg, self._log)
            self._ctx = zmq.Context()
            if self._curve is not None:
                self._auth = start_authenticator(self._ctx, clients, self._log, self._metrics)
            self._t_start = time.monotonic()
            # Query first: the first heartbeat already carries its address.
            self._query_address = start_socket_thread("inspectd-query", self._query_main, self._threads)
            self._pub_address = start_socket_thread("inspectd-pub", self._sender_main, self._threads)
            self._sender = self._threads[-1]
            if self._keep_s is not None:
                self._retention = retention_thread(
                    cfg.journal,
                    synchronous=self._sync,
                    keep_s=self._keep_s,
                    interval_s=self._retention_interval_s,
                    stop=self._retention_stop,
                    metrics=self._metrics,
                    log=self._log,
                )
                self._retention.start()
            if cfg.archive_dir is not None:
                self.archive = _open_archive(cfg, self._log, self._metrics)
        except BaseException:
            self._state = "running"  # let close() tear down what was started
            self.close()
            raise
        self._state = "running"
        self._log.info(
            "publisher_started",
            pub=self._pub_address,
            query=self._query_address,
            journal=str(cfg.journal),
            journal_id=self._journal.journal_id,
            last_seq=self._last_seq,
            synchronous=self._sync,
            curve=self._curve is not None,
        )

    def close(self) -> None:
        """Drain and stop the threads, close the sockets and the journal.  Idempotent."""
        if self._state == "closed":
            return
        was_running = self._state == "running"
        with self._lock:
            self._state = "closed"
        self._q.put(STOP)
        if self._ctx is not None and self._threads:
            stop_query_server(self._ctx, self._ctrl_address)
        self._retention_stop.set()
        for t in self._threads + ([self._retention] if self._retention else []):
            t.join(timeout=5)
            if t.is_alive():
                self._log.error("publisher_thread_stuck", thread=t.name)
        if self._auth is not None:
            self._auth.stop()
        if self._ctx is not None:
            if any(t.is_alive() for t in self._threads):
                self._ctx.destroy(linger=0)
            else:
                self._ctx.term()
            self._ctx = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lockfile is not None:
            self._lockfile.close()  # releases the flock
            self._lockfile = None
        if was_running:
            self._log.info("publisher_closed", last_seq=self._last_seq, published=self._published)

    def __enter__(self) -> Publisher:
        if self._state == "new":
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ properties

    @property
    def pub_address(self) -> str:
        """The bound PUB endpoint (the real port when the config said ``*``)."""
        return self._pub_address

    @property
    def query_address(self) -> str:
        return self._query_address

    def journal_problem(self) -> str | None:
        """The journal file deleted or replaced under the running publisher (`Journal.file_problem`), or None."""
        return self._journal.file_problem() if self._journal is not None else None

    @property
    def zmq_context(self) -> zmq.Context | None:
        """The context of the publisher's sockets, with the CURVE authenticator when CURVE is on:
        a socket another part makes here (the PLC trigger PULL) is authenticated the same way."""
        return self._ctx

    @property
    def curve_server_keys(self) -> tuple[bytes, bytes] | None:
        """(public, secret) of the station's CURVE key pair, or None without CURVE."""
        return self._curve

    @property
    def journal_id(self) -> str:
        return self._journal.journal_id if self._journal else ""

    @property
    def last_seq(self) -> int:
        """Seq of the last verdict journaled (and handed to the PUB thread)."""
        return self._last_seq

    # ------------------------------------------------------------------ publishing

    def record_acquired(self, frame_id: str, part_id: str | None, t_acquired_ns: int, source: str) -> int:
        """Journal a frame the moment it is acquired (before inspection); returns the row its verdict closes.

        Raises PublishError when the journal cannot take it: the caller must
        stop taking frames (one it cannot account for must not be inspected).
        """
        if self._state != "running":
            raise PublishError(f"record_acquired() on a publisher that is {self._state} (frame {frame_id!r})")
        try:
            return self._journal.record_acquired(self.station, frame_id, part_id, t_acquired_ns, source)
        except JournalError as e:
            self._metrics.error("journal")
            self._log.error("journal_acquired_failed", frame_id=frame_id, error=str(e))
            raise PublishError(str(e)) from e

    def unfinished(self) -> list[dict]:
        """Frames journaled as acquired that never got a verdict (the last run was killed), oldest first."""
        return self._journal.unfinished(self.station) if self._journal is not None else []

    def last_frame_id(self) -> str | None:
        """frame_id of the last verdict journaled about a frame (where a replay resumes), or None."""
        return self._journal.last_frame_id(self.station) if self._journal is not None else None

    def publish(self, verdict: Verdict, acquired_id: int | None = None) -> Verdict:
        """Seq, publish time and latency assigned; journaled (committed); then sent. Returns it.

        `acquired_id` (from `record_acquired`) is closed in the same commit.
        Raises PublishError when not running or when the journal cannot take
        the verdict (then nothing is sent: the wire never carries a seq the
        journal does not hold).
        """
        return self.publish_many([(verdict, acquired_id)])[0]

    def publish_many(self, items: list[tuple[Verdict, int | None]]) -> list[Verdict]:
        """`publish` for several verdicts in order, group-committed: one journal transaction (one fsync),
        then all put on the wire. All or none: on PublishError none was journaled and none sent."""
        if not items:
            return []
        t0 = time.perf_counter()
        now = time.time_ns()
        stamped = []
        for verdict, acquired_id in items:
            upd: dict[str, Any] = {"t_published_ns": now}
            if verdict.t_acquired_ns > 0:
                upd["latency_ms"] = round((now - verdict.t_acquired_ns) / 1e6, 3)
            if verdict.station != self.station:
                upd["station"] = self.station
                self._note_foreign_station(verdict)
            stamped.append((verdict.model_copy(update=upd), acquired_id))
        with self._lock:
            if self._state != "running":
                raise PublishError(f"publish() on a publisher that is {self._state} (frame {items[0][0].frame_id!r})")
            if not self._sender.is_alive():
                self._metrics.error("sender_dead")
                raise PublishError("the PUB sender thread has died; see the log")
            try:
                done = self._journal.append_many(stamped)
            except JournalError as e:
                self._metrics.error("journal")
                self._log.error("journal_append_failed", frames=[v.frame_id for v, _ in stamped], error=str(e))
                raise PublishError(str(e)) from e
            for v, text in done:  # only now, every one of them durable
                self._q.put((v.seq, text.encode()))
            self._last_seq = done[-1][0].seq
            self._published += len(done)
        dt = time.perf_counter() - t0
        out = [v for v, _ in done]
        for v in out:
            self._metrics.published(self.station, v.seq, str(v.result), dt)
            self._log.debug("verdict_published", seq=v.seq, frame_id=v.frame_id, result=str(v.result))
        return out

    def _note_foreign_station(self, verdict: Verdict) -> None:
        if verdict.station not in self._foreign_stations:
            self._foreign_stations.add(verdict.station)
            self._log.warning(
                "verdict_station_rewritten",
                frame_id=verdict.frame_id,
                given=verdict.station,
                note="verdicts are published under the daemon's station; seq is per station",
            )

    def record_late(self, verdict: Verdict, published_seq: int) -> None:
        """Journal a result that came after its frame was published as TIMEOUT (seq `published_seq`); not
        published (late.py says why)."""
        if self._state != "running":
            raise PublishError(f"record_late() on a publisher that is {self._state}")
        record_late(self._journal, self.station, verdict, published_seq, metrics=self._metrics, log=self._log)

    def reload_curve_clients(self) -> None:
        """Re-read curve_clients_dir (after adding or removing a client's public key)."""
        if self._auth is None:
            return
        try:
            clients = check_clients_dir(self.cfg.curve_clients_dir)
        except CurveKeyError as e:
            raise PublishError(str(e)) from e
        self._auth.configure_curve(domain="*", location=str(clients))
        self._log.info("curve_clients_reloaded", dir=str(clients))

    def set_health(self, **fields: Any) -> None:
        """Merge `fields` (JSON-serialisable) into the health in heartbeats and the health answer."""
        json.dumps(fields)  # fail here, in the caller, not in the sender thread
        with self._health_lock:
            self._health.update(fields)

    def health(self) -> dict:
        with self._health_lock:
            h = dict(self._health)
        return {
            "station": self.station,
            "last_seq": self._sent_seq,
            "t_ns": time.time_ns(),
            "uptime_s": round(time.monotonic() - self._t_start, 3),
            "published": self._published,
            "pub": self._pub_address,
            "query": self._query_address,
            "journal_id": self.journal_id,
            "health": h,
        }

    # ------------------------------------------------------------------ threads

    def _query_main(self, ready: queue.SimpleQueue) -> None:
        run_query_server(
            ready,
            ctx=self._ctx,
            cfg=self.cfg,
            curve=self._curve,
            ctrl_address=self._ctrl_address,
            station=self.station,
            info=self.health,
            on_bound=functools.partial(setattr, self, "_query_address"),
            metrics=self._metrics,
            log=self._log,
        )

    def _sender_main(self, ready: queue.SimpleQueue) -> None:
        run_sender(
            ready,
            ctx=self._ctx,
            cfg=self.cfg,
            curve=self._curve,
            q=self._q,
            topic=self._topic,
            heartbeat=self._heartbeat,
            on_bound=functools.partial(setattr, self, "_pub_address"),
            on_sent=functools.partial(setattr, self, "_sent_seq"),
            metrics=self._metrics,
            log=self._log,
        )

    def _heartbeat(self) -> dict:
        """What the PUB thread sends on the ``heartbeat`` topic (docs/publish.md): a subset of `health()`."""
        h = self.health()
        return {"schema": HEARTBEAT_SCHEMA} | {k: h[k] for k in ("station", "last_seq", "t_ns", "health", "query", "journal_id")}


def _open_archive(cfg: PublishConfig, log, metrics) -> NgArchive:
    try:
        return NgArchive(cfg.archive_dir, cfg.archive_max_mb, log=log, metrics=metrics, compression=cfg.archive_compression)
    except OSError as e:
        raise PublishError(f"NG archive dir {cfg.archive_dir}: {e.strerror or e}") from e
