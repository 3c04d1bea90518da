"""What every multi-domain task shares: the job, training a stack, logging its members, tags and hashes."""
from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .. import tracking
from ..data.multidomain import MultiDomainData, Split
from ..distillers import Distiller
from ..engine import Batch, TrainResult, train
from ..errors import InputError
from ..models.mlp import MLP, StackedMLP, init_mlps
from ..progress import Progress
from .inputs import fingerprint, tensors
from .options import TrainOptions, config_hash

HASH_VERSION = 3
"""Part of every configuration hash: raise it when a change alters results, so nothing stale is reused."""


@dataclass(frozen=True)
class Job:
    """What every task is given. `label` is the method name its runs are tagged with (a study names its
    cells with it). With `skip_finished`, seeds that already have a FINISHED run of the same configuration
    and label are left out, so that an interrupted study resumes where it stopped."""

    data: str
    seeds: tuple[int, ...]
    train: TrainOptions = field(default_factory=TrainOptions)
    experiment: str | None = None
    log_every: int = 0
    label: str | None = None
    skip_finished: bool = False

    def __post_init__(self):
        if self.log_every < 0:
            raise InputError(f"log-every must be 0 (auto) or positive, got {self.log_every}")

    @property
    def metric_every(self) -> int:
        """`log_every`, or the automatic thinning for 0."""
        return self.log_every or tracking.auto_log_every(self.train.epochs)


@dataclass
class Member:
    """One model of a stack: its seed, tags and params of its own, the split its accuracy is scored on."""

    seed: int
    name: str
    tags: dict[str, str]
    params: dict[str, str]
    valid: Split


def fit(job: Job, task: str, data: MultiDomainData, seeds: list[int], distiller: Distiller,
        train_batches: list[Batch], valid: Batch, selection: Batch | None) -> tuple[StackedMLP, TrainResult]:
    """Train a stack of fresh MLPs, one per entry of `seeds`, with a progress line on stderr."""
    model = StackedMLP(init_mlps(job.train.mlp(), seeds))
    progress = Progress(f"{task} {data.name} ({len(seeds)} models)", job.train.epochs)
    return model, train(model, distiller, train_batches, valid, job.train.epochs, job.train.optim, selection, progress)


def fit_and_log(job: Job, task: str, label: str, data: MultiDomainData, members: list[Member], distiller: Distiller,
                train_batches: list[Batch], valid: Batch, selection: Batch | None, extra_params: dict[str, str]) -> list[str]:
    """Train the stack, log a child run per member and the parent's mean/std; the child run ids, in order."""
    model, result = fit(job, task, data, [member.seed for member in members], distiller, train_batches, valid, selection)
    run_ids, accuracies = [], []
    for index, member in enumerate(members):
        seed_run = _seed_run(job, task, label, data, model, result, index, member, extra_params)
        run_ids.append(tracking.log_seed_run(seed_run, job.metric_every))
        accuracies.append(seed_run.summary["model_val_acc"])
    tracking.log_summary(mean_std("val_acc", accuracies))
    return run_ids


def selected(job: Job, model: StackedMLP, result: TrainResult, index: int) -> MLP:
    """Member `index`'s logged model: its best checkpoint under early stopping, else its last."""
    return model.unstack(result.best if job.train.early_stopping else result.last, index)


def _seed_run(job: Job, task: str, label: str, data: MultiDomainData, model: StackedMLP, result: TrainResult,
              index: int, member: Member, extra_params: dict[str, str]) -> tracking.SeedRun:
    """A member's record. Accuracies are scored on the unstacked models, exactly as logged."""
    best_epoch = int(result.best_epoch[index])
    best, last = model.unstack(result.best, index), model.unstack(result.last, index)
    best_acc, final_acc = accuracy(best, member.valid), accuracy(last, member.valid)
    early = job.train.early_stopping
    history = pd.DataFrame({"epoch": np.arange(1, job.train.epochs + 1)})
    for name, values in result.history.items():
        history[name] = values[:, index] if values.ndim == 2 else values
    summary = {
        "best_epoch": best_epoch,
        "best_val_loss": float(result.history["val_loss"][best_epoch - 1, index]) if best_epoch else math.nan,
        "best_val_acc": best_acc,
        "final_val_acc": final_acc,
        "model_epoch": best_epoch if early else job.train.epochs,
        "model_val_acc": best_acc if early else final_acc,
    }
    tags = {**run_tags(task, data, job, label), **member.tags}
    params = {**job.train.params(), **best.config.to_params(), **extra_params, "data": job.data, **member.params}
    return tracking.SeedRun(member.name, tags, params, history, summary, best if early else last, data.valid.x[:5])


def accuracy(model: MLP, split: Split) -> float:
    x, y = tensors(split)
    with torch.no_grad():
        return int((model(x).argmax(dim=1) == y).sum()) / len(y)


def mean_std(name: str, values: list[float]) -> dict[str, float]:
    """`{name}_mean` and, with two or more values, the sample std `{name}_std` (ddof=1)."""
    summary = {f"{name}_mean": float(np.mean(values))}
    if len(values) > 1:
        summary[f"{name}_std"] = float(np.std(values, ddof=1))
    return summary


def run_tags(task: str, data: MultiDomainData, job: Job, label: str) -> dict[str, str]:
    return {"task": task, "dataset": data.name, "method": label, "selection": job.train.selection,
            "data_hash": fingerprint(data)}


def cell_tags(task: str, data: MultiDomainData, job: Job, label: str, cell: str) -> dict[str, str]:
    """A parent run's tags: its cell's hash stands for its configuration."""
    return {**run_tags(task, data, job, label), "cell_hash": cell, "config_hash": cell}


def run_params(job: Job) -> dict[str, str]:
    return {**job.train.params(), "data": job.data, "seeds": ",".join(map(str, job.seeds)),
            "log_every": str(job.metric_every)}


def cell_hash(task: str, data: MultiDomainData, options: TrainOptions, **extra) -> str:
    """The configuration of a cell, all seeds alike: what `compare` groups by."""
    return config_hash({"version": HASH_VERSION, "task": task, "data": fingerprint(data), "train": options.params(),
                        **extra})


def seed_hash(cell: str, seed: int, **extra) -> str:
    """One model's configuration: its cell's, and its seed (and domain, for a teacher)."""
    return config_hash({"cell": cell, "seed": seed, **extra})


def hash_tags(cell: str, seed: int, **extra) -> dict[str, str]:
    return {"cell_hash": cell, "config_hash": seed_hash(cell, seed, **extra)}


def pending_job(job: Job, data: MultiDomainData, label: str, hash_of: Callable[[int], str]) -> Job | None:
    """Under `skip_finished`, the job less the seeds whose configuration (`hash_of(seed)`) already has a
    FINISHED run labelled `label`; None when none is left. Otherwise the job itself."""
    if not job.skip_finished:
        return job
    seeds = tuple(seed for seed in job.seeds if tracking.find_finished(hash_of(seed), method=label) is None)
    if not seeds:
        print(f"{label} {data.name}: every seed already has a FINISHED run, skipped", file=sys.stderr, flush=True)
        return None
    return dataclasses.replace(job, seeds=seeds)
