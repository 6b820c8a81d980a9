"""The NG archive's writer thread (``inspectd-archive``): overlays and files off the event loop.

Rendering an overlay and compressing a 2048² frame take tens of ms; the loop
only hands (verdict, pixels) over a bounded queue. A full queue means the disk
or the renderer is behind: the frame is not archived, and that is counted and
logged, never waited for.
"""

from __future__ import annotations

import contextlib
import queue

import numpy as np

from inspectd.imaging.overlay import render_overlay
from inspectd.imaging.region import Box
from inspectd.imaging.window import to_8bit
from inspectd.observability import Metrics
from inspectd.publish.archive import NgArchive
from inspectd.verdict import Verdict
from inspectd.osthread import named_thread

__all__ = ["NgArchiver"]

ARCHIVE_QUEUE = 4
ARCHIVE_NICE = 10  # the writer compresses in the CPU the inspection workers leave (osthread.py)


class NgArchiver:
    def __init__(self, archive: NgArchive, metrics: Metrics, log):
        self.archive, self.metrics, self.log = archive, metrics, log
        self._q: queue.Queue = queue.Queue(maxsize=ARCHIVE_QUEUE)
        self._thread = named_thread(self._main, "inspectd-archive", nice=ARCHIVE_NICE)

    def start(self) -> None:
        self._thread.start()

    def qsize(self) -> int:
        return self._q.qsize()

    def offer(self, v: Verdict, img: np.ndarray) -> None:
        """Queue an NG frame for the archive; skipped (counted, logged) when the writer is behind."""
        try:
            self._q.put_nowait((v, img))
        except queue.Full:
            self.metrics.archive_dropped.inc()
            self.log.warning(
                "archive_skipped", frame_id=v.frame_id, seq=v.seq, msg="archive writer behind; not archived"
            )

    def close(self) -> None:
        """Let the writer finish what is queued (bounded), then stop it."""
        with contextlib.suppress(queue.Full):
            self._q.put(None, timeout=5.0)
        self._thread.join(timeout=10.0)

    def _main(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            v, img = item
            overlay = None
            try:
                bit_depth = 8 if img.dtype == np.uint8 else 16
                roi = Box(*v.roi) if v.roi else None
                overlay = render_overlay(to_8bit(img, bit_depth), v, roi=roi)
            except Exception as err:  # an overlay bug must not cost the archive entry
                self.log.warning("overlay_failed", frame_id=v.frame_id, msg=f"{type(err).__name__}: {err}")
            if not self.archive.save(v.frame_id, v.seq, img, overlay, v):
                self.metrics.archive_dropped.inc()
