"""The tunable options of a distillation method (Hinton KD's alpha and temperature, annealing's tau_max, ...),
searched on the selection split.

The whole grid of trials x seeds trains as one stack. A trial's score is its students' mean accuracy on
the selection split (the holdout, or validation under the report's policy) at their selected checkpoints,
ties broken by the lower mean cross-entropy there; distillation losses themselves are not comparable across
alpha and T, so they cannot rank trials. Every grid with an alpha tries alpha = 0, the labels alone: a tuned
student can then only lose to the baseline by tuning noise.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ... import tracking
from ...distillers import make_distiller, tunable
from ...errors import InputError
from ..batches import tensors
from ...cells import mean_std
from .base import MLPCell, Stack, Trained, accuracy, selected
from .teachers import Teachers, check_taught, student_batches, teacher_dependencies

DEFAULT_GRIDS = {
    "kd": {"alpha": (0.0, 0.1, 0.3, 0.5, 0.7, 0.9), "temperature": (1.0, 4.0, 9.0, 18.0)},
    "kd-mixture": {"alpha": (0.0, 0.1, 0.3, 0.5, 0.7, 0.9), "temperature": (1.0, 4.0, 9.0, 18.0)},
    "anneal-jafari": {"temperature": (4.0, 9.0, 18.0, 33.0)},
}
"""The values tried for each tunable option of each method when a grid does not name them."""


@dataclass(frozen=True)
class TuneGrid:
    """The values tried for each tunable option of `method`; an option left None takes DEFAULT_GRIDS'."""

    method: str = "kd"
    alphas: tuple[float, ...] | None = None
    temperatures: tuple[float, ...] | None = None

    def __post_init__(self):
        names = tunable(self.method) if self.method in DEFAULT_GRIDS else ()
        if not names:
            raise InputError(f"method {self.method!r} cannot be tuned; tunable methods: {', '.join(DEFAULT_GRIDS)}")
        for name, values in (("alpha", self.alphas), ("temperature", self.temperatures)):
            if values is not None and name not in names:
                raise InputError(f"{name}s: method {self.method} has no {name} to tune")
            if values is None and name in names:
                object.__setattr__(self, f"{name}s", DEFAULT_GRIDS[self.method][name])
        if self.alphas is not None and (not self.alphas or not all(0 <= a <= 1 for a in self.alphas)):
            raise InputError(f"alphas must be values in [0, 1], got {self.alphas}")
        if self.temperatures is not None and (not self.temperatures or not all(0 < t < math.inf for t in self.temperatures)):
            raise InputError(f"temperatures must be positive finite numbers, got {self.temperatures}")
        if self.method == "anneal-jafari" and not all(t == int(t) and t >= 1 for t in self.temperatures):
            raise InputError(f"temperatures (tau_max) must be whole numbers >= 1 for anneal-jafari, got {self.temperatures}")

    @property
    def values(self) -> dict[str, tuple[float, ...]]:
        """Each tuned option and its values."""
        given = {"alpha": self.alphas, "temperature": self.temperatures}
        return {name: given[name] for name in tunable(self.method)}

    def trials(self) -> list[dict[str, float]]:
        """Every combination of the values; alpha = 0 is the labels alone whatever the temperature, so it
        is one trial (at the first temperature)."""
        names = list(self.values)
        trials = []
        for combination in itertools.product(*self.values.values()):
            trial = dict(zip(names, combination))
            if trial.get("alpha") == 0 and "temperature" in trial:
                trial["temperature"] = self.temperatures[0]
            if trial not in trials:
                trials.append(trial)
        return trials


@dataclass(frozen=True, kw_only=True)
class TuneCell(MLPCell):
    """Every trial of `grid` for every seed, as one stack. All seeds score a trial together, so the cell is
    finished or not as a whole."""

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
        grid = {f"{name}s": ",".join(f"{value:g}" for value in values) for name, values in self.grid.values.items()}
        return {**super().parent_params(), "step_order": self.step_order, "teachers": self.teachers.option,
                "tuned_method": self.grid.method, **grid}

    def stack(self) -> Stack:
        """Every trial x seed as one stack: model trial * seeds + offset learns from seed offset's teachers."""
        trials, seeds = self.grid.trials(), self.seeds
        per_model = {name: [trial[name] for trial in trials for _ in seeds] for name in self.grid.values}
        distiller = make_distiller(self.grid.method, self.epochs, **per_model)
        runs = self.teachers.runs(seeds)
        train_batches, valid, selection = student_batches(self.data, self.splits, runs, distiller, self.step_order,
                                                          seeds, repeats=len(trials))
        return Stack([self.member(seed) for _ in trials for seed in seeds], distiller, train_batches, valid, selection)

    def log(self, trained: Trained) -> None:
        """A nested run per trial with its scores; the best trial's values on the cell's run (`best_alpha`,
        `best_temperature`, ...)."""
        trials = self.grid.trials()
        scores = self._scores(trained)
        for index, (trial, (acc, ce)) in enumerate(zip(trials, scores)):
            tags = {**self.tags(self.member_task), "trial": str(index), "config_hash": self.model_hash(trial=index)}
            tracking.log_trial(f"{trial_name(trial)} · {self.data.name}", tags,
                               {name: str(value) for name, value in trial.items()},
                               {**mean_std("selection_acc", acc), **mean_std("selection_ce", ce)})
        best = max(range(len(scores)), key=lambda i: (sum(scores[i][0]), -sum(scores[i][1])))
        tracking.log_summary({**{f"best_{name}": value for name, value in trials[best].items()},
                              "best_selection_acc": sum(scores[best][0]) / len(self.seeds)})

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


def trial_name(trial: dict[str, float]) -> str:
    """`alpha 0.3 T 4`, `T 18`: a trial's values, as its run is named."""
    return " ".join(f"{'T' if name == 'temperature' else name} {value:g}" for name, value in trial.items())
