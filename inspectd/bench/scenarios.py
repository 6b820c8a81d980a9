"""Benchmark scenarios: TOML files under bench/scenarios/ (or any path), validated by pydantic.

A scenario is a list of cases run in the same session, on the same cached
frames and the same model, `repeats` times each (interleaved: repeat 1 of every
case, then repeat 2, ... so slow drift in the machine's load hits every case
alike). A case is either the naive sequential loop (``mode = "naive"``) or the
daemon as a real subprocess (``mode = "daemon"``) fed by a source:

- ``replay``: the bench dump of that size/bit depth, preloaded into memory
  (``replay:DIR?preload=1&loop=1``), so the source costs a copy, not a decode;
- ``sim``: the simulator source (``sim:?seed=..&pool=..``), cycling a
  pre-rendered pool of the same seed as the dump (accuracy is scored on it).

``fps = 0`` offers frames as fast as the daemon takes them (``overload =
"block"``, deadline raised: a throughput run); ``fps > 0`` paces the source like
a line (``overload = "timeout"``, the station deadline: a latency run).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "bench" / "scenarios"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Case(_Strict):
    name: str = ""
    mode: Literal["naive", "daemon"] = "daemon"
    source: Literal["replay", "sim"] = "replay"
    size: int = Field(2048, ge=256, le=8192)
    bit_depth: Literal[8, 12, 16] = 12
    fps: float = Field(0.0, ge=0, description="offered load; 0 = as fast as possible")
    workers: int = Field(2, ge=1, le=64)
    engine_threads: int = Field(2, ge=1, le=64, description="ONNX Runtime intra-op threads (per worker)")
    frames: int = Field(60, ge=2, description="frames offered per run (warm-up included)")
    deadline_ms: float | None = Field(None, gt=0, description="default: 300 paced, 5000 as fast as possible")
    ring_slots: int = Field(16, ge=2)
    config: dict[str, Any] = Field(default_factory=dict, description="extra dotted config overrides")

    @model_validator(mode="after")
    def _name(self) -> Case:
        if not self.name:
            if self.mode == "naive":
                self.name = f"naive {self.size}/{self.bit_depth} t{self.engine_threads}"
            else:
                load = "max" if self.fps == 0 else f"{self.fps:g}fps"
                self.name = f"{self.source} {self.size}/{self.bit_depth} w{self.workers}t{self.engine_threads} {load}"
        return self

    @property
    def dump_key(self) -> tuple[int, int]:
        return (self.size, self.bit_depth)

    @property
    def paced(self) -> bool:
        return self.fps > 0

    def effective_deadline_ms(self) -> float:
        if self.deadline_ms is not None:
            return self.deadline_ms
        return 300.0 if self.paced else 5000.0


class Scenario(_Strict):
    name: str
    description: str = ""
    repeats: int = Field(3, ge=1)
    warmup_frames: int = Field(5, ge=0, description="first frames of every run left out of the figures")
    seed: int = Field(11, ge=0, description="simulator seed of the bench dumps")
    dump_frames: int = Field(40, ge=1, description="frames per bench dump (a run loops over them)")
    sim_pool: int = Field(8, ge=1, description="pre-rendered frames the sim source cycles")
    cases: list[Case]
    path: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if not self.cases:
            raise ValueError("a scenario needs at least one case")
        names = [c.name for c in self.cases]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"case names must be unique: {sorted(dup)}")
        for c in self.cases:
            if c.frames <= self.warmup_frames + 1:
                raise ValueError(f"case {c.name!r}: frames ({c.frames}) must exceed warmup_frames + 1")
        return self

    def dump_keys(self) -> list[tuple[int, int]]:
        return sorted({c.dump_key for c in self.cases})


class ScenarioError(ValueError):
    pass


def available() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario by name (bench/scenarios/NAME.toml) or by path to a TOML file."""
    p = Path(name_or_path)
    if not p.suffix:
        p = SCENARIO_DIR / f"{name_or_path}.toml"
    if not p.is_file():
        raise ScenarioError(f"no scenario {name_or_path!r} (looked for {p}; available: {', '.join(available())})")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: {e}") from e
    defaults = data.pop("defaults", {})
    data["cases"] = [{**defaults, **c} for c in data.get("cases", [])]
    data.setdefault("name", p.stem)
    try:
        sc = Scenario.model_validate(data)
    except Exception as e:
        raise ScenarioError(f"{p}: {e}") from e
    sc.path = p
    return sc
