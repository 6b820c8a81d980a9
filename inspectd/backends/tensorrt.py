"""TensorRT engine (`[engine] type = "tensorrt"`): the shipped ONNX built into a plan for this GPU, run on a stream.

**Not run on this project's machines**: the build machines have no GPU, and the
lent GPU machine has no TensorRT (its wheels are too large to bring there).
It is written against the TensorRT 10 Python API (named tensors,
`set_input_shape`, `set_tensor_address`, `execute_async_v3`) and cuda-python's
runtime bindings; what runs without a GPU is tested: the config, the plan
cache key, and the clear error when TensorRT or a GPU is missing.

- **Plan cache.** A plan is specific to the GPU model, the TensorRT version
  and the network; it is built once and kept beside the model as
  ``<model>.<key>.plan``, the key a hash of the ONNX file's sha256, the
  TensorRT version, the GPU name and compute capability, the precision and
  the optimisation profile. Any of those changing gives a new key, so a stale
  plan is never loaded.
- **Profile.** One optimisation profile over the shapes the pipeline sends:
  batch 1..`max_batch`, tile height and width within `[min_hw, max_hw]`
  (multiples of 32), optimised for `opt_shape`.
- **cuda-python, not pycuda**: NVIDIA's own bindings (`cuda.bindings`), a wheel
  with no build step, already on the GPU machine beside torch; pycuda needs
  compiling against the local CUDA toolkit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from inspectd.backends.base import EngineError, EngineSettings, check_batch

__all__ = ["TensorRtConfig", "TensorRtEngine", "plan_key", "plan_path"]


class TensorRtConfig(EngineSettings):
    """`[engine] type = "tensorrt"`: the ONNX model as a TensorRT plan on an NVIDIA GPU (the `tensorrt` extra)."""

    type: Literal["tensorrt"] = "tensorrt"
    precision: Literal["fp16", "fp32"] = Field("fp16", description="fp16 builds allow half-precision kernels")
    device: int = Field(0, ge=0, le=15, description="CUDA device index")
    max_batch: int = Field(8, ge=1, le=256, description="tiles per inference call at most (profile max)")
    min_hw: tuple[int, int] = (32, 32)
    max_hw: tuple[int, int] = (1024, 1024)
    opt_shape: tuple[int, int, int, int] = (1, 1, 256, 352)  # what the profile is tuned for: one 256x352 tile
    workspace_mb: int = Field(1024, ge=64, le=65536, description="builder workspace")
    plan_dir: Path | None = Field(None, description="where built plans are cached (default: beside the model)")

    @model_validator(mode="after")
    def _shapes(self) -> TensorRtConfig:
        for name, hw in (("min_hw", self.min_hw), ("max_hw", self.max_hw), ("opt_shape", self.opt_shape[2:])):
            if any(v % 32 or v <= 0 for v in hw):
                raise ValueError(f"{name} {hw}: tile height and width must be positive multiples of 32")
        if not all(a <= o <= b for a, o, b in zip(self.min_hw, self.opt_shape[2:], self.max_hw)):
            raise ValueError(f"opt_shape {self.opt_shape} must lie within min_hw {self.min_hw} .. max_hw {self.max_hw}")
        if not 1 <= self.opt_shape[0] <= self.max_batch or self.opt_shape[1] != 1:
            raise ValueError(f"opt_shape {self.opt_shape}: batch within 1..max_batch and 1 channel")
        return self

    def profile(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes of the optimisation profile."""
        return (1, 1, *self.min_hw), tuple(self.opt_shape), (self.max_batch, 1, *self.max_hw)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plan_key(onnx_sha256: str, trt_version: str, gpu_name: str, compute_capability: str, cfg: TensorRtConfig) -> str:
    """16 hex digits naming a plan: it changes with the network, TensorRT, the GPU, the precision or the profile."""
    ident = {
        "onnx": onnx_sha256, "tensorrt": trt_version, "gpu": gpu_name, "sm": compute_capability,
        "precision": cfg.precision, "profile": cfg.profile(), "workspace_mb": cfg.workspace_mb,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def plan_path(cfg: TensorRtConfig, key: str) -> Path:
    model = Path(cfg.model)
    return (cfg.plan_dir or model.parent) / f"{model.stem}.{key}.plan"


def _trt():
    try:
        import tensorrt
    except ImportError as e:
        raise EngineError(
            "engine type 'tensorrt' needs TensorRT 10+ and an NVIDIA GPU (pip install 'inspectd[tensorrt]'); "
            f"import failed: {e}"
        ) from e
    return tensorrt


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError as e:
        raise EngineError(f"engine type 'tensorrt' needs cuda-python (cuda-bindings); import failed: {e}") from e
    return cudart


def _check(result, what: str):
    """cuda-python returns (error, *values): raise on an error, else the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EngineError(f"CUDA {what} failed: {err}")
    return values[0] if len(values) == 1 else values


class TensorRtEngine:
    """`Engine` on a TensorRT plan: device buffers sized for the profile's largest batch, one CUDA stream."""

    def __init__(self, cfg: TensorRtConfig | None = None, **kwargs):
        self.cfg = cfg if cfg is not None else TensorRtConfig(**kwargs)
        self.name = f"tensorrt:{Path(self.cfg.model).name}:{self.cfg.precision}"
        self._ctx = None
        self.plan_file: Path | None = None

    # ---------------------------------------------------------------- build

    def _gpu(self, cudart) -> tuple[str, str]:
        count = _check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if self.cfg.device >= count:
            raise EngineError(f"[engine] device {self.cfg.device}: this machine has {count} CUDA device(s)")
        _check(cudart.cudaSetDevice(self.cfg.device), "cudaSetDevice")
        prop = _check(cudart.cudaGetDeviceProperties(self.cfg.device), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
        return name, f"{prop.major}.{prop.minor}"

    def build(self, trt, logger, plan: Path) -> bytes:
        """Parse the ONNX and build a plan for this GPU (minutes); written to `plan` atomically."""
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(Path(self.cfg.model).read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"TensorRT cannot parse {self.cfg.model}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.cfg.workspace_mb << 20)
        if self.cfg.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        lo, opt, hi = self.cfg.profile()
        profile.set_shape(network.get_input(0).name, lo, opt, hi)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineError(f"TensorRT could not build a plan from {self.cfg.model} (see its log above)")
        data = bytes(serialized)
        tmp = plan.with_suffix(".plan.part")
        plan.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(plan)
        return data

    # ---------------------------------------------------------------- Engine protocol

    def load(self) -> None:
        if self._ctx is not None:
            return
        trt, cudart = _trt(), _cudart()
        model = Path(self.cfg.model)
        if not model.is_file():
            raise EngineError(f"ONNX model not found: {model}")
        gpu, sm = self._gpu(cudart)
        key = plan_key(_sha256(model), trt.__version__, gpu, sm, self.cfg)
        self.plan_file = plan_path(self.cfg, key)
        logger = trt.Logger(trt.Logger.WARNING)
        data = self.plan_file.read_bytes() if self.plan_file.is_file() else self.build(trt, logger, self.plan_file)
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise EngineError(f"TensorRT cannot load the plan {self.plan_file} (delete it to rebuild)")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._in = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._out = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self._stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        b, _, h, w = self.cfg.profile()[2]
        self._in_bytes = b * h * w * 4
        self._out_bytes = b * 2 * h * w * 4  # heatmaps are at most input-sized (stride >= 1)
        self._d_in = _check(cudart.cudaMalloc(self._in_bytes), "cudaMalloc")
        self._d_out = _check(cudart.cudaMalloc(self._out_bytes), "cudaMalloc")
        self._ctx = self._engine.create_execution_context()
        self._ctx.set_tensor_address(self._in, int(self._d_in))
        self._ctx.set_tensor_address(self._out, int(self._d_out))
        self._cudart = cudart

    def warmup(self, shape: tuple[int, int, int, int] = (1, 1, 256, 192), runs: int = 2) -> None:
        self.load()
        for _ in range(runs):
            self.infer(np.zeros(shape, np.float32))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.load()
        x = check_batch(batch)
        lo, _, hi = self.cfg.profile()
        if not all(a <= v <= b for a, v, b in zip(lo, x.shape, hi)):
            raise EngineError(f"tensorrt: input {x.shape} outside the plan's profile {lo} .. {hi} ([engine] max_batch, max_hw)")
        cudart, ctx = self._cudart, self._ctx
        ctx.set_input_shape(self._in, x.shape)
        out_shape = tuple(ctx.get_tensor_shape(self._out))
        out = np.empty(out_shape, np.float32)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(self._d_in, x.ctypes.data, x.nbytes, h2d, self._stream), "copy to device")
        if not ctx.execute_async_v3(int(self._stream)):
            raise EngineError(f"tensorrt: execution failed on input {x.shape}")
        _check(cudart.cudaMemcpyAsync(out.ctypes.data, self._d_out, out.nbytes, d2h, self._stream), "copy to host")
        _check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return out
