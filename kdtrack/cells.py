"""A cell: one configuration of one task on one dataset, over a set of seeds; the unit a study schedules.

A cell knows its inputs, its identity, the cells it depends on, and how to train and log itself. Identity
is computed here and nowhere else: `hash` names the configuration with every seed alike (what `compare`
groups by, carried by the cell's parent run), `model_hash(...)` one model of it (what a resumed study
looks for in the store). Both studies' cells derive from `Cell`; `kdtrack.scheduler` runs a graph of them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from concurrent.futures import Future
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, ClassVar, Protocol, TypeVar

import numpy as np

from . import tracking

T = TypeVar("T")
HASH_VERSION = 4
"""Part of every configuration hash: raise it when a change alters results, so nothing stale is reused."""


class Data(Protocol):
    name: str
    """The file stem: it names the runs and is their `kdtrack.dataset` tag."""
    source: str
    fingerprint: str


class Options(Protocol):
    selection: str

    def params(self) -> dict[str, str]: ...


@dataclass(frozen=True, kw_only=True)
class Cell(ABC):
    """`label` is the method name its runs carry (a study names its cells with it); `task` tags the
    cell's parent run and `member_task` each model's run."""

    task: ClassVar[str]
    member_task: ClassVar[str]
    shared: ClassVar[bool] = False
    """Whether a finished model of the same configuration counts whatever its label (teachers are shared
    by every student that needs them; two student methods of one configuration stay two rows)."""

    data: Data
    seeds: tuple[int, ...]
    train: Options
    label: str
    log_every: int = field(default=0, compare=False)
    device: str = field(default="cpu", compare=False)
    """Where the PyTorch step trains (kdtrack.engine.resolve_device): not part of the identity."""
    resume: bool = field(default=False, compare=False)
    """Whether the cell completes what the store lacks (a study's cells, and the cells a command depends
    on), rather than training anew what it is asked for (a command's own cell)."""

    # ---- identity ---------------------------------------------------------------------------------

    def identity(self) -> dict:
        """What determines the result besides the task, the data and the training options."""
        return {}

    @cached_property
    def hash(self) -> str:
        return config_hash({"version": HASH_VERSION, "task": self.task, "data": self.data.fingerprint,
                            "train": self.train.params(), **self.identity()})

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
        return f"{self.name} · seed {key['seed']}"

    def tags(self, task: str | None = None) -> dict[str, str]:
        """The parent run's tags (`task` overrides the run's kdtrack.task: a member's runs)."""
        return {"task": task or self.task, "dataset": self.data.name, "method": self.label,
                "selection": self.train.selection, "data_hash": self.data.fingerprint, "cell_hash": self.hash,
                "config_hash": self.hash}

    def model_tags(self, **key: int) -> dict[str, str]:
        return {**self.tags(self.member_task), **{name: str(value) for name, value in key.items()},
                "config_hash": self.model_hash(**key)}

    def params(self) -> dict[str, str]:
        """Every run's params: every option and the data (a parent run adds its seeds, a model its key)."""
        return {**self.train.params(), "data": self.data.source, "dataset": self.data.name, "method": self.label}

    def parent_params(self) -> dict[str, str]:
        return {**self.params(), "seeds": ",".join(map(str, self.seeds)), "log_every": str(self.metric_every)}

    @property
    def metric_every(self) -> int:
        return self.log_every or tracking.auto_log_every(self.epochs)

    @property
    def epochs(self) -> int:
        return self.train.epochs

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

    @abstractmethod
    def run(self) -> str:
        """Train the cell's models and log them under a parent run (nested in the active run, if any);
        the parent run's id."""


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
