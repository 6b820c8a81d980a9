"""OS-level names and priorities for the daemon's threads (Linux; a no-op elsewhere).

Python names its threads only for itself; `top -H`, `ps -L`, /proc/PID/task/*/comm
and py-spy see "python" for all of them. Naming each thread in the kernel
(prctl PR_SET_NAME, 15 characters) lets an operator see which one burns a core
and lets the bench split the main process's CPU by thread.

Child processes (workers, the NG archive writer) die with the daemon
(`daemon_child`, PR_SET_PDEATHSIG), so a kill -9 leaves no orphan.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading

__all__ = ["daemon_child", "name_this_thread", "named_thread", "prctl"]

_PR_SET_NAME = 15


def prctl(option: int, arg) -> bool:
    """Linux prctl(2) with one argument for the calling thread or process; True if it succeeded (False
    elsewhere or when libc cannot be loaded)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return False
    return libc.prctl(option, arg, 0, 0, 0) == 0


def os_name(name: str) -> str:
    """The kernel name of a thread called `name`: without the ``inspectd-`` prefix, 15 bytes at most."""
    return name.removeprefix("inspectd-")[:15]


def named_thread(target, name: str, *, args: tuple = (), kwargs: dict | None = None) -> threading.Thread:
    """A daemon `threading.Thread` that names itself in the kernel first."""

    def run() -> None:
        name_this_thread(os_name(name))
        target(*args, **(kwargs or {}))

    return threading.Thread(target=run, name=name, daemon=True)


def name_this_thread(name: str | None = None) -> bool:
    """Give the calling thread `name` (default: its Python name) in the kernel, truncated to 15 bytes; True if set."""
    raw = (name or threading.current_thread().name).encode("ascii", "replace")[:15]
    return prctl(_PR_SET_NAME, ctypes.c_char_p(raw))


def daemon_child() -> None:
    """First call of a spawned child of the daemon (a worker, the NG archive writer). The daemon decides when
    its children stop: a terminal's Ctrl-C or systemd's SIGTERM to the whole group must not kill one in the
    middle of the daemon's drain, so those signals are ignored here; and the child dies with the daemon."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    _die_with_parent()


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent (the daemon) dies, kill -9 included, so no orphan holds
    a model, a frame or an archive slot; the next start must find the machine as a fresh one would.
    Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() == 1:  # the parent died before prctl: nobody will read our results
        os._exit(0)
