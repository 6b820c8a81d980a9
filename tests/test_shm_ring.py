"""The shared-memory frame ring: zero-copy views, slot ownership, oversize frames, cleanup after kill -9."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from inspectd.pipeline.shm_ring import (
    SHM_DIR,
    FrameRing,
    FrameTooLarge,
    RingError,
    RingReader,
    SlotRef,
    slot_bytes_for,
    sweep_stale,
)

REPO = Path(__file__).resolve().parents[1]


def _segment(name: str) -> Path:
    return SHM_DIR / name


def test_write_and_zero_copy_views():
    with FrameRing(3, 64 * 64 * 2) as ring:
        img = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
        slot = ring.acquire("f1")
        ref = ring.write(slot, img)
        assert ref == SlotRef(slot, (64, 64), "<u2") and ref.nbytes == img.nbytes
        a, b = ring.view(ref), ring.view(ref)
        assert np.array_equal(a, img) and np.shares_memory(a, b)  # views on the buffer, not copies
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a[0, 0] = 1
        small = np.full((20, 30), 7, np.uint8)  # a smaller frame of another type fits the same slot
        ref2 = ring.write(slot, small)
        assert ring.view(ref2).shape == (20, 30) and ring.view(ref2).dtype == np.uint8
        del a, b


def test_a_source_fills_a_slot_directly_and_writing_it_costs_no_copy():
    """slot_array: the frame's memory in the ring for a source to fill (GenICam read_into); write() on that
    array is a no-op copy, on any other array a real one; too large a frame gets no array."""
    with FrameRing(2, 64 * 64 * 2) as ring:
        slot = ring.acquire("f1")
        arr = ring.slot_array(slot, (64, 64), np.uint16)
        assert arr is not None and arr.flags.writeable
        arr[:] = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
        ref = ring.write(slot, arr)
        assert ref == SlotRef(slot, (64, 64), "<u2") and np.shares_memory(ring.view(ref), arr)
        assert np.array_equal(ring.view(ref), np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
        other = ring.acquire("f2")
        ref2 = ring.write(other, arr)  # another slot: copied
        assert not np.shares_memory(ring.view(ref2), arr) and np.array_equal(ring.view(ref2), arr)
        assert ring.slot_array(slot, (65, 64), np.uint16) is None
        del arr


def test_oversize_frame_is_an_error_not_a_crash():
    with FrameRing(2, 4096) as ring:
        slot = ring.acquire("big")
        with pytest.raises(FrameTooLarge, match="more than a ring slot"):
            ring.write(slot, np.zeros((100, 100), np.uint16))
        ring.release(slot)
        assert ring.free_count == 2


def test_slot_ownership_and_blocking_acquire():
    with FrameRing(2, 4096) as ring:
        s0, s1 = ring.acquire("a"), ring.acquire("b")
        assert {s0, s1} == {0, 1} and ring.owner(s0) == "a" and ring.free_count == 0
        t = time.monotonic()
        assert ring.acquire("c", timeout=0.15) is None
        assert 0.1 < time.monotonic() - t < 1.0
        threading.Timer(0.1, ring.release, args=(s1,)).start()
        assert ring.acquire("c", timeout=2.0) == s1 and ring.owner(s1) == "c"
        with pytest.raises(RingError, match="not held"):
            ring.release(99)
        stop = threading.Event()
        threading.Timer(0.1, stop.set).start()
        assert ring.acquire("d", timeout=None, stop=stop) is None  # a stop ends an unbounded wait


def test_close_unlinks_and_slot_size_rounding():
    ring = FrameRing(2, 5000)
    assert ring.slot_bytes == 8192 and slot_bytes_for(None) == 2048 * 2048 * 2
    seg = _segment(ring.name)
    assert seg.exists()
    view = ring.view(ring.write(ring.acquire(1), np.ones((20, 20), np.uint8)))
    ring.close()  # a live view does not stop the unlink
    assert not seg.exists()
    ring.close()  # idempotent
    del view


def test_sweep_removes_segments_of_dead_processes_only():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    stale = _segment(f"inspectd-{p.pid}-deadbeef")
    stale.write_bytes(b"x")
    mine = _segment(f"inspectd-{os.getpid()}-cafe0000")
    mine.write_bytes(b"x")
    try:
        removed = sweep_stale()
        assert stale.name in removed and not stale.exists()
        assert mine.exists()
    finally:
        for f in (stale, mine):
            f.unlink(missing_ok=True)


def _reader_child(name: str, slots: int, slot_bytes: int, ref: SlotRef, conn) -> None:
    r = RingReader(name, slots, slot_bytes)
    v = r.view(ref)
    conn.send(int(v.sum()))
    conn.recv()  # hold the mapping until killed or told


def test_worker_sees_parent_pixels_and_kill9_leaks_nothing():
    ctx = mp.get_context("spawn")
    ring = FrameRing(2, 256 * 256 * 2)
    seg = _segment(ring.name)
    img = np.random.default_rng(0).integers(0, 4096, (256, 256), dtype=np.uint16)
    ref = ring.write(ring.acquire(0), img)
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_reader_child, args=(ring.name, ring.slots, ring.slot_bytes, ref, child))
    p.start()
    try:
        assert parent.poll(30), "reader child did not answer"
        assert parent.recv() == int(img.sum())
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        assert p.exitcode == -signal.SIGKILL
        assert seg.exists()  # the worker's death does not take the parent's segment with it
    finally:
        ring.close()
    assert not seg.exists()


def test_parent_kill9_segment_is_reclaimed(tmp_path):
    """The parent dies hard while a spawned reader holds the ring: nothing stays in /dev/shm."""
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing as mp, sys, time
            import numpy as np
            from inspectd.pipeline.shm_ring import FrameRing
            sys.path.insert(0, TESTS_DIR)
            from test_shm_ring import _reader_child

            if __name__ == "__main__":
                ctx = mp.get_context("spawn")
                ring = FrameRing(2, 4096)
                ref = ring.write(ring.acquire(0), np.ones((16, 16), np.uint8))
                a, b = ctx.Pipe()
                p = ctx.Process(target=_reader_child, args=(ring.name, 2, ring.slot_bytes, ref, b))
                p.start()
                a.recv()
                print(ring.name, p.pid, flush=True)
                time.sleep(60)
            """
        ).replace("TESTS_DIR", repr(str(Path(__file__).parent)))
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        line = proc.stdout.readline().split()
        assert line, proc.stderr.read()
        name, child_pid = line[0], int(line[1])
        assert _segment(name).exists()
        proc.kill()
        proc.wait(10)
        # the reader gets EOF on its pipe and exits; Python's resource tracker then unlinks the segment
        end = time.monotonic() + 15
        while _segment(name).exists() and time.monotonic() < end:
            time.sleep(0.1)
        assert not _segment(name).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            os.kill(child_pid, signal.SIGKILL)
        except (ProcessLookupError, NameError):
            pass
