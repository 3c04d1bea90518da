"""The CIFAR model zoo of the knowledge-distillation literature, by the names RepDistiller and the official
SimKD code give its architectures; and building a network of any of them."""
from __future__ import annotations

import torch

from .mobilenetv2 import MobileNetV2
from .network import ImageNetwork, NetworkConfig
from .resnet import CifarResNet
from .shufflenet import ShuffleNetV1, ShuffleNetV2
from .vgg import VGG
from .wrn import WideResNet

FAMILIES: tuple[type[ImageNetwork], ...] = (CifarResNet, WideResNet, VGG, MobileNetV2, ShuffleNetV1, ShuffleNetV2)
ARCHS: dict[str, type[ImageNetwork]] = {arch: family for family in FAMILIES for arch in family.SPECS}
"""Every architecture name (the `--arch` choices) and its family."""


def build_network(config: NetworkConfig, seed: int | None = None) -> ImageNetwork:
    """A freshly initialised network; with a seed, exactly what torch.manual_seed(seed) then building gives."""
    if config.arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {config.arch!r}")
    if seed is not None:
        torch.manual_seed(seed)
    return ARCHS[config.arch](config)
