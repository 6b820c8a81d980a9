"""Training batches made ahead of the loop by forked worker processes, or in the loop.

A batch is a pure function of (seed, step), so a run's batches do not depend
on the worker count and a resumed run sees the same ones. Workers are forked
(`inspectd.forking`) with the cached frames shared copy-on-write.
"""

from __future__ import annotations

import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from inspectd.forking import fork_context, result_or_raise, shutdown_pool
from inspectd.training.data import make_batch_train

__all__ = ["BatchStream"]


_WORKER: dict = {}  # a batch worker's inputs, set once per worker process by _init_worker


def _init_worker(args: tuple) -> None:
    # A forked worker inherits the trainer's SIGTERM/SIGINT handlers (log, checkpoint, go on): it
    # would outlive Pool.terminate() and hang the run's end (seen on the GPU machine). Workers die on
    # SIGTERM and leave Ctrl-C to the trainer.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER["args"] = args


def _make_batch(args: tuple, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Step `step`'s batch: a pure function of (seed, step), in the loop or in a worker."""
    frames, spec, codec, aug, seed, batch, weights = args
    return make_batch_train(frames, spec, codec, aug, np.random.default_rng([seed, step]), batch, weights)


def _worker_batch(step: int) -> tuple[np.ndarray, np.ndarray]:
    return _make_batch(_WORKER["args"], step)


class BatchStream:
    """The batch of each step, made in the loop (workers = 0) or by worker processes ahead of it.

    A batch is a pure function of (seed, step) either way, so a run's batches
    do not depend on the worker count. Workers are forked with the cached
    frames (copy-on-write), all at the first submit (inside `fork_context`),
    and at most 2 x workers batches are in flight, so memory stays bounded
    however far the GPU is ahead. A worker that dies (out of memory, killed)
    breaks the executor: `get` raises instead of waiting for a batch that
    will never come, and the trainer stops with a checkpoint.
    """

    def __init__(self, frames, spec, codec, aug, seed: int, batch: int, weights, workers: int):
        self._args = (frames, spec, codec, aug, seed, batch, weights)
        self._workers = int(workers)
        self._pool = None
        self._pending: dict[int, object] = {}
        self._next = 0

    def _fill(self, steps: int) -> None:
        while self._next < steps and len(self._pending) < 2 * self._workers:
            self._pending[self._next] = self._pool.submit(_worker_batch, self._next)
            self._next += 1

    def get(self, step: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
        if self._workers <= 0:
            return _make_batch(self._args, step)
        try:
            if self._pool is None:
                self._next = step
                with fork_context() as ctx:  # with fork, the executor starts every worker at the first submit
                    self._pool = ProcessPoolExecutor(
                        self._workers, mp_context=ctx, initializer=_init_worker, initargs=(self._args,)
                    )
                    self._fill(steps)
            self._fill(steps)
            return result_or_raise(self._pool, self._pending.pop(step))
        except BrokenProcessPool as e:
            raise RuntimeError(
                f"a batch worker process died while making step {step}'s batch (out of memory? killed?)"
            ) from e

    def close(self) -> None:
        if self._pool is not None:
            shutdown_pool(self._pool)
            self._pool = None
            self._pending.clear()
