"""Engine backends for the tip network (one module each; see `base.Engine`).

`load_engine(cfg)` builds the engine an `EngineConfig` (config.py, `[engine]`)
names, or takes a backend config directly (`OnnxRuntimeConfig`, `TorchConfig`).
Nothing here imports onnxruntime or torch until that backend is loaded.
"""

from __future__ import annotations

from inspectd.backends.base import Engine, EngineError

__all__ = ["Engine", "EngineError", "backend_config", "load_engine"]


def backend_config(cfg):
    """Backend config (pydantic, `type` discriminator) from an `EngineConfig` or a backend config."""
    t = getattr(cfg, "type", None)
    if t == "onnxruntime":
        from inspectd.backends.onnxruntime import OnnxRuntimeConfig

        if isinstance(cfg, OnnxRuntimeConfig):
            return cfg
        return OnnxRuntimeConfig(model=cfg.model, threads=cfg.threads)
    if t == "torch":
        from inspectd.backends.torch import TorchConfig

        if isinstance(cfg, TorchConfig):
            return cfg
        return TorchConfig(model=cfg.model, threads=cfg.threads)
    if t == "tensorrt":
        raise EngineError("engine type 'tensorrt' is not built yet (inspectd/backends has onnxruntime and torch)")
    raise EngineError(f"unknown engine type {t!r}")


def load_engine(cfg, *, load: bool = True, warmup: bool = False) -> Engine:
    """The engine for `cfg` (EngineConfig or backend config), loaded (and warmed up) if asked."""
    bc = backend_config(cfg)
    if bc.type == "onnxruntime":
        from inspectd.backends.onnxruntime import OnnxRuntimeEngine

        eng: Engine = OnnxRuntimeEngine(bc)
    else:
        from inspectd.backends.torch import TorchEngine

        eng = TorchEngine(bc)
    if load:
        eng.load()
    if warmup:
        eng.warmup()
    return eng
