"""The journal's identity outlives the journal: ``<journal>.id`` remembers which journal was here.

A journal deleted or replaced while the daemon is stopped (a wiped var/, a
restored backup, a new disk) used to start again at seq 1 under a new
journal_id without a word: a PLC that counts on seq would take the new
verdicts for old ones. The identity file is written when a journal is
created; at start a missing or different journal next to an identity file
is refused unless the operator says so (`--new-journal`), and the new
journal's heartbeats then name the one it replaced (`previous_journal_id`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from inspectd.publish.errors import PublishError

__all__ = ["check_identity", "file_replaced", "identity_path", "record_identity"]


def file_replaced(journal: Path, file_id: tuple[int, int]) -> str | None:
    """Why the file at `journal` is no longer the open one whose (st_dev, st_ino) is `file_id`, or None."""
    try:
        st = os.stat(journal)
    except FileNotFoundError:
        return f"journal {journal} was deleted while in use: verdicts would go into a file that is gone"
    except OSError as e:
        return f"journal {journal}: cannot stat ({e.strerror or e})"
    if (st.st_dev, st.st_ino) != file_id:
        return f"journal {journal} was replaced by another file while in use"
    return None


def identity_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".id")


def _read(p: Path) -> dict | None:
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        return doc if isinstance(doc, dict) and isinstance(doc.get("journal_id"), str) else {"journal_id": "?"}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"journal_id": "?"}  # unreadable: some journal was here


def check_identity(journal: Path, *, allow_new: bool) -> str | None:
    """Before opening: refuse a journal that is not the one last used here; returns the previous id if replaced.

    Raises PublishError when the journal file is missing (or, after opening,
    see `record_identity`) and an identity file says another one was here,
    unless `allow_new`.
    """
    ident = _read(identity_path(journal))
    if ident is None or journal.exists():
        return None
    if not allow_new:
        raise PublishError(
            f"journal {journal} is missing, but {identity_path(journal)} says journal {ident['journal_id']} was here: "
            f"a new journal would start again at seq 1 under a new journal_id. Restore the file, or start once "
            f"with --new-journal to begin a new sequence on purpose"
        )
    return ident["journal_id"]


def record_identity(journal: Path, journal_id: str, *, allow_new: bool) -> str | None:
    """After opening: write the identity file for a new journal; refuse one replaced under the same name.

    Returns the id this journal replaced (only with `allow_new`), else None.
    """
    p = identity_path(journal)
    ident = _read(p)
    previous = None
    if ident is not None and ident["journal_id"] != journal_id:
        if not allow_new:
            raise PublishError(
                f"journal {journal} has journal_id {journal_id}, but {p} says journal {ident['journal_id']} was here: "
                f"the file was replaced. Put the right one back, or start once with --new-journal to go on "
                f"with this one"
            )
        previous = ident["journal_id"]
    if ident is None or previous is not None:
        tmp = p.with_name(p.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"journal_id": journal_id, "since_ns": time.time_ns()}) + "\n", encoding="utf-8")
            os.replace(tmp, p)
        except OSError as e:
            raise PublishError(f"journal identity file {p}: {e.strerror or e}") from e
    return previous
