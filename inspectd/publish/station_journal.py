"""Opening the station's journal: lock it, check it is the journal the line last used, open it, record its id.

One function so that the publisher's start-up reads as one step, and so that
whatever fails half-way leaves nothing locked or open behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO

from inspectd.publish.errors import PublishError
from inspectd.publish.journal import Journal, JournalError, Synchronous
from inspectd.publish.journal_identity import check_identity, record_identity
from inspectd.publish.journal_lock import lock_journal

__all__ = ["OpenedJournal", "open_station_journal"]


@dataclass
class OpenedJournal:
    journal: Journal
    lockfile: IO[str]  # holds the flock: close it after the journal
    previous_journal_id: str | None  # set when this is not the journal the station last used (docs/publish.md)


def open_station_journal(path: Path, synchronous: Synchronous, *, allow_new: bool) -> OpenedJournal:
    """Raises PublishError (journal locked by another daemon, replaced without the go-ahead, unreadable)."""
    lockfile = lock_journal(path)
    try:
        missing_was = check_identity(path, allow_new=allow_new)
        try:
            journal = Journal(path, synchronous=synchronous)
        except JournalError as e:
            raise PublishError(str(e)) from e
        try:
            replaced = record_identity(path, journal.journal_id, allow_new=allow_new)
        except BaseException:
            journal.close()
            raise
    except BaseException:
        lockfile.close()
        raise
    return OpenedJournal(journal, lockfile, missing_was or replaced)
