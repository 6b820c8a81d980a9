"""Small helpers several test modules share (not a test module itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

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


def bilinear(img: np.ndarray, x: float, y: float) -> float:
    """Grey value at (x, y) by bilinear interpolation of the four pixels around it."""
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    p = img[y0 : y0 + 2, x0 : x0 + 2].astype(np.float64)
    return float(
        p[0, 0] * (1 - fx) * (1 - fy) + p[0, 1] * fx * (1 - fy) + p[1, 0] * (1 - fx) * fy + p[1, 1] * fx * fy
    )
