"""Logs, metrics and systemd notifications for the daemon (docs/daemon.md).

- `configure_logging`: structlog, one JSON object per line on stderr (journald
  keeps it), level from ``[observability] log_level``; ``log_json = false`` gives
  the human console format. Every line has ``event``, ``level``, ``timestamp``
  (UTC ISO 8601) and the process's bound fields (``proc``: main / worker-N).
- `Metrics`: the Prometheus metrics, on their own registry (several daemons in
  one test process do not collide), served by `serve()` on
  ``metrics_addr:metrics_port`` (port 0 picks a free one; `port` says which).
- `SdNotify`: READY / WATCHDOG / STOPPING / STATUS to ``$NOTIFY_SOCKET`` with one
  AF_UNIX datagram each (the sd_notify protocol; no libsystemd needed); a no-op
  when the variable is absent. `watchdog_interval_s` is half of
  ``$WATCHDOG_USEC`` (when ``$WATCHDOG_PID`` is unset or ours).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from typing import Any, TextIO

import structlog

__all__ = ["LEVELS", "Metrics", "SdNotify", "configure_logging", "get_logger"]

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info", json: bool = True, stream: TextIO | None = None) -> None:
    """Set up structlog for this process (call once per process; workers call it too)."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    if json:
        processors.append(structlog.processors.JSONRenderer(sort_keys=False))
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=_LineLoggerFactory(stream or sys.stderr or sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (tifffile, zmq.auth, onnxruntime's
    # Python side) come out as the same JSON lines instead of bare text in between.
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _ToStructlog):
            root.removeHandler(h)
    root.addHandler(_ToStructlog())
    root.setLevel(max(LEVELS.get(level, logging.INFO), logging.INFO))


class _LineLogger:
    """Writes each log line with a single write(2) on the stream's descriptor.

    The main process and every worker share one stderr. structlog's PrintLogger
    goes through Python's text buffering, which can split a line into several
    writes; lines of different processes then interleave and journald (or a test
    harness) receives broken JSON: 6-15 % of lines in a 3-process stress run
    (tests/test_observability.py). One write per line keeps lines whole: pipes
    make writes of up to PIPE_BUF (4096 bytes) atomic and daemon lines are
    normally ~500 bytes; a line carrying a traceback can be longer, and then
    is only as whole as the kernel makes one large write (journald's stream
    socket usually takes it in one piece). Streams without a descriptor
    (StringIO) are written through their own write() under the same lock.
    """

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._lock = threading.Lock()
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):  # StringIO and friends
            self._fd = None

    def msg(self, message: str) -> None:
        line = message + "\n"
        with self._lock:
            if self._fd is None:
                self._stream.write(line)
                self._stream.flush()
                return
            self._stream.flush()  # anything printed the ordinary way goes first
            view = memoryview(line.encode("utf-8", "replace"))
            while view:
                view = view[os.write(self._fd, view) :]

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg


class _LineLoggerFactory:
    def __init__(self, stream: TextIO):
        self._logger = _LineLogger(stream)

    def __call__(self, *args: Any) -> _LineLogger:
        return self._logger


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            log = structlog.get_logger("inspectd").bind(logger=record.name)
            msg = record.getMessage()
            meth = {logging.DEBUG: log.debug, logging.INFO: log.info, logging.WARNING: log.warning}.get(
                record.levelno, log.error
            )
            meth("library_log", msg=msg)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def get_logger(**bind: Any):
    return structlog.get_logger("inspectd").bind(**bind)


# ------------------------------------------------------------------------------ metrics

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
STAGES = ("preprocess", "locate", "detect", "refine", "measure")


class Metrics:
    """The daemon's Prometheus metrics (names in docs/daemon.md)."""

    def __init__(self, registry=None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.frames_in = Counter("inspectd_frames_in", "frames acquired from the source", registry=r)
        self.frames_out = Counter("inspectd_frames_out", "verdicts published (one per acquired frame)", registry=r)
        self.verdicts = Counter("inspectd_verdicts", "published verdicts by result", ["result"], registry=r)
        self.errors = Counter("inspectd_errors", "ERROR verdicts by reason code", ["code"], registry=r)
        self.timeouts = Counter(
            "inspectd_timeouts", "TIMEOUT verdicts by cause (deadline | overload)", ["cause"], registry=r
        )
        self.dropped = Counter(
            "inspectd_dropped", "frames not inspected because no ring slot was free (each got TIMEOUT)", registry=r
        )
        self.late = Counter("inspectd_late_results", "results that arrived after their TIMEOUT (journaled)", registry=r)
        self.stage_latency = Histogram(
            "inspectd_stage_latency_seconds",
            "time per inspection stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e_latency = Histogram(
            "inspectd_e2e_latency_seconds", "acquisition -> publish", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("inspectd_queue_depth", "frames waiting, by queue", ["queue"], registry=r)
        self.ring_free = Gauge("inspectd_ring_free_slots", "free shared-memory frame slots", registry=r)
        self.workers_alive = Gauge("inspectd_workers_alive", "inspection workers up and ready", registry=r)
        self.worker_crashes = Counter("inspectd_worker_crashes", "inspection workers that died", registry=r)
        self.corner_fallbacks = Counter(
            "inspectd_corner_backend_fallbacks", "workers that run OpenCV corners because CUDA could not", registry=r
        )
        self.worker_restarts = Counter("inspectd_worker_restarts", "inspection workers restarted", registry=r)
        self.source_errors = Counter("inspectd_source_errors", "exceptions raised by the source", registry=r)
        self.publish_failures = Counter("inspectd_publish_failures", "publisher.publish raised (retried)", registry=r)
        self.archive_dropped = Counter(
            "inspectd_archive_dropped", "NG frames not archived (archive queue full or save failed)", registry=r
        )
        self.triggers = Counter(
            "inspectd_triggers",
            "PLC triggers and frames by matching outcome (received, matched, no_frame, frame_without_trigger, rejected)",
            ["outcome"],
            registry=r,
        )
        self.acquisition_paused = Gauge(
            "inspectd_acquisition_paused",
            "1 while the daemon takes no frames because it could not account for them (journal space)",
            registry=r,
        )
        self.interrupted = Counter(
            "inspectd_interrupted_frames",
            "frames a previous run acquired but never gave a verdict, published as ERROR INTERRUPTED at start",
            registry=r,
        )
        self.trigger_restarts = Counter(
            "inspectd_trigger_listener_restarts", "PLC trigger reader threads started again after dying", registry=r
        )
        self.recipe_reloads = Counter("inspectd_recipe_reloads", "SIGHUP recipe reloads", ["outcome"], registry=r)
        for res in ("OK", "NG", "ERROR", "TIMEOUT"):
            self.verdicts.labels(result=res)
        for cause in ("deadline", "overload"):
            self.timeouts.labels(cause=cause)
        for q in ("pending", "inflight", "reorder", "archive"):
            self.queue_depth.labels(queue=q)
        self.port: int | None = None
        self._server = None

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Start the HTTP exporter; returns the bound port."""
        from prometheus_client import start_http_server

        res = start_http_server(port, addr=addr, registry=self.registry)
        if isinstance(res, tuple):  # prometheus_client >= 0.20 returns (server, thread)
            self._server = res[0]
            self.port = int(self._server.server_port)
        else:  # pragma: no cover
            self.port = port
        return self.port

    def close(self) -> None:
        if self._server is not None:
            try:
                self._server.shutdown()
                self._server.server_close()
            except Exception:
                pass
            self._server = None


# ------------------------------------------------------------------------------ systemd


class SdNotify:
    """sd_notify(3) over a plain AF_UNIX datagram socket; silent when not under systemd."""

    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        self.watchdog_interval_s: float | None = None
        usec = env.get("WATCHDOG_USEC")
        wpid = env.get("WATCHDOG_PID")
        if usec and usec.isdigit() and int(usec) > 0 and (not wpid or wpid == str(os.getpid())):
            self.watchdog_interval_s = int(usec) / 2e6
        self._last_ping = 0.0
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        if not self.address:
            return False
        addr = self.address
        if addr.startswith("@"):  # abstract namespace
            addr = "\0" + addr[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.setblocking(False)  # never stall the main loop on a receiver that does not read
                s.connect(addr)
                s.send("\n".join(lines).encode())
            return True
        except OSError:  # includes BlockingIOError (receiver's queue full)
            self.failures += 1
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []), f"MAINPID={os.getpid()}")

    def stopping(self, status: str = "draining") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def watchdog(self, now: float | None = None) -> bool:
        """Ping the watchdog if half of WATCHDOG_USEC has passed since the last ping."""
        if self.watchdog_interval_s is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_ping < self.watchdog_interval_s:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")
