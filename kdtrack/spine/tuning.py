"""Options chosen on the holdout: a tune cell trains every trial of a grid at its tune seeds and scores each on
the selection split; the cells it tunes train with the chosen values at every seed.

A trial's score is its models' mean accuracy on the selection split at their selected checkpoints, ties
broken by the lower mean cross-entropy there (losses of different settings do not compare). The tune run
records every trial as a nested run and every trial x seed in `trials.parquet`; its `best_{option}` metrics
are the choice, which a tuned cell reads and names (params `tuned`, `tuned_by`) on every run it logs.

Which trial is the choice is the cell's `rule` (a param, `tune_rule`, and part of its hash). `best` keeps
the trial of best score. On a holdout of a few hundred samples that maximum is noisy, and a distilled
setting may beat alpha = 0 (the labels alone) by chance, so the other rules keep the simplest trial (the
lowest value of each option in the cell's `simplicity` order: alpha 0 first, then the lowest alpha, then
the lowest temperature) within one standard error of the best: the one-standard-error rule of Breiman et
al. (CART, 1984) applied to the grid, as `accuracy-1se` is to checkpoints. They differ in the error:

- `simplest-1se`: that of the best accuracy itself, sqrt(a (1 - a) / n) on the n selection samples: how
  much the best trial's score would move on another holdout.
- `simplest-paired-1se`: that of each trial's gap to the best, from the two trials' hits on the same
  samples (the seeds' mean per sample, its sample std over the n samples / sqrt(n)). Two settings that
  agree on most samples differ by far less noise than either accuracy carries, so a distilled setting
  that wins consistently is kept where the unpaired error would hide it.

Both need each trial's hits sample by sample (`Trial.hits`) and a simplicity order: a cell that has
neither (the image study's learning rates, where no rate is the simpler) keeps the best.
"""
from __future__ import annotations

import dataclasses
import math
from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import pandas as pd

from .. import tracking
from ..errors import InputError
from .cells import Cell, mean_std

TUNED = "tuned"
"""What a study config writes in place of a value to have it tuned."""
TUNE_RULES = ("best", "simplest-1se", "simplest-paired-1se")
DEFAULT_TUNE_RULE = "best"
"""Measured (docs/verdict.md): on ten datasets, five seeds, kd-mixture gained 0.41 points on the baseline
under `best`, and lost 0.58 of them under `simplest-1se` (p 0.007) and 0.35 under `simplest-paired-1se`.
The simpler choice, alpha = 0, is not the baseline: its student keeps a checkpoint by accuracy
(`accuracy-1se`), which where domains overlap most keeps later, worse ones than the baseline's cross-entropy
does, and the teachers' mixture is what spared the distilled students that."""


@dataclass
class Trial:
    """One setting of a grid and its scores at each tune seed, on the selection split."""

    values: dict[str, float]
    selection_acc: list[float]
    selection_ce: list[float]
    hits: np.ndarray | None = None
    """Where the cell scores sample by sample: its models' hits on the selection split, seeds x samples (1
    right, 0 wrong), what the simpler rules measure noise by."""

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.selection_acc))

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
    simplicity: ClassVar[tuple[str, ...]] = ()
    """The options in the order in which a lower value makes a trial simpler; none: only `best` applies."""

    rule: str = DEFAULT_TUNE_RULE

    def __post_init__(self):
        super().__post_init__()
        check_rule(self.rule)
        if self.rule != "best" and not self.simplicity:
            raise InputError(f"tune rule {self.rule}: {self.label} has no simpler trial to prefer; its rule is best")

    def identity(self) -> dict:
        return {**super().identity(), "rule": self.rule}

    def pending(self) -> TuneCell | None:
        return None if tracking.find_finished(self.hash) else dataclasses.replace(self, resume=True)

    @abstractmethod
    def score(self, trained: Iterable) -> list[Trial]:
        """Each trial's scores from what `train_models` trained."""

    def log(self, trained: Iterable) -> None:
        """A nested run per trial with its scores (and, scored sample by sample, the standard error of its
        gap to the best trial, `selection_gap_se`), the table of every trial x seed; on the cell's run, the
        values of the trial the rule keeps (`best_{option}`) and its score (`best_selection_acc`), and the
        best trial's score (`top_selection_acc`, with its standard error `top_selection_acc_se`)."""
        trials = self.score(trained)
        top = trials[best(trials)]
        for index, trial in enumerate(trials):
            tags = {**self.tags(self.member_task), "trial": str(index), "config_hash": self.model_hash(trial=index)}
            gap = {} if top.hits is None else {"selection_gap_se": gap_standard_error(trial.hits, top.hits)}
            tracking.log_trial(f"{trial.name} · {self.name}", tags, {name: str(value) for name, value in trial.values.items()},
                               {**mean_std("selection_acc", trial.selection_acc), **mean_std("selection_ce", trial.selection_ce),
                                **gap})
        tracking.log_table(trials_table(trials, self.seeds), tracking.TRIALS_PATH)
        kept = trials[choose(trials, self.rule, self.simplicity)]
        noise = {} if top.hits is None else {"top_selection_acc_se": standard_error(top.accuracy, top.hits.shape[1])}
        tracking.log_summary({**{f"best_{name}": value for name, value in kept.values.items()},
                              "best_selection_acc": kept.accuracy, "top_selection_acc": top.accuracy, **noise})

    def parent_params(self) -> dict[str, str]:
        return {**super().parent_params(), "tuned_options": ",".join(self.tuned_options), "tune_rule": self.rule}

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


def check_rule(rule: str) -> None:
    if rule not in TUNE_RULES:
        raise InputError(f"tune rule must be one of {', '.join(TUNE_RULES)}, got {rule!r}")


def best(trials: list[Trial]) -> int:
    """The index of the trial with the highest mean selection accuracy, ties to the lower cross-entropy
    (then the first)."""
    return max(range(len(trials)), key=lambda i: (trials[i].accuracy, -np.mean(trials[i].selection_ce)))


def choose(trials: list[Trial], rule: str = DEFAULT_TUNE_RULE, simplicity: tuple[str, ...] = ()) -> int:
    """The index of the trial `rule` keeps: the best, or the simplest (lowest values in the order of
    `simplicity`, an option a trial lacks counting as 0) within one standard error of the best; the
    simpler rules need every trial's `hits`."""
    check_rule(rule)
    top = best(trials)
    if rule == "best":
        return top
    best_hits = trials[top].hits
    if rule == "simplest-1se":
        tolerance = [standard_error(trials[top].accuracy, best_hits.shape[1])] * len(trials)
    else:
        tolerance = [gap_standard_error(trial.hits, best_hits) for trial in trials]
    within = [i for i, trial in enumerate(trials)
              if trials[top].accuracy - trial.accuracy <= tolerance[i] + 1e-12]  # float slack: exactly one error ties
    return min(within, key=lambda i: tuple(trials[i].values.get(name, 0.0) for name in simplicity))


def standard_error(accuracy: float, n_samples: int) -> float:
    """The binomial standard error of an accuracy measured on `n_samples` samples."""
    return math.sqrt(accuracy * (1 - accuracy) / n_samples)


def gap_standard_error(hits: np.ndarray, best_hits: np.ndarray) -> float:
    """The standard error of the accuracy gap between two trials scored on the same samples: `hits` and
    `best_hits` are (seeds, samples) arrays of 1 (right) and 0 (wrong)."""
    per_sample = (best_hits - hits).mean(axis=0)
    return float(per_sample.std(ddof=1) / math.sqrt(per_sample.size))


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
