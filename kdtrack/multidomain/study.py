"""The multi-domain study: datasets x methods, each method a cell of all seeds (kdtrack.spine.study runs it).

A method's distillation options may be `tuned`: then a tune cell (once per dataset and configuration) trains
the grid that the config's `tune.DISTILLER` names (else DEFAULT_GRIDS') and its chosen values are used.

    train: {selection: holdout}
    teachers: {es: {early_stopping: true}}
    tune: {epochs: 5000, rule: best, kd: {alpha: [0, 0.3, 0.7], temperature: [4, 9]}}   # grids by distiller;
                                         # which trial to keep (kdtrack.spine.tuning's TUNE_RULES)
    methods:
      baseline: {task: baseline}
      kd-es: {teachers: es, distill: {distiller: kd, alpha: tuned, temperature: {default: 9, data_d0.25: 18}}}
"""
from __future__ import annotations

import dataclasses

import pandas as pd
from matplotlib.figure import Figure

from ..distillers import tunable
from ..errors import InputError
from ..spine.cells import Cell
from ..spine.study import MethodSpec, StudyConfig, build, known_keys
from ..spine.tuning import DEFAULT_TUNE_RULE, TUNED, check_rule
from .cells.baseline import BaselineCell
from .cells.students import StudentCell
from .cells.teachers import TeachersCell
from .cells.tune import DEFAULT_GRIDS, GridTuneCell, TuneGrid
from .data import DEFAULT_DATASETS, MultiDomainData, load_multidomain
from .figures import decision_boundaries
from .options import DistillOptions, MLPTrainOptions

GRID_KEYS = ("alpha", "temperature")


class MultiDomainStudy:
    """What the spine needs of the multi-domain study."""

    name = "multidomain"
    train_keys = tuple(field.name for field in dataclasses.fields(MLPTrainOptions))
    distill_keys = tuple(field.name for field in dataclasses.fields(DistillOptions))
    tune_keys = ("epochs", "rule", *DEFAULT_GRIDS)

    def check(self, config: StudyConfig) -> None:
        build(f"{config.path}: tune.rule", check_rule, {"rule": _rule(config)})
        for distiller in DEFAULT_GRIDS:
            known_keys(config.path, f"tune.{distiller}", config.section("tune").get(distiller) or {}, GRID_KEYS)

    def load_data(self, config: StudyConfig, given: list[str] | None) -> list[MultiDomainData]:
        return [load_multidomain(path) for path in given or DEFAULT_DATASETS]

    def cells(self, config: StudyConfig, data: MultiDomainData, seeds: tuple[int, ...], epochs: int | None,
              device: str) -> list[Cell]:
        """One cell per method on `data` (a tuned method's tune cell is its dependency)."""
        return [self._cell(config, method, data, seeds, device) for method in config.method_specs(data.name, epochs)]

    def figures(self, runs: pd.DataFrame, notes: list[str]) -> dict[str, Figure]:
        """Each dataset's decision boundaries, from the runs of MLPs on points."""
        drawn = {}
        for dataset, rows in runs[runs["arch"].isna()].groupby("dataset"):
            figure = decision_boundaries(rows, notes)
            if figure is not None:
                drawn[f"boundaries_{dataset}"] = figure
        return drawn

    def _cell(self, config: StudyConfig, method: MethodSpec, data: MultiDomainData, seeds: tuple[int, ...],
              device: str) -> Cell:
        common = {"data": data, "seeds": seeds, "train": _train_options(method.where, method.train),
                  "label": method.label, "device": device}
        if method.task == "baseline":
            return build(method.where, BaselineCell, common)
        teachers = build(f"{method.where}.teachers", TeachersCell,
                         {"data": data, "seeds": seeds, "device": device, "teacher_seed": config.raw.get("teacher_seed"),
                          "train": _train_options(f"{method.where}.teachers", method.teachers)})
        distill = build(f"{method.where}.distill", DistillOptions,
                        {key: value for key, value in method.distill.items() if value != TUNED})
        tuned = tuple(key for key, value in method.distill.items() if value == TUNED)
        if not set(tuned) <= set(tunable(distill.distiller)):
            raise InputError(f"{method.where}.distill: {', '.join(tuned)} cannot be tuned for {distill.distiller} "
                             f"(tunable: {', '.join(tunable(distill.distiller)) or 'nothing'})")
        tuned_by = None
        if tuned:
            fixed = {name: getattr(distill, name) for name in tunable(distill.distiller) if name not in tuned}
            train = common["train"]
            tune_train = dataclasses.replace(train, epochs=min(config.tune_epochs or train.epochs, train.epochs))
            tuned_by = build(method.where, GridTuneCell, {**common, "train": tune_train, "label": f"{method.label}-tune",
                                                         "grid": _grid(config, distill.distiller, fixed), "rule": _rule(config),
                                                         "step_order": distill.step_order, "teachers": teachers})
        return build(method.where, StudentCell, {**common, "distill": distill, "teachers": teachers,
                                                 "tuned_by": tuned_by, "tuned": tuned})


def _train_options(where: str, values: dict) -> MLPTrainOptions:
    return build(where, MLPTrainOptions, values)


def _rule(config: StudyConfig) -> str:
    """Which trial a tune cell keeps: the config's `tune.rule`, else the default."""
    return config.section("tune").get("rule", DEFAULT_TUNE_RULE)


def _grid(config: StudyConfig, distiller: str, fixed: dict[str, float]) -> TuneGrid:
    """The tuning grid of `distiller`: the config's `tune.DISTILLER` values by option, else the defaults; the
    options in `fixed` are not tuned but held at their value."""
    given = config.section("tune").get(distiller) or {}
    where = f"{config.path}: tune.{distiller}"
    try:
        values = {f"{name}s": tuple(map(float, given[name])) for name in given}
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where}: the values must be lists of numbers") from None
    return build(where, TuneGrid, {"distiller": distiller, **values, **{f"{name}s": (value,) for name, value in fixed.items()}})


MULTIDOMAIN = MultiDomainStudy()
