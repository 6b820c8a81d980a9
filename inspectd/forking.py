"""Worker processes by fork, made safe for OpenCV: the one place that knows how.

Forking copies the caller's memory for free (cached training frames, a
renderer's tables), which is why the data tools use it. But a forked child
inherits OpenCV's thread pool without its threads, and the child's first
parallel OpenCV call (or `cv2.setNumThreads`) then waits for them forever:
seen as a training run hanging in its batch workers under pytest, after the
test had rendered frames with OpenCV in the parent. Inside `fork_context()`
OpenCV runs single-threaded, so children start with no pool to wait for;
the parallelism is the processes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any
from contextlib import contextmanager

__all__ = ["break_pool", "fork_context", "forked_pool", "result_or_raise", "shutdown_pool"]


@contextmanager
def fork_context() -> Iterator[multiprocessing.context.BaseContext]:
    """A multiprocessing context that forks, with OpenCV single-threaded while the block runs.

    Create (and, for executors that start workers lazily, use) the pool inside
    the block. Falls back to spawn where fork does not exist.
    """
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        yield multiprocessing.get_context(method)
    finally:
        cv2.setNumThreads(threads)


@contextmanager
def forked_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool for one block of work, forked inside `fork_context`.

    On an error or Ctrl-C in the block the queued jobs are cancelled, so the
    exit waits only for the ones already running.
    """
    with fork_context() as ctx, ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        try:
            yield pool
        except BaseException:
            if any(p.exitcode is not None for p in _processes(pool)):
                break_pool(pool)
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def result_or_raise(pool: ProcessPoolExecutor, future: Future, poll_s: float = 0.5) -> Any:
    """`future.result()`, but a dead worker process raises `BrokenProcessPool` instead of a hang.

    The executor notices a dead worker by itself, except when the worker died
    while writing its result: the executor's reader thread then waits for the
    rest of that message forever (the parent holds the pipe's write end too),
    and so does every `result()`. Measured: a worker killed 0.8 s into writing
    a 200 MB result left `result()` waiting past any timeout. So this polls,
    and when a worker has exited with the future still open it kills the
    other workers and closes the parent's write end, so the reader sees EOF,
    marks the pool broken and its threads end.
    """
    while True:
        try:
            return future.result(timeout=poll_s)
        except FuturesTimeout:
            if not any(p.exitcode is not None for p in _processes(pool)):
                continue
            break_pool(pool)
            try:
                return future.result(timeout=30)
            except FuturesTimeout:
                raise BrokenProcessPool("a worker process died and the pool did not notice") from None


def shutdown_pool(pool: ProcessPoolExecutor) -> None:
    """Shut the pool down, cancelling queued work; a pool with a dead worker is broken first, so this cannot hang."""
    if any(p.exitcode is not None for p in _processes(pool)):
        break_pool(pool)
    pool.shutdown(wait=True, cancel_futures=True)


def break_pool(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's workers and unblock its reader thread, so `shutdown` cannot hang."""
    for p in _processes(pool):
        if p.exitcode is None:
            p.kill()
    for p in _processes(pool):
        p.join(5)
    writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
    if writer is not None:
        with contextlib.suppress(OSError):
            writer.close()


def _processes(pool: ProcessPoolExecutor) -> list:
    # CPython's executor keeps its workers in `_processes` (pid -> Process) since 3.2; there is no public view.
    return list((getattr(pool, "_processes", None) or {}).values())
