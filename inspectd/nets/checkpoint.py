"""Load a training checkpoint as a torch module, and wrap a module as an `infer` callable.

Here rather than in training so that the torch engine (`backends/torch.py`)
can run a checkpoint without importing the training code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inspectd.nets.hrnet import HRNetConfig, TipHRNet

__all__ = ["load_checkpoint", "torch_infer"]


def load_checkpoint(path: Path | str):
    """(model in eval mode, checkpoint dict) from a last.pt / best.pt."""
    ck = torch.load(Path(path), map_location="cpu", weights_only=False)
    model = TipHRNet(HRNetConfig.from_dict(ck["model_config"]))
    model.load_state_dict(ck["model"])
    model.eval()
    return model, ck


def torch_infer(model):
    """(B, 1, H, W) float32 -> heatmaps, with `model` on whatever device it is on; no gradients."""
    device = next(model.parameters()).device

    def f(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(device)
            return model(x).cpu().numpy()

    return f
