"""Small helpers several test modules share (not a test module itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from inspectd.sources import EndOfStream

REPO = Path(__file__).resolve().parents[1]


def cli(*args, check=None) -> subprocess.CompletedProcess:
    """`python -m inspectd ARGS` from the repo root; with `check`, assert the exit code."""
    p = subprocess.run([sys.executable, "-m", "inspectd", *map(str, args)], capture_output=True, text=True, cwd=REPO)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def read_all(src, limit: int = 50, timeout: float = 1.0) -> list:
    """Everything a source delivers until EndOfStream (or `limit` items); None reads are skipped."""
    out = []
    try:
        while len(out) < limit:
            item = src.read(timeout)
            if item is not None:
                out.append(item)
    except EndOfStream:
        pass
    return out
