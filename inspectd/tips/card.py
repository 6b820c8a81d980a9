"""Model card: the JSON next to a shipped ONNX model (`engines/<name>.json`).

It carries what inference needs besides the weights (input definition,
decoder parameters and the calibrated threshold) and what a reader needs to
trust them (training data, seed, steps, held-out metrics, sha256 of the .onnx).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from inspectd.tips.codec import HeatmapCodec
from inspectd.tips.crop import InputSpec

__all__ = ["CARD_SCHEMA", "ModelCard", "card_path", "load_card", "sha256_file"]

CARD_SCHEMA = "inspectd.model/1"


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_: str = Field(CARD_SCHEMA, alias="schema")
    name: str = "hrnet_tips"
    architecture: str = "hrnet"
    onnx: str | None = None  # file name of the model next to the card
    sha256: str | None = None
    params: int | None = None
    input: dict[str, Any] = Field(default_factory=lambda: InputSpec().to_dict())
    decode: dict[str, Any] = Field(default_factory=lambda: HeatmapCodec().to_dict())
    model_config_: dict[str, Any] = Field(default_factory=dict, alias="model")
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)
    gate: dict[str, Any] = Field(default_factory=dict)  # calibrated LOW_CONFIDENCE limits (inspection/confidence.py)

    @property
    def model_id(self) -> str:
        """e.g. "hrnet_w12s-1a2b3c4d": architecture name and the first 8 hex digits of the ONNX sha256."""
        return f"{self.name}-{(self.sha256 or 'unhashed')[:8]}"

    def input_spec(self) -> InputSpec:
        return InputSpec.from_dict(self.input)

    def codec(self) -> HeatmapCodec:
        return HeatmapCodec.from_dict(self.decode)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=1)


def card_path(model_path: Path | str) -> Path:
    """`engines/hrnet_tips.onnx` -> `engines/hrnet_tips.json`."""
    return Path(model_path).with_suffix(".json")


def load_card(path: Path | str) -> ModelCard:
    p = Path(path)
    if p.suffix != ".json":
        p = card_path(p)
    return ModelCard.model_validate(json.loads(p.read_text(encoding="utf-8")))


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
