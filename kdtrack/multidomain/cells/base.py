"""What the multi-domain cells share: their data and options, training a stack of MLPs, and logging a run
per model of the stack."""
from __future__ import annotations

import math
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from ... import tracking
from ...cells import Cell, in_background, mean_std
from ...compare import figures
from ...distillers import Distiller
from ...engine import Batch, TrainResult, train
from ...models.mlp import MLP, StackedMLP, init_mlps
from ...progress import Progress
from ..batches import tensors
from ..data import MultiDomainData, Split, split_fingerprint
from ..options import TrainOptions
from ..splits import Splits, domain_subset, make_splits


@dataclass(frozen=True, kw_only=True)
class MLPCell(Cell):
    """A cell of MLPs on multi-domain data. Making one checks its inputs, so a bad holdout is an error
    before any run opens."""

    data: MultiDomainData
    train: TrainOptions

    def __post_init__(self):
        self.splits  # noqa: B018 (checks the selection split)

    @cached_property
    def splits(self) -> Splits:
        return make_splits(self.data, self.train)

    def member(self, seed: int, domain: int | None = None, **tags: str) -> Member:
        """A model of the stack, on every domain, or on `domain` alone."""
        splits = [self.splits.fit, self.splits.selection, self.splits.valid]
        if domain is None:
            return Member({"seed": seed}, *splits, tags=tags)
        own = [None if split is None else domain_subset(split, domain) for split in splits]
        return Member({"seed": seed, "domain": domain}, *own, tags=tags)

    def run(self) -> str:
        """Train in a thread while the parent run opens and the model exporter warms up (the native step
        leaves the interpreter free); then log."""
        started, started_cpu = time.monotonic(), time.process_time()
        training = in_background(self.train_stack)
        with tracking.parent_run(self.name, self.tags(), self.parent_params()) as parent_id:
            tracking.prepare_model_logging()
            trained = training.result()
            self.log(trained)
            tracking.log_summary({"train_cpu_seconds": trained.train_cpu_seconds, "train_seconds": trained.train_seconds,
                                  "cell_cpu_seconds": time.process_time() - started_cpu,
                                  "cell_seconds": time.monotonic() - started})
        return parent_id

    @abstractmethod
    def stack(self) -> Stack:
        """What the cell trains: its models, their objective and their batches."""

    def train_stack(self) -> Trained:
        stack = self.stack()
        started, started_cpu = time.monotonic(), time.thread_time()
        model, result = fit(self, [member.key["seed"] for member in stack.members], stack.distiller,
                            stack.train_batches, stack.valid, stack.selection)
        return Trained(stack.members, model, result, time.thread_time() - started_cpu, time.monotonic() - started)

    def log(self, trained: Trained) -> None:
        """A child run per model, the parent's mean and std of their accuracies, and the cell's curves."""
        accuracies, curves, elsewhere = [], {}, self.logged_elsewhere()
        for index, member in enumerate(trained.members):
            seed_run = _seed_run(self, trained.model, trained.result, index, member)
            if self.model_hash(**member.key) not in elsewhere:
                tracking.log_seed_run(seed_run, self.metric_every)
            accuracies.append(seed_run.summary["model_val_acc"])
            group = f"domain {member.key['domain']}" if "domain" in member.key else self.label
            curves.setdefault(group, []).append(seed_run.history)
        tracking.log_summary(mean_std("val_acc", accuracies))
        tracking.log_figure(figures.curves({self.data.name: curves}, f"{self.name}: mean ± std over seeds"), "curves.png")


@dataclass
class Member:
    """One model of a stack: its key (seed, and domain for a teacher), the data it trains and selects on,
    the split its accuracy is scored on, and tags of its own beyond the cell's."""

    key: dict[str, int]
    fit: Split
    selection: Split | None
    valid: Split
    tags: dict[str, str] = field(default_factory=dict)

    def inputs(self, data: MultiDomainData) -> dict[str, tracking.DataInput]:
        """What it saw, for MLflow's dataset tracking, by context."""
        name = data.name if "domain" not in self.key else f"{data.name} domain {self.key['domain']}"
        splits = {"training": self.fit, "selection": self.selection, "validation": self.valid}
        return {context: tracking.DataInput(split.x, split.y, data.source, name, split_fingerprint(split))
                for context, split in splits.items() if split is not None}


@dataclass
class Stack:
    """One stack to train: model m is members[m] (its seed initialises it), on row m of the batches."""

    members: list[Member]
    distiller: Distiller
    train_batches: list[Batch]
    valid: Batch
    selection: Batch | None


@dataclass
class Trained:
    members: list[Member]
    model: StackedMLP
    result: TrainResult
    train_cpu_seconds: float
    """The training thread's CPU time in the engine: what is not tracking."""
    train_seconds: float
    """The same in wall time."""


def fit(cell: MLPCell, seeds: list[int], distiller: Distiller, train_batches: list[Batch], valid: Batch,
        selection: Batch | None) -> tuple[StackedMLP, TrainResult]:
    """Train a stack of fresh MLPs, one per entry of `seeds`, with a progress line on stderr."""
    model = StackedMLP(init_mlps(cell.train.mlp(), seeds))
    progress = Progress(f"{cell.name} ({len(seeds)} models)", cell.epochs)
    return model, train(model, distiller, train_batches, valid, cell.epochs, cell.train.optim, selection, progress,
                        cell.train.select_on, cell.device)


def selected(cell: MLPCell, model: StackedMLP, result: TrainResult, index: int) -> MLP:
    """Member `index`'s logged model: its best checkpoint under early stopping, else its last."""
    return model.unstack(result.best if cell.train.early_stopping else result.last, index)


def _seed_run(cell: MLPCell, model: StackedMLP, result: TrainResult, index: int, member: Member) -> tracking.SeedRun:
    """A member's record. Accuracies are scored on the unstacked models, exactly as logged."""
    epochs, early = cell.epochs, cell.train.early_stopping
    best_epoch = int(result.best_epoch[index])
    best, last = model.unstack(result.best, index), model.unstack(result.last, index)
    best_acc, final_acc = accuracy(best, member.valid), accuracy(last, member.valid)
    history = pd.DataFrame({"epoch": np.arange(1, epochs + 1)})
    for name, values in result.history.items():
        history[name] = values[:, index] if values.ndim == 2 else values
    summary = {
        "best_epoch": best_epoch,
        "best_val_loss": float(result.history["val_loss"][best_epoch - 1, index]) if best_epoch else math.nan,
        "best_val_acc": best_acc,
        "final_val_acc": final_acc,
        "model_epoch": best_epoch if early else epochs,
        "model_val_acc": best_acc if early else final_acc,
    }
    key = member.key
    tags = {**cell.model_tags(**key), **member.tags, "engine": result.engine, "device": cell.device}
    params = {**cell.params(), **best.config.to_params(), **{name: str(value) for name, value in key.items()}}
    return tracking.SeedRun(cell.model_name(**key), tags, params, history, summary, best if early else last,
                            cell.data.valid.x[:5], member.inputs(cell.data))


def accuracy(model: MLP, split: Split) -> float:
    x, y = tensors(split)
    with torch.no_grad():
        return int((model(x).argmax(dim=1) == y).sum()) / len(y)
