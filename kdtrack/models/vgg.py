"""VGG with batch norm as the KD literature uses it on CIFAR: VGG-8 and VGG-13.

Five blocks of 3x3 conv (with bias) + BN + ReLU (64, 128, 256, 512 and 512 channels), a 2x2 max-pool after
each of the first three, average pooling and a single linear classifier in place of ImageNet VGG's three
fully connected layers. For 32 x 32 input the last two blocks work at 4 x 4; for 8 x 8 input, at 1 x 1.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .network import ImageNetwork, NetworkConfig

SPECS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
}
"""The convolutions' channels, block by block."""
POOLED_BLOCKS = 3
"""The first three blocks are followed by a max-pool."""


class VGG(ImageNetwork):
    SPECS = SPECS

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        blocks, width = [], config.in_channels
        for convolutions in SPECS[config.arch]:
            layers = []
            for channels in convolutions:
                layers += [nn.Conv2d(width, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
                width = channels
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.stage_channels = tuple(convolutions[-1] for convolutions in SPECS[config.arch])
        self.classifier = nn.Linear(width, config.n_classes)
        self.init_weights()

    def features(self, x: Tensor) -> list[Tensor]:
        """The output maps of the five blocks (before their max-pool)."""
        maps = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            maps.append(x)
            if index < POOLED_BLOCKS:
                x = F.max_pool2d(x, 2)
        return maps
