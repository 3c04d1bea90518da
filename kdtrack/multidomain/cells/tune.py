"""The tunable options of a distiller (Hinton KD's alpha and temperature, annealing's tau_max, ...), searched
on the selection split (the holdout, or validation under the report's policy) as kdtrack.spine.tuning does.

The whole grid of trials x seeds trains as one stack. Every grid with an alpha tries alpha = 0, the labels
alone: a tuned student can then choose not to distil, and a rule other than `best` prefers that choice (then
the lowest alpha, then the lowest temperature) unless the holdout prefers another beyond its noise.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...distillers import make_distiller, tunable
from ...errors import InputError
from ...spine.teachers import Teachers
from ...spine.tuning import Trial, TuneCell
from ..batches import tensors
from .base import MLPCell, Stack, Trained
from .teachers import check_taught, student_batches

DEFAULT_GRIDS = {
    "kd": {"alpha": (0.0, 0.1, 0.3, 0.5, 0.7, 0.9), "temperature": (1.0, 4.0, 9.0, 18.0)},
    "kd-mixture": {"alpha": (0.0, 0.1, 0.3, 0.5, 0.7, 0.9), "temperature": (1.0, 4.0, 9.0, 18.0)},
    "anneal-jafari": {"temperature": (4.0, 9.0, 18.0, 33.0)},
}
"""The values tried for each tunable option of each distiller when a grid does not name them."""


@dataclass(frozen=True)
class TuneGrid:
    """The values tried for each tunable option of `distiller`; an option left None takes DEFAULT_GRIDS'."""

    distiller: str = "kd"
    alphas: tuple[float, ...] | None = None
    temperatures: tuple[float, ...] | None = None

    def __post_init__(self):
        names = tunable(self.distiller) if self.distiller in DEFAULT_GRIDS else ()
        if not names:
            raise InputError(f"distiller {self.distiller!r} cannot be tuned; tunable distillers: {', '.join(DEFAULT_GRIDS)}")
        for name, values in (("alpha", self.alphas), ("temperature", self.temperatures)):
            if values is not None and name not in names:
                raise InputError(f"{name}s: distiller {self.distiller} has no {name} to tune")
            if values is None and name in names:
                object.__setattr__(self, f"{name}s", DEFAULT_GRIDS[self.distiller][name])
        if self.alphas is not None and (not self.alphas or not all(0 <= a <= 1 for a in self.alphas)):
            raise InputError(f"alphas must be values in [0, 1], got {self.alphas}")
        if self.temperatures is not None and (not self.temperatures or not all(0 < t < math.inf for t in self.temperatures)):
            raise InputError(f"temperatures must be positive finite numbers, got {self.temperatures}")
        if self.distiller == "anneal-jafari" and not all(t == int(t) and t >= 1 for t in self.temperatures):
            raise InputError(f"temperatures (tau_max) must be whole numbers >= 1 for anneal-jafari, got {self.temperatures}")

    @property
    def values(self) -> dict[str, tuple[float, ...]]:
        """Each tuned option and its values."""
        given = {"alpha": self.alphas, "temperature": self.temperatures}
        return {name: given[name] for name in tunable(self.distiller)}

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
class GridTuneCell(TuneCell, MLPCell):
    """Every trial of `grid` for every seed, as one stack."""

    default_select_on = "accuracy-1se"
    simplicity = ("alpha", "temperature")
    """The teacher's weight first (alpha 0 is the labels alone), then its temperature."""
    grid: TuneGrid
    step_order: str
    teachers: Teachers
    label: str = "tune"

    def __post_init__(self):
        super().__post_init__()
        check_taught(self.data, self.seeds, self.train, self.teachers, self.grid.distiller)

    @property
    def tuned_options(self) -> tuple[str, ...]:
        return tuple(self.grid.values)

    @property
    def trial_count(self) -> int:
        return len(self.grid.trials())

    def identity(self) -> dict:
        return {**super().identity(), "seeds": sorted(self.seeds), "step_order": self.step_order,
                "grid": dataclasses.asdict(self.grid), "teachers": self.teachers.hash}

    def dependencies(self) -> tuple:
        return self.teachers.teacher_cells(self.seeds)

    def parent_params(self) -> dict[str, str]:
        grid = {f"{name}s": ",".join(f"{value:g}" for value in values) for name, values in self.grid.values.items()}
        return {**super().parent_params(), "step_order": self.step_order, "teachers": self.teachers.option,
                "distiller": self.grid.distiller, **grid}

    def stack(self) -> Stack:
        """Every trial x seed as one stack: model trial * seeds + offset learns from seed offset's teachers."""
        trials, seeds = self.grid.trials(), self.seeds
        per_model = {name: [trial[name] for trial in trials for _ in seeds] for name in self.grid.values}
        distiller = make_distiller(self.grid.distiller, self.epochs, **per_model)
        runs = self.teachers.runs(seeds)
        train_batches, valid, selection = student_batches(self.data, self.splits, runs, distiller, self.step_order,
                                                          seeds, repeats=len(trials))
        return Stack([self.member(seed) for _ in trials for seed in seeds], distiller, train_batches, valid, selection)

    def records(self, trained: Callable[[], Trained]) -> Iterator[Trained]:
        yield trained()

    def score(self, trained: Iterable[Trained]) -> list[Trial]:
        """Each trial's hits, selection accuracy and cross-entropy at every seed's selected student."""
        stacked = next(iter(trained))
        split = self.data.valid if self.splits.selection is None else self.splits.selection
        x, y = tensors(split)
        trials = []
        for index, values in enumerate(self.grid.trials()):
            students = [self.selected(stacked, index * len(self.seeds) + offset) for offset in range(len(self.seeds))]
            with torch.no_grad():
                logits = [student(x) for student in students]
            hits = np.stack([(out.argmax(dim=1) == y).cpu().numpy() for out in logits]).astype(float)
            trials.append(Trial(values, [float(acc) for acc in hits.mean(axis=1)],
                                [float(F.cross_entropy(out, y)) for out in logits], hits))
        return trials
