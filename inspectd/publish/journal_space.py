"""The journal's disk reserve: no frame is taken while the journal's filesystem is below it.

Asked by the acquisition thread before every frame (a statvfs, microseconds):
frames are refused while the journal can still record the verdicts of those
in flight, instead of being taken and then lost with a full disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from inspectd.config import PublishConfig

__all__ = ["journal_space_problem"]


def journal_space_problem(cfg: PublishConfig) -> str | None:
    """Why no frame should be taken now: the journal's filesystem below `journal_min_free_mb`, or None."""
    need = cfg.journal_min_free_mb
    if need <= 0:
        return None
    try:
        st = os.statvfs(Path(cfg.journal).parent)
    except OSError as e:
        return f"journal {cfg.journal}: cannot check free space ({e.strerror or e})"
    free_mb = st.f_bavail * st.f_frsize / 2**20
    if free_mb < need:
        return (
            f"journal filesystem of {cfg.journal} has {free_mb:.1f} MB free, below the "
            f"{need:g} MB reserve (publish.journal_min_free_mb): no frames are taken until space is freed"
        )
    return None
