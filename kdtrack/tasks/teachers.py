"""One expert per domain and seed: training them, finding finished ones, and their logits for students."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .. import tracking
from ..data.multidomain import MultiDomainData, Split, load_multidomain
from ..data.splits import subset
from ..distillers import make_distiller
from ..errors import InputError
from .common import Job, Member, cell_hash, cell_tags, fit_and_log, hash_tags, run_params, seed_hash
from .inputs import fingerprint, make_splits, teacher_stack_batch, tensors
from .options import TrainOptions


@dataclass
class TeacherRef:
    """A teacher's configuration hash, and its run once one has finished."""

    config_hash: str
    run_id: str | None = None


@dataclass
class Teachers:
    """The teachers of a configuration (`cell`, seedless), by (seed, domain)."""

    cell: str
    refs: dict[tuple[int, int], TeacherRef]
    holdout: dict[str, str]
    """The selection settings they trained under (see `check_holdout`)."""


def run_teachers(job: Job) -> str:
    data = load_multidomain(job.data)
    make_splits(data, job.train)  # a bad holdout is an error before any run opens
    tracking.use_experiment(job.experiment)
    return _teachers_run(job, data, teacher_plan(job, data))


def teacher_plan(job: Job, data: MultiDomainData) -> Teachers:
    """The teachers `job` trains, none of them trained yet."""
    cell = cell_hash("teacher", data, job.train)
    refs = {(seed, domain): TeacherRef(seed_hash(cell, seed, domain=domain)) for seed in job.seeds for domain in data.domains}
    return Teachers(cell, refs, holdout_of(job.train.params()))


def expected_teachers(job: Job, data: MultiDomainData) -> Teachers:
    """`teacher_plan`, with the run of each teacher whose configuration has FINISHED before, in any experiment."""
    teachers = teacher_plan(job, data)
    for ref in teachers.refs.values():
        run = tracking.find_finished(ref.config_hash)
        ref.run_id = run.info.run_id if run else None
    return teachers


def teachers_of_run(run_id: str, data: MultiDomainData, seeds: tuple[int, ...]) -> Teachers:
    """The finished teachers under a `teachers` run, checked to cover every seed and domain needed."""
    parent = tracking.get_run(run_id)
    if tracking.tag(parent, "task") != "teachers":
        raise InputError(f"run {run_id}: is not a teachers run (its kdtrack.task is {tracking.tag(parent, 'task')!r})")
    if tracking.tag(parent, "data_hash") != fingerprint(data):
        raise InputError(f"run {run_id}: its teachers were trained on other data than {data.name!r}")
    refs = {}
    for child in tracking.child_runs(run_id):
        if child.info.status == "FINISHED":
            key = (int(tracking.tag(child, "seed")), int(tracking.tag(child, "domain")))
            refs[key] = TeacherRef(tracking.tag(child, "config_hash"), child.info.run_id)
    absent = [f"seed {seed} domain {d}" for seed in seeds for d in data.domains if (seed, d) not in refs]
    if absent:
        raise InputError(f"run {run_id}: has no finished teacher for {', '.join(absent)}")
    return Teachers(tracking.tag(parent, "cell_hash") or run_id, refs, holdout_of(parent.data.params))


def check_holdout(student: TrainOptions, teacher_holdout: dict[str, str], source: str) -> None:
    """A student that selects on a holdout needs teachers that never trained on it: the same holdout."""
    wanted = holdout_of(student.params())
    if wanted["selection"] == "holdout" and teacher_holdout != wanted:
        raise InputError(f"{source}: the teachers' selection settings {teacher_holdout} differ from the "
                         f"student's {wanted}, so the teachers may have trained on the student's holdout")


def holdout_of(params: dict[str, str]) -> dict[str, str]:
    """The selection settings among run params (or TrainOptions.params())."""
    return {key: params.get(key, "") for key in ("selection", "selection_fraction", "selection_seed")}


def complete_teachers(job: Job, data: MultiDomainData, teachers: Teachers, seeds: tuple[int, ...]) -> None:
    """Train, in a nested `teachers` run, every seed of `seeds` that lacks a finished teacher of some domain
    (all of that seed's domains train together, as one stack)."""
    missing = tuple(seed for seed in seeds if any(teachers.refs[(seed, d)].run_id is None for d in data.domains))
    if not missing:
        return
    _teachers_run(dataclasses.replace(job, seeds=missing, label=None), data, teachers)


def _teachers_run(job: Job, data: MultiDomainData, teachers: Teachers) -> str:
    """A `teachers` parent run that trains job.seeds x domains; its id."""
    tags = cell_tags("teachers", data, job, "teacher", teachers.cell)
    with tracking.parent_run(f"teachers {data.name}", tags, run_params(job)) as parent_id:
        _train_teachers(job, data, teachers)
    return parent_id


def _train_teachers(job: Job, data: MultiDomainData, teachers: Teachers) -> None:
    """Train the stack of job.seeds x domains and record each run id in `teachers`."""
    splits = make_splits(data, job.train)
    domains, n_seeds = data.domains, len(job.seeds)
    members = [
        Member(seed, f"seed {seed} domain {domain}",
               {"seed": str(seed), "domain": str(domain), **hash_tags(teachers.cell, seed, domain=domain)},
               {"seed": str(seed), "domain": str(domain)},
               subset(data.valid, np.flatnonzero(data.valid.d == domain)))
        for seed in job.seeds
        for domain in domains
    ]
    selection = None if splits.selection is None else teacher_stack_batch(splits.selection, domains, n_seeds)
    run_ids = fit_and_log(job, "teacher", "teacher", data, members, make_distiller("ce", job.train.epochs),
                          [teacher_stack_batch(splits.fit, domains, n_seeds)],
                          teacher_stack_batch(splits.valid, domains, n_seeds), selection, {})
    for member, run_id in zip(members, run_ids):
        teachers.refs[(member.seed, int(member.params["domain"]))].run_id = run_id


def teacher_logits(teachers: Teachers, splits: list[Split], seeds: tuple[int, ...]) -> list[Tensor]:
    """For each split, (seeds, N, C): each sample's logits from its in-domain teacher of each seed.
    Each teacher is loaded from its run once."""
    out = [None] * len(splits)
    for row, seed in enumerate(seeds):
        for domain in sorted({d for split in splits for d in np.unique(split.d).tolist()}):
            teacher = tracking.load_mlp(teachers.refs[(seed, domain)].run_id)
            for index, split in enumerate(splits):
                rows = torch.from_numpy(split.d == domain)
                with torch.no_grad():
                    logits = teacher(tensors(split)[0][rows])
                if out[index] is None:
                    out[index] = torch.zeros(len(seeds), len(split.y), logits.shape[1])
                out[index][row, rows] = logits
    return out
