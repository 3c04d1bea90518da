"""MobileNetV2 (Sandler et al., 2018) as the KD literature uses it on CIFAR since CRD: expansion 6, width
multiplier 0.5 (RepDistiller's and SimKD's `mobile_half`).

A 3x3 stride-2 stem, seven groups of inverted residual blocks (1x1 expansion + BN + ReLU, 3x3 depthwise +
BN + ReLU, 1x1 linear projection + BN; a residual connection where stride is 1 and the width is kept), a
1x1 head conv to 1280 channels + BN + ReLU, average pooling and a linear classifier. Every block expands,
even the first group's (expansion 1), as the official code does.
"""
from __future__ import annotations

from torch import Tensor, nn

from .network import ImageNetwork, NetworkConfig, conv_bn

SPECS: dict[str, tuple[int, float]] = {"MobileNetV2": (6, 0.5)}
"""Expansion and width multiplier."""
GROUPS = ((1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2), (None, 96, 3, 1), (None, 160, 3, 2),
          (None, 320, 1, 1))
"""Per group: expansion (None: the network's), channels before the width multiplier, blocks, first stride."""
STAGE_ENDS = (1, 2, 4, 6)
"""The groups whose outputs are stage maps: the last group at each resolution (16, 8, 4 and 2 pixels wide
for 32 x 32 input), as in the official code's feature list. The head's map follows them."""
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280


class InvertedResidual(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: int, expansion: int):
        super().__init__()
        hidden = channels_in * expansion
        self.residual = stride == 1 and channels_in == channels_out
        self.conv = nn.Sequential(conv_bn(channels_in, hidden, 1), conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  conv_bn(hidden, channels_out, 1, relu=False))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(ImageNetwork):
    SPECS = SPECS

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        expansion, width_multiplier = SPECS[config.arch]
        width = int(STEM_CHANNELS * width_multiplier)
        self.stem = conv_bn(config.in_channels, width, 3, stride=2)
        groups = []
        for group_expansion, channels, blocks, stride in GROUPS:
            channels = int(channels * width_multiplier)
            group = []
            for index in range(blocks):
                group.append(InvertedResidual(width, channels, stride if index == 0 else 1, group_expansion or expansion))
                width = channels
            groups.append(nn.Sequential(*group))
        self.groups = nn.ModuleList(groups)
        head = max(HEAD_CHANNELS, int(HEAD_CHANNELS * width_multiplier))
        self.head = conv_bn(width, head, 1)
        self.stage_channels = (*(int(GROUPS[i][1] * width_multiplier) for i in STAGE_ENDS), head)
        self.classifier = nn.Linear(head, config.n_classes)
        self.init_weights()

    def features(self, x: Tensor) -> list[Tensor]:
        """The outputs of groups 1, 2, 4 and 6, then the head's map (the one that is pooled)."""
        maps, x = [], self.stem(x)
        for index, group in enumerate(self.groups):
            x = group(x)
            if index in STAGE_ENDS:
                maps.append(x)
        maps.append(self.head(x))
        return maps
