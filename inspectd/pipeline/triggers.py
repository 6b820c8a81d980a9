"""Part identity from the PLC: trigger messages matched to frames (issue #7, docs/daemon.md "Part identity").

The line's PLC gateway PUSHes one message per cell *before* the exposure,
``{"part_id": "C-000123"}``, to the daemon's PULL socket (``[trigger] address``).
Each trigger is stamped with the host clock when it arrives. Matching is FIFO,
the way a hardware-triggered detector delivers frames: when a frame's verdict
is about to be published (so a trigger that arrives a little after its frame
still counts), it takes the oldest waiting trigger received at most
``match_window_ms`` before the frame's acquisition and at most ``late_ms``
after it.

- A trigger older than that window when a later frame claims the queue, or
  one left waiting ``no_frame_ms`` with no frame in the pipeline, or still
  waiting at shutdown, gets its own verdict: ``ERROR`` / ``NO_FRAME`` with its
  ``part_id`` (the PLC is waiting for that cell).
- A frame with no trigger is still inspected; its verdict has ``part_id: null``
  (the PLC cannot tie it to a cell) and ``inspectd_frames_untriggered`` counts it.

`TriggerMatcher` is the pure logic (unit-tested with explicit clocks);
`TriggerListener` is the socket thread.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import zmq

__all__ = ["Trigger", "TriggerError", "TriggerListener", "TriggerMatcher", "parse_trigger"]

MAX_PART_ID = 128
MAX_TRIGGER_BYTES = 4096  # a trigger is a few dozen bytes; anything larger is refused by the socket itself


class TriggerError(ValueError):
    """A trigger message that cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class Trigger:
    part_id: str
    t_ns: int  # host clock (time.time_ns) when the daemon received it


def parse_trigger(raw: bytes, t_ns: int) -> Trigger:
    """`{"part_id": "..."}` (UTF-8 JSON object) -> Trigger; TriggerError names what is wrong.

    Hostile input is a TriggerError too, never another exception: an integer
    of thousands of digits (ValueError from Python's int limit), nesting deep
    enough to exhaust the parser (RecursionError), a message over
    MAX_TRIGGER_BYTES.
    """
    if len(raw) > MAX_TRIGGER_BYTES:
        raise TriggerError(f"trigger is {len(raw)} bytes; at most {MAX_TRIGGER_BYTES}")
    try:
        msg = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise TriggerError(f"trigger is not UTF-8 JSON ({type(e).__name__}: {str(e)[:120]}); expected {{\"part_id\": \"...\"}}") from e
    if not isinstance(msg, dict):
        raise TriggerError(f"trigger must be a JSON object with part_id, got {type(msg).__name__}")
    pid = msg.get("part_id")
    if not isinstance(pid, str) or not pid.strip():
        raise TriggerError(f"trigger part_id must be a non-empty string, got {pid!r}")
    if len(pid) > MAX_PART_ID:
        raise TriggerError(f"trigger part_id is {len(pid)} characters; at most {MAX_PART_ID}")
    return Trigger(pid.strip(), t_ns)


class TriggerMatcher:
    """FIFO matching of triggers to frames by host time. Single-threaded: the daemon's loop owns it."""

    def __init__(self, match_window_ms: float, late_ms: float, no_frame_ms: float):
        self.window_ns = int(match_window_ms * 1e6)
        self.late_ns = int(late_ms * 1e6)
        self.no_frame_ns = int(no_frame_ms * 1e6)
        self._waiting: deque[Trigger] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def push(self, trigger: Trigger) -> None:
        self._waiting.append(trigger)

    def match(self, frame_t_ns: int) -> tuple[list[Trigger], Trigger | None]:
        """For a frame acquired at `frame_t_ns`: (triggers that can no longer have a frame, its trigger or None)."""
        expired: list[Trigger] = []
        while self._waiting and self._waiting[0].t_ns < frame_t_ns - self.window_ns:
            expired.append(self._waiting.popleft())
        if self._waiting and self._waiting[0].t_ns <= frame_t_ns + self.late_ns:
            return expired, self._waiting.popleft()
        return expired, None

    def expire_idle(self, now_ns: int) -> list[Trigger]:
        """Triggers waiting longer than no_frame_ms. Call only when no frame is waiting to be matched."""
        expired: list[Trigger] = []
        while self._waiting and now_ns - self._waiting[0].t_ns > self.no_frame_ns:
            expired.append(self._waiting.popleft())
        return expired

    def drain(self) -> list[Trigger]:
        """Every trigger still waiting (shutdown: each is owed a NO_FRAME verdict)."""
        out = list(self._waiting)
        self._waiting.clear()
        return out


class TriggerListener:
    """A PULL socket bound at `address`, read by its own thread; valid triggers land in `inbox`.

    With `curve` it is a CURVE server like the verdict sockets: only PLC gateways
    whose public key is in the clients directory get through (the authenticator
    runs on `ctx`, the publisher's context), so no one else can relabel a cell.

    `on_message` (e.g. the daemon's wake-up) is called after each message;
    bad messages are counted and reported through `on_reject(text)`.
    """

    def __init__(
        self,
        address: str,
        *,
        on_message: Callable[[], None] = lambda: None,
        on_reject: Callable[[str], None] = lambda _msg: None,
        ctx: zmq.Context | None = None,
        curve: tuple[bytes, bytes] | None = None,
    ):
        self.address = address
        self.inbox: queue.SimpleQueue[Trigger] = queue.SimpleQueue()
        self._on_message, self._on_reject = on_message, on_reject
        self._ctx = ctx or zmq.Context.instance()
        self._curve = curve  # (public, secret): a CURVE server; ctx must run the authenticator (the publisher's)
        self._sock: zmq.Socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bound = ""
        self.received = 0
        self.rejected = 0
        self.errors = 0
        self.restarts = 0  # reader threads started again after one died (`supervise`)
        self.last_death: str | None = None

    def start(self) -> str:
        """Bind (errors raise zmq.ZMQError naming the address) and start the reader; returns the bound endpoint."""
        sock = self._ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_TRIGGER_BYTES)  # a peer sending more is disconnected by libzmq
        if self._curve is not None:
            sock.curve_publickey, sock.curve_secretkey = self._curve
            sock.curve_server = True
        try:
            sock.bind(self.address)
        except zmq.ZMQError as e:
            sock.close()
            raise zmq.ZMQError(e.errno, f"cannot bind the trigger socket at {self.address}: {e}") from e
        self._sock = sock
        self.bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._start_thread()
        return self.bound

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inspectd-trigger", daemon=True)
        self._thread.start()

    def supervise(self) -> bool:
        """Start the reader again if it died (the daemon calls this every second); True if it had to.

        Nothing a peer sends should kill it, but a thread that dies for any
        reason must not leave every later cell without its part id.
        """
        if self._stop.is_set() or self._sock is None or self.alive:
            return False
        self.restarts += 1
        self._start_thread()
        return True

    def _run(self) -> None:
        try:
            self._main()
        except Exception as e:  # recorded for health and the daemon's log line; `supervise` restarts the reader
            self.last_death = f"{type(e).__name__}: {e}"

    def _main(self) -> None:
        sock = self._sock
        while not self._stop.is_set():
            try:
                if not sock.poll(100):
                    continue
                raw = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                continue
            except zmq.ZMQError as e:
                if self._stop.is_set():
                    return
                self.errors += 1  # the thread must outlive anything a peer can do: report and go on
                self._on_reject(f"trigger socket error: {e}")
                self._stop.wait(0.1)
                continue
            t_ns = time.time_ns()
            try:
                self.inbox.put(parse_trigger(raw, t_ns))
                self.received += 1
            except TriggerError as e:
                self.rejected += 1
                self._on_reject(str(e))
            except Exception as e:  # a parser bug: the message is lost, the listener is not
                self.rejected += 1
                self._on_reject(f"trigger could not be read: {type(e).__name__}: {e}")
            self._on_message()

    @property
    def alive(self) -> bool:
        """The reader thread is running (health: triggers are being read)."""
        return self._thread is not None and self._thread.is_alive()

    def take(self) -> list[Trigger]:
        out = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self.inbox.get_nowait())
        return out

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
