"""Wide ResNets (Zagoruyko & Komodakis, 2016) as the KD literature uses them on CIFAR: WRN-16-2, WRN-40-1,
WRN-40-2 (depth 6n + 4, widening factor k).

A 3x3 stem of 16 channels (no BN), three stages of n pre-activation blocks (BN-ReLU-conv3x3-BN-ReLU-conv3x3,
16k, 32k and 64k channels, stride 2 at stages 2 and 3; a 1x1 conv shortcut, taken from the activated input,
where the width or stride changes), then BN-ReLU, average pooling and a linear classifier.

The official SimKD code trains its "WRN" pairs on post-activation ResNets of the same widths instead
(resnet14x2, resnet38, resnet38x2: a BN on each projected shortcut, 2 x (16 + 32 + 64) x k parameters more);
this module is RepDistiller's (and CRD's) WRN.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .network import ImageNetwork, NetworkConfig, make_stages

SPECS: dict[str, tuple[int, int]] = {"wrn_16_2": (16, 2), "wrn_40_1": (40, 1), "wrn_40_2": (40, 2)}
"""Depth and widening factor."""
STEM_CHANNELS = 16


class PreActBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        projected = stride != 1 or channels_in != channels_out
        self.shortcut = nn.Conv2d(channels_in, channels_out, 1, stride, bias=False) if projected else None

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(ImageNetwork):
    SPECS = SPECS

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        depth, k = SPECS[config.arch]
        blocks = (depth - 4) // 6
        self.stage_channels = (16 * k, 32 * k, 64 * k)
        self.stem = nn.Conv2d(config.in_channels, STEM_CHANNELS, 3, padding=1, bias=False)
        self.stages = make_stages(PreActBlock, STEM_CHANNELS, self.stage_channels, (blocks,) * 3, (1, 2, 2))
        self.norm = nn.BatchNorm2d(self.stage_channels[-1])
        self.classifier = nn.Linear(self.stage_channels[-1], config.n_classes)
        self.init_weights()

    def features(self, x: Tensor) -> list[Tensor]:
        """The output maps of the three stages, the last after the final BN-ReLU (the map that is pooled)."""
        maps = super().features(x)
        maps[-1] = F.relu(self.norm(maps[-1]))
        return maps
