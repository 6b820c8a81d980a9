"""HRNet backbone + tip heatmap head, in plain torch (no timm/torchvision).

Follows Sun et al., "Deep High-Resolution Representation Learning for Human
Pose Estimation" (CVPR 2019) and its W18-small configurations
(HRNet-Image-Classification `w18_small_v1` / `w18_small_v2`):

* stem: two 3×3 stride-2 convolutions (64 ch) -> 1/4 resolution;
* stage 1: bottleneck blocks on the single 1/4 branch;
* stages 2-4: 2 / 3 / 4 parallel branches (1/4, 1/8, 1/16, 1/32), each a few
  basic residual blocks, followed by an exchange (fusion) unit in which every
  branch receives the sum of all branches resampled to its resolution
  (1×1 conv + nearest upsampling from lower resolutions, strided 3×3 convs from
  higher ones). A transition adds the next, lower-resolution branch from the
  lowest one. The last stage fuses only into the 1/4 branch (pose HRNet).

Head (``head_stride``):

* 4: a 1×1 conv on the 1/4 branch -> heatmaps at 1/4 of the input (pose HRNet);
* 2: HigherHRNet's deconvolution module: a 4×4 stride-2 transposed conv on the
  1/4 branch, ``head_blocks`` basic blocks, 1×1 conv -> heatmaps at 1/2 of the
  input. With ``stem_skip`` the stem's 1/2-resolution features (1×1-reduced)
  are concatenated before the blocks (a U-Net style skip, not in HigherHRNet).

Output: (B, 2, H/s, W/s) raw heatmaps (anode, cathode); no sigmoid (MSE
regression of Gaussian targets). Input: (B, 1, H, W), H and W multiples of 32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["HRNetConfig", "TipHRNet", "VARIANTS", "build_model", "count_params"]

BN_MOMENTUM = 0.1


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = _conv3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != planes:
            self.down = nn.Sequential(
                nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + r)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = _conv3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, momentum=BN_MOMENTUM)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + r)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


@dataclass(frozen=True)
class StageConfig:
    modules: int
    blocks: tuple[int, ...]  # per branch
    channels: tuple[int, ...]  # per branch
    block: str = "basic"


@dataclass(frozen=True)
class HRNetConfig:
    name: str = "hrnet_w18s"
    stem_channels: int = 64
    stage1: StageConfig = StageConfig(1, (1,), (32,), "bottleneck")
    stage2: StageConfig = StageConfig(1, (2, 2), (16, 32))
    stage3: StageConfig = StageConfig(1, (2, 2, 2), (16, 32, 64))
    stage4: StageConfig = StageConfig(1, (2, 2, 2, 2), (16, 32, 64, 128))
    head_stride: int = 2  # 2: deconv head (HigherHRNet); 4: 1x1 conv on the 1/4 branch
    head_channels: int = 32
    head_blocks: int = 1
    stem_skip: bool = False
    num_classes: int = 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HRNetConfig:
        d = dict(d)
        for k in ("stage1", "stage2", "stage3", "stage4"):
            if isinstance(d.get(k), dict):
                s = d[k]
                d[k] = StageConfig(int(s["modules"]), tuple(s["blocks"]), tuple(s["channels"]), s.get("block", "basic"))
        return cls(**d)


# W18-small v1 / v2 as in HRNet-Image-Classification; "w12s" is a narrower v1 (measured, docs/model.md).
VARIANTS: dict[str, HRNetConfig] = {
    "w18s": HRNetConfig(),
    "w18s_v2": HRNetConfig(
        name="hrnet_w18s_v2",
        stage1=StageConfig(1, (2,), (64,), "bottleneck"),
        stage2=StageConfig(1, (2, 2), (18, 36)),
        stage3=StageConfig(3, (2, 2, 2), (18, 36, 72)),
        stage4=StageConfig(2, (2, 2, 2, 2), (18, 36, 72, 144)),
    ),
    "w12s": HRNetConfig(
        name="hrnet_w12s",
        stem_channels=32,
        stage1=StageConfig(1, (1,), (16,), "bottleneck"),
        stage2=StageConfig(1, (1, 1), (12, 24)),
        stage3=StageConfig(1, (1, 1, 1), (12, 24, 48)),
        stage4=StageConfig(1, (1, 1, 1, 1), (12, 24, 48, 96)),
        head_channels=24,
    ),
    "tiny": HRNetConfig(  # tests only
        name="hrnet_tiny",
        stem_channels=8,
        stage1=StageConfig(1, (1,), (4,), "bottleneck"),
        stage2=StageConfig(1, (1, 1), (4, 8)),
        stage3=StageConfig(1, (1, 1, 1), (4, 8, 8)),
        stage4=StageConfig(1, (1, 1, 1, 1), (4, 8, 8, 8)),
        head_channels=8,
    ),
}


class HRModule(nn.Module):
    """Parallel branches + exchange unit (HRNet's high-resolution module)."""

    def __init__(self, cin: list[int], st: StageConfig, multi_scale_output: bool):
        super().__init__()
        block = BLOCKS[st.block]
        nb = len(st.channels)
        self.nb = nb
        self.branches = nn.ModuleList()
        for i in range(nb):
            layers, c = [], cin[i]
            for _ in range(st.blocks[i]):
                layers.append(block(c, st.channels[i]))
                c = st.channels[i] * block.expansion
            self.branches.append(nn.Sequential(*layers))
        cout = [c * block.expansion for c in st.channels]
        self.out_channels = cout
        n_out = nb if multi_scale_output else 1
        self.fuse = nn.ModuleList()
        for i in range(n_out):
            row = nn.ModuleList()
            for j in range(nb):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(cout[j], cout[i], 1, bias=False),
                            nn.BatchNorm2d(cout[i], momentum=BN_MOMENTUM),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(nn.Identity())
                else:
                    convs = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        co = cout[i] if last else cout[j]
                        convs += [_conv3(cout[j], co, 2), nn.BatchNorm2d(co, momentum=BN_MOMENTUM)]
                        if not last:
                            convs.append(nn.ReLU(inplace=True))
                    row.append(nn.Sequential(*convs))
            self.fuse.append(row)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [b(x) for b, x in zip(self.branches, xs)]
        out = []
        for row in self.fuse:
            y = row[0](xs[0])
            for j in range(1, self.nb):
                y = y + row[j](xs[j])
            out.append(self.relu(y))
        return out


def _transition(cin: list[int], cout: list[int]) -> nn.ModuleList:
    layers = nn.ModuleList()
    for i, co in enumerate(cout):
        if i < len(cin):
            if cin[i] != co:
                layers.append(
                    nn.Sequential(_conv3(cin[i], co), nn.BatchNorm2d(co, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))
                )
            else:
                layers.append(nn.Identity())
        else:
            layers.append(
                nn.Sequential(_conv3(cin[-1], co, 2), nn.BatchNorm2d(co, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))
            )
    return layers


class TipHRNet(nn.Module):
    """HRNet backbone + 2-class tip heatmap head. forward(x: (B,1,H,W)) -> (B,2,H/s,W/s)."""

    def __init__(self, cfg: HRNetConfig = HRNetConfig()):
        super().__init__()
        self.cfg = cfg
        c0 = cfg.stem_channels
        self.conv1 = _conv3(1, c0, 2)
        self.bn1 = nn.BatchNorm2d(c0, momentum=BN_MOMENTUM)
        self.conv2 = _conv3(c0, c0, 2)
        self.bn2 = nn.BatchNorm2d(c0, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)

        s1 = cfg.stage1
        block = BLOCKS[s1.block]
        layers, c = [], c0
        for _ in range(s1.blocks[0]):
            layers.append(block(c, s1.channels[0]))
            c = s1.channels[0] * block.expansion
        self.layer1 = nn.Sequential(*layers)
        pre = [c]

        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        stages = [cfg.stage2, cfg.stage3, cfg.stage4]
        for si, st in enumerate(stages):
            chans = [ch * BLOCKS[st.block].expansion for ch in st.channels]
            self.transitions.append(_transition(pre, chans))
            mods = []
            cin = chans
            for m in range(st.modules):
                last = si == len(stages) - 1 and m == st.modules - 1
                mod = HRModule(cin, st, multi_scale_output=not last)
                mods.append(mod)
                cin = mod.out_channels
            self.stages.append(nn.ModuleList(mods))
            pre = cin
        c_hr = pre[0]

        if cfg.head_stride == 4:
            self.head = None
            self.final = nn.Conv2d(c_hr, cfg.num_classes, 1)
        elif cfg.head_stride == 2:
            hc = cfg.head_channels
            self.head = nn.Sequential(
                nn.ConvTranspose2d(c_hr, hc, 4, 2, 1, bias=False),
                nn.BatchNorm2d(hc, momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True),
            )
            cb = hc
            self.skip = None
            if cfg.stem_skip:
                sk = max(8, hc // 2)
                self.skip = nn.Sequential(
                    nn.Conv2d(c0, sk, 1, bias=False), nn.BatchNorm2d(sk, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)
                )
                cb = hc + sk
            self.head_blocks = nn.Sequential(*[BasicBlock(cb if i == 0 else hc, hc) for i in range(cfg.head_blocks)])
            self.final = nn.Conv2d(hc if cfg.head_blocks else cb, cfg.num_classes, 1)
        else:
            raise ValueError(f"head_stride must be 2 or 4, got {cfg.head_stride}")
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    @property
    def stride(self) -> int:
        return self.cfg.head_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        half = x
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        xs = [x]
        for trans, mods in zip(self.transitions, self.stages):
            new = []
            for i, t in enumerate(trans):
                src = xs[i] if i < len(xs) else xs[-1]
                new.append(t(src))
            xs = new
            for m in mods:
                xs = m(xs)
        y = xs[0]
        if self.head is not None:
            y = self.head(y)
            if self.skip is not None:
                y = torch.cat([y, self.skip(half)], 1)
            y = self.head_blocks(y)
        return self.final(y)


def build_model(variant: str | HRNetConfig = "w18s", **overrides) -> TipHRNet:
    """A TipHRNet from a named variant (``VARIANTS``) or a config, with field overrides."""
    cfg = VARIANTS[variant] if isinstance(variant, str) else variant
    if overrides:
        d = cfg.to_dict()
        d.update(overrides)
        cfg = HRNetConfig.from_dict(d)
    return TipHRNet(cfg)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
