"""A cell: one configuration of one task on one dataset, over a set of seeds; the unit a study schedules.

A cell knows its inputs, its identity, the cells it depends on, and how to train and log itself. Identity
is computed here and nowhere else: `hash` names the configuration with every seed alike (what `compare`
groups by, carried by the cell's parent run), `model_hash(...)` one model of it (what a resumed study
looks for in the store). Every study's cells derive from `Cell`, and `run` is theirs alike: a parent run,
a run per model with the record every model's run carries (`record`), the cell's summary and curves. A
study's cell says only how it trains its models (`train_models`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, ClassVar, Protocol, TypeVar

import numpy as np
import pandas as pd
from torch import Tensor, nn

from .. import tracking
from ..compare import figures
from ..engine import Stopwatch, TrainResult
from ..engine.distributed import barrier, is_main_process
from .options import TrainOptions
from .scoring import accuracy, latency_ms, parameter_count

T = TypeVar("T")
HASH_VERSION = 5
"""Part of every configuration hash: raise it when a change alters results, so nothing stale is reused."""


class Data(Protocol):
    name: str
    """The file stem (or the dataset's name): it names the runs and is their `kdtrack.dataset` tag."""
    source: str
    fingerprint: str


@dataclass(frozen=True)
class Resources:
    """What a cell needs of a machine to train: an executor that places cells (Ray) asks for it."""

    cpus: int = 1
    gpus: int = 0
    """A GPU (CUDA_VISIBLE_DEVICES) per process of the cell: one, or a DDP cell's world size."""


@dataclass
class ModelRecord:
    """One trained model of a cell: its key (seed, and domain for a teacher) and everything its run logs."""

    key: dict[str, int]
    run: tracking.SeedRun


@dataclass(frozen=True, kw_only=True)
class Cell(ABC):
    """`label` is the method name its runs carry (a study names its cells with it); `task` tags the
    cell's parent run and `member_task` each model's run."""

    task: ClassVar[str]
    member_task: ClassVar[str]
    shared: ClassVar[bool] = False
    """Whether a finished model of the same configuration counts whatever its label (teachers are shared
    by every student that needs them; two student methods of one configuration stay two rows)."""
    default_select_on: ClassVar[str] = "objective"
    """What selects this role's checkpoints when its options leave `select_on` out."""

    data: Data
    seeds: tuple[int, ...]
    train: TrainOptions
    label: str
    log_every: int = field(default=0, compare=False)
    device: str = field(default="cpu", compare=False)
    """Where the PyTorch step trains (kdtrack.engine.resolve_device): not part of the identity."""
    resume: bool = field(default=False, compare=False)
    """Whether the cell completes what the store lacks (a study's cells, and the cells a command depends
    on), rather than training anew what it is asked for (a command's own cell)."""

    def __post_init__(self):
        if self.train.select_on is None:
            object.__setattr__(self, "train", dataclasses.replace(self.train, select_on=self.default_select_on))

    def __getstate__(self) -> dict:
        """A cell crosses to another process (a worker, a machine of a cluster) as its fields alone: what it
        caches (its hash, a network cell's splits and tensors) is computed again where it runs."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def resources(self) -> Resources:
        """One CPU, and a GPU when the cell trains on CUDA."""
        return Resources(gpus=1 if self.device.startswith("cuda") else 0)

    # ---- identity ---------------------------------------------------------------------------------

    def identity(self) -> dict:
        """What determines the result besides the task and the data: the training options, and what a
        subclass adds."""
        return {"train": self.train.params()}

    @cached_property
    def hash(self) -> str:
        return config_hash({"version": HASH_VERSION, "task": self.task, "data": self.data.fingerprint, **self.identity()})

    @property
    def key(self) -> tuple[str, str]:
        """What a graph runs once: the configuration, under its label unless its models are `shared`."""
        return self.hash, "" if self.shared else self.label

    def model_keys(self, seed: int) -> list[dict[str, int]]:
        """The models the cell trains for `seed` (teachers: one per domain)."""
        return [{"seed": seed}]

    def model_hash(self, **key: int) -> str:
        return config_hash({"cell": self.hash, **key})

    # ---- what a run carries -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"{self.label} · {self.data.name}"

    def model_name(self, **key: int) -> str:
        """What differs between a cell's models first, so that a run list's narrow column shows it."""
        return f"seed {key['seed']} · {self.name}"

    def tags(self, task: str | None = None) -> dict[str, str]:
        """The parent run's tags (`task` overrides the run's kdtrack.task: a member's runs)."""
        return {"task": task or self.task, "dataset": self.data.name, "method": self.label,
                "selection": self.train.selection, "data_hash": self.data.fingerprint, "cell_hash": self.hash,
                "config_hash": self.hash}

    def model_tags(self, **key: int) -> dict[str, str]:
        return {**self.tags(self.member_task), **{name: str(value) for name, value in key.items()},
                "config_hash": self.model_hash(**key)}

    def params(self) -> dict[str, str]:
        """Every run's params: every option and the data (a parent run adds its seeds, a model its key).
        `method` is the label a study gives the cell, what a user groups runs by."""
        return {**self.train.params(), "data": self.data.source, "dataset": self.data.name, "method": self.label}

    def parent_params(self) -> dict[str, str]:
        return {**self.params(), "seeds": ",".join(map(str, self.seeds)), "log_every": str(self.metric_every)}

    @property
    def metric_every(self) -> int:
        return self.log_every or tracking.auto_log_every(self.epochs)

    @property
    def epochs(self) -> int:
        return self.train.epochs

    @property
    def work(self) -> int:
        """Epochs x models: what a study's estimate of the time it has left weighs the cell by."""
        return self.epochs * sum(len(self.model_keys(seed)) for seed in self.seeds)

    # ---- the graph ----------------------------------------------------------------------------------

    def dependencies(self) -> tuple[Cell, ...]:
        """The cells that must have finished before this one runs."""
        return ()

    def finished_runs(self) -> dict[str, str]:
        """The newest FINISHED run of each model of this configuration in the store, by model hash (one
        look-up for the whole cell)."""
        wanted = {self.model_hash(**key) for seed in self.seeds for key in self.model_keys(seed)}
        found = tracking.finished_models(self.hash, method=None if self.shared else self.label)
        return {digest: run_id for digest, run_id in found.items() if digest in wanted}

    def pending(self) -> Cell | None:
        """This cell less the seeds whose every model has FINISHED before, to resume; None when nothing is
        left."""
        done = self.finished_runs()
        seeds = tuple(seed for seed in self.seeds
                      if any(self.model_hash(**key) not in done for key in self.model_keys(seed)))
        if not seeds:
            return None
        return dataclasses.replace(self, seeds=seeds, resume=True)

    def logged_elsewhere(self) -> set[str]:
        """The model hashes that a resuming cell finds FINISHED already, so that it logs no second run of
        them: a teacher of a seed that a killed study had half logged, or one that a process running the
        same study beside this one logged while this one trained."""
        return set(self.finished_runs()) if self.resume else set()

    def with_seeds(self, seeds: tuple[int, ...]) -> Cell:
        return dataclasses.replace(self, seeds=seeds)

    # ---- training and logging -----------------------------------------------------------------------

    def run(self) -> str | None:
        """Train the cell's models and log each as a run under the cell's parent run (nested in the active
        run, if any), then the cell's summary; the parent run's id. Under torchrun only the first process
        logs: the others train alike and return None."""
        started, started_cpu = time.monotonic(), time.process_time()
        engine = Stopwatch()
        trained = self.train_models(engine)
        if not is_main_process():
            for _ in trained:
                pass
            barrier()
            return None
        with tracking.parent_run(self.name, self.tags(), self.parent_params()) as parent_id:
            tracking.prepare_model_logging()
            self.log(trained)
            tracking.log_summary({"train_cpu_seconds": engine.cpu_seconds, "train_seconds": engine.seconds,
                                  "cell_cpu_seconds": time.process_time() - started_cpu,
                                  "cell_seconds": time.monotonic() - started})
        barrier()
        return parent_id

    @abstractmethod
    def train_models(self, engine: Stopwatch) -> Iterable:
        """Train the cell's models, timing the engine's work with `engine`; what `log` logs (by default the
        ModelRecord of each model). Training may start before the parent run opens and go on while the
        models it has finished are logged."""

    def log(self, trained: Iterable[ModelRecord]) -> None:
        """A child run per model (but those a resumed cell finds logged already), the mean and std of their
        accuracies, and the cell's curves."""
        accuracies, curves, elsewhere = [], {}, self.logged_elsewhere()
        for record in trained:
            if self.model_hash(**record.key) not in elsewhere:
                tracking.log_seed_run(record.run, self.metric_every)
            accuracies.append(record.run.summary["model_val_acc"])
            curves.setdefault(self.curve_group(record.key), []).append(record.run.history)
        tracking.log_summary(mean_std("val_acc", accuracies))
        tracking.log_figure(figures.curves({self.data.name: curves}, f"{self.name}: mean ± std over seeds"), "curves.png")

    def curve_group(self, key: dict[str, int]) -> str:
        """Which line of the cell's curves a model's history joins."""
        return self.label

    def model_epoch(self, best_epoch: int) -> int:
        """The epoch of the checkpoint a model's run logs: the selected one."""
        return best_epoch

    def record(self, key: dict[str, int], result: TrainResult, index: int, model: nn.Module,
               valid: tuple[Tensor, Tensor], inputs: dict[str, tracking.DataInput], tags: dict[str, str] | None = None,
               params: dict[str, str] | None = None) -> ModelRecord:
        """Model `index` of `result` as its run: the cell's tags and params with the model's key, its
        architecture, its history, and the summary every model's run carries. Its accuracy, size and
        latency are the logged model's, measured on the CPU on `valid` (the split it is scored on)."""
        model = model.cpu().eval()
        history = history_frame(result, index)
        best_epoch = int(result.best_epoch[index])
        summary = {**summary_metrics(history, best_epoch, self.model_epoch(best_epoch), len(valid[1])),
                   "model_val_acc": accuracy(model, *valid), "model_parameters": parameter_count(model),
                   "latency_ms_per_image": latency_ms(model, valid[0][:1])}
        run_tags = {**self.model_tags(**key), "engine": result.engine, "device": self.device, **(tags or {})}
        run_params = {**self.params(), **model.config.to_params(), **{name: str(value) for name, value in key.items()},
                      **(params or {})}
        run = tracking.SeedRun(self.model_name(**key), run_tags, run_params, history, summary, model,
                               valid[0][:5].numpy(), inputs)
        return ModelRecord(key, run)


def history_frame(result: TrainResult, index: int) -> pd.DataFrame:
    """Model `index`'s per-epoch history, a row per epoch from 1; the method's scheduled values too."""
    epochs = len(result.history["val_loss"])
    history = pd.DataFrame({"epoch": np.arange(1, epochs + 1)})
    for name, values in result.history.items():
        history[name] = values[:, index] if values.ndim == 2 else values
    return history


def summary_metrics(history: pd.DataFrame, best_epoch: int, model_epoch: int, n_valid: int) -> dict[str, float]:
    """What every model's run summarises of its history: the selected epoch and its validation loss and
    accuracy (`best_*`: the selected checkpoint's, not the highest), the last epoch's accuracy, and the
    epoch of the logged model. The history's accuracies are float32 shares of `n_valid` samples; the summary
    gives them exactly, as the nearest count over `n_valid`."""
    def exact(share: float) -> float:
        return round(share * n_valid) / n_valid

    at_best = history.iloc[best_epoch - 1] if best_epoch else None
    return {"best_epoch": best_epoch,
            "best_val_loss": float(at_best["val_loss"]) if at_best is not None else math.nan,
            "best_val_acc": exact(at_best["val_acc"]) if at_best is not None else math.nan,
            "final_val_acc": exact(history["val_acc"].iloc[-1]),
            "model_epoch": model_epoch}


def config_hash(payload: dict) -> str:
    """A short stable id of everything that determines a result."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mean_std(name: str, values: list[float]) -> dict[str, float]:
    """A parent run's summary of its models: `{name}_mean` and, with two or more values, the sample std
    `{name}_std` (ddof=1)."""
    summary = {f"{name}_mean": float(np.mean(values))}
    if len(values) > 1:
        summary[f"{name}_std"] = float(np.std(values, ddof=1))
    return summary


def in_background(work: Callable[[], T]) -> Future[T]:
    """Run `work` in a daemon thread (an interrupted command does not wait for it); its future result."""
    future: Future[T] = Future()

    def target() -> None:
        try:
            future.set_result(work())
        except BaseException as error:  # the waiting thread re-raises it
            future.set_exception(error)

    threading.Thread(target=target, daemon=True).start()
    return future
