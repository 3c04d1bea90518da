"""Batches of uint8 images to network inputs: random crops of a zero-padded image and mirror images (what
torchvision's RandomCrop(padding) and RandomHorizontalFlip do to a PIL image), then normalisation.
Vectorised over the batch; a generator makes every draw reproducible."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def nchw(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, C) as a contiguous uint8 tensor (N, C, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def to_float(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (N, C, H, W) -> float32 (x / 255 - mean) / std, per channel."""
    mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.to(torch.float32) / 255 - mean) / std


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Each image zero-padded by `padding` on every side, then an H x W window at an offset drawn uniformly
    from 0..2*padding in each direction, independently per image."""
    if padding == 0:
        return images
    n, _, height, width = images.shape
    padded = F.pad(images, (padding,) * 4)
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (top[:, None] + torch.arange(height))[:, None, :, None]
    columns = (left[:, None] + torch.arange(width))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None], rows, columns]


def random_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image mirrored left to right with probability 1/2."""
    flipped = torch.rand(len(images), generator=generator) < 0.5
    return torch.where(flipped[:, None, None, None], images.flip(-1), images)
