"""Batches of uint8 images to network inputs: random crops of a zero-padded image and mirror images (what
torchvision's RandomCrop(padding) and RandomHorizontalFlip do to a PIL image), then normalisation.
Vectorised over the batch, on the device the images are on (a GPU's splits stay there, and so does their
augmentation); a generator on that device makes every draw reproducible."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def nchw(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, C) as a contiguous uint8 tensor (N, C, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def to_float(images: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """uint8 (N, C, H, W) -> float32 (x / 255 - mean) / std, per channel."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.to(torch.float32) / 255 - mean) / std


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Each image zero-padded by `padding` on every side, then an H x W window at an offset drawn uniformly
    from 0..2*padding in each direction, independently per image."""
    if padding == 0:
        return images
    n, channels, height, width = images.shape
    device = images.device
    padded = F.pad(images, (padding,) * 4)
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=generator.device).to(device)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=generator.device).to(device)
    rows = (top[:, None] + torch.arange(height, device=device))[:, None, :, None]
    columns = (left[:, None] + torch.arange(width, device=device))[:, None, None, :]
    return padded[torch.arange(n, device=device)[:, None, None, None],
                  torch.arange(channels, device=device)[None, :, None, None], rows, columns]


def random_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image mirrored left to right with probability 1/2."""
    flipped = torch.rand(len(images), generator=generator, device=generator.device).to(images.device) < 0.5
    return torch.where(flipped[:, None, None, None], images.flip(-1), images)


class Augment:
    """A dataset's transform (the engine's `Transform`): uint8 images -> normalised float32 input; random
    crops of `padding` (and, with `flip`, mirror images) when given a generator. The mean and std become
    tensors once per device."""

    def __init__(self, padding: int, flip: bool, mean: Sequence[float], std: Sequence[float]):
        self.padding, self.flip, self.mean, self.std = padding, flip, tuple(mean), tuple(std)
        self._moments: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def __call__(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        if generator is not None:
            images = random_crop(images, self.padding, generator)
            if self.flip:
                images = random_flip(images, generator)
        if images.device not in self._moments:
            self._moments[images.device] = tuple(torch.tensor(values, dtype=torch.float32, device=images.device)
                                                  for values in (self.mean, self.std))
        return to_float(images, *self._moments[images.device])
