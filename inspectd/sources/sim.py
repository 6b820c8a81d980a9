"""`sim:?seed=1&fps=10&size=2048&bit_depth=12&defect_rate=0.3` — the X-ray simulator as a live source.

Frames come from `inspectd.sim.render_frame` with their exact tip labels in the
sidecar (so the label oracle gives real OK/NG verdicts). Parameters:
``seed``, ``fps`` (0 = as fast as rendering goes), ``size``, ``bit_depth``
(8/12/16), ``defect_rate``, ``orientation`` (any/right/left/up/down),
``count`` (finite stream; default endless), ``pool``.

Rendering a 2048² frame takes ~0.3 s of one core, more than a 10 fps period.
``pool`` decides: ``pool=0`` renders every frame live (each frame unique, the
pace drops to what rendering allows); ``pool=N`` pre-renders N frames at open
and cycles them with fresh frame ids and timestamps; the default (auto) renders
the first frame, and if rendering takes more than half the period it
pre-renders a pool of 8 and says so in the log (`sim_pool` event).
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field, field_validator

from inspectd.frames import Frame, FrameReadError
from inspectd.sources.base import EndOfStream, Pacer, SourceConfigBase, SourceError

try:  # guarded import: the simulator is part of the core package, but keep the plugin pattern
    from inspectd.sim import SimOptions, render_frame
    from inspectd.sim.dump import sim_frame_to_frame

    _IMPORT_ERROR: Exception | None = None
except ImportError as e:  # pragma: no cover
    _IMPORT_ERROR = e

SCHEME = "sim"
AUTO_POOL = 8


class SimSourceConfig(SourceConfigBase):
    type: Literal["sim"] = "sim"
    seed: int = Field(1, ge=0)
    fps: float = Field(10.0, ge=0, le=10000)
    size: int = Field(2048, ge=256, le=8192)
    bit_depth: Literal[8, 12, 16] = 12
    defect_rate: float = Field(0.3, ge=0, le=1)
    orientation: Literal["any", "right", "left", "up", "down"] = "any"
    count: int | None = Field(None, ge=1, description="frames before EndOfStream; default endless")
    pool: int | None = Field(None, ge=0, le=256, description="None: auto; 0: render live; N: cycle N pre-rendered")
    station: str = "SIM"

    @field_validator("bit_depth", mode="before")
    @classmethod
    def _int_bit_depth(cls, v):
        return int(v) if isinstance(v, str) and v.strip().isdigit() else v

    def max_frame_bytes(self) -> int | None:
        return self.size * self.size * (1 if self.bit_depth == 8 else 2)


CONFIG = SimSourceConfig


def config_from_uri(target: str, params: dict[str, str]) -> SimSourceConfig:
    if target.strip("/"):
        raise SourceError(f"sim takes no path (got {target!r}); parameters go after '?', e.g. sim:?seed=1&fps=10")
    return SimSourceConfig.model_validate(params)


class SimSource:
    def __init__(self, cfg: SimSourceConfig):
        if _IMPORT_ERROR is not None:
            raise SourceError(f"sim source unavailable: {_IMPORT_ERROR}")
        self.cfg = cfg
        self.name = f"sim:seed={cfg.seed}"
        self._opts = SimOptions(
            size=cfg.size, bit_depth=cfg.bit_depth, defect_rate=cfg.defect_rate, orientation=cfg.orientation
        )
        self._pool: list = []
        self._k = 0
        self._pacer = Pacer(cfg.fps)
        self.render_ms: float | None = None
        self.pool_size = 0

    def _render(self, index: int):
        t = time.perf_counter()
        sim = render_frame(self.cfg.seed, index, self._opts)
        self.render_ms = (time.perf_counter() - t) * 1000.0
        return sim

    def open(self) -> None:
        import structlog

        self._k = 0
        self._pool = []
        pool = self.cfg.pool
        if pool is None:
            first = self._render(0)
            period_ms = 1000.0 / self.cfg.fps if self.cfg.fps > 0 else float("inf")
            if self.render_ms > 0.5 * period_ms:
                pool = AUTO_POOL if self.cfg.count is None else min(AUTO_POOL, self.cfg.count)
                structlog.get_logger("inspectd.sources").warning(
                    "sim_pool",
                    msg=f"rendering takes {self.render_ms:.0f} ms, more than half the {period_ms:.0f} ms period: "
                    f"cycling a pre-rendered pool of {pool} frames",
                    render_ms=round(self.render_ms, 1),
                    pool=pool,
                )
            else:
                pool = 0
            if pool:
                self._pool.append(first)
        for i in range(len(self._pool), pool):
            self._pool.append(self._render(i))
        self.pool_size = len(self._pool)

    def read(self, timeout_s: float) -> Frame | FrameReadError | None:
        if self.cfg.count is not None and self._k >= self.cfg.count:
            raise EndOfStream(self.name)
        if not self._pacer.wait(timeout_s):
            return None
        t_ns = time.time_ns()
        k = self._k
        self._k += 1
        sim = self._pool[k % len(self._pool)] if self._pool else self._render(k)
        frame = sim_frame_to_frame(sim, self.cfg.seed, k, self.cfg.station)
        frame.meta.t_acquired_ns = t_ns
        return frame

    def close(self) -> None:
        self._pool = []


def create(cfg: SimSourceConfig) -> SimSource:
    return SimSource(cfg)
