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
from .common import Job, Member, fit_and_log, run_params, run_tags, task_hash
from .inputs import fingerprint, make_splits, teacher_stack_batch, tensors


@dataclass
class TeacherRef:
    """A teacher's configuration hash, and its run once one has finished."""

    config_hash: str
    run_id: str | None = None


Teachers = dict[tuple[int, int], TeacherRef]
"""(seed, domain) -> teacher."""


def run_teachers(job: Job) -> str:
    data = load_multidomain(job.data)
    make_splits(data, job.train)  # a bad holdout is an error before any run opens
    tracking.use_experiment(job.experiment)
    with tracking.parent_run(f"teachers {data.name}", run_tags("teachers", data, job, "teacher"), run_params(job)) as parent_id:
        _train_teachers(job, data, expected_teachers(job, data))
    return parent_id


def teacher_hash(job: Job, data: MultiDomainData, seed: int, domain: int) -> str:
    return task_hash("teacher", data, job.train, seed=seed, domain=domain)


def expected_teachers(job: Job, data: MultiDomainData) -> Teachers:
    """The teachers `job` would train, each with its run if one of the same configuration has FINISHED."""
    teachers = {}
    for seed in job.seeds:
        for domain in data.domains:
            digest = teacher_hash(job, data, seed, domain)
            run = tracking.find_finished(digest)
            teachers[(seed, domain)] = TeacherRef(digest, run.info.run_id if run else None)
    return teachers


def teachers_of_run(run_id: str, data: MultiDomainData, seeds: tuple[int, ...]) -> Teachers:
    """The finished teachers under a `teachers` run, checked to cover every seed and domain needed."""
    parent = tracking.get_run(run_id)
    if tracking.tag(parent, "task") != "teachers":
        raise InputError(f"run {run_id}: is not a teachers run (its kdtrack.task is {tracking.tag(parent, 'task')!r})")
    if tracking.tag(parent, "data_sha256") != fingerprint(data):
        raise InputError(f"run {run_id}: its teachers were trained on other data than {data.name!r}")
    found = {}
    for child in tracking.child_runs(run_id):
        if child.info.status == "FINISHED":
            key = (int(tracking.tag(child, "seed")), int(tracking.tag(child, "domain")))
            found[key] = TeacherRef(tracking.tag(child, "config_hash"), child.info.run_id)
    absent = [f"seed {seed} domain {d}" for seed in seeds for d in data.domains if (seed, d) not in found]
    if absent:
        raise InputError(f"run {run_id}: has no finished teacher for {', '.join(absent)}")
    return found


def complete_teachers(job: Job, data: MultiDomainData, teachers: Teachers, seeds: tuple[int, ...]) -> None:
    """Train, in a nested `teachers` run, every seed of `seeds` that lacks a finished teacher."""
    missing = tuple(seed for seed in seeds if any(teachers[(seed, d)].run_id is None for d in data.domains))
    if not missing:
        return
    job = dataclasses.replace(job, seeds=missing, label=None)
    with tracking.parent_run(f"teachers {data.name}", run_tags("teachers", data, job, "teacher"), run_params(job)):
        _train_teachers(job, data, teachers)


def _train_teachers(job: Job, data: MultiDomainData, teachers: Teachers) -> None:
    """Train the stack of job.seeds x domains and record each run id in `teachers`."""
    splits = make_splits(data, job.train)
    domains, n_seeds = data.domains, len(job.seeds)
    members = [
        Member(seed, f"seed {seed} domain {domain}", {"seed": str(seed), "domain": str(domain)},
               subset(data.valid, np.flatnonzero(data.valid.d == domain)), teachers[(seed, domain)].config_hash)
        for seed in job.seeds
        for domain in domains
    ]
    selection = None if splits.selection is None else teacher_stack_batch(splits.selection, domains, n_seeds)
    run_ids = fit_and_log(job, "teacher", "teacher", data, members, make_distiller("ce", job.train.epochs),
                          [teacher_stack_batch(splits.fit, domains, n_seeds)],
                          teacher_stack_batch(splits.valid, domains, n_seeds), selection, {})
    for member, run_id in zip(members, run_ids):
        teachers[(member.seed, int(member.tags["domain"]))].run_id = run_id


def teacher_logits(teachers: Teachers, split: Split, seeds: tuple[int, ...]) -> Tensor:
    """(seeds, N, C): each sample's logits from its in-domain teacher of each seed."""
    x, _ = tensors(split)
    logits = None
    for row, seed in enumerate(seeds):
        for domain in np.unique(split.d).tolist():
            teacher = tracking.load_mlp(teachers[(seed, domain)].run_id)
            rows = torch.from_numpy(split.d == domain)
            with torch.no_grad():
                out = teacher(x[rows])
            if logits is None:
                logits = torch.zeros(len(seeds), len(x), out.shape[1])
            logits[row, rows] = out
    return logits
