"""One publisher per journal: an exclusive flock on ``<journal>.lock``.

Split from publisher.py: the lock is taken before the journal is opened and
held (by the open file) until Publisher.close(); the OS releases it when the
process dies, so a crashed daemon never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from inspectd.publish.errors import PublishError


def lock_journal(path: Path) -> IO[str]:
    """Lock `path`'s lock file (holding our pid) and return it open; closing it releases the lock."""
    lock = path.with_name(path.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock, "a+")
    except OSError as e:
        raise PublishError(f"journal lock {lock}: {e.strerror or e}") from e
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.close()
        raise PublishError(f"journal {path} is in use by another publisher (lock {lock} is held)") from e
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f
