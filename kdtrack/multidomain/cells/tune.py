"""alpha and temperature for Hinton KD, searched on the selection split.

The whole grid of trials x seeds trains as one stack. A trial's score is its students' mean accuracy on
the selection split (the holdout, or validation under the report's policy) at their selected checkpoints,
ties broken by the lower mean cross-entropy there; KD losses themselves are not comparable across alpha
and T, so they cannot rank trials.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ... import tracking
from ...distillers import make_distiller
from ...errors import InputError
from ..batches import tensors
from ...cells import mean_std
from .base import MLPCell, Stack, Trained, accuracy, selected
from .teachers import Teachers, check_taught, student_batches, teacher_dependencies

DEFAULT_ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9)
DEFAULT_TEMPERATURES = (1.0, 4.0, 9.0, 18.0)


@dataclass(frozen=True)
class TuneGrid:
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES

    def __post_init__(self):
        if not self.alphas or not all(0 <= a <= 1 for a in self.alphas):
            raise InputError(f"alphas must be values in [0, 1], got {self.alphas}")
        if not self.temperatures or not all(0 < t < math.inf for t in self.temperatures):
            raise InputError(f"temperatures must be positive finite numbers, got {self.temperatures}")

    def trials(self) -> list[tuple[float, float]]:
        return list(itertools.product(self.alphas, self.temperatures))


@dataclass(frozen=True, kw_only=True)
class TuneCell(MLPCell):
    """Every (alpha, temperature) of `grid` for every seed, as one stack. All seeds score a trial together,
    so the cell is finished or not as a whole."""

    task = "tune"
    member_task = "tune-trial"
    shared = True
    grid: TuneGrid
    step_order: str
    teachers: Teachers
    label: str = "tune"

    def __post_init__(self):
        super().__post_init__()
        check_taught(self.data, self.seeds, self.train, self.teachers)

    def identity(self) -> dict:
        return {"seeds": sorted(self.seeds), "step_order": self.step_order, "grid": dataclasses.asdict(self.grid),
                "teachers": self.teachers.hash}

    def dependencies(self) -> tuple:
        return teacher_dependencies(self.teachers, self.seeds)

    def pending(self) -> TuneCell | None:
        return None if tracking.find_finished(self.hash) else self

    def parent_params(self) -> dict[str, str]:
        return {**super().parent_params(), "step_order": self.step_order, "teachers": self.teachers.option,
                "alphas": ",".join(map(str, self.grid.alphas)), "temperatures": ",".join(map(str, self.grid.temperatures))}

    def stack(self) -> Stack:
        """Every trial x seed as one stack: model trial * seeds + offset learns from seed offset's teachers."""
        trials, seeds = self.grid.trials(), self.seeds
        runs = self.teachers.runs(seeds)
        train_batches, valid, selection = student_batches(self.data, self.splits, runs, self.step_order, seeds,
                                                          repeats=len(trials))
        distiller = make_distiller("kd", self.epochs, alpha=[a for a, _ in trials for _ in seeds],
                                   temperature=[t for _, t in trials for _ in seeds])
        return Stack([self.member(seed) for _ in trials for seed in seeds], distiller, train_batches, valid, selection)

    def log(self, trained: Trained) -> None:
        """A nested run per trial with its scores; the best trial's alpha and temperature on the cell's run."""
        trials, seeds = self.grid.trials(), self.seeds
        scores = self._scores(trained)
        for index, ((alpha, temperature), (acc, ce)) in enumerate(zip(trials, scores)):
            tags = {**self.tags(self.member_task), "trial": str(index), "config_hash": self.model_hash(trial=index)}
            tracking.log_trial(f"alpha {alpha} T {temperature:g} · {self.data.name}", tags,
                               {"alpha": str(alpha), "temperature": str(temperature)},
                               {**mean_std("selection_acc", acc), **mean_std("selection_ce", ce)})
        best = max(range(len(scores)), key=lambda i: (sum(scores[i][0]), -sum(scores[i][1])))
        alpha, temperature = trials[best]
        tracking.log_summary({"best_alpha": alpha, "best_temperature": temperature,
                              "best_selection_acc": sum(scores[best][0]) / len(seeds)})

    def _scores(self, trained: Trained) -> list[tuple[list[float], list[float]]]:
        """Per trial, the selection accuracy and cross-entropy of each seed's selected student."""
        split = self.data.valid if self.splits.selection is None else self.splits.selection
        x, y = tensors(split)
        scores = []
        for trial in range(len(self.grid.trials())):
            accs, ces = [], []
            for offset in range(len(self.seeds)):
                student = selected(self, trained.model, trained.result, trial * len(self.seeds) + offset)
                accs.append(accuracy(student, split))
                with torch.no_grad():
                    ces.append(float(F.cross_entropy(student(x), y)))
            scores.append((accs, ces))
        return scores
