"""Engine backends for the tip network, as plugins: one module each, its own config, a registry.

Each backend module holds a pydantic config (a subclass of
`base.EngineSettings` with a ``type: Literal[...]`` discriminator and that
backend's options) and an `Engine` class; its library (onnxruntime, torch)
is imported only when the engine loads, so a missing optional dependency is
an error only for the station that chose that backend. `BACKENDS` maps each
``type`` to its (config, engine) pair; `EngineConfig` is the discriminated
union the station file's ``[engine]`` table is validated against. A new
backend is a module plus one line here.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from inspectd.backends.base import Engine, EngineError, EngineSettings
from inspectd.backends.onnxruntime import OnnxRuntimeConfig, OnnxRuntimeEngine
from inspectd.backends.tensorrt import TensorRtConfig, TensorRtEngine
from inspectd.backends.torch import TorchConfig, TorchEngine

__all__ = [
    "BACKENDS", "Engine", "EngineConfig", "EngineError", "EngineSettings", "OnnxRuntimeConfig", "TensorRtConfig",
    "TorchConfig",
    "engine_config", "load_engine",
]  # fmt: skip

BACKENDS: dict[str, tuple[type[EngineSettings], type]] = {
    "onnxruntime": (OnnxRuntimeConfig, OnnxRuntimeEngine),
    "torch": (TorchConfig, TorchEngine),
    "tensorrt": (TensorRtConfig, TensorRtEngine),  # written against TensorRT 10, not run here (no GPU + TensorRT)
}

EngineConfig = Annotated[OnnxRuntimeConfig | TorchConfig | TensorRtConfig, Field(discriminator="type")]
_ADAPTER: TypeAdapter = TypeAdapter(EngineConfig)


def engine_config(value: Any = None, **fields) -> EngineSettings:
    """A backend config from a dict (``type`` picks the backend; default onnxruntime) or keyword fields."""
    if isinstance(value, EngineSettings):
        return value.model_copy(update=fields) if fields else value
    data = dict(value or {}, **fields)
    data.setdefault("type", "onnxruntime")
    return _ADAPTER.validate_python(data)


def load_engine(cfg: EngineSettings, *, load: bool = True, warmup: bool = False) -> Engine:
    """The engine for a backend config, loaded (and warmed up) if asked."""
    try:
        _, engine_cls = BACKENDS[cfg.type]
    except (AttributeError, KeyError):
        raise EngineError(f"unknown engine type {getattr(cfg, 'type', None)!r} (known: {sorted(BACKENDS)})") from None
    eng: Engine = engine_cls(cfg)
    if load:
        eng.load()
    if warmup:
        eng.warmup()
    return eng
