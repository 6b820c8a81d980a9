"""PyTorch engine: runs a training checkpoint (.pt) directly, on the CPU or an NVIDIA GPU. Needs torch.

On a GPU (`device = "cuda"`): `precision = "fp16"` runs the network in half
precision (the heatmap comes back as float32), and `cuda_graphs = true`
captures one CUDA graph per input shape the pipeline sends (batch x tile
size; at most MAX_GRAPHS, least recently used dropped) and replays it, so a
call costs one copy in, one graph launch and one copy out instead of ~100
kernel launches from Python. Both are refused on the CPU at config time, and
a CUDA device that torch cannot see is an EngineError at load naming why:
the numbers never change silently. **GPU path not yet run on this project's
machines** (tests/test_engine.py has the GPU checks; bench/gpu_check.sh runs
them where a GPU is lent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from inspectd.backends.base import EngineError, EngineSettings, check_batch

__all__ = ["TorchConfig", "TorchEngine"]


class TorchConfig(EngineSettings):
    """`[engine] type = "torch"`: a training checkpoint run by torch (the `train` extra), on CPU or a GPU."""

    type: Literal["torch"] = "torch"
    model: Path = Path("runs/hrnet/best.pt")  # a checkpoint written by `inspectd train`
    threads: int = Field(2, ge=1, le=64, description="torch intra-op threads")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu, cuda or cuda:N")
    precision: Literal["fp32", "fp16"] = Field("fp32", description="fp16: half precision (cuda only)")
    cuda_graphs: bool = Field(False, description="capture and replay a CUDA graph per input shape (cuda only)")

    @model_validator(mode="after")
    def _gpu_only(self) -> TorchConfig:
        if self.device == "cpu" and (self.precision == "fp16" or self.cuda_graphs):
            raise ValueError('precision = "fp16" and cuda_graphs = true need device = "cuda" (or "cuda:N")')
        return self


MAX_GRAPHS = 16  # captured input shapes kept per engine (each holds its own static buffers)


def _torch():
    try:
        import torch
    except ImportError as e:
        raise EngineError(f"engine type 'torch' needs torch (pip install 'inspectd[train]'); import failed: {e}") from e
    return torch


class TorchEngine:
    """`Engine` on a torch checkpoint; `model` may also be given as an nn.Module (tests, export checks)."""

    def __init__(self, cfg: TorchConfig | None = None, module=None, **kwargs):
        self.cfg = cfg if cfg is not None else TorchConfig(**kwargs)
        self.name = f"torch:{Path(self.cfg.model).name}" if module is None else "torch:module"
        self._model = module
        self.checkpoint: dict | None = None
        self._graphs: dict[tuple[int, ...], tuple] = {}  # shape -> (graph, static input, static output)
        self._placed = False

    def _check_device(self, torch) -> None:
        if self.cfg.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise EngineError(
                    f"[engine] device = {self.cfg.device!r}: torch {torch.__version__} sees no CUDA GPU "
                    "(torch.cuda.is_available() is False); use device = \"cpu\" or the onnxruntime engine"
                )
            idx = int(self.cfg.device.split(":")[1]) if ":" in self.cfg.device else 0
            if idx >= torch.cuda.device_count():
                raise EngineError(f"[engine] device = {self.cfg.device!r}: only {torch.cuda.device_count()} GPU(s)")

    def _place(self) -> None:
        self._model.eval().to(self.cfg.device)
        if self.cfg.precision == "fp16":
            self._model.half()
        self._placed = True

    def load(self) -> None:
        torch = _torch()
        torch.set_num_threads(self.cfg.threads)
        self._check_device(torch)
        if self._model is not None:
            self._place()
            return
        from inspectd.nets.checkpoint import load_checkpoint

        path = Path(self.cfg.model)
        if not path.is_file():
            raise EngineError(f"torch checkpoint not found: {path}")
        try:
            self._model, self.checkpoint = load_checkpoint(path)
        except Exception as e:
            raise EngineError(f"cannot load torch checkpoint {path}: {e}") from e
        self._place()

    def warmup(self, shape: tuple[int, int, int, int] = (1, 1, 256, 192), runs: int = 2) -> None:
        self.load()
        for _ in range(runs):
            self.infer(np.zeros(shape, np.float32))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = _torch()
        if self._model is None or not self._placed:
            self.load()
        dtype = torch.float16 if self.cfg.precision == "fp16" else torch.float32
        x = torch.from_numpy(check_batch(batch)).to(self.cfg.device, dtype=dtype, non_blocking=True)
        with torch.no_grad():
            if self.cfg.cuda_graphs:
                return self._replay(torch, x).float().cpu().numpy()
            return self._model(x).float().cpu().numpy()

    def _replay(self, torch, x):
        """Run `x` through the CUDA graph captured for its shape (captured on first sight)."""
        key = tuple(x.shape)
        entry = self._graphs.pop(key, None)
        if entry is None:
            if len(self._graphs) >= MAX_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))
            static_in = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up off the capture stream, as torch's docs require
                for _ in range(2):
                    self._model(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._model(static_in)
            entry = (graph, static_in, static_out)
        self._graphs[key] = entry  # most recently used last
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        return static_out
