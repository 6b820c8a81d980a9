"""The NG archive's writer process (``inspectd-archive``): overlays, compression and files off the main process.

Rendering an overlay and compressing a 2048² frame cost ~130 ms of CPU per NG
frame. In a thread of the main process that was 6.5 of its 12.1 ms per verdict
(session 9's profile, 19 % NG), and a crash in a codec would have taken the
daemon with it. The writer is a spawned process at nice +10, so its work takes
the CPU the inspection workers leave. Pixels cross once, by shared memory: at
the result the frame is copied from its ring slot into one of ARCHIVE_SLOTS
archive slots (`grab`, the copy the thread version made into the heap); after
the verdict is published a small message names the slot (`offer`). No free
slot means the writer is behind: the frame is not archived, that is counted
and logged, never waited for. A writer that dies is started again at the next
NG frame; the frames it held are counted as not archived.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from inspectd.observability import Metrics, configure_logging, get_logger
from inspectd.pipeline.shm_ring import FrameRing, RingError, RingReader, SlotRef
from inspectd.publish.archive import NgArchive

__all__ = ["ARCHIVE_SLOTS", "ArchiveGrab", "NgArchiver"]

ARCHIVE_SLOTS = 4
ARCHIVE_NICE = 10  # the writer compresses in the CPU the inspection workers leave
CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ArchiveGrab:
    """An NG frame copied into an archive slot, waiting for its published verdict."""

    ref: SlotRef
    generation: int  # the writer process it was grabbed for; a restarted writer's slots start afresh


class _RelayMetrics:
    """The child's `NgArchive` metrics, sent to the daemon (its Prometheus registry lives there)."""

    def __init__(self, conn):
        self._conn = conn

    def archive_saved(self, total_bytes: int) -> None:
        self._conn.send(("metric", "archive_saved", (total_bytes,)))

    def archive_evicted(self, n: int, total_bytes: int) -> None:
        self._conn.send(("metric", "archive_evicted", (n, total_bytes)))

    def archive_failed(self, reason: str) -> None:
        self._conn.send(("metric", "archive_failed", (reason,)))


def _writer_main(spec: dict, q, conn) -> None:  # pragma: no cover - runs in the child (tested through it)
    from inspectd.imaging.overlay import render_overlay
    from inspectd.imaging.region import Box
    from inspectd.imaging.window import to_8bit
    from inspectd.osthread import daemon_child, name_this_thread
    from inspectd.verdict import Verdict

    daemon_child()  # stop signals are the daemon's; die with it
    name_this_thread("archive")
    with contextlib.suppress(OSError):
        os.nice(ARCHIVE_NICE)
    configure_logging(spec["log_level"], spec["log_json"])
    log = get_logger(proc="archive", pid=os.getpid())
    archive = NgArchive(spec["dir"], spec["max_mb"], log=log, metrics=_RelayMetrics(conn), compression=spec["compression"])
    reader = RingReader(spec["ring"], spec["slots"], spec["slot_bytes"])
    log.info("archive_writer_started", pid=os.getpid(), nice=os.getpriority(os.PRIO_PROCESS, 0))
    while True:
        try:
            item = q.get(timeout=1.0)
        except queue.Empty:
            continue
        if item is None:
            break
        ref, verdict_json = item
        saved = False
        try:
            v = Verdict.from_json(verdict_json)
            img = reader.view(ref)
            overlay = None
            try:
                roi = Box(*v.roi) if v.roi else None
                overlay = render_overlay(to_8bit(img, 8 if img.dtype == np.uint8 else 16), v, roi=roi)
            except Exception as err:  # an overlay bug must not cost the archive entry
                log.warning("overlay_failed", frame_id=v.frame_id, msg=f"{type(err).__name__}: {err}")
            saved = archive.save(v.frame_id, v.seq, img, overlay, v)
            del img
        except Exception as err:  # this frame only; the writer goes on
            log.error("archive_frame_failed", msg=f"{type(err).__name__}: {err}")
        conn.send(("done", ref.slot, saved))
    reader.close()


class NgArchiver:
    """The daemon's handle on the writer process. `grab`, `offer` and `qsize` never block."""

    def __init__(self, archive: NgArchive, metrics: Metrics, log, *, slot_bytes: int, log_level: str = "info",
                 log_json: bool = True):  # fmt: skip
        self.archive, self.metrics, self.log = archive, metrics, log
        self._spec = {"dir": str(archive.dir), "max_mb": archive.max_bytes / 2**20, "compression": archive.compression,
                      "log_level": log_level, "log_json": log_json, "slots": ARCHIVE_SLOTS}  # fmt: skip
        try:
            self.slots = FrameRing(ARCHIVE_SLOTS, slot_bytes, prefix="inspectdng")
        except RingError as e:
            raise RingError(f"NG archive: {e}") from e
        self._spec |= {"ring": self.slots.name, "slot_bytes": self.slots.slot_bytes}
        self._ctx = mp.get_context("spawn")
        self._proc = self._q = self._conn = None
        self._reader: threading.Thread | None = None
        self._generation = 0
        self.restarts = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._generation += 1
        for slot in list(self.slots.owned()):  # held by a writer that is gone: those frames are lost
            with contextlib.suppress(RingError):  # its last "done" may just have freed it
                self.slots.release(slot)
                self.metrics.archive_dropped.inc()
        self._q = self._ctx.Queue(maxsize=ARCHIVE_SLOTS + 1)
        self._conn, child = self._ctx.Pipe(duplex=False)
        self._proc = self._ctx.Process(target=_writer_main, args=(self._spec, self._q, child), name="inspectd-archive",
                                       daemon=True)  # fmt: skip
        self._proc.start()
        child.close()
        self._reader = threading.Thread(target=self._read, args=(self._conn, self._generation),
                                        name="inspectd-archive-results", daemon=True)  # fmt: skip
        self._reader.start()

    def close(self) -> None:
        """Let the writer finish what it was given (bounded), then stop it and free the slots."""
        if self._proc is not None:
            with contextlib.suppress(queue.Full, ValueError, OSError):
                self._q.put(None, timeout=1.0)
            self._proc.join(CLOSE_TIMEOUT_S)
            if self._proc.is_alive():
                self.log.warning("archive_writer_killed", msg=f"still writing after {CLOSE_TIMEOUT_S:g} s")
                self._proc.kill()
                self._proc.join(2.0)
            if self._reader is not None:
                self._reader.join(2.0)
            self._q.close()
            self._q.cancel_join_thread()
            self._proc = None
        self.slots.close()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    # ------------------------------------------------------------------ the main process's side

    def qsize(self) -> int:
        """NG frames grabbed and not yet written."""
        return ARCHIVE_SLOTS - self.slots.free_count

    def grab(self, image: np.ndarray, frame_id: str) -> ArchiveGrab | None:
        """Copy an NG frame (its ring-slot view) into a free archive slot; None (counted) when none is free."""
        slot = self.slots.acquire(frame_id, timeout=0.0)
        if slot is None:
            self._skipped(frame_id, "archive writer behind; not archived")
            return None
        try:
            return ArchiveGrab(self.slots.write(slot, image), self._generation)
        except (ValueError, RingError) as e:  # larger than the ring's slots: cannot happen for a ring frame
            self.slots.release(slot)
            self._skipped(frame_id, f"not archived: {e}")
            return None

    def offer(self, v, grab: ArchiveGrab) -> None:
        """Hand a grabbed frame and its published verdict to the writer (restarted first if it died)."""
        if grab.generation != self._generation:
            return  # its slot was freed when the writer restarted (counted then)
        if not self.alive():
            code = None if self._proc is None else self._proc.exitcode
            self.restarts += 1
            self.log.error("archive_writer_died", exit_code=code, restarts=self.restarts, lost=len(self.slots.owned()),
                           msg="NG archive writer gone; starting it again (the frames it held are not archived)")  # fmt: skip
            self.start()
            return  # this frame's slot was freed (and counted) by start()
        try:
            self._q.put_nowait((grab.ref, v.to_json()))
        except (queue.Full, ValueError, OSError):
            self.slots.release(grab.ref.slot)
            self._skipped(v.frame_id, "archive writer behind; not archived")

    def wait_idle(self, timeout_s: float) -> bool:
        """For tests and tools: True once every grabbed frame has been written (or failed)."""
        end = time.monotonic() + timeout_s
        while self.qsize() and time.monotonic() < end:
            time.sleep(0.02)
        return self.qsize() == 0

    def _skipped(self, frame_id: str, msg: str) -> None:
        self.metrics.archive_dropped.inc()
        self.log.warning("archive_skipped", frame_id=frame_id, msg=msg)

    def _read(self, conn, generation: int) -> None:
        """Results from the writer (slot done, the archive's own metrics); ends when the writer does."""
        while True:
            try:
                kind, *rest = conn.recv()
            except (EOFError, OSError):
                return
            if generation != self._generation:
                return
            if kind == "done":
                slot, saved = rest
                with contextlib.suppress(RingError):  # freed already by a restart
                    self.slots.release(slot)
                if not saved:
                    self.metrics.archive_dropped.inc()
            elif kind == "metric":
                name, args = rest
                getattr(self.archive.metrics, name)(*args)
