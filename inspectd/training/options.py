"""`TrainOptions`: every knob of a training run, torch-free so the CLI can document them.

`inspectd train --help` lists these (inspectd/cli/tools.py); `train(data, out, **opts)` takes them
as keyword arguments; a checkpoint stores them, so `--resume` continues with the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inspectd.tips.codec import HeatmapCodec
from inspectd.tips.crop import InputSpec
from inspectd.training.data import AugConfig

__all__ = ["TrainOptions"]


@dataclass
class TrainOptions:
    # data
    val: list[str] | None = None  # held-out dump(s); default: <data>/../val if it exists
    val_frames: int = 120  # frames used by the validation pass (spread over the val dumps)
    limit_per_dump: int | None = None  # cap frames per training dump (tests, smoke runs)
    # model
    variant: str = "w12s"  # hrnet.VARIANTS: w18s, w18s_v2, w12s, tiny
    head_stride: int = 2
    head_channels: int = 16
    head_blocks: int = 1
    stem_skip: bool = False
    # fine-tuning: start from this checkpoint's weights (same architecture); the optimiser and the
    # learning-rate schedule start afresh, the input spec / augmentation may differ (e.g. wider tiles)
    init: str | None = None
    # input / targets
    pitch_in: float = 8.0
    tile_w: int = 192
    tile_h: int = 256
    sigma: float = 1.0  # target Gaussian, heatmap px
    # optimisation
    steps: int = 8000
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    lr_final: float = 0.02  # cosine decay to this fraction of lr
    loss: str = "wmse"  # mse | wmse (foreground-weighted: 1 + fg_weight * target)
    fg_weight: float = 10.0
    grad_clip: float = 5.0
    seed: int = 0
    threads: int = 2
    # where the steps run and who makes the batches (bookkeeping: may change on resume; a batch is a
    # function of (seed, step) whoever makes it)
    device: str = "cpu"  # cpu | cuda | auto (cuda when torch sees a GPU)
    workers: int = 0  # processes making batches ahead of the steps (0: in the training loop)
    # bookkeeping
    ckpt_every: int = 200
    val_every: int = 1000
    log_every: int = 20
    resume: bool = False
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time
    stop_at: int | None = None  # stop (with a checkpoint) at this step; the schedule still spans `steps`
    progress: bool | None = None  # rich progress bar (default: when stderr is a terminal)
    aug: dict = field(default_factory=dict)  # AugConfig overrides
    oversample: dict = field(default_factory=dict)  # defect kind -> sampling weight, e.g. {"extra_layer": 4}
    dump_weights: dict = field(default_factory=dict)  # part of a dump path -> weight of its frames, e.g. {"real": 8}

    def spec(self) -> InputSpec:
        return InputSpec(pitch_in=self.pitch_in, tile_w=self.tile_w, tile_h=self.tile_h)

    def codec(self) -> HeatmapCodec:
        return HeatmapCodec(stride=self.head_stride, sigma=self.sigma)

    def aug_config(self) -> AugConfig:
        return AugConfig(**self.aug)

    def model_overrides(self) -> dict:
        return dict(
            head_stride=self.head_stride,
            head_channels=self.head_channels,
            head_blocks=self.head_blocks,
            stem_skip=self.stem_skip,
        )
