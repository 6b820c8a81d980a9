"""The verdict: the one object per frame that the line receives (docs/contracts.md §4).

The same JSON goes on the wire, into the journal and into `replay --out`.
The PLC treats every result but OK as a reject.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VERDICT_SCHEMA = "inspectd.verdict/1"


class Result(StrEnum):
    OK = "OK"  # measured and within the recipe
    NG = "NG"  # measured and out of spec
    ERROR = "ERROR"  # could not measure
    TIMEOUT = "TIMEOUT"  # deadline missed


class ReasonCode(StrEnum):
    """Machine-readable reasons; a PLC programmer switches on these."""

    OVERHANG_MIN = "OVERHANG_MIN"  # a cathode too close to an anode tip (plating risk)
    OVERHANG_MAX = "OVERHANG_MAX"  # a cathode too far back
    COUNT_MISMATCH = "COUNT_MISMATCH"  # n_anode != n_cathode + anode_excess
    ALTERNATION = "ALTERNATION"  # two tips of one class adjacent along the stack
    LAYERS_MIN = "LAYERS_MIN"  # fewer cathodes than the recipe allows
    LAYERS_MAX = "LAYERS_MAX"  # more cathodes than the recipe allows
    STACK_GAP = "STACK_GAP"  # same-class tips too far apart along the stack: a layer hidden or merged
    # ERROR reasons
    UNREADABLE_FRAME = "UNREADABLE_FRAME"  # corrupt, truncated, wrong dtype/shape
    NO_STACK = "NO_STACK"  # no electrode stack found in the frame
    NO_TIPS = "NO_TIPS"  # stack found but no tips detected
    DETECTION_UNAVAILABLE = "DETECTION_UNAVAILABLE"  # no tip detector configured/loaded
    LOW_CONFIDENCE = "LOW_CONFIDENCE"  # the weakest tip or gap is below the calibrated limit: no OK/NG it can back
    INTERNAL = "INTERNAL"  # a stage failed on this frame (message says which)
    INTERRUPTED = "INTERRUPTED"  # acquired, then the daemon was killed before its verdict: published at the next start
    NO_FRAME = "NO_FRAME"  # a trigger without a frame
    DEADLINE = "DEADLINE"  # TIMEOUT reason


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: ReasonCode
    index: int | None = None  # tip/cathode index along the stack, where one is at fault
    value_mm: float | None = None
    limit_mm: float | None = None
    value: float | None = None  # counts and other unitless values
    limit: float | None = None
    message: str | None = None  # human-readable detail (always set for ERROR)


class OverhangSummary(BaseModel):
    min: float
    mean: float
    max: float


class Confidence(BaseModel):
    """How well the frame's evidence holds up (inspection/confidence.py): the weakest tip and the tightest gap."""

    model_config = ConfigDict(extra="forbid")

    tip_min: float  # lowest detector score of any tip (heatmap peak, 0-1)
    tip_min_class: Literal["anode", "cathode"]
    tip_min_index: int  # index of that tip in its class list (anode_tips / cathode_tips)
    gap_min: float | None = None  # tightest spacing between neighbours along the stack / the median spacing
    gap_min_index: int | None = None  # position in the merged sequence of the second tip of that pair
    doubt_max: float | None = None  # strongest peak the detector rejected (below its threshold), 0 if none
    doubt_at: tuple[float, float] | None = None  # where that peak is, full-frame px
    alternation: float | None = None  # share of neighbours along the stack of the same class (0 on a healthy stack)
    squeeze: float | None = None  # tightest pair of anodes holding a cathode, over the median such pair spacing
    squeeze_index: int | None = None  # the cathode between that pair


class Verdict(BaseModel):
    schema_: Literal["inspectd.verdict/1"] = Field(VERDICT_SCHEMA, alias="schema")
    seq: int = Field(ge=0)
    frame_id: str
    part_id: str | None = None
    station: str
    result: Result
    reasons: list[Reason] = Field(default_factory=list)
    anode_tips: list[tuple[float, float]] = Field(default_factory=list)
    cathode_tips: list[tuple[float, float]] = Field(default_factory=list)
    overhang_mm: OverhangSummary | None = None
    roi: tuple[int, int, int, int] | None = None
    confidence: Confidence | None = None
    t_acquired_ns: int = 0
    t_published_ns: int = 0
    latency_ms: float = 0.0
    model: str = "none"

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Verdict:
        return cls.model_validate_json(text)


def error_reason(code: ReasonCode, message: str) -> Reason:
    return Reason(code=code, message=message)
