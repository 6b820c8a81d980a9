"""The daemon's acquisition thread: source -> stamped frame in a ring slot -> a small record for the loop.

It runs beside the event loop in the main process (``inspectd-acquire``), so
a slow source read never delays publishing. Each frame gets its acquisition
index, timestamps and deadline here, is copied into a free ring slot, and is
handed over as an `Acquired` record; the loop is woken through `wake`. The
overload policy lives here too: with ``block`` the thread takes a slot and
backlog room before reading (the source waits, nothing times out in a
queue); with ``timeout`` a frame that finds no free slot is handed over
uninspected and becomes a TIMEOUT.

Every frame is accounted for before anything else happens to it: `account`
journals it as acquired (the daemon's `Publisher.record_acquired`), so a kill
-9 after this point leaves a row the next start publishes as ERROR
INTERRUPTED. If that journal write fails the thread stops taking frames at
once (JOURNAL_FAILED). `hold` is asked before every read: while it names a
reason (the journal's filesystem below its reserve) no frame is taken
(PAUSED ... RESUMED), and a source that can (`pause()`/`resume()`, a camera)
is told to stop sending.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from inspectd.frames import Frame, FrameReadError
from inspectd.pipeline.entry import Entry
from inspectd.pipeline.shm_ring import FrameRing, FrameTooLarge
from inspectd.sources import EndOfStream, FrameSource
from inspectd.osthread import named_thread

__all__ = ["Acquired", "Acquisition", "Kind"]

READ_TIMEOUT_S = 0.2  # source.read() bound: how fast the thread sees a stop
HOLD_POLL_S = 0.25  # while held, how often `hold` is asked again
AGE_LIMIT_S = 10.0  # a source timestamp older than this is another clock: count from reception


class Kind(StrEnum):
    """What an `Acquired` record says: a frame (in a slot, or why not), or the end of acquisition."""

    FRAME = "frame"  # in its ring slot, ready to inspect
    UNREADABLE = "unreadable"  # the source could not decode it: ERROR UNREADABLE_FRAME
    TOO_LARGE = "too_large"  # bigger than a ring slot: ERROR INTERNAL
    OVERLOAD = "overload"  # no free slot (overload = timeout): TIMEOUT uninspected
    SOURCE_ERROR = "source_error"  # a read failed; the thread retries with back-off
    EOS = "eos"  # the source ended
    STOPPED = "stopped"  # stop requested (or stop_after reached)
    FAILED = "failed"  # a bug in the thread: the daemon fails
    JOURNAL_FAILED = "journal_failed"  # the frame could not be journaled as acquired: the thread has stopped
    PAUSED = "paused"  # `hold` named a reason: no frames are taken until RESUMED
    RESUMED = "resumed"


@dataclass(slots=True)
class Acquired:
    """A record the acquisition thread hands to the loop."""

    kind: Kind
    entry: Entry | None = None
    message: str = ""


class Acquisition:
    """Reads `source` on its own thread into `ring`; the loop takes the records with `take()`.

    `capacity()` is how many admitted-but-undispatched frames the loop can
    hold (the ready workers) under the ``block`` policy; the loop reports
    each frame it dispatches or drops with `dispatched()`.
    """

    def __init__(
        self,
        source: FrameSource,
        ring: FrameRing,
        *,
        deadline_s: float,
        block: bool,
        stop_after: int | None,
        capacity: Callable[[], int],
        wake: Callable[[], None],
        account: Callable[[Entry], None] | None = None,
        hold: Callable[[], str | None] | None = None,
    ):
        self.source, self.ring = source, ring
        self.deadline_s, self.block, self.stop_after = deadline_s, block, stop_after
        self._capacity, self._wake = capacity, wake
        self._account = account
        self._hold = hold
        self._paused: str | None = None
        self._records: queue.SimpleQueue[Acquired] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._cap = threading.Condition()  # "block" policy: backlog room
        self._backlog = 0  # frames admitted with a slot, not yet dispatched or dropped (guarded by _cap)
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- the loop's side

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._thread = named_thread(self._main, "inspectd-acquire")
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop (it hands over a STOPPED record, or an EOS it met first)."""
        self._stop.set()
        self.ring.wake()
        self.room()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def died(self) -> bool:
        """The thread was started and is gone (it may have died without its last record)."""
        return self._thread is not None and not self._thread.is_alive()

    def take(self) -> Iterator[Acquired]:
        while True:
            try:
                yield self._records.get_nowait()
            except queue.Empty:
                return

    def dispatched(self, n: int = 1) -> None:
        """`n` admitted frames left the backlog (sent to a worker, or dropped)."""
        with self._cap:
            self._backlog -= n
            self._cap.notify_all()

    def room(self) -> None:
        """A slot or a worker came free: a blocked thread may go on."""
        with self._cap:
            self._cap.notify_all()

    # ---------------------------------------------------------------- the thread

    def _put(self, rec: Acquired) -> None:
        self._records.put(rec)
        self._wake()

    def _backlog_full(self) -> bool:
        # frames admitted (in the hand-off queue or in the loop's pending) and not yet at a worker
        return self._backlog >= max(1, self._capacity())

    def _main(self) -> None:
        src = self.source
        into = getattr(src, "read_into", None)  # a source that can write a frame straight into a ring slot
        n = 0
        consecutive_errors = 0
        try:
            while not self._stop.is_set():
                if self.stop_after is not None and n >= self.stop_after:
                    self._records.put(Acquired(Kind.STOPPED, message=f"stop_after={self.stop_after} frames"))
                    return
                if self._held():
                    self._stop.wait(HOLD_POLL_S)
                    continue
                slot = None
                if self.block:  # take the slot (and backlog room) first: the source waits, nothing times out
                    with self._cap:
                        while self._backlog_full() and not self._stop.is_set():
                            self._cap.wait(0.1)
                    slot = self.ring.acquire(n, timeout=None, stop=self._stop)
                    if slot is None:
                        continue
                elif into is not None:  # a source that can fill a slot: hold a free one, if any, while it reads
                    slot = self.ring.acquire(n, timeout=0.0)
                try:
                    if into is not None and slot is not None:
                        item = into(READ_TIMEOUT_S, functools.partial(self.ring.slot_array, slot))
                    else:
                        item = src.read(READ_TIMEOUT_S)
                    consecutive_errors = 0
                except EndOfStream:
                    if slot is not None:
                        self.ring.release(slot)
                    self._records.put(Acquired(Kind.EOS, message=src.name))
                    return
                except Exception as e:
                    if slot is not None:
                        self.ring.release(slot)
                    consecutive_errors += 1
                    self._put(Acquired(Kind.SOURCE_ERROR, message=f"{type(e).__name__}: {e}"))
                    self._stop.wait(min(5.0, 0.2 * consecutive_errors))
                    continue
                if item is None:
                    if slot is not None:
                        self.ring.release(slot)
                    continue
                if not self._admit(item, n, slot):
                    return  # JOURNAL_FAILED handed over: take no more frames
                n += 1
            self._records.put(Acquired(Kind.STOPPED, message="stop requested"))
        except Exception as e:  # a bug here must not leave the loop waiting for acquisition forever
            self._records.put(Acquired(Kind.FAILED, message=f"acquisition thread failed: {type(e).__name__}: {e}"))
        finally:
            self._wake()

    def _held(self) -> bool:
        """Ask `hold` whether frames may be taken; hand over PAUSED / RESUMED when that changes."""
        reason = self._hold() if self._hold is not None else None
        if reason and self._paused is None:
            self._paused = reason
            _tell(self.source, "pause")
            self._put(Acquired(Kind.PAUSED, message=reason))
        elif not reason and self._paused is not None:
            self._paused = None
            _tell(self.source, "resume")
            self._put(Acquired(Kind.RESUMED))
        return self._paused is not None

    def _admit(self, item: Frame | FrameReadError, acq: int, slot: int | None) -> bool:
        """Hand the frame over (in its slot, or why not); False if it could not be journaled."""
        t_recv = time.monotonic()
        now_ns = time.time_ns()
        meta = getattr(item, "meta", None)
        t_acq_ns = int(getattr(meta, "t_acquired_ns", 0) or 0) or now_ns
        age = (now_ns - t_acq_ns) / 1e9
        if not 0.0 <= age <= AGE_LIMIT_S:
            age = 0.0
        e = Entry(
            acq=acq,
            frame_id=item.frame_id,
            part_id=getattr(meta, "part_id", None),
            t_acq_ns=t_acq_ns,
            t_recv=t_recv,
            deadline=t_recv - age + self.deadline_s,
            t_host_ns=now_ns - int(age * 1e9),
        )
        if self._account is not None:
            try:
                self._account(e)
            except Exception as err:
                if slot is not None:
                    self.ring.release(slot)
                _tell(self.source, "pause")
                self._put(Acquired(Kind.JOURNAL_FAILED, e, str(err)))
                return False
        if isinstance(item, FrameReadError):
            if slot is not None:
                self.ring.release(slot)
            self._put(Acquired(Kind.UNREADABLE, e, item.message))
            return True
        if slot is None:
            slot = self.ring.acquire(acq, timeout=0.0)
            if slot is None:
                self._put(Acquired(Kind.OVERLOAD, e))
                return True
        try:
            e.ref = self.ring.write(slot, item.image)
        except FrameTooLarge as err:
            self.ring.release(slot)
            self._put(Acquired(Kind.TOO_LARGE, e, str(err)))
            return True
        e.meta_json = item.meta.model_dump_json(by_alias=True, exclude_none=True)
        e.source_ms = (age + time.monotonic() - t_recv) * 1000.0
        e.t_recv = time.monotonic()
        with self._cap:
            self._backlog += 1
        self._put(Acquired(Kind.FRAME, e))
        return True


def _tell(source: FrameSource, what: str) -> None:
    """Call the source's optional `pause()` / `resume()` (a camera stops sending); a failure there is not ours."""
    fn = getattr(source, what, None)
    if callable(fn):
        try:
            fn()
        except Exception:  # the frames are not taken either way
            pass
