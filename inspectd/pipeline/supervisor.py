"""Supervision of the inspection workers: start, notice death, restart within a budget, stop.

The daemon's main loop waits on every worker's pipe and process sentinel; a
worker that dies (crash, OOM kill, kill -9) is reaped by `mark_dead()`, its
frame gets an ERROR, and it is restarted if fewer than `max_restarts_per_min`
restarts happened in the last 60 s. Past the budget, `restart()` returns None
and the daemon stops with a non-zero exit (systemd's Restart=on-failure takes
over).
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from inspectd.pipeline.workers import WorkerSpec, worker_main

__all__ = ["WorkerHandle", "WorkerPool", "WorkerState", "describe_exit"]


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


class WorkerState(StrEnum):
    """A worker's life: STARTING until its first "ready" message, then READY; STOPPING once asked to
    stop, KILLING once the daemon killed it for holding a frame too long, DEAD once reaped."""

    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    KILLING = "killing"
    DEAD = "dead"


@dataclass(eq=False)
class WorkerHandle:
    wid: int
    proc: BaseProcess
    conn: Connection
    state: WorkerState = WorkerState.STARTING
    current: int | None = None  # acquisition index of the frame it holds
    pid: int | None = None
    detector: str | None = None
    started: float = field(default_factory=time.monotonic)
    generation: int = 0

    @property
    def sentinel(self) -> int:
        return self.proc.sentinel


class WorkerPool:
    def __init__(self, ctx, make_spec: Callable[[int], WorkerSpec], n: int, max_restarts_per_min: int):
        self.ctx = ctx
        self.make_spec = make_spec
        self.n = n
        self.max_restarts_per_min = max_restarts_per_min
        self.handles: list[WorkerHandle] = []
        self._restarts: deque[float] = deque()
        self.restarts_total = 0

    def _spawn(self, wid: int, generation: int) -> WorkerHandle:
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(
            target=worker_main, args=(self.make_spec(wid), child), name=f"inspectd-worker-{wid}", daemon=True
        )
        proc.start()
        child.close()  # only the worker holds its end: its death is EOF here
        return WorkerHandle(wid=wid, proc=proc, conn=parent, pid=proc.pid, generation=generation)

    def start(self) -> None:
        self.handles = [self._spawn(i, 0) for i in range(self.n)]

    def wait_objects(self) -> dict[Connection | int, WorkerHandle]:
        objs: dict[Connection | int, WorkerHandle] = {}
        for h in self.handles:
            if h.state != WorkerState.DEAD:
                objs[h.conn] = h
                objs[h.sentinel] = h
        return objs

    def ready(self) -> list[WorkerHandle]:
        return [h for h in self.handles if h.state == WorkerState.READY]

    def idle(self) -> list[WorkerHandle]:
        return [h for h in self.handles if h.state == WorkerState.READY and h.current is None]

    def alive(self) -> list[WorkerHandle]:
        return [h for h in self.handles if h.state != WorkerState.DEAD]

    def busy(self) -> list[WorkerHandle]:
        return [h for h in self.handles if h.state != WorkerState.DEAD and h.current is not None]

    def send(self, h: WorkerHandle, msg: tuple) -> bool:
        """Send to a worker; False if its pipe is broken (the caller then reaps it)."""
        try:
            h.conn.send(msg)
            return True
        except (BrokenPipeError, ConnectionResetError, OSError):
            return False

    def broadcast(self, msg: tuple) -> None:
        for h in self.alive():
            self.send(h, msg)

    def mark_dead(self, h: WorkerHandle) -> str:
        """Reap a dead worker; returns how it ended. Its pipe must have been drained by the caller."""
        h.state = WorkerState.DEAD
        h.proc.join(timeout=1.0)
        if h.proc.exitcode is None:
            h.proc.kill()
            h.proc.join(timeout=1.0)
        try:
            h.conn.close()
        except OSError:
            pass
        return describe_exit(h.proc.exitcode)

    def restarts_in_last_minute(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        while self._restarts and now - self._restarts[0] > 60.0:
            self._restarts.popleft()
        return len(self._restarts)

    def restart(self, h: WorkerHandle) -> WorkerHandle | None:
        """A new worker in `h`'s place, or None when the restart budget is spent."""
        now = time.monotonic()
        if self.restarts_in_last_minute(now) >= self.max_restarts_per_min:
            return None
        self._restarts.append(now)
        self.restarts_total += 1
        new = self._spawn(h.wid, h.generation + 1)
        self.handles[self.handles.index(h)] = new
        return new

    def stop(self, timeout_s: float = 3.0) -> None:
        """Ask every worker to stop, then terminate/kill stragglers. Bounded by ~timeout_s + 2 s."""
        for h in self.alive():
            self.send(h, ("stop",))
            h.state = WorkerState.STOPPING
        end = time.monotonic() + timeout_s
        for h in self.handles:
            h.proc.join(timeout=max(0.0, end - time.monotonic()))
        for h in self.handles:
            if h.proc.is_alive():
                h.proc.kill()
                h.proc.join(timeout=2.0)
            try:
                h.conn.close()
            except OSError:
                pass
            h.state = WorkerState.DEAD
