"""Worker pools that cannot hang when a worker dies, even halfway through writing its result."""

from __future__ import annotations

import os
import signal
import struct
import sys
import time

import pytest
from concurrent.futures.process import BrokenProcessPool

from inspectd.forking import forked_pool, result_or_raise, shutdown_pool


def _die_halfway_through_the_result() -> None:
    # What the OOM killer does to a worker at the wrong moment, made exact: the start of a
    # 1 MB result message is on the pipe, the rest never comes.
    frame = sys._getframe()
    while frame is not None and "result_queue" not in frame.f_locals:
        frame = frame.f_back
    writer = frame.f_locals["result_queue"]._writer
    os.write(writer.fileno(), struct.pack("!i", 1_000_000) + b"\x80" * 64)
    os.kill(os.getpid(), signal.SIGKILL)


def _square(x: int) -> int:
    return x * x


def test_plain_future_result_hangs_where_result_or_raise_does_not():
    with forked_pool(2) as pool:
        assert result_or_raise(pool, pool.submit(_square, 7)) == 49
        doomed = pool.submit(_die_halfway_through_the_result)
        # the executor alone never notices: this is the hang the helper exists for
        with pytest.raises(TimeoutError):
            doomed.result(timeout=2)
        t0 = time.monotonic()
        with pytest.raises(BrokenProcessPool):
            result_or_raise(pool, doomed, poll_s=0.2)
        assert time.monotonic() - t0 < 30
        t0 = time.monotonic()
        shutdown_pool(pool)
        assert time.monotonic() - t0 < 30
