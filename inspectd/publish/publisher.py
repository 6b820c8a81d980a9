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
  wakes it for shutdown.

PUB never blocks: a subscriber that cannot keep up loses messages beyond the
high-water mark (SNDHWM); everything is in the journal, and the subscriber
notices the seq gap and asks ``since``.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import structlog
import zmq

from inspectd.config import PublishConfig
from inspectd.publish import query as q
from inspectd.publish.archive import NgArchive
from inspectd.publish.journal import Journal, JournalError, Synchronous
from inspectd.publish.keys import CurveKeyError, check_clients_dir, load_secret
from inspectd.publish.metrics import NullMetrics
from inspectd.verdict import Verdict

HEARTBEAT_SCHEMA = "inspectd.heartbeat/1"
HEARTBEAT_TOPIC = b"heartbeat"
FLUSH_MS = 250  # how long close() lets queued messages drain before dropping them
_STOP = object()
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class PublishError(Exception):
    """The publisher cannot start or cannot publish; the message says what and where."""


def _host(endpoint: str) -> str | None:
    if not endpoint.startswith("tcp://"):
        return None
    hostport = endpoint[len("tcp://") :]
    return hostport.rsplit(":", 1)[0]


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
    ) -> None:
        if not station:
            raise ValueError("station must be a non-empty string")
        self.cfg = cfg
        self.station = station
        self._topic = f"verdict.{station}".encode()
        self._log = (log if log is not None else structlog.get_logger()).bind(component="publish", station=station)
        self._metrics = metrics if metrics is not None else NullMetrics()
        self._sync = journal_synchronous
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
            self._lock_journal(Path(cfg.journal))
            try:
                self._journal = Journal(cfg.journal, synchronous=self._sync)
            except JournalError as e:
                raise PublishError(str(e)) from e
            self._last_seq = self._sent_seq = self._journal.last_seq(self.station)
            if cfg.curve_secret_key is not None:
                try:
                    self._curve = load_secret(cfg.curve_secret_key, "CURVE secret key (publish.curve_secret_key)")
                    clients = check_clients_dir(cfg.curve_clients_dir)
                except CurveKeyError as e:
                    raise PublishError(str(e)) from e
            self._ctx = zmq.Context()
            if self._curve is not None:
                from zmq.auth.thread import ThreadAuthenticator

                self._auth = ThreadAuthenticator(self._ctx, log=_AuthLog(self._log, self._metrics))
                self._auth.start()
                self._auth.configure_curve(domain="*", location=str(clients))
            self._t_start = time.monotonic()
            # Query first: the first heartbeat already carries its address.
            self._query_address = self._start_thread("inspectd-query", self._query_main)
            self._pub_address = self._start_thread("inspectd-pub", self._sender_main)
            self._sender = self._threads[-1]
            if self._keep_s is not None:
                self._retention = threading.Thread(target=self._retention_main, name="inspectd-retention", daemon=True)
                self._retention.start()
            if cfg.archive_dir is not None:
                try:
                    self.archive = NgArchive(
                        cfg.archive_dir,
                        cfg.archive_max_mb,
                        log=self._log,
                        metrics=self._metrics,
                        compression=cfg.archive_compression,
                    )
                except OSError as e:
                    raise PublishError(f"NG archive dir {cfg.archive_dir}: {e.strerror or e}") from e
        except BaseException:
            self._state = "running"  # let close() tear down what was started
            self.close()
            raise
        self._state = "running"
        for name, addr in (("pub", self._pub_address), ("query", self._query_address)):
            host = _host(addr)
            if host is not None and host not in _LOOPBACK and self._curve is None:
                self._log.warning("bound_beyond_loopback_without_curve", socket=name, address=addr)
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

    def _lock_journal(self, path: Path) -> None:
        """One daemon per journal: an exclusive flock on <journal>.lock (released by the OS on exit)."""
        lock = path.with_name(path.name + ".lock")
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            f = open(lock, "a+")
        except OSError as e:
            raise PublishError(f"journal lock {lock}: {e.strerror or e}") from e
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            raise PublishError(f"journal {path} is in use by another publisher (lock {lock} is held)") from e
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lockfile = f

    def _start_thread(self, name: str, target) -> str:
        ready: queue.SimpleQueue = queue.SimpleQueue()
        t = threading.Thread(target=target, args=(ready,), name=name, daemon=True)
        t.start()
        self._threads.append(t)
        try:
            res = ready.get(timeout=10)
        except queue.Empty as e:
            raise PublishError(f"{name}: thread did not start within 10 s") from e
        if isinstance(res, BaseException):
            raise res
        return res

    def close(self) -> None:
        """Drain and stop the threads, close the sockets and the journal.  Idempotent."""
        if self._state == "closed":
            return
        was_running = self._state == "running"
        with self._lock:
            self._state = "closed"
        self._q.put(_STOP)
        if self._ctx is not None and self._threads:
            try:
                ctrl = self._ctx.socket(zmq.PAIR)
                ctrl.linger = 1000  # let "stop" reach the query thread before term()
                ctrl.connect(self._ctrl_address)
                ctrl.send(b"stop", zmq.NOBLOCK)
                ctrl.close()
            except zmq.ZMQError:
                pass
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

    @property
    def journal_id(self) -> str:
        return self._journal.journal_id if self._journal else ""

    @property
    def last_seq(self) -> int:
        """Seq of the last verdict journaled (and handed to the PUB thread)."""
        return self._last_seq

    # ------------------------------------------------------------------ publishing

    def publish(self, verdict: Verdict) -> Verdict:
        """Seq, publish time and latency assigned; journaled (committed); then sent. Returns it.

        Raises PublishError when not running or when the journal cannot take
        the verdict (then nothing is sent: the wire never carries a seq the
        journal does not hold).
        """
        t0 = time.perf_counter()
        now = time.time_ns()
        upd: dict[str, Any] = {"t_published_ns": now}
        if verdict.t_acquired_ns > 0:
            upd["latency_ms"] = round((now - verdict.t_acquired_ns) / 1e6, 3)
        if verdict.station != self.station:
            upd["station"] = self.station
            self._note_foreign_station(verdict)
        v = verdict.model_copy(update=upd)
        with self._lock:
            if self._state != "running":
                raise PublishError(f"publish() on a publisher that is {self._state} (frame {verdict.frame_id!r})")
            if not self._sender.is_alive():
                self._metrics.error("sender_dead")
                raise PublishError("the PUB sender thread has died; see the log")
            try:
                v, text = self._journal.append_json(v)
            except JournalError as e:
                self._metrics.error("journal")
                self._log.error("journal_append_failed", frame_id=v.frame_id, result=str(v.result), error=str(e))
                raise PublishError(str(e)) from e
            self._q.put((v.seq, text.encode()))
            self._last_seq = v.seq
            self._published += 1
        dt = time.perf_counter() - t0
        self._metrics.published(self.station, v.seq, str(v.result), dt)
        # debug: the daemon logs one `verdict` line per frame with the stage timings
        self._log.debug(
            "verdict_published",
            seq=v.seq,
            frame_id=v.frame_id,
            part_id=v.part_id,
            result=str(v.result),
            reason=str(v.reasons[0].code) if v.reasons else None,
            latency_ms=v.latency_ms,
        )
        return v

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
        """Journal a result that came after its frame was published as TIMEOUT (seq `published_seq`).

        Not published: the line already acted on the TIMEOUT; a second,
        contradicting verdict for the same part would be worse than none.
        """
        if self._state != "running":
            raise PublishError(f"record_late() on a publisher that is {self._state}")
        now = time.time_ns()
        upd: dict[str, Any] = {"station": self.station, "t_published_ns": 0}
        if verdict.t_acquired_ns > 0:
            upd["latency_ms"] = round((now - verdict.t_acquired_ns) / 1e6, 3)
        v = verdict.model_copy(update=upd)
        try:
            published = self._journal.get(self.station, published_seq)
            self._journal.append_late(v, published_seq, now)
        except JournalError as e:
            self._metrics.error("journal")
            self._log.error("journal_late_failed", frame_id=v.frame_id, published_seq=published_seq, error=str(e))
            raise PublishError(str(e)) from e
        self._metrics.late(str(v.result))
        fields = {
            "published_seq": published_seq,
            "frame_id": v.frame_id,
            "late_result": str(v.result),
            "latency_ms": v.latency_ms,
        }
        if published is None:
            self._log.warning("late_result_unknown_seq", **fields)
        elif published.get("frame_id") != v.frame_id:
            self._log.warning("late_result_frame_mismatch", published_frame_id=published.get("frame_id"), **fields)
        else:
            self._log.info("late_result_journaled", published_result=published.get("result"), **fields)

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

    def _server_socket(self, kind: int) -> zmq.Socket:
        s = self._ctx.socket(kind)
        s.linger = 0
        # ZMTP heartbeats: drop dead peers (a PLC gateway that lost power) without waiting for TCP.
        s.setsockopt(zmq.HEARTBEAT_IVL, 2000)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
        if self._curve is not None:
            s.curve_publickey, s.curve_secretkey = self._curve
            s.curve_server = True
        return s

    def _sender_main(self, ready: queue.SimpleQueue) -> None:
        try:
            pub = self._server_socket(zmq.PUB)
            pub.sndhwm = self.cfg.sndhwm
            pub.bind(self.cfg.pub)
            endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as e:
            ready.put(PublishError(f"cannot bind PUB socket to {self.cfg.pub}: {e}"))
            return
        except BaseException as e:  # noqa: BLE001 - reported to start()
            ready.put(e)
            return
        ready.put(endpoint)
        self._pub_address = endpoint
        hb_s = self.cfg.heartbeat_s
        next_hb = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_hb:
                self._send_heartbeat(pub)
                next_hb = max(next_hb + hb_s, now + hb_s / 2)  # steady cadence, no burst after a stall
            try:
                item = self._q.get(timeout=max(0.0, next_hb - time.monotonic()))
            except queue.Empty:
                continue
            if item is _STOP:
                break
            seq, payload = item
            try:
                pub.send_multipart([self._topic, payload], flags=zmq.NOBLOCK)
                self._sent_seq = seq
            except zmq.Again:  # PUB drops rather than blocks; only under XPUB_NODROP-like setups
                self._metrics.error("pub_dropped")
                self._sent_seq = seq
            except Exception as e:  # noqa: BLE001 - the sender must survive
                self._metrics.error("pub_send")
                self._log.error("pub_send_failed", seq=seq, error=f"{type(e).__name__}: {e}")
        pub.close(linger=FLUSH_MS)

    def _send_heartbeat(self, pub: zmq.Socket) -> None:
        with self._health_lock:
            h = dict(self._health)
        hb = {
            "schema": HEARTBEAT_SCHEMA,
            "station": self.station,
            "last_seq": self._sent_seq,
            "t_ns": time.time_ns(),
            "health": h,
            "query": self._query_address,
            "journal_id": self.journal_id,
        }
        try:
            pub.send_multipart([HEARTBEAT_TOPIC, json.dumps(hb, separators=(",", ":")).encode()], flags=zmq.NOBLOCK)
            self._metrics.heartbeat()
        except zmq.ZMQError as e:
            self._metrics.error("heartbeat")
            self._log.error("heartbeat_failed", error=str(e))

    def _query_main(self, ready: queue.SimpleQueue) -> None:
        try:
            router = self._server_socket(zmq.ROUTER)
            router.bind(self.cfg.query)
            endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
            ctrl = self._ctx.socket(zmq.PAIR)
            ctrl.linger = 0
            ctrl.bind(self._ctrl_address)
            journal = Journal(self.cfg.journal, readonly=True)
        except zmq.ZMQError as e:
            ready.put(PublishError(f"cannot bind query socket to {self.cfg.query}: {e}"))
            return
        except BaseException as e:  # noqa: BLE001 - reported to start()
            ready.put(e)
            return
        self._query_address = endpoint
        ready.put(endpoint)
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(ctrl, zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if ctrl in events:
                    break
                if router in events:
                    for _ in range(64):  # drain a burst, then look at ctrl again
                        try:
                            frames = router.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        try:
                            self._answer(router, frames, journal)
                        except Exception as e:  # noqa: BLE001 - the query thread must survive
                            self._metrics.error("query")
                            self._log.error("query_failed", error=f"{type(e).__name__}: {e}")
        finally:
            router.close(linger=0)
            ctrl.close(linger=0)
            journal.close()

    def _retention_main(self) -> None:
        """Delete journal rows older than journal_keep_days, now and every retention_interval_s."""
        try:
            journal = Journal(self.cfg.journal, synchronous=self._sync)
        except JournalError as e:
            self._metrics.error("retention")
            self._log.error("journal_retention_failed", error=str(e))
            return
        try:
            while not self._retention_stop.is_set():
                cutoff = time.time_ns() - int(self._keep_s * 1e9)
                try:
                    n = journal.prune(cutoff)
                    if n:
                        self._log.info("journal_pruned", verdicts=n, keep_days=self._keep_s / 86400.0)
                except JournalError as e:
                    self._metrics.error("retention")
                    self._log.error("journal_retention_failed", error=str(e))
                self._retention_stop.wait(self._retention_interval_s)
        finally:
            journal.close()

    def _answer(self, router: zmq.Socket, frames: list[bytes], journal: Journal) -> None:
        envelope, body = q.split_envelope(frames)
        op, ok, reply = q.handle(body, journal=journal, station=self.station, info=self.health)
        self._metrics.query(op, ok)
        if not ok:
            self._log.warning("query_rejected", op=op, reply=reply[:200].decode(errors="replace"))
        try:
            router.send_multipart(envelope + [reply], flags=zmq.NOBLOCK)
        except zmq.ZMQError as e:  # peer gone or its queue full: it will ask again
            self._metrics.error("query_reply")
            self._log.warning("query_reply_dropped", op=op, error=str(e))


class _AuthLog:
    """zmq.auth logs through the stdlib logging API; route it to structlog."""

    REPEAT_S = 60.0  # a refused client retries every ~100 ms: log each one once a minute

    def __init__(self, log, metrics) -> None:
        self._log = log
        self._metrics = metrics
        self._seen: dict[str, float] = {}

    def debug(self, msg, *args, **kw) -> None:
        text = _fmt(msg, args)
        if text.startswith("DENIED"):  # zmq.auth reports refusals at debug level
            self._metrics.error("curve_denied")
            now = time.monotonic()
            if now - self._seen.get(text, -self.REPEAT_S) >= self.REPEAT_S:
                if len(self._seen) > 1000:
                    self._seen.clear()
                self._seen[text] = now
                self._log.warning("curve_client_denied", detail=text, repeats_logged_every_s=self.REPEAT_S)

    def info(self, msg, *args, **kw) -> None:
        pass

    def warning(self, msg, *args, **kw) -> None:
        self._log.warning("curve_auth", message=_fmt(msg, args))

    warn = warning

    def error(self, msg, *args, **kw) -> None:
        self._log.error("curve_auth", message=_fmt(msg, args))

    def exception(self, msg, *args, **kw) -> None:
        self._log.error("curve_auth", message=_fmt(msg, args), exc_info=True)

    def getChild(self, name):  # noqa: N802 - logging API
        return self


def _fmt(msg, args) -> str:
    try:
        return str(msg) % args if args else str(msg)
    except (TypeError, ValueError):
        return f"{msg} {args}"
