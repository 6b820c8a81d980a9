"""The NG archive: the frames the line rejected, with their overlays, on bounded disk.

Each entry is three files named ``<seq>-<frame_id>``:

- ``.tiff``  the frame as acquired (uint8/uint16 mono), lossless: zlib level 1 with
  horizontal differencing by default (a 2048² 12-bit simulated frame: 8.4 MB raw,
  2.7 MB compressed, ~70 ms in the writer; ``compression="none"`` writes it raw);
- ``.jpg``   the overlay (tips, ROI, verdict box) or, without one, an 8-bit preview;
- ``.json``  the verdict as published (written last: an entry without it is incomplete).

When the archive holds more than ``max_mb``, the oldest entries (by file
time, then seq) are deleted until it fits.  A full or failing disk never
raises into the caller: `save()` logs, counts and returns False.

`save()` writes in the caller's thread (a 2048² uint16 frame is ~8 MB of
TIFF: tens of ms); the daemon calls it in its NG archive writer process
(`inspectd.pipeline.ng_archiver`), never in the main process.
"""

from __future__ import annotations

import errno
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from inspectd.publish.metrics import NullMetrics

_ENTRY = re.compile(r"^(\d+)-(.+)\.(tiff|jpg|json)(\.part)?$")
_SUFFIXES = (".tiff", ".jpg", ".json")
# tifffile options per `publish.archive_compression`; zlib needs no extra package.
TIFF_COMPRESSION: dict[str, dict] = {
    "zlib": {"compression": "zlib", "compressionargs": {"level": 1}, "predictor": True},
    "none": {},
}


def safe_name(frame_id: str, max_len: int = 120) -> str:
    """`frame_id` as a file-name part: [A-Za-z0-9._-] only, no leading dot, bounded length."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(frame_id)).lstrip(".") or "frame"
    return s[:max_len]


def _preview8(image: np.ndarray) -> np.ndarray:
    """An 8-bit view of a mono frame for the .jpg when there is no overlay."""
    if image.dtype == np.uint8:
        return image
    hi = float(image.max()) if image.size else 0.0
    if hi <= 0:
        return np.zeros(image.shape, np.uint8)
    return (image.astype(np.float32) * (255.0 / hi)).clip(0, 255).astype(np.uint8)


class NgArchive:
    """Bounded directory of NG frames; see the module docstring."""

    def __init__(
        self,
        directory: str | Path,
        max_mb: float,
        *,
        log=None,
        metrics=None,
        jpeg_quality: int = 85,
        compression: str = "zlib",
    ) -> None:
        if compression not in TIFF_COMPRESSION:
            raise ValueError(f"NG archive compression must be one of {sorted(TIFF_COMPRESSION)}, not {compression!r}")
        self._tiff_kw = TIFF_COMPRESSION[compression]
        self.compression = compression
        self.dir = Path(directory)
        self.max_bytes = int(max_mb * 1024 * 1024)
        self._log = (log if log is not None else structlog.get_logger()).bind(component="ng_archive")
        self.metrics = metrics if metrics is not None else NullMetrics()
        self._jpeg_quality = int(jpeg_quality)
        self._lock = threading.Lock()
        self._entries: dict[str, list] = {}  # stem -> [mtime_ns, seq, bytes]
        self._total = 0
        self.dir.mkdir(parents=True, exist_ok=True)
        self._scan()
        self._log.info(
            "ng_archive_opened",
            dir=str(self.dir.resolve()),
            entries=len(self._entries),
            archive_mb=round(self._total / 2**20, 1),
            max_mb=round(self.max_bytes / 2**20, 1),
            compression=compression,
        )

    # ------------------------------------------------------------------ index

    def _scan(self) -> None:
        for e in os.scandir(self.dir):
            m = _ENTRY.match(e.name)
            if not m or not e.is_file(follow_symlinks=False):
                continue  # not ours: never touched
            if m.group(4):  # a .part left by a crash mid-write
                try:
                    os.unlink(e.path)
                except OSError:
                    pass
                continue
            st = e.stat(follow_symlinks=False)
            stem = f"{m.group(1)}-{m.group(2)}"
            ent = self._entries.setdefault(stem, [st.st_mtime_ns, int(m.group(1)), 0])
            ent[0] = max(ent[0], st.st_mtime_ns)
            ent[2] += st.st_size
            self._total += st.st_size

    @property
    def total_bytes(self) -> int:
        return self._total

    def entries(self) -> list[str]:
        """Entry stems, oldest first."""
        with self._lock:
            return [s for s, _ in sorted(self._entries.items(), key=lambda kv: (kv[1][0], kv[1][1]))]

    # ------------------------------------------------------------------ saving

    def save(
        self,
        frame_id: str,
        seq: int,
        image: np.ndarray,
        overlay_bgr: np.ndarray | None,
        verdict: Any,
    ) -> bool:
        """Write the entry, then evict the oldest until under max_mb.  True if written; never raises."""
        stem = f"{int(seq)}-{safe_name(frame_id)}"
        paths = [self.dir / (stem + sfx) for sfx in _SUFFIXES]
        written: list[Path] = []
        try:
            import cv2
            import tifffile

            tiff, jpg, js = paths
            self._write(tiff, written, lambda f: tifffile.imwrite(f, np.ascontiguousarray(image), photometric="minisblack", **self._tiff_kw))
            pic = overlay_bgr if overlay_bgr is not None else _preview8(np.asarray(image))
            ok, buf = cv2.imencode(".jpg", pic, [cv2.IMWRITE_JPEG_QUALITY, self._jpeg_quality])
            if not ok:
                raise ValueError("JPEG encoding failed")
            self._write(jpg, written, lambda f: f.write(buf.tobytes()))
            text = verdict.to_json() if hasattr(verdict, "to_json") else json.dumps(verdict)
            self._write(js, written, lambda f: f.write(text.encode()))
        except Exception as e:  # disk full, permissions, bad array: log, count, carry on
            for p in written + [p.with_name(p.name + ".part") for p in paths]:
                try:
                    p.unlink()
                except OSError:
                    pass
            reason = "disk_full" if isinstance(e, OSError) and e.errno == errno.ENOSPC else type(e).__name__
            self.metrics.archive_failed(reason)
            self._log.error("ng_archive_save_failed", frame_id=frame_id, seq=seq, reason=reason, error=str(e))
            return False
        size = 0
        mtime = 0
        for p in written:
            try:
                st = p.stat()
                size += st.st_size
                mtime = max(mtime, st.st_mtime_ns)
            except OSError:
                pass
        with self._lock:
            old = self._entries.pop(stem, None)
            if old is not None:  # the same seq and frame again (replay loop): replaced
                self._total -= old[2]
            self._entries[stem] = [mtime, int(seq), size]
            self._total += size
            total = self._total
        self.metrics.archive_saved(total)
        self._log.info("ng_archived", frame_id=frame_id, seq=seq, bytes=size, archive_bytes=total)
        self._evict(keep=stem)
        return True

    @staticmethod
    def _write(path: Path, written: list[Path], fill) -> None:
        part = path.with_name(path.name + ".part")
        with open(part, "wb") as f:
            fill(f)
        os.replace(part, path)
        written.append(path)

    def _evict(self, keep: str) -> None:
        removed = 0
        with self._lock:
            if self._total <= self.max_bytes:
                return
            order = sorted(self._entries.items(), key=lambda kv: (kv[1][0], kv[1][1]))
            victims = []
            for stem, ent in order:
                if self._total <= self.max_bytes:
                    break
                if stem == keep:
                    continue
                victims.append(stem)
                self._total -= ent[2]
                del self._entries[stem]
            total = self._total
        for stem in victims:
            for sfx in _SUFFIXES:
                try:
                    (self.dir / (stem + sfx)).unlink()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    self._log.warning("ng_archive_delete_failed", file=stem + sfx, error=str(e))
            removed += 1
        if removed:
            self.metrics.archive_evicted(removed, total)
            self._log.info("ng_archive_evicted", entries=removed, archive_bytes=total, max_bytes=self.max_bytes)
        if total > self.max_bytes:
            self._log.warning("ng_archive_entry_exceeds_bound", entry=keep, archive_bytes=total, max_bytes=self.max_bytes)
