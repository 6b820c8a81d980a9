"""`replay:DIR?fps=10&loop=1` — a frame dump (docs/contracts.md §3) played as a live source.

Parameters:
- ``fps`` (default 10): frames per second on a monotonic schedule; 0 = as fast as
  the reader pulls (throughput runs; pair with ``pipeline.overload = "block"``).
- ``loop`` (default 0): 1 = start again after the last frame; 0 = `EndOfStream`.
- ``stamp`` (default ``now``): ``now`` stamps ``t_acquired_ns = time.time_ns()``
  when the frame is due (the moment a camera would expose it), so latency and the
  deadline count from this run; ``file`` keeps the sidecar's timestamp.
- ``preload`` (default 0): 1 = decode every frame into memory at open, so
  ``read()`` costs no disk or TIFF decode (benchmarks: replay-from-memory).
- ``max_mb`` (default 256): a file whose header claims a bigger frame is
  refused before anything is allocated (that frame's ERROR names the file).
- ``resume`` (default 1): the daemon restarted on a journal whose last verdict
  is about a frame of this dump goes on with the frame after it
  (`resume_after`); 0 = always from the first frame.

Unreadable files come out as `FrameReadError` (they get an ERROR verdict) and
never stop the stream. The file list is taken once, at open.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile
from pydantic import Field

from inspectd.frames import Frame, FrameError, FrameReadError, list_dump, read_frame
from inspectd.frames.dumps import MAX_FRAME_BYTES as DEFAULT_MAX_FRAME_BYTES
from inspectd.sources.base import EndOfStream, Pacer, SourceConfigBase, SourceError

SCHEME = "replay"
TARGET_FIELD = "dir"  # the URI part before "?"


class ReplaySourceConfig(SourceConfigBase):
    type: Literal["replay"] = "replay"
    dir: Path
    fps: float = Field(10.0, ge=0, le=10000, description="frames per second; 0 = as fast as possible")
    loop: bool = False
    stamp: Literal["now", "file"] = "now"
    preload: bool = False
    resume: bool = True
    max_mb: float = Field(DEFAULT_MAX_FRAME_BYTES / 2**20, gt=0, le=4096, description="a frame claiming more is refused")

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 2**20)

    def max_frame_bytes(self) -> int | None:
        """Largest frame of the dump, from TIFF headers (None if any file is not a TIFF or unreadable).

        A header is believed only if its file could hold it: an uncompressed TIFF
        smaller than the pixels it claims, or any frame over `max_mb`, is
        left out of the sizing (it gets its ERROR when it is read) instead of
        making the daemon try to reserve its size for every ring slot.
        """
        try:
            files = list_dump(self.dir)
        except (FileNotFoundError, OSError):
            return None
        if not files:
            return None
        biggest = 0
        for p in files:
            if p.suffix.lower() not in (".tif", ".tiff"):
                return None
            try:
                with tifffile.TiffFile(p) as tif:
                    page = tif.pages[0]
                    n = int(np.prod(page.shape)) * np.dtype(page.dtype).itemsize
                    raw = page.compression == tifffile.COMPRESSION.NONE
            except Exception:
                continue  # an unreadable file gets its ERROR at read time
            if n > self.max_bytes or (raw and p.stat().st_size < n):
                continue
            biggest = max(biggest, n)
        return biggest or None


CONFIG = ReplaySourceConfig


def config_from_uri(target: str, params: dict[str, str]) -> ReplaySourceConfig:
    if not target:
        raise SourceError("replay needs a dump directory: replay:DIR[?fps=10&loop=1]")
    return ReplaySourceConfig.model_validate({"dir": target, **params})


class ReplaySource:
    def __init__(self, cfg: ReplaySourceConfig):
        self.cfg = cfg
        self.name = f"replay:{cfg.dir}"
        self._files: list[Path] = []
        self._i = 0
        self.passes = 0
        self._pacer = Pacer(cfg.fps)
        self._cache: list | None = None

    def open(self) -> None:
        if not self.cfg.dir.is_dir():
            raise SourceError(f"replay: dump directory not found: {self.cfg.dir}")
        self._files = list_dump(self.cfg.dir)
        if not self._files:
            raise SourceError(f"replay: no frame files in {self.cfg.dir}")
        self._i = 0
        self.passes = 0
        if self.cfg.preload:
            self._cache = [self._load(p) for p in self._files]

    def _load(self, path: Path) -> Frame | FrameReadError:
        try:
            return read_frame(path, self.cfg.max_bytes)
        except Exception as e:  # FrameError, or a file that vanished: one bad file never stops the stream
            msg = str(e) if isinstance(e, FrameError) else f"{path.name}: {type(e).__name__}: {e}"
            return FrameReadError(frame_id=path.stem, path=path, message=msg)

    def resume_after(self, frame_id: str) -> int | None:
        """Go on after the file whose stem is `frame_id` (the journal's last verdict); returns the index
        of the next frame, or None (not in this dump, `resume=0`, or it was the last frame and no loop)."""
        if not self.cfg.resume:
            return None
        for i, p in enumerate(self._files):
            if p.stem == frame_id:
                nxt = i + 1
                if nxt >= len(self._files):
                    if not self.cfg.loop:
                        self._i = nxt  # everything was played: the stream ends at once
                        return nxt
                    nxt = 0
                self._i = nxt
                return nxt
        return None

    @property
    def frames(self) -> int:
        return len(self._files)

    @property
    def lagged(self) -> int:
        return self._pacer.lagged

    def read(self, timeout_s: float) -> Frame | FrameReadError | None:
        if not self._files:
            raise SourceError("replay: read() before open()")
        if self._i >= len(self._files):
            if not self.cfg.loop:
                raise EndOfStream(self.name)
            self._i = 0
            self.passes += 1
        if not self._pacer.wait(timeout_s):
            return None
        t_ns = time.time_ns()
        path = self._files[self._i]
        self._i += 1
        if self._cache is not None:  # preloaded: the shared pixels, a fresh sidecar per read
            frame = self._cache[self._i - 1]
            if isinstance(frame, FrameReadError):
                return frame
            frame = Frame(frame.frame_id, frame.image, frame.meta.model_copy(deep=True))
        else:
            frame = self._load(path)
            if isinstance(frame, FrameReadError):
                return frame
        if self.cfg.stamp == "now" or not frame.meta.t_acquired_ns:
            frame.meta.t_acquired_ns = t_ns
        return frame

    def close(self) -> None:
        self._files = []
        self._cache = None


def create(cfg: ReplaySourceConfig) -> ReplaySource:
    return ReplaySource(cfg)
