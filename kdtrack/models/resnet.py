"""The CIFAR ResNets of the knowledge-distillation literature (resnet8x4, resnet32x4), with their stage
feature maps exposed for feature distillation.

A 3x3 stem (32 channels, BN, ReLU, no max-pool), three stages of post-activation basic blocks (64, 128 and
256 channels; stride 2 at stages 2 and 3; a 1x1 conv + BN shortcut on the first block of every stage),
adaptive average pooling and a linear classifier. Adaptive pooling makes any input of at least 8 x 8 work.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCHS: dict[str, tuple[int, int, int]] = {"resnet8x4": (1, 1, 1), "resnet32x4": (5, 5, 5)}
"""Basic blocks per stage."""
STEM_CHANNELS = 32
STAGE_CHANNELS = (64, 128, 256)


@dataclass(frozen=True)
class ResNetConfig:
    arch: str
    n_classes: int
    in_channels: int = 3

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")

    def to_params(self) -> dict[str, str]:
        """The architecture as run params, enough to rebuild the network (see `from_params`)."""
        return {"arch": self.arch, "n_classes": str(self.n_classes), "in_channels": str(self.in_channels)}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> ResNetConfig:
        return cls(params["arch"], int(params["n_classes"]), int(params["in_channels"]))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, channels_in: int, channels_out: int, stride: int, projected: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(channels_out)) if projected else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = config
        self.stem = nn.Sequential(nn.Conv2d(config.in_channels, STEM_CHANNELS, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(STEM_CHANNELS), nn.ReLU(inplace=True))
        stages, width = [], STEM_CHANNELS
        for index, (blocks, channels) in enumerate(zip(ARCHS[config.arch], STAGE_CHANNELS)):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(width, channels, stride, projected=True)]
            stage += [BasicBlock(channels, channels, 1, projected=False) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            width = channels
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(width, config.n_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return STAGE_CHANNELS

    def features(self, x: Tensor) -> list[Tensor]:
        """The output maps of the three stages; the last is the penultimate map (256 x 8 x 8 for 32 x 32
        input) that SimKD projects."""
        maps, x = [], self.stem(x)
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def classify(self, penultimate: Tensor) -> Tensor:
        """Logits from a penultimate map: average pool, flatten, classifier."""
        return self.classifier(F.adaptive_avg_pool2d(penultimate, 1).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.features(x)[-1])


def build_resnet(config: ResNetConfig, seed: int | None = None) -> CifarResNet:
    """A freshly initialised network; with a seed, exactly what torch.manual_seed(seed) then building gives."""
    if seed is not None:
        torch.manual_seed(seed)
    return CifarResNet(config)
