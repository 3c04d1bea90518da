"""One expert per domain and seed: the cell that trains them, and the teachers' logits for students. Teachers
of a student are this cell or a `teachers` run given by id (kdtrack.spine.teachers)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import Tensor

from ... import tracking
from ...distillers import METHODS, Distiller, make_distiller
from ...engine import Batch
from ...errors import InputError
from ...spine.teachers import Teachers, TeachingCell, check_holdout
from ..batches import domain_batches, shared_batch, teacher_stack_batch, tensors
from ..data import MultiDomainData, Split
from ..domains import domain_posterior
from ..options import MLPTrainOptions
from ..splits import Splits
from .base import MLPCell, Stack


@dataclass(frozen=True, kw_only=True)
class TeachersCell(MLPCell, TeachingCell):
    task = "teachers"
    member_task = "teacher"
    shared = True
    label: str = "teacher"

    @property
    def name(self) -> str:
        return f"teachers · {self.data.name}"

    def model_keys(self, seed: int) -> list[dict[str, int]]:
        return [{"seed": seed, "domain": domain} for domain in self.data.domains]

    def model_name(self, seed: int, domain: int) -> str:
        return f"seed {seed} · d{domain} · {self.name}"

    def curve_group(self, key: dict[str, int]) -> str:
        return f"domain {key['domain']}"

    def stack(self) -> Stack:
        """The stack of seeds x domains: model m = seed index x domains + domain index."""
        splits, domains, n_seeds = self.splits, self.data.domains, len(self.seeds)
        members = [self.member(seed, domain) for seed in self.seeds for domain in domains]
        selection = None if splits.selection is None else teacher_stack_batch(splits.selection, domains, n_seeds)
        return Stack(members, make_distiller("ce", self.epochs), [teacher_stack_batch(splits.fit, domains, n_seeds)],
                     teacher_stack_batch(splits.valid, domains, n_seeds), selection)


def check_taught(data: MultiDomainData, seeds: tuple[int, ...], student: MLPTrainOptions, teachers: Teachers,
                 distiller: str) -> None:
    """A cell that learns from `teachers` by `distiller` needs a teacher for every validation domain and seed,
    the domains its distiller weighs, and teachers that never trained on its holdout."""
    unseen = sorted(set(data.valid.d.tolist()) - set(data.domains))
    if unseen:
        raise InputError(f"{data.source}: validation domain(s) {unseen} have no training data, so no teacher")
    needed = METHODS[distiller].min_domains
    if len(data.domains) < needed:
        raise InputError(f"{data.source}: method {distiller} weighs the teachers of at least {needed} domains, and the "
                         f"data has {len(data.domains)} ({', '.join(map(str, data.domains))})")
    if isinstance(teachers, TeachersCell):
        teachers.splits  # noqa: B018 (the teachers' holdout too is checked before any run opens)
    else:
        runs = teachers.runs(seeds)
        missing = [f"seed {seed} domain {domain}" for seed in seeds for domain in data.domains if (seed, domain) not in runs]
        if missing:
            raise InputError(f"run {teachers.run_id}: has no finished teacher for {', '.join(missing)}")
    check_holdout(student, teachers, f"run {teachers.run_id}" if teachers.option else data.source)


def expert_logits(runs: dict[tuple[int, int], str], splits: list[Split], seeds: tuple[int, ...],
                  domains: list[int]) -> list[Tensor]:
    """For each split, (seeds, domains, N, C): every domain expert's logits on every sample, for each seed.
    Each teacher is loaded from its run once."""
    out = [None] * len(splits)
    for row, seed in enumerate(seeds):
        for column, domain in enumerate(domains):
            teacher = tracking.load_model(runs[(seed, domain)])
            for index, split in enumerate(splits):
                with torch.no_grad():
                    logits = teacher(tensors(split)[0])
                if out[index] is None:
                    out[index] = torch.zeros(len(seeds), len(domains), len(split.y), logits.shape[1])
                out[index][row, column] = logits
    return out


def student_batches(data: MultiDomainData, splits: Splits, runs: dict[tuple[int, int], str], distiller: Distiller,
                    step_order: str, seeds: tuple[int, ...], repeats: int = 1) -> tuple[list[Batch], Batch, Batch | None]:
    """Training, validation and selection batches for a stack of `repeats` x seeds students (model m learns
    from the teachers of seed m % len(seeds)), each sample's teacher logits as `distiller` picks them."""
    posterior = cache(lambda: domain_posterior(splits.fit))  # fitted only for a distiller that asks for it

    def targets(logits: Tensor, split: Split) -> Tensor:
        domains = torch.from_numpy(np.searchsorted(data.domains, split.d))
        return distiller.teacher_targets(logits, domains, lambda: posterior()(split.x)).repeat(repeats, 1, 1)

    splits_seen = [data.train, data.valid]
    train_logits, valid_logits = (targets(logits, split) for logits, split
                                  in zip(expert_logits(runs, splits_seen, seeds, data.domains), splits_seen))
    fit_logits = train_logits[:, splits.fit_index]
    if step_order == "per-domain":
        train_batches = domain_batches(splits.fit, data.domains, fit_logits)
    else:
        train_batches = [shared_batch(splits.fit, fit_logits)]
    selection = None
    if splits.selection is not None:
        selection = shared_batch(splits.selection, train_logits[:, splits.selection_index])
    return train_batches, shared_batch(splits.valid, valid_logits), selection
