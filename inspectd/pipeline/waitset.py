"""What the daemon loop sleeps on: worker pipes, worker sentinels and its wake pipe, registered once.

`multiprocessing.connection.wait` builds and fills a new selector on every
call; the loop calls it once or twice per frame, and at 2048² that was
~0.2 ms of the main process's CPU each time (cProfile, 200 frames: 880 calls,
2 778 registrations). Here the registrations persist and are only updated
when the set of objects changes (a worker started, died or was replaced).

poll(2), not epoll: poll watches descriptor *numbers*, so a sentinel that
was closed and whose number a replacement worker's sentinel reuses (the same
int, indistinguishable here) is watched correctly; an epoll set silently
drops a closed descriptor and would never report its successor. Objects are
registered by number, the object itself kept as the key's data, so nothing
asks a departed (closed) pipe for its `fileno()` again.
"""

from __future__ import annotations

import selectors
from collections.abc import Hashable, Iterable

__all__ = ["WaitSet"]


def _fd(obj) -> int:
    return obj if isinstance(obj, int) else obj.fileno()


class WaitSet:
    def __init__(self) -> None:
        self._sel = selectors.PollSelector()
        self._fds: dict[Hashable, int] = {}  # registered object -> the fd it was registered under

    def _sync(self, objs: Iterable[Hashable]) -> None:
        want = list(objs)
        wanted = set(want)
        for obj in [o for o in self._fds if o not in wanted]:
            fd = self._fds.pop(obj)
            try:
                self._sel.unregister(fd)
            except (KeyError, ValueError):
                pass
        for obj in want:
            if obj not in self._fds:
                fd = _fd(obj)
                try:
                    self._sel.register(fd, selectors.EVENT_READ, obj)
                except KeyError:  # its number still registered under an object that left unnoticed: replace it
                    self._sel.unregister(fd)
                    for o in [o for o, f in self._fds.items() if f == fd]:
                        del self._fds[o]
                    self._sel.register(fd, selectors.EVENT_READ, obj)
                self._fds[obj] = fd

    def wait(self, objs: Iterable[Hashable], timeout: float | None) -> list:
        """The objects of `objs` that are readable (or closed) within `timeout` seconds, like `connection.wait`."""
        self._sync(objs)
        return [key.data for key, _ in self._sel.select(timeout)]

    def close(self) -> None:
        self._sel.close()
        self._fds.clear()
