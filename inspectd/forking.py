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

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

__all__ = ["fork_context", "forked_pool"]


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
            pool.shutdown(wait=False, cancel_futures=True)
            raise
