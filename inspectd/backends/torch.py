"""PyTorch engine (training/debug): runs a training checkpoint (.pt) directly. Needs torch."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from inspectd.backends.base import EngineError, EngineSettings, check_batch

__all__ = ["TorchConfig", "TorchEngine"]


class TorchConfig(EngineSettings):
    """`[engine] type = "torch"`: a training checkpoint run by torch (the `train` extra), on CPU or a GPU."""

    type: Literal["torch"] = "torch"
    model: Path = Path("runs/hrnet/best.pt")  # a checkpoint written by `inspectd train`
    threads: int = Field(2, ge=1, le=64, description="torch intra-op threads")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu, cuda or cuda:N")


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

    def load(self) -> None:
        torch = _torch()
        torch.set_num_threads(self.cfg.threads)
        if self._model is not None:
            self._model.eval().to(self.cfg.device)
            return
        from inspectd.nets.checkpoint import load_checkpoint

        path = Path(self.cfg.model)
        if not path.is_file():
            raise EngineError(f"torch checkpoint not found: {path}")
        try:
            self._model, self.checkpoint = load_checkpoint(path)
        except Exception as e:
            raise EngineError(f"cannot load torch checkpoint {path}: {e}") from e
        self._model.to(self.cfg.device)

    def warmup(self, shape: tuple[int, int, int, int] = (1, 1, 256, 192), runs: int = 2) -> None:
        self.load()
        for _ in range(runs):
            self.infer(np.zeros(shape, np.float32))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = _torch()
        if self._model is None:
            self.load()
        x = torch.from_numpy(check_batch(batch)).to(self.cfg.device)
        with torch.no_grad():
            return self._model(x).float().cpu().numpy()
