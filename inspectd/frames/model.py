"""What a frame is once it is inside inspectd: pixels plus what we know about the cell."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

FRAME_SCHEMA = "inspectd.frame/1"


class FrameError(Exception):
    """A frame that cannot be inspected; the message names the file and what is wrong."""


def as_points(value: object, what: str) -> np.ndarray:
    """Validate a list/array of [x, y] into a float64 (N, 2) array."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2), np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: expected a list of finite [x, y] pairs, got shape {arr.shape}")
    return arr


class TipLabels(BaseModel):
    """Ground-truth tips, full-frame px, ordered along the stack."""

    model_config = ConfigDict(extra="forbid")

    anode_tips: list[tuple[float, float]] = Field(default_factory=list)
    cathode_tips: list[tuple[float, float]] = Field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return as_points(self.anode_tips, "anode_tips"), as_points(self.cathode_tips, "cathode_tips")


class Sidecar(BaseModel):
    """`<stem>.json` beside a frame (docs/contracts.md §3).

    Unknown keys are kept, not rejected: sidecars come from several producers
    (simulator, recorder, labelling tools) and may carry their own extras.
    """

    model_config = ConfigDict(extra="allow")

    schema_: str = Field(FRAME_SCHEMA, alias="schema")
    part_id: str | None = None
    station: str | None = None
    mm_per_px: float | None = Field(None, gt=0)
    bit_depth: int | None = Field(None, ge=1, le=16)
    t_acquired_ns: int | None = Field(None, ge=0)
    labels: TipLabels | None = None
    expected: str | None = None
    defects: list[str] = Field(default_factory=list)

    @field_validator("expected")
    @classmethod
    def _expected(cls, v: str | None) -> str | None:
        if v is not None and v not in ("OK", "NG"):
            raise ValueError("expected must be OK or NG")
        return v

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=1)


@dataclass
class Frame:
    """One mono frame (uint8 or uint16, 2-D) with its metadata."""

    frame_id: str
    image: np.ndarray
    meta: Sidecar = field(default_factory=Sidecar)

    def __post_init__(self) -> None:
        check_image(self.image, self.frame_id)

    @property
    def bit_depth(self) -> int:
        if self.meta.bit_depth:
            return self.meta.bit_depth
        return 8 if self.image.dtype == np.uint8 else 16


def check_image(image: object, name: str) -> np.ndarray:
    """Raise FrameError unless `image` is a non-empty 2-D uint8/uint16 array."""
    if not isinstance(image, np.ndarray):
        raise FrameError(f"{name}: not an image array ({type(image).__name__})")
    if image.dtype not in (np.uint8, np.uint16):
        raise FrameError(f"{name}: unsupported pixel type {image.dtype}; expected uint8 or uint16 mono")
    if image.ndim != 2:
        raise FrameError(f"{name}: expected a 2-D mono image, got shape {image.shape}")
    if image.shape[0] < 16 or image.shape[1] < 16:
        raise FrameError(f"{name}: image too small ({image.shape[1]}x{image.shape[0]} px)")
    return image
