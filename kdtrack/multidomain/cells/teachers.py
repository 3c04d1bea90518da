"""One expert per domain and seed: the cell that trains them, a `teachers` run given by id, and the
teachers' logits for students. Either kind of teachers answers `runs(seeds)`: the run of each (seed, domain)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np
import torch
from torch import Tensor

from ... import tracking
from ...distillers import Distiller, make_distiller
from ...errors import InputError
from ...engine import Batch
from ..batches import domain_batches, shared_batch, teacher_stack_batch, tensors
from ..data import MultiDomainData, Split
from ..domains import domain_posterior
from ..options import TrainOptions
from ..splits import Splits
from .base import MLPCell, Stack

HOLDOUT_PARAMS = ("selection", "selection_fraction", "selection_seed")


@dataclass(frozen=True, kw_only=True)
class TeachersCell(MLPCell):
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
        return f"teacher d{domain} · {self.data.name} · seed {seed}"

    @property
    def holdout(self) -> dict[str, str]:
        return holdout_of(self.train.params())

    option = ""
    """The --teachers option that names these teachers: none, they are found by configuration."""

    def runs(self, seeds: tuple[int, ...]) -> dict[tuple[int, int], str]:
        """The finished teacher of each (seed, domain), once this cell has run."""
        done = self.with_seeds(seeds).finished_runs()
        return {(seed, domain): done[self.model_hash(seed=seed, domain=domain)]
                for seed in seeds for domain in self.data.domains}

    def stack(self) -> Stack:
        """The stack of seeds x domains: model m = seed index x domains + domain index."""
        splits, domains, n_seeds = self.splits, self.data.domains, len(self.seeds)
        members = [self.member(seed, domain) for seed in self.seeds for domain in domains]
        selection = None if splits.selection is None else teacher_stack_batch(splits.selection, domains, n_seeds)
        return Stack(members, make_distiller("ce", self.epochs), [teacher_stack_batch(splits.fit, domains, n_seeds)],
                     teacher_stack_batch(splits.valid, domains, n_seeds), selection)


@dataclass(frozen=True)
class TeachersRun:
    """The finished teachers under a `teachers` run given by id (`distill --teachers RUN_ID`)."""

    run_id: str
    data: MultiDomainData

    def __post_init__(self):
        parent = self._parent
        if tracking.tag(parent, "task") != "teachers":
            raise InputError(f"run {self.run_id}: is not a teachers run (its kdtrack.task is "
                             f"{tracking.tag(parent, 'task')!r})")
        if tracking.tag(parent, "data_hash") != self.data.fingerprint:
            raise InputError(f"run {self.run_id}: its teachers were trained on other data than {self.data.name!r}")

    @cached_property
    def _parent(self):
        return tracking.get_run(self.run_id)

    @property
    def hash(self) -> str:
        return tracking.tag(self._parent, "cell_hash") or self.run_id

    @property
    def option(self) -> str:
        return self.run_id

    @property
    def holdout(self) -> dict[str, str]:
        return holdout_of(self._parent.data.params)

    def runs(self, seeds: tuple[int, ...]) -> dict[tuple[int, int], str]:
        found = {}
        for child in tracking.child_runs(self.run_id):
            if child.info.status == "FINISHED":
                found[(int(tracking.tag(child, "seed")), int(tracking.tag(child, "domain")))] = child.info.run_id
        absent = [f"seed {seed} domain {d}" for seed in seeds for d in self.data.domains if (seed, d) not in found]
        if absent:
            raise InputError(f"run {self.run_id}: has no finished teacher for {', '.join(absent)}")
        return {(seed, d): found[(seed, d)] for seed in seeds for d in self.data.domains}


Teachers = TeachersCell | TeachersRun


def check_taught(data: MultiDomainData, seeds: tuple[int, ...], student: TrainOptions, teachers: Teachers) -> None:
    """A cell that learns from `teachers` needs a teacher for every validation domain and seed, and teachers
    that never trained on its holdout: the same holdout."""
    unseen = sorted(set(data.valid.d.tolist()) - set(data.domains))
    if unseen:
        raise InputError(f"{data.source}: validation domain(s) {unseen} have no training data, so no teacher")
    if isinstance(teachers, TeachersCell):
        teachers.splits  # noqa: B018 (the teachers' holdout too is checked before any run opens)
    else:
        teachers.runs(seeds)
    wanted = holdout_of(student.params())
    if wanted["selection"] == "holdout" and teachers.holdout != wanted:
        source = f"run {teachers.run_id}" if isinstance(teachers, TeachersRun) else data.source
        raise InputError(f"{source}: the teachers' selection settings {teachers.holdout} differ from the "
                         f"student's {wanted}, so the teachers may have trained on the student's holdout")


def teacher_dependencies(teachers: Teachers, seeds: tuple[int, ...]) -> tuple[TeachersCell, ...]:
    """The teachers cell to run first for `seeds`, if the teachers are found by configuration."""
    return (teachers.with_seeds(seeds),) if isinstance(teachers, TeachersCell) else ()


def holdout_of(params: dict[str, str]) -> dict[str, str]:
    """The selection settings among run params (or TrainOptions.params())."""
    return {key: params.get(key, "") for key in HOLDOUT_PARAMS}


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
