"""A fixed ring of frame slots in POSIX shared memory: pixels cross processes without pickling.

One segment (``/dev/shm/inspectd-<pid>-<token>``) holds `slots` slots of
`slot_bytes` each (page aligned). The parent process owns it:

- `FrameRing` (parent): allocates and frees slots (thread-safe; the parent
  alone tracks which slot belongs to which frame), copies an acquired frame into
  its slot (`write` -> `SlotRef`), and unlinks the segment on `close()`.
- `RingReader` (worker): attaches by name and turns a `SlotRef` into a
  read-only ``np.ndarray`` *on* the shared buffer (zero-copy).

Queues carry only `SlotRef` (slot index, shape, dtype) and small metadata.
A frame larger than a slot raises `FrameTooLarge` (the daemon gives that frame
an ERROR verdict); the ring itself is never resized at run time.

Cleanup: the parent unlinks in `close()` (also on SIGTERM drain and on fatal
exits, via the daemon's `finally`). A worker killed with -9 holds only a
mapping, which the kernel drops; the segment is the parent's. If the parent
itself is killed -9, Python's resource tracker (a separate process every
spawned worker shares) unlinks the segment when the last of them exits, and
the next daemon start sweeps any ``inspectd-<pid>-*`` segment whose pid is
dead (`sweep_stale`). The memory is reserved up front (`posix_fallocate`), so a
too-small /dev/shm is a clear error at start instead of a SIGBUS mid-run.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_SLOT_BYTES",
    "FrameRing",
    "FrameTooLarge",
    "RingError",
    "RingReader",
    "SlotRef",
    "slot_bytes_for",
    "sweep_stale",
]

SHM_PREFIX = "inspectd"
SHM_DIR = Path("/dev/shm")
PAGE = 4096
# Largest frame docs/contracts.md §2 expects: 2048 x 2048 mono, 16-bit container.
DEFAULT_SLOT_BYTES = 2048 * 2048 * 2


class RingError(RuntimeError):
    """The ring cannot be created or used (no room in /dev/shm, bad slot)."""


class FrameTooLarge(ValueError):
    """A frame does not fit a ring slot; the message gives both sizes."""


@dataclass(frozen=True)
class SlotRef:
    """What travels on the queues instead of pixels."""

    slot: int
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


def slot_bytes_for(max_frame_bytes: int | None, default: int = DEFAULT_SLOT_BYTES) -> int:
    """Slot size for the largest expected frame, rounded up to a page."""
    n = int(max_frame_bytes) if max_frame_bytes else int(default)
    return max(PAGE, -(-n // PAGE) * PAGE)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(prefix: str = SHM_PREFIX, shm_dir: Path = SHM_DIR) -> list[str]:
    """Unlink ``<prefix>-<pid>-*`` segments whose creating process is gone; returns their names."""
    removed: list[str] = []
    try:
        entries = list(shm_dir.iterdir())
    except OSError:
        return removed
    for p in entries:
        parts = p.name.split("-")
        if len(parts) < 3 or parts[0] != prefix or not parts[1].isdigit():
            continue
        if _pid_alive(int(parts[1])):
            continue
        try:
            p.unlink()
            removed.append(p.name)
        except OSError:
            pass
    return removed


class FrameRing:
    """Parent side of the ring: slot allocation, writes, and the segment's lifetime."""

    def __init__(self, slots: int, slot_bytes: int = DEFAULT_SLOT_BYTES, *, prefix: str = SHM_PREFIX):
        if slots < 1:
            raise RingError(f"a ring needs at least one slot, got {slots}")
        self.slots = int(slots)
        self.slot_bytes = slot_bytes_for(slot_bytes)
        self.stale_removed = sweep_stale(prefix)
        self.name = f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"
        size = self.slots * self.slot_bytes
        try:
            self._shm = shared_memory.SharedMemory(name=self.name, create=True, size=size)
        except OSError as e:
            raise RingError(f"cannot create shared memory {self.name} ({size / 2**20:.0f} MiB): {e}") from e
        try:
            os.posix_fallocate(self._shm._fd, 0, size)  # reserve now: no SIGBUS when /dev/shm is full later
        except (OSError, AttributeError) as e:
            self._shm.close()
            self._shm.unlink()
            raise RingError(
                f"cannot reserve {size / 2**20:.0f} MiB for {self.slots} frame slots in /dev/shm "
                f"({getattr(e, 'strerror', e)}); lower pipeline.ring_slots or the slot size"
            ) from e
        self._buf = np.ndarray((self.slots, self.slot_bytes), dtype=np.uint8, buffer=self._shm.buf)
        self._free: deque[int] = deque(range(self.slots))
        self._owner: dict[int, object] = {}
        self._cond = threading.Condition()
        self._closed = False

    # ---------------------------------------------------------------- ownership
    @property
    def free_count(self) -> int:
        with self._cond:
            return len(self._free)

    def owner(self, slot: int) -> object | None:
        with self._cond:
            return self._owner.get(slot)

    def owned(self) -> dict[int, object]:
        with self._cond:
            return dict(self._owner)

    def acquire(self, owner: object, timeout: float | None = 0.0, stop: threading.Event | None = None) -> int | None:
        """A free slot for `owner`, or None if none frees up within `timeout` (0: don't wait; None: until `stop`).

        Waits wake at least every 0.1 s to look at `stop`.
        """
        import time

        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._free:
                if self._closed or (stop is not None and stop.is_set()):
                    return None
                left = 0.1 if end is None else min(0.1, end - time.monotonic())
                if left <= 0:
                    return None
                self._cond.wait(left)
            slot = self._free.popleft()
            self._owner[slot] = owner
            return slot

    def release(self, slot: int) -> None:
        with self._cond:
            if slot not in self._owner:
                raise RingError(f"slot {slot} released but not held")
            del self._owner[slot]
            self._free.append(slot)
            self._cond.notify()

    def wake(self) -> None:
        """Wake threads waiting in `acquire` (they re-check `stop`)."""
        with self._cond:
            self._cond.notify_all()

    # ---------------------------------------------------------------- pixels
    def slot_array(self, slot: int, shape: tuple[int, ...], dtype) -> np.ndarray | None:
        """A writable (shape, dtype) array on `slot`'s memory for a source to fill (None if it does not fit);
        `write(slot, that_array)` then costs no copy."""
        dt = np.dtype(dtype)
        ref = SlotRef(slot, tuple(int(v) for v in shape), dt.str)
        if ref.nbytes > self.slot_bytes:
            return None
        return self.view(ref, readonly=False)

    def write(self, slot: int, image: np.ndarray) -> SlotRef:
        """Copy `image` into `slot` (no copy when it already lies there: `slot_array`); FrameTooLarge if it
        does not fit."""
        image = np.asarray(image)
        if image.nbytes > self.slot_bytes:
            raise FrameTooLarge(
                f"frame {'x'.join(map(str, image.shape[::-1]))} {image.dtype} is {image.nbytes / 2**20:.1f} MiB, "
                f"more than a ring slot ({self.slot_bytes / 2**20:.1f} MiB); raise the slot size"
            )
        ref = SlotRef(slot, tuple(int(s) for s in image.shape), image.dtype.str)
        target = self.view(ref, readonly=False)
        if image.__array_interface__["data"][0] != target.__array_interface__["data"][0] or not image.flags.c_contiguous:
            np.copyto(target, image, casting="no")
        return ref

    def view(self, ref: SlotRef, readonly: bool = True) -> np.ndarray:
        return _view(self._buf, self.slot_bytes, ref, readonly)

    def close(self) -> None:
        """Unlink the segment (idempotent). Views still alive keep their mapping until dropped."""
        if self._closed:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._buf = None  # type: ignore[assignment]
        try:
            self._shm.close()
        except BufferError:
            pass  # a view still exists; the mapping goes when it does
        try:
            self._shm.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> FrameRing:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RingReader:
    """Worker side: attach to the parent's segment and view slots without copying."""

    def __init__(self, name: str, slots: int, slot_bytes: int):
        # Python 3.11 registers attached segments with the resource tracker too. Spawned
        # workers share the parent's tracker, so this only re-adds the name to its set:
        # the parent's unlink unregisters it, and it is never unlinked behind the parent's back.
        self._shm = shared_memory.SharedMemory(name=name, create=False)
        if self._shm.size < slots * slot_bytes:
            raise RingError(f"segment {name} is {self._shm.size} bytes, expected {slots * slot_bytes}")
        self.slots, self.slot_bytes = slots, slot_bytes
        self._buf = np.ndarray((slots, slot_bytes), dtype=np.uint8, buffer=self._shm.buf)

    def view(self, ref: SlotRef) -> np.ndarray:
        return _view(self._buf, self.slot_bytes, ref, True)

    def close(self) -> None:
        self._buf = None  # type: ignore[assignment]
        try:
            self._shm.close()
        except BufferError:
            pass


def _view(buf: np.ndarray, slot_bytes: int, ref: SlotRef, readonly: bool) -> np.ndarray:
    if buf is None:
        raise RingError("ring is closed")
    if not 0 <= ref.slot < buf.shape[0]:
        raise RingError(f"slot {ref.slot} out of range 0..{buf.shape[0] - 1}")
    n = ref.nbytes
    if n > slot_bytes:
        raise FrameTooLarge(f"slot ref of {n} bytes exceeds the slot size {slot_bytes}")
    arr = buf[ref.slot, :n].view(np.dtype(ref.dtype)).reshape(ref.shape)
    if readonly:
        arr.flags.writeable = False
    return arr
