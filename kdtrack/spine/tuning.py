"""Options chosen on the holdout: a tune cell trains every trial of a grid at its tune seeds and scores each on
the selection split; the cells it tunes train with the chosen values at every seed.

A trial's score is its models' mean accuracy on the selection split at their selected checkpoints, ties
broken by the lower mean cross-entropy there (losses of different settings do not compare). The tune run
records every trial as a nested run and every trial x seed in `trials.parquet`; its `best_{option}` metrics
are the choice, which a tuned cell reads and names (params `tuned`, `tuned_by`) on every run it logs.
"""
from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from .. import tracking
from ..errors import InputError
from .cells import Cell, mean_std

TUNED = "tuned"
"""What a study config writes in place of a value to have it tuned."""


@dataclass
class Trial:
    """One setting of a grid and its scores at each tune seed, on the selection split."""

    values: dict[str, float]
    selection_acc: list[float]
    selection_ce: list[float]

    @property
    def name(self) -> str:
        """`alpha 0.3 T 4`, `lr 0.05`: a trial's values, as its run is named."""
        short = {"temperature": "T"}
        return " ".join(f"{short.get(name, name)} {value:g}" for name, value in self.values.items())


@dataclass(frozen=True, kw_only=True)
class TuneCell(Cell):
    """Every trial of a grid at every seed of the cell (its tune seeds), scored on the selection split. All
    seeds score a trial together, so the cell is finished or not as a whole."""

    task = "tune"
    member_task = "tune-trial"
    shared = True

    def pending(self) -> TuneCell | None:
        return None if tracking.find_finished(self.hash) else dataclasses.replace(self, resume=True)

    @abstractmethod
    def score(self, trained: Iterable) -> list[Trial]:
        """Each trial's scores from what `train_models` trained."""

    def log(self, trained: Iterable) -> None:
        """A nested run per trial with its scores, the table of every trial x seed, and the chosen trial's
        values as the cell's `best_{option}` metrics."""
        trials = self.score(trained)
        for index, trial in enumerate(trials):
            tags = {**self.tags(self.member_task), "trial": str(index), "config_hash": self.model_hash(trial=index)}
            tracking.log_trial(f"{trial.name} · {self.name}", tags, {name: str(value) for name, value in trial.values.items()},
                               {**mean_std("selection_acc", trial.selection_acc), **mean_std("selection_ce", trial.selection_ce)})
        tracking.log_table(trials_table(trials, self.seeds), tracking.TRIALS_PATH)
        best = trials[choose(trials)]
        tracking.log_summary({**{f"best_{name}": value for name, value in best.values.items()},
                              "best_selection_acc": float(np.mean(best.selection_acc))})

    def parent_params(self) -> dict[str, str]:
        return {**super().parent_params(), "tuned_options": ",".join(self.tuned_options)}

    @property
    @abstractmethod
    def tuned_options(self) -> tuple[str, ...]:
        """The options the grid searches."""

    @property
    @abstractmethod
    def trial_count(self) -> int:
        """How many trials the grid holds."""

    @property
    def work(self) -> int:
        """A model per trial and seed."""
        return super().work * self.trial_count


def choose(trials: list[Trial]) -> int:
    """The index of the trial with the highest mean selection accuracy, ties to the lower cross-entropy."""
    return max(range(len(trials)), key=lambda i: (np.mean(trials[i].selection_acc), -np.mean(trials[i].selection_ce)))


def trials_table(trials: list[Trial], seeds: tuple[int, ...]) -> pd.DataFrame:
    """A row per trial and seed: the trial's index and values, the seed, its selection accuracy and
    cross-entropy."""
    return pd.DataFrame([{"trial": index, **trial.values, "seed": seed, "selection_acc": acc, "selection_ce": ce}
                         for index, trial in enumerate(trials)
                         for seed, acc, ce in zip(seeds, trial.selection_acc, trial.selection_ce)])


@dataclass(frozen=True, kw_only=True)
class TunedCell(Cell):
    """A cell some of whose options (`tuned`) the tune cell `tuned_by` chooses. Its identity names that
    tune cell in their place, so it is known before the tuning runs; its runs carry the chosen values."""

    tuned_by: TuneCell | None = None
    tuned: tuple[str, ...] = ()

    def identity(self) -> dict:
        identity = super().identity()
        for section in identity.values():
            if isinstance(section, dict):
                section.update({name: f"tuned by {self.tuned_by.hash}" for name in self.tuned if name in section})
        return identity

    def dependencies(self) -> tuple[Cell, ...]:
        return super().dependencies() + ((self.tuned_by,) if self.tuned_by else ())

    @cached_property
    def tune_run_id(self) -> str:
        """The finished run of the tune cell, once it has finished."""
        return tracking.find_finished(self.tuned_by.hash).info.run_id

    @cached_property
    def chosen(self) -> dict[str, float]:
        """The tuned options' values, once the tune cell has finished."""
        if not self.tuned:
            return {}
        values = tuned_values(self.tune_run_id)
        return {name: values[name] for name in self.tuned}

    def resolve(self, options):
        """`options` with the chosen values of the tuned options it has."""
        names = {field.name for field in dataclasses.fields(options)}
        return dataclasses.replace(options, **{name: value for name, value in self.chosen.items() if name in names})

    def params(self) -> dict[str, str]:
        tuned = {"tuned": ",".join(self.tuned), "tuned_by": self.tune_run_id} if self.tuned else {}
        return {**super().params(), **self.resolve(self.train).params(), **tuned}


def tuned_values(run_id: str, data_hash: str | None = None, **expected: str) -> dict[str, float]:
    """The values a finished tune run chose, by option, checked to be of the data `data_hash` and to have
    the `expected` params if given (an InputError otherwise)."""
    run = tracking.get_run(run_id)
    metrics, params = run.data.metrics, run.data.params
    if tracking.tag(run, "task") != "tune" or "best_selection_acc" not in metrics or run.info.status != "FINISHED":
        raise InputError(f"run {run_id}: is not a finished tune run")
    if data_hash is not None and tracking.tag(run, "data_hash") != data_hash:
        raise InputError(f"run {run_id}: was tuned on other data")
    for name, value in expected.items():
        if params.get(name) != value:
            raise InputError(f"run {run_id}: its {name} is {params.get(name)}, not {value}")
    return {name: metrics[f"best_{name}"] for name in params["tuned_options"].split(",")}
