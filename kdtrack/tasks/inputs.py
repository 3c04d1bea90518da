"""From a loaded dataset to the engine's batches: the fit/selection/validation splits, the shared batch
all models train on, and the padded per-domain stack the teachers train on."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..data.multidomain import MultiDomainData, Split
from ..data.splits import selection_indices, subset
from ..engine import Batch
from ..errors import InputError
from .options import TrainOptions


@dataclass(frozen=True)
class Splits:
    """`fit` trains, `selection` (None under the validation policy) selects, `valid` is reported.
    The indices locate fit and selection inside the original training split."""

    fit: Split
    selection: Split | None
    valid: Split
    fit_index: np.ndarray
    selection_index: np.ndarray | None


def make_splits(data: MultiDomainData, options: TrainOptions) -> Splits:
    """The splits of `options`' selection policy; an InputError if a domain has too few fit or selection
    samples (every teacher trains and selects on its own domain alone)."""
    if options.selection == "validation":
        fit_index, selection_index = np.arange(len(data.train.y)), None
    else:
        fit_index, selection_index = selection_indices(data.train, options.selection_fraction, options.selection_seed)
        for name, index in (("selection", selection_index), ("fit", fit_index)):
            _require_per_domain(data, index, 1, f"selection-fraction {options.selection_fraction} leaves the {name} "
                                "split without samples")
    if options.batch_norm:  # a batch norm over one sample has no variance: its running variance would be inf
        _require_per_domain(data, fit_index, 2, "batch norm needs 2 fit samples per domain, and the fit split has fewer")
    return Splits(subset(data.train, fit_index), None if selection_index is None else subset(data.train, selection_index),
                  data.valid, fit_index, selection_index)


def _require_per_domain(data: MultiDomainData, index: np.ndarray, minimum: int, problem: str) -> None:
    """An InputError naming `problem` and the domains with fewer than `minimum` samples among `index`."""
    counts = dict(zip(*np.unique(data.train.d[index], return_counts=True)))
    short = sorted(int(d) for d in data.domains if counts.get(d, 0) < minimum)
    if short:
        raise InputError(f"{problem} of domain(s) {short} in {data.name!r}")


def fingerprint(data: MultiDomainData) -> str:
    """A hash of the data's content, so that a renamed copy of a file is recognised as the same data."""
    digest = hashlib.sha256()
    for split in (data.train, data.valid):
        for array in (split.x, split.y, split.d):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def tensors(split: Split) -> tuple[Tensor, Tensor]:
    return torch.from_numpy(split.x).float(), torch.from_numpy(split.y).long()


def shared_batch(split: Split, teacher: Tensor | None = None) -> Batch:
    """Every model trains on the whole split; `teacher` is (M, N, C), one row of logits per model."""
    x, y = tensors(split)
    return Batch(x.unsqueeze(0), y.unsqueeze(0), teacher=teacher)


def domain_batches(split: Split, domains: list[int], teacher: Tensor) -> list[Batch]:
    """The report's step order: one batch per domain, all models on that domain's samples."""
    return [
        shared_batch(subset(split, np.flatnonzero(split.d == domain)), teacher[:, split.d == domain])
        for domain in domains
    ]


def teacher_stack_batch(split: Split, domains: list[int], n_seeds: int) -> Batch:
    """Model m = seed_index * len(domains) + domain_index trains on its domain's samples only,
    padded to a common length and masked."""
    parts = [subset(split, np.flatnonzero(split.d == domain)) for domain in domains]
    length = max(len(part.y) for part in parts)
    x = torch.zeros(len(parts), length, split.x.shape[1])
    y = torch.zeros(len(parts), length, dtype=torch.long)
    mask = torch.zeros(len(parts), length)
    for row, part in enumerate(parts):
        part_x, part_y = tensors(part)
        x[row, : len(part_y)], y[row, : len(part_y)], mask[row, : len(part_y)] = part_x, part_y, 1.0
    return Batch(x.repeat(n_seeds, 1, 1), y.repeat(n_seeds, 1), mask.repeat(n_seeds, 1))
