"""The engine protocol: what runs the tip network's forward pass (docs/architecture.md).

An engine turns a batch of normalised tiles (B, 1, H, W) float32 into raw
heatmaps (B, 2, H/s, W/s) float32 (anode, cathode). Everything around it (tile
geometry, decoding, mapping back) is the engine-independent
`inspectd.tips.infer`. Backends, one module each, hold a pydantic config with
a ``type: Literal[...]`` discriminator and guard the import of their library,
so a missing optional dependency is an error only when that backend is chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Engine", "EngineError", "EngineSettings", "check_batch"]


class EngineSettings(BaseModel):
    """What every backend's `[engine]` table has; each backend's config adds its own `type` and options."""

    model_config = ConfigDict(extra="forbid")

    model: Path = Path("engines/hrnet_tips.onnx")
    # How far behind the anode front the model looks, in same-class layer pitches (tips/crop.py).
    # It must cover the recipe's overhang_max_mm / the layer pitch in mm, plus margin, or a cathode
    # pulled back past the limit is missed (COUNT_MISMATCH instead of OVERHANG_MAX at its layer).
    # Unset: the model card's value (40 for the shipped model: the simulator's worst case, 5.1 mm at a
    # 0.14 mm pitch; on held-out sim frames it found 18 of 19 such cathodes the ROI-sized tiles
    # missed, for ~40 % more tile area, docs/model.md). The card is the one place the default lives.
    back_pitches: float | None = Field(
        None, ge=0, le=200,
        description="tiles reach this many layer pitches behind the front; 0 = ROI-sized tiles; unset = the model card's",
    )  # fmt: skip
    # Take a sub-threshold peak where the stack's alternation says a tip is missing (tips/comb.py).
    fill_breaks: bool | None = Field(None, description="complete the comb from sub-threshold peaks; unset = the model card's")


class EngineError(RuntimeError):
    """An engine that cannot be loaded or run (missing library, missing/corrupt model, bad input)."""


@runtime_checkable
class Engine(Protocol):
    name: str

    def load(self) -> None:
        """Load the model (idempotent). Raises EngineError."""
        ...

    def warmup(self, shape: tuple[int, int, int, int] = (1, 1, 256, 192), runs: int = 2) -> None:
        """Run the first (slow: allocations, kernel selection) inferences on a dummy batch."""
        ...

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(B, 1, H, W) float32 -> (B, 2, H/s, W/s) float32 heatmaps."""
        ...


def check_batch(batch: np.ndarray) -> np.ndarray:
    b = np.asarray(batch)
    if b.ndim != 4 or b.shape[1] != 1:
        raise EngineError(f"engine input must be (B, 1, H, W), got shape {b.shape}")
    if b.shape[2] % 32 or b.shape[3] % 32:
        raise EngineError(f"engine input H, W must be multiples of 32, got {b.shape[2]}x{b.shape[3]}")
    return np.ascontiguousarray(b, dtype=np.float32)
