"""The multi-domain tasks: baseline, teachers and distill.

Each checks its inputs before it opens a run, trains all of its models (seeds, and domains for teachers)
as one stack inside one parent run, and logs one child run per model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .. import tracking
from ..data.multidomain import MultiDomainData, Split, load_multidomain
from ..data.splits import subset
from ..distillers import Distiller, make_distiller
from ..engine import Batch, TrainResult, train
from ..errors import InputError
from ..models.mlp import MLP, StackedMLP, init_mlps
from ..progress import Progress
from .inputs import Splits, domain_batches, fingerprint, make_splits, shared_batch, teacher_stack_batch, tensors
from .options import DistillOptions, TrainOptions, config_hash


@dataclass(frozen=True)
class Job:
    """What every task is given. `label` is the method name its runs are tagged with (a study names
    its cells with it); each task has its own default."""

    data: str
    seeds: tuple[int, ...]
    train: TrainOptions = field(default_factory=TrainOptions)
    experiment: str | None = None
    log_every: int = 0
    label: str | None = None


@dataclass(frozen=True)
class TeacherRef:
    run_id: str
    config_hash: str


@dataclass
class _Member:
    """One model of a stack: its seed, its own tags and params, and the split its accuracy is scored on."""

    seed: int
    name: str
    tags: dict[str, str]
    valid: Split
    config_hash: str


def run_baseline(job: Job) -> str:
    """Q1: one MLP on all domains per seed. Returns the parent run id."""
    data = load_multidomain(job.data)
    splits = make_splits(data, job.train)
    tracking.use_experiment(job.experiment)
    label = job.label or "baseline"
    with tracking.parent_run(f"baseline {data.name}", _tags("baseline", data, job, label), _params(job)) as parent_id:
        members = [
            _Member(seed, f"seed {seed}", {"seed": str(seed)}, data.valid, _hash("baseline", data, job.train, seed=seed))
            for seed in job.seeds
        ]
        _fit_and_log(
            job, "baseline", label, data, members, make_distiller("ce", job.train.epochs),
            [shared_batch(splits.fit)], shared_batch(splits.valid), _maybe(shared_batch, splits.selection), {},
        )
    return parent_id


def run_teachers(job: Job) -> str:
    """One expert per domain and seed. Returns the parent run id."""
    data = load_multidomain(job.data)
    tracking.use_experiment(job.experiment)
    with tracking.parent_run(f"teachers {data.name}", _tags("teachers", data, job, "teacher"), _params(job)) as parent_id:
        _train_teachers(job, data, job.seeds)
    return parent_id


def run_distill(job: Job, distill: DistillOptions, teachers: str | None = None, teacher_train: TrainOptions | None = None) -> str:
    """A student per seed from each sample's in-domain teacher of the same seed.

    Teachers come from the `teachers` run if given; otherwise finished teachers of the same configuration
    (`teacher_train`, default the student's options) are reused, and those missing are trained here.
    """
    data = load_multidomain(job.data)
    unseen = sorted(set(data.valid.d.tolist()) - set(data.domains))
    if unseen:
        raise InputError(f"{job.data}: validation domain(s) {unseen} have no training data, so no teacher")
    splits = make_splits(data, job.train)
    tracking.use_experiment(job.experiment)
    teacher_job = dataclasses.replace(job, train=teacher_train or job.train, label=None)
    known = _teachers_of_run(teachers, data, job.seeds) if teachers else _finished_teachers(teacher_job, data)
    label = job.label or distill.method
    params = {**_params(job), **distill.params(), "teachers": teachers or ""}
    with tracking.parent_run(f"distill {data.name}", _tags("distill", data, job, label), params) as parent_id:
        missing = tuple(seed for seed in job.seeds if any((seed, d) not in known for d in data.domains))
        if missing:
            missing_job = dataclasses.replace(teacher_job, seeds=missing)
            with tracking.parent_run(f"teachers {data.name}", _tags("teachers", data, missing_job, "teacher"), _params(missing_job)):
                known.update(_train_teachers(missing_job, data, missing))
        _train_students(job, distill, data, splits, known, label)
    return parent_id


def _train_teachers(job: Job, data: MultiDomainData, seeds: tuple[int, ...]) -> dict[tuple[int, int], TeacherRef]:
    splits = make_splits(data, job.train)
    domains = data.domains
    members = [
        _Member(
            seed,
            f"seed {seed} domain {domain}",
            {"seed": str(seed), "domain": str(domain)},
            subset(data.valid, np.flatnonzero(data.valid.d == domain)),
            _hash("teacher", data, job.train, seed=seed, domain=domain),
        )
        for seed in seeds
        for domain in domains
    ]
    run_ids = _fit_and_log(
        job, "teacher", "teacher", data, members, make_distiller("ce", job.train.epochs),
        [teacher_stack_batch(splits.fit, domains, len(seeds))],
        teacher_stack_batch(splits.valid, domains, len(seeds)),
        _maybe(lambda split: teacher_stack_batch(split, domains, len(seeds)), splits.selection),
        {},
    )
    return {
        (member.seed, int(member.tags["domain"])): TeacherRef(run_id, member.config_hash)
        for member, run_id in zip(members, run_ids)
    }


def _train_students(job: Job, distill: DistillOptions, data: MultiDomainData, splits: Splits,
                    known: dict[tuple[int, int], TeacherRef], label: str) -> None:
    train_logits = _teacher_logits(known, data.train, job.seeds)
    valid_logits = _teacher_logits(known, data.valid, job.seeds)
    fit_logits = train_logits[:, splits.fit_index]
    if distill.step_order == "per-domain":
        train_batches = domain_batches(splits.fit, data.domains, fit_logits)
    else:
        train_batches = [shared_batch(splits.fit, fit_logits)]
    selection = None
    if splits.selection is not None:
        selection = shared_batch(splits.selection, train_logits[:, splits.selection_index])
    members = []
    for seed in job.seeds:
        refs = [known[(seed, domain)] for domain in data.domains]
        teacher_hashes = [ref.config_hash for ref in refs]
        members.append(_Member(
            seed,
            f"seed {seed}",
            {"seed": str(seed), "teacher_run_ids": ",".join(ref.run_id for ref in refs)},
            data.valid,
            _hash("student", data, job.train, seed=seed, distill=distill.params(), teachers=teacher_hashes),
        ))
    distiller = make_distiller(distill.method, job.train.epochs, distill.alpha, distill.temperature)
    _fit_and_log(job, "student", label, data, members, distiller, train_batches,
                 shared_batch(splits.valid, valid_logits), selection, distill.params())


def _fit_and_log(job: Job, task: str, label: str, data: MultiDomainData, members: list[_Member], distiller: Distiller,
                 train_batches: list[Batch], valid: Batch, selection: Batch | None, extra_params: dict[str, str]) -> list[str]:
    """Train the stack, log a child run per member and the parent's mean/std; the child run ids, in order."""
    model = StackedMLP(init_mlps(job.train.mlp(), [member.seed for member in members]))
    progress = Progress(f"{task} {data.name} ({len(members)} models)", job.train.epochs)
    result = train(model, distiller, train_batches, valid, job.train.epochs, job.train.optim, selection, progress)
    log_every = job.log_every or tracking.auto_log_every(job.train.epochs)
    run_ids, accuracies = [], []
    for index, member in enumerate(members):
        seed_run = _seed_run(job, task, label, data, model, result, index, member, extra_params)
        run_ids.append(tracking.log_seed_run(seed_run, log_every))
        accuracies.append(seed_run.summary["model_val_acc"])
    tracking.log_summary(_mean_std(accuracies))
    return run_ids


def _seed_run(job: Job, task: str, label: str, data: MultiDomainData, model: StackedMLP, result: TrainResult,
              index: int, member: _Member, extra_params: dict[str, str]) -> tracking.SeedRun:
    """A member's record. Accuracies are scored on the unstacked models, exactly as logged."""
    best_epoch = int(result.best_epoch[index])
    best, last = model.unstack(result.best, index), model.unstack(result.last, index)
    best_acc, final_acc = _accuracy(best, member.valid), _accuracy(last, member.valid)
    early = job.train.early_stopping
    history = pd.DataFrame({"epoch": np.arange(1, job.train.epochs + 1)})
    for name, values in result.history.items():
        history[name] = values[:, index] if values.ndim == 2 else values
    summary = {
        "best_epoch": best_epoch,
        "best_val_loss": float(result.history["val_loss"][best_epoch - 1, index]),
        "best_val_acc": best_acc,
        "final_val_acc": final_acc,
        "model_epoch": best_epoch if early else job.train.epochs,
        "model_val_acc": best_acc if early else final_acc,
    }
    tags = {**_tags(task, data, job, label), **member.tags, "config_hash": member.config_hash}
    params = {**job.train.params(), **best.config.to_params(), **extra_params, "data": job.data, **member.tags}
    params.pop("teacher_run_ids", None)
    return tracking.SeedRun(member.name, tags, params, history, summary, best if early else last, data.valid.x[:5])


def _teachers_of_run(run_id: str, data: MultiDomainData, seeds: tuple[int, ...]) -> dict[tuple[int, int], TeacherRef]:
    """The finished teachers under a `teachers` run, checked to cover every seed and domain needed."""
    parent = tracking.get_run(run_id)
    if tracking.tag(parent, "task") != "teachers":
        raise InputError(f"run {run_id}: is not a teachers run (its kdtrack.task is {tracking.tag(parent, 'task')!r})")
    if tracking.tag(parent, "data_sha256") != fingerprint(data):
        raise InputError(f"run {run_id}: its teachers were trained on other data than {data.name!r}")
    known = {}
    for child in tracking.child_runs(run_id):
        if child.info.status == "FINISHED":
            key = (int(tracking.tag(child, "seed")), int(tracking.tag(child, "domain")))
            known[key] = TeacherRef(child.info.run_id, tracking.tag(child, "config_hash"))
    absent = [f"seed {seed} domain {d}" for seed in seeds for d in data.domains if (seed, d) not in known]
    if absent:
        raise InputError(f"run {run_id}: has no finished teacher for {', '.join(absent)}")
    return known


def _finished_teachers(job: Job, data: MultiDomainData) -> dict[tuple[int, int], TeacherRef]:
    """Teachers of this exact configuration that already finished, in any experiment."""
    known = {}
    for seed in job.seeds:
        for domain in data.domains:
            digest = _hash("teacher", data, job.train, seed=seed, domain=domain)
            run = tracking.find_finished(digest)
            if run is not None:
                known[(seed, domain)] = TeacherRef(run.info.run_id, digest)
    return known


def _teacher_logits(known: dict[tuple[int, int], TeacherRef], split: Split, seeds: tuple[int, ...]) -> Tensor:
    """(seeds, N, C): each sample's logits from its in-domain teacher of each seed, computed once."""
    x, _ = tensors(split)
    logits = None
    for row, seed in enumerate(seeds):
        for domain in np.unique(split.d).tolist():
            teacher = tracking.load_mlp(known[(seed, domain)].run_id)
            rows = torch.from_numpy(split.d == domain)
            with torch.no_grad():
                out = teacher(x[rows])
            if logits is None:
                logits = torch.zeros(len(seeds), len(x), out.shape[1])
            logits[row, rows] = out
    return logits


def _accuracy(model: MLP, split: Split) -> float:
    x, y = tensors(split)
    with torch.no_grad():
        return int((model(x).argmax(dim=1) == y).sum()) / len(y)


def _mean_std(values: list[float]) -> dict[str, float]:
    summary = {"val_acc_mean": float(np.mean(values))}
    if len(values) > 1:
        summary["val_acc_std"] = float(np.std(values, ddof=1))
    return summary


def _tags(task: str, data: MultiDomainData, job: Job, label: str) -> dict[str, str]:
    return {
        "task": task,
        "dataset": data.name,
        "method": label,
        "selection": job.train.selection,
        "data_sha256": fingerprint(data),
    }


def _params(job: Job) -> dict[str, str]:
    log_every = job.log_every or tracking.auto_log_every(job.train.epochs)
    return {**job.train.params(), "data": job.data, "seeds": ",".join(map(str, job.seeds)), "log_every": str(log_every)}


def _hash(task: str, data: MultiDomainData, options: TrainOptions, **extra) -> str:
    return config_hash({"task": task, "data": fingerprint(data), "train": options.params(), **extra})


def _maybe(make, split: Split | None):
    return None if split is None else make(split)
