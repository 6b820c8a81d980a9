"""Which implementation finds the OFAST corners: OpenCV on the CPU (default) or the CUDA kernels.

`[corners] backend = "cuda"` asks for the GPU. Where it cannot run (no
numba-cuda, no GPU, a broken driver) the numbers must not change silently:
`on_unavailable = "error"` (default) refuses to start with the reason;
`"opencv"` runs the CPU path instead, and says so (the worker's `ready`
carries the fallback; the daemon logs `corner_backend_fallback` and counts
`inspectd_corner_backend_fallbacks_total`). Both paths give the same corners
(tests/test_corners_cuda.py), so a fallback changes speed, not verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from inspectd.config import CornerConfig
from inspectd.inspection import corners as cpu

__all__ = ["CornerBackend", "CornerBackendUnavailable", "CornerChoice", "OpenCvCorners", "choose_corner_backend"]


class CornerBackend(Protocol):
    name: str

    def detect_oriented_corners(self, img8: np.ndarray, cfg: CornerConfig) -> tuple[np.ndarray, np.ndarray]: ...

    def detect_corners(self, img8: np.ndarray, cfg: CornerConfig) -> np.ndarray: ...


class CornerBackendUnavailable(RuntimeError):
    """The configured corner backend cannot run here and no fallback is allowed."""


class OpenCvCorners:
    name = "opencv"

    @staticmethod
    def detect_oriented_corners(img8: np.ndarray, cfg: CornerConfig) -> tuple[np.ndarray, np.ndarray]:
        return cpu.detect_oriented_corners(img8, cfg)

    @staticmethod
    def detect_corners(img8: np.ndarray, cfg: CornerConfig) -> np.ndarray:
        return cpu.detect_corners(img8, cfg)


@dataclass(frozen=True)
class CornerChoice:
    backend: CornerBackend
    fallback_reason: str | None = None  # set when `cuda` was asked for and OpenCV runs instead


def choose_corner_backend(cfg: CornerConfig) -> CornerChoice:
    """The backend `cfg` asks for, the OpenCV fallback it allows, or CornerBackendUnavailable naming why."""
    if cfg.backend == "opencv":
        return CornerChoice(OpenCvCorners())
    try:
        from inspectd.inspection.corners_cuda import CudaCorners

        return CornerChoice(CudaCorners(cfg))
    except (ImportError, RuntimeError) as e:
        why = str(e)
    if cfg.on_unavailable == "opencv":
        return CornerChoice(OpenCvCorners(), why)
    raise CornerBackendUnavailable(
        f'[corners] backend = "cuda": {why}; set [corners] on_unavailable = "opencv" to run the CPU path instead'
    )
