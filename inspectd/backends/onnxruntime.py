"""ONNX Runtime engine (the default; CPU). Needs the `onnxruntime` package."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from inspectd.backends.base import EngineError, EngineSettings, check_batch

__all__ = ["OnnxRuntimeConfig", "OnnxRuntimeEngine"]


class OnnxRuntimeConfig(EngineSettings):
    """`[engine] type = "onnxruntime"` (the default): the ONNX model on ONNX Runtime."""

    type: Literal["onnxruntime"] = "onnxruntime"
    threads: int = Field(
        2, ge=1, le=64, description="intra-op threads (unset, the daemon's workers take cpu_count // workers)"
    )
    inter_threads: int = Field(1, ge=1, le=64, description="inter-op threads")
    spin: bool = Field(
        True, description="intra-op threads busy-wait for work; off lets two workers with 2 threads each share 2 cores"
    )
    optimization: Literal["all", "extended", "basic", "disabled"] = "all"
    providers: list[str] = Field(
        ["CPUExecutionProvider"], min_length=1, description="execution providers, in order of preference"
    )


def _ort():
    try:
        import onnxruntime
    except ImportError as e:
        raise EngineError(
            "engine type 'onnxruntime' needs the onnxruntime package (pip install onnxruntime); "
            f"import failed: {e}"
        ) from e
    return onnxruntime


class OnnxRuntimeEngine:
    """`Engine` on ONNX Runtime (the CPU execution provider unless `providers` says otherwise)."""

    def __init__(self, cfg: OnnxRuntimeConfig | None = None, **kwargs):
        self.cfg = cfg if cfg is not None else OnnxRuntimeConfig(**kwargs)
        self.name = f"onnxruntime:{self.cfg.model.name}"
        self._sess = None
        self._input = None

    def load(self) -> None:
        if self._sess is not None:
            return
        ort = _ort()
        missing = [p for p in self.cfg.providers if p not in ort.get_available_providers()]
        if missing:
            raise EngineError(
                f"[engine] providers {missing} are not in this onnxruntime build (it has {ort.get_available_providers()})"
            )
        path = Path(self.cfg.model)
        if not path.is_file():
            raise EngineError(f"ONNX model not found: {path}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.cfg.threads
        so.inter_op_num_threads = self.cfg.inter_threads
        if not self.cfg.spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[self.cfg.optimization]
        try:
            self._sess = ort.InferenceSession(str(path), so, providers=list(self.cfg.providers))
        except Exception as e:  # onnxruntime raises its own exception types
            raise EngineError(f"cannot load ONNX model {path}: {e}") from e
        self._input = self._sess.get_inputs()[0].name

    def warmup(self, shape: tuple[int, int, int, int] = (1, 1, 256, 192), runs: int = 2) -> None:
        self.load()
        x = np.zeros(shape, np.float32)
        for _ in range(runs):
            self.infer(x)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self._sess is None:
            self.load()
        x = check_batch(batch)
        try:
            return self._sess.run(None, {self._input: x})[0]
        except Exception as e:  # onnxruntime's own exception types (shape mismatch, allocation failure)
            raise EngineError(f"onnxruntime inference failed on input {x.shape}: {e}") from e
