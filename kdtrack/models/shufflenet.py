"""ShuffleNet V1 (Zhang et al., 2018) and V2 (Ma et al., 2018) as the KD literature uses them on CIFAR: a 1x1
stem of 24 channels (BN, ReLU; no stride, no max-pool), three stages that each halve the map, average
pooling and a linear classifier.

V1 (`ShuffleV1`, 3 groups): stages of 4, 8 and 4 bottlenecks (240, 480, 960 channels). A bottleneck is a
grouped 1x1 conv to a quarter of its width + BN + ReLU, a channel shuffle, a 3x3 depthwise conv + BN + ReLU
and a grouped 1x1 conv + BN; the first of a stage (stride 2) concatenates a 3x3 average-pooled shortcut,
the others add the input; then ReLU. The stem's 24 channels take an ungrouped first 1x1 conv.

V2 (`ShuffleV2`, `ShuffleV2_1_5`): a down-sampling unit then 3, 7 and 3 basic units per stage, then a 1x1
head conv + BN + ReLU. A basic unit keeps half of the channels and transforms the other half (1x1 conv +
BN + ReLU, 3x3 depthwise + BN, 1x1 conv + BN + ReLU); a down-sampling unit transforms the whole input in two
branches of stride 2; both end in a channel shuffle of two groups.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .network import ImageNetwork, NetworkConfig, conv_bn, make_stages

STEM_CHANNELS = 24
V1_SPECS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], int]] = {
    "ShuffleV1": ((240, 480, 960), (4, 8, 4), 3),
}
"""Stage channels, bottlenecks per stage, groups."""
V2_SPECS: dict[str, tuple[tuple[int, int, int], int]] = {
    "ShuffleV2": ((116, 232, 464), 1024),
    "ShuffleV2_1_5": ((176, 352, 704), 1024),
}
"""Stage channels and head channels; 3, 7 and 3 basic units per stage."""
V2_UNITS = (3, 7, 3)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave the channels of `groups` groups: (N, g * c, H, W) -> channel j * g + i holds group i's j-th."""
    n, channels, height, width = x.shape
    return x.view(n, groups, channels // groups, height, width).transpose(1, 2).reshape(n, channels, height, width)


class ShuffleBottleneck(nn.Module):
    """ShuffleNet V1's unit; with stride 2 its output is its branch's `channels_out - channels_in` channels
    concatenated to the pooled input."""

    def __init__(self, channels_in: int, channels_out: int, stride: int, groups: int):
        super().__init__()
        self.stride = stride
        branch = channels_out - channels_in if stride == 2 else channels_out
        middle = branch // 4
        self.first_groups = 1 if channels_in == STEM_CHANNELS else groups
        self.reduce = conv_bn(channels_in, middle, 1, groups=self.first_groups)
        self.depthwise = conv_bn(middle, middle, 3, stride, groups=middle)
        self.expand = conv_bn(middle, branch, 1, groups=groups, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.expand(self.depthwise(channel_shuffle(self.reduce(x), self.first_groups)))
        if self.stride == 2:
            return F.relu(torch.cat([out, F.avg_pool2d(x, 3, 2, padding=1)], dim=1))
        return F.relu(out + x)


class ShuffleNetV1(ImageNetwork):
    """Its stage maps are the outputs of the three stages (16, 8 and 4 pixels wide for 32 x 32 input)."""

    SPECS = V1_SPECS

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        self.stage_channels, units, groups = V1_SPECS[config.arch]
        self.stem = conv_bn(config.in_channels, STEM_CHANNELS, 1)
        bottleneck = partial(ShuffleBottleneck, groups=groups)
        self.stages = make_stages(bottleneck, STEM_CHANNELS, self.stage_channels, units, (2, 2, 2))
        self.classifier = nn.Linear(self.stage_channels[-1], config.n_classes)
        self.init_weights()


class ShuffleUnit(nn.Module):
    """ShuffleNet V2's basic unit: half of the channels pass, the other half is transformed."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(conv_bn(half, half, 1), conv_bn(half, half, 3, groups=half, relu=False),
                                    conv_bn(half, half, 1))

    def forward(self, x: Tensor) -> Tensor:
        kept, transformed = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([kept, self.branch(transformed)], dim=1), 2)


class ShuffleDownUnit(nn.Module):
    """ShuffleNet V2's down-sampling unit: two stride-2 branches of half the output channels each."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        half = channels_out // 2
        self.left = nn.Sequential(conv_bn(channels_in, channels_in, 3, 2, groups=channels_in, relu=False),
                                  conv_bn(channels_in, half, 1))
        self.right = nn.Sequential(conv_bn(channels_in, half, 1), conv_bn(half, half, 3, 2, groups=half, relu=False),
                                   conv_bn(half, half, 1))

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], dim=1), 2)


def shuffle_v2_unit(channels_in: int, channels_out: int, stride: int) -> nn.Module:
    """A stage's first unit (stride 2) down-samples; the others keep the size."""
    return ShuffleDownUnit(channels_in, channels_out) if stride == 2 else ShuffleUnit(channels_out)


class ShuffleNetV2(ImageNetwork):
    SPECS = V2_SPECS

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        stage_channels, head = V2_SPECS[config.arch]
        self.stem = conv_bn(config.in_channels, STEM_CHANNELS, 1)
        self.stages = make_stages(shuffle_v2_unit, STEM_CHANNELS, stage_channels, [n + 1 for n in V2_UNITS], (2, 2, 2))
        self.head = conv_bn(stage_channels[-1], head, 1)
        self.stage_channels = (*stage_channels, head)
        self.classifier = nn.Linear(head, config.n_classes)
        self.init_weights()

    def features(self, x: Tensor) -> list[Tensor]:
        """The output maps of the three stages (16, 8 and 4 pixels wide for 32 x 32 input), then the head's
        map (the one that is pooled)."""
        maps = super().features(x)
        return [*maps, self.head(maps[-1])]
