"""The CIFAR ResNets of the knowledge-distillation literature: ResNet-20/32/56/110 (16 stem channels, stages
of 16, 32 and 64) and the x4 pair resnet8x4 / resnet32x4 (32 stem channels, stages of 64, 128 and 256).

A 3x3 stem (BN, ReLU, no max-pool), three stages of post-activation basic blocks (stride 2 at stages 2 and
3), average pooling and a linear classifier. A block's shortcut is a 1x1 conv + BN where its stride or
width changes, else the identity. Depth 6n + 2 means n blocks per stage.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .network import ImageNetwork, NetworkConfig, conv_bn, make_stages

SPECS: dict[str, tuple[int, tuple[int, int, int], int]] = {
    "resnet20": (16, (16, 32, 64), 3),
    "resnet32": (16, (16, 32, 64), 5),
    "resnet56": (16, (16, 32, 64), 9),
    "resnet110": (16, (16, 32, 64), 18),
    "resnet8x4": (32, (64, 128, 256), 1),
    "resnet32x4": (32, (64, 128, 256), 5),
}
"""Stem channels, stage channels, basic blocks per stage."""


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        projected = stride != 1 or channels_in != channels_out
        self.shortcut = conv_bn(channels_in, channels_out, 1, stride, relu=False) if projected else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(ImageNetwork):
    """Its stage maps are the outputs of the three stages (32, 16 and 8 pixels wide for 32 x 32 input)."""

    SPECS = SPECS

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        stem, self.stage_channels, blocks = SPECS[config.arch]
        self.stem = conv_bn(config.in_channels, stem, 3)
        self.stages = make_stages(BasicBlock, stem, self.stage_channels, (blocks,) * 3, (1, 2, 2))
        self.classifier = nn.Linear(self.stage_channels[-1], config.n_classes)
        self.init_weights()
