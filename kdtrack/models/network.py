"""The one interface every image network of the zoo shares, and the config that rebuilds any of them.

A network is a feature extractor followed by a classifier: `features(x)` returns its stage maps, the last
being the penultimate map (the one before global average pooling, which SimKD projects), and
`classify(penultimate)` pools that map and applies `classifier`, a single Linear layer (the classifier a
SimKD student reuses). `stage_channels` gives the channels of each stage map. Every family pools
adaptively, so any input of at least 8 x 8 works (digits' 8 x 8 maps shrink to 1 x 1 in the deepest
stages of VGG, MobileNetV2 and ShuffleNet, never to nothing).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class NetworkConfig:
    """An architecture of the zoo (kdtrack.models.zoo.ARCHS names them), its classes and input channels."""

    arch: str
    n_classes: int
    in_channels: int = 3

    def to_params(self) -> dict[str, str]:
        """The architecture as run params, enough to rebuild the network (see `from_params`)."""
        return {"arch": self.arch, "n_classes": str(self.n_classes), "in_channels": str(self.in_channels)}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> NetworkConfig:
        return cls(params["arch"], int(params["n_classes"]), int(params["in_channels"]))


class ImageNetwork(nn.Module):
    """Stage maps, then average pooling and a linear classifier. A family sets `stage_channels`,
    `classifier`, and either `stem` and `stages` (see `features`) or a `features` of its own."""

    SPECS: dict[str, object]
    """The family's architectures by name, and what each is made of."""
    stage_channels: tuple[int, ...]
    classifier: nn.Module

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config

    def features(self, x: Tensor) -> list[Tensor]:
        """The stage maps, shallowest first; the last is the penultimate map. By default the outputs of
        `stages` after `stem`."""
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

    def map_sizes(self, image_size: tuple[int, int]) -> list[tuple[int, int]]:
        """The (height, width) of each stage map for inputs of `image_size`, measured on a blank image in
        eval mode (batch-norm statistics stay as they were)."""
        training = self.training
        self.eval()
        try:
            with torch.no_grad():
                blank = torch.zeros(1, self.config.in_channels, *image_size, device=next(self.parameters()).device)
                return [tuple(feature_map.shape[-2:]) for feature_map in self.features(blank)]
        finally:
            self.train(training)

    def init_weights(self) -> None:
        """He initialisation (fan out) for convolutions, unit scale and zero shift for batch norms, as the
        KD literature's CIFAR code does; linear layers keep PyTorch's default."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def make_stages(block: Callable[[int, int, int], nn.Module], width: int, stage_channels: Sequence[int],
                blocks: Sequence[int], strides: Sequence[int]) -> nn.ModuleList:
    """Stages of `blocks[i]` blocks `block(channels_in, channels_out, stride)`: a stage's first block takes the
    previous stage's width (`width` for the first) at `strides[i]`, the others keep the stage's width at
    stride 1."""
    stages = []
    for channels, count, stride in zip(stage_channels, blocks, strides):
        stages.append(nn.Sequential(block(width, channels, stride), *(block(channels, channels, 1) for _ in range(count - 1))))
        width = channels
    return nn.ModuleList(stages)


def conv_bn(channels_in: int, channels_out: int, kernel: int, stride: int = 1, groups: int = 1,
            relu: bool = True) -> nn.Sequential:
    """conv (no bias, 'same' padding) + BN, then ReLU unless `relu` is False."""
    layers = [nn.Conv2d(channels_in, channels_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(channels_out)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)
