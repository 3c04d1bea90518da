"""From splits to the engine's batches: the shared batch all models train on, the per-domain batches of
the report's step order, and the padded per-domain stack the teachers train on."""
from __future__ import annotations

import torch
from torch import Tensor

from ..engine import Batch
from .data import Split
from .splits import domain_subset


def tensors(split: Split) -> tuple[Tensor, Tensor]:
    return torch.from_numpy(split.x).float(), torch.from_numpy(split.y).long()


def shared_batch(split: Split, teacher: Tensor | None = None) -> Batch:
    """Every model trains on the whole split; `teacher` is (M, N, C), one row of logits per model."""
    x, y = tensors(split)
    return Batch(x.unsqueeze(0), y.unsqueeze(0), teacher=teacher)


def domain_batches(split: Split, domains: list[int], teacher: Tensor) -> list[Batch]:
    """The report's step order: one batch per domain, all models on that domain's samples."""
    return [shared_batch(domain_subset(split, domain), teacher[:, split.d == domain]) for domain in domains]


def teacher_stack_batch(split: Split, domains: list[int], n_seeds: int) -> Batch:
    """Model m = seed_index * len(domains) + domain_index trains on its domain's samples only,
    padded to a common length and masked."""
    parts = [domain_subset(split, domain) for domain in domains]
    length = max(len(part.y) for part in parts)
    x = torch.zeros(len(parts), length, split.x.shape[1])
    y = torch.zeros(len(parts), length, dtype=torch.long)
    mask = torch.zeros(len(parts), length)
    for row, part in enumerate(parts):
        part_x, part_y = tensors(part)
        x[row, : len(part_y)], y[row, : len(part_y)], mask[row, : len(part_y)] = part_x, part_y, 1.0
    return Batch(x.repeat(n_seeds, 1, 1), y.repeat(n_seeds, 1), mask.repeat(n_seeds, 1))
