from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"


@pytest.fixture
def real_dir() -> Path:
    if not (REAL / "images").is_dir():
        pytest.skip(f"real frames not found at {REAL} (shared/ must sit beside the repo)")
    return REAL
