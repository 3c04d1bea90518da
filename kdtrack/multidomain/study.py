"""The whole grid: datasets x methods, each method a cell of all seeds, nested under one study run.

A study config (YAML) names the methods. Values may differ per dataset (a mapping keyed by the dataset's
file stem, with an optional `default`), and alpha or temperature may be `tuned`: then a `tune` cell runs
first (once per dataset and configuration) and its best values are used. Every cell skips the seeds that
already have a FINISHED run of the same configuration hash, so an interrupted study resumes where it stopped.

    train: {selection: holdout}          # TrainOptions for every model
    teachers: {es: {early_stopping: true}}   # named teacher settings (overrides of `train`)
    tune: {epochs: 5000, kd: {alpha: [0, 0.3, 0.7], temperature: [4, 9]}}   # grids by method (else tune.py's)
    methods:
      baseline: {task: baseline}
      kd-es: {teachers: es, train: {early_stopping: true}, distill: {alpha: tuned, temperature: {default: 9, data_d0.25: 18}}}
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import tracking
from ..cells import Cell
from ..compare.report import build_report, print_notes
from ..compare.tables import render, wide_table
from ..distillers import tunable
from ..engine import resolve_device
from ..errors import InputError
from ..scheduler import default_workers, run_cells
from .cells.baseline import BaselineCell
from .cells.students import StudentCell
from .cells.teachers import TeachersCell
from .cells.tune import DEFAULT_GRIDS, TuneCell, TuneGrid
from .data import MultiDomainData, load_multidomain
from .options import STUDENT_SELECT_ON, DistillOptions, TrainOptions

TUNED = "tuned"


@dataclass(frozen=True)
class Method:
    """One method of a study config, resolved for one dataset."""

    label: str
    task: str
    train: TrainOptions
    teacher_train: TrainOptions | None = None
    distill: DistillOptions | None = None
    tuned: tuple[str, ...] = ()

    @property
    def fixed(self) -> dict[str, float]:
        """The tunable options that are not tuned, at their values: a tuning grid holds them there."""
        return {name: getattr(self.distill, name) for name in tunable(self.distill.method) if name not in self.tuned}


@dataclass(frozen=True)
class StudyConfig:
    path: str
    raw: dict

    def grid(self, method: str, fixed: dict[str, float]) -> TuneGrid:
        """The tuning grid of `method`: the config's `tune.METHOD` values by option, else the defaults; the
        options in `fixed` are not tuned but held at their value."""
        given = (self.raw.get("tune") or {}).get(method) or {}
        where = f"{self.path}: tune.{method}"
        try:
            values = {f"{name}s": tuple(map(float, given[name])) for name in given}
        except (TypeError, ValueError):
            raise InputError(f"{where}: the values must be lists of numbers") from None
        return _build(where, TuneGrid, {"method": method, **values, **{f"{name}s": (value,) for name, value in fixed.items()}})

    def tune_epochs(self) -> int | None:
        """Tuning may train shorter than the cells it tunes: the grid is many students at once."""
        epochs = (self.raw.get("tune") or {}).get("epochs")
        if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
            raise InputError(f"{self.path}: tune.epochs must be a positive whole number, got {epochs!r}")
        return epochs

    def methods(self, dataset: str, epochs: int | None) -> list[Method]:
        """Every method of the config, resolved for `dataset`; a bad value is an InputError naming it."""
        base = {**self.raw.get("train", {}), **({"epochs": epochs} if epochs else {})}
        if "epochs" not in base and "epochs" in self.raw:
            base["epochs"] = self.raw["epochs"]
        methods = []
        for label, method in self.raw["methods"].items():
            where = f"{self.path}: methods.{label}"
            if not isinstance(method, dict):
                raise InputError(f"{where} must be a mapping, got {method!r}")
            task = method.get("task", "distill")
            defaults = {"select_on": STUDENT_SELECT_ON} if task == "distill" else {}
            train = self._options(where, {**defaults, **base, **method.get("train", {})}, dataset)
            if task == "baseline":
                methods.append(Method(label, task, train))
                continue
            if task != "distill":
                raise InputError(f"{where}.task must be baseline or distill, got {task!r}")
            teacher_settings = self._teacher_settings(where, method.get("teachers"))
            teacher_train = self._options(f"{where}.teachers", {**base, **teacher_settings}, dataset)
            values = {key: _for_dataset(f"{where}.distill.{key}", value, dataset)
                      for key, value in method.get("distill", {}).items()}
            distill = _build(f"{where}.distill", DistillOptions, {k: v for k, v in values.items() if v != TUNED})
            tuned = tuple(key for key in values if values[key] == TUNED)
            if not set(tuned) <= set(tunable(distill.method)):
                raise InputError(f"{where}.distill: {', '.join(tuned)} cannot be tuned for {distill.method} "
                                 f"(tunable: {', '.join(tunable(distill.method)) or 'nothing'})")
            methods.append(Method(label, task, train, teacher_train, distill, tuned))
        return methods

    def cells(self, data: MultiDomainData, seeds: tuple[int, ...], epochs: int | None, device: str = "cpu") -> list[Cell]:
        """The study's cells on `data`: one per method (a tuned method's tune cell is its dependency)."""
        tune_epochs = self.tune_epochs()
        cells = []
        for method in self.methods(data.name, epochs):
            where = f"{self.path}: methods.{method.label}"
            common = {"data": data, "seeds": seeds, "train": method.train, "label": method.label, "device": device}
            if method.task == "baseline":
                cells.append(_build(where, BaselineCell, common))
                continue
            teachers = _build(f"{where}.teachers", TeachersCell, {"data": data, "seeds": seeds, "train": method.teacher_train,
                                                                  "device": device})
            tuned_by = None
            if method.tuned:
                tune_train = dataclasses.replace(method.train, epochs=min(tune_epochs or method.train.epochs, method.train.epochs))
                tuned_by = _build(where, TuneCell, {**common, "train": tune_train, "label": f"{method.label}-tune",
                                                    "grid": self.grid(method.distill.method, method.fixed),
                                                    "step_order": method.distill.step_order, "teachers": teachers})
            cells.append(_build(where, StudentCell, {**common, "distill": method.distill, "teachers": teachers,
                                                     "tuned_by": tuned_by, "tuned": method.tuned}))
        return cells

    def check_datasets(self, names: list[str]) -> None:
        """Every per-dataset mapping names only datasets of the study (their file stems) and `default`: a
        misspelled stem would otherwise fall back to `default` unseen."""
        sections = [("train", self.raw.get("train") or {})]
        sections += [(f"teachers.{name}", settings or {}) for name, settings in (self.raw.get("teachers") or {}).items()]
        for label, method in self.raw["methods"].items():
            if isinstance(method, dict):
                sections += [(f"methods.{label}.{part}", method.get(part) or {}) for part in ("train", "distill")]
        for where, section in sections:
            for key, value in section.items():
                stray = [stem for stem in value if stem != "default" and stem not in names] if isinstance(value, dict) else []
                if stray:
                    raise InputError(f"{self.path}: {where}.{key}: {stray[0]!r} names no dataset of this study "
                                     f"({', '.join(names)}); a per-dataset mapping takes their file stems and default")

    def _teacher_settings(self, where: str, name: str | None) -> dict:
        if name is None:
            return {}
        teachers = self.raw.get("teachers", {})
        if name not in teachers:
            raise InputError(f"{where}.teachers names {name!r}, which the config's teachers section lacks")
        return teachers[name] or {}

    @staticmethod
    def _options(where: str, values: dict, dataset: str) -> TrainOptions:
        resolved = {key: _for_dataset(f"{where}.{key}", value, dataset) for key, value in values.items()}
        if "hidden" in resolved:
            resolved["hidden"] = tuple(resolved["hidden"])
        return _build(where, TrainOptions, resolved)


SECTIONS = ("epochs", "train", "teachers", "tune", "methods")
METHOD_KEYS = ("task", "train", "teachers", "distill")
TUNE_KEYS = ("epochs", *DEFAULT_GRIDS)
GRID_KEYS = ("alpha", "temperature")
TRAIN_KEYS = tuple(field.name for field in dataclasses.fields(TrainOptions))
DISTILL_KEYS = tuple(field.name for field in dataclasses.fields(DistillOptions))


def load_study_config(path: str) -> StudyConfig:
    """Read a study config; a key it does not know anywhere is an InputError naming where it is."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise InputError(f"{path}: cannot read the study config ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("methods"), dict) or not raw["methods"]:
        raise InputError(f"{path}: a study config needs a `methods` mapping")
    _known_keys(path, "the config", raw, SECTIONS)
    for section in ("train", "teachers", "tune"):
        if not isinstance(raw.get(section) or {}, dict):
            raise InputError(f"{path}: `{section}` must be a mapping")
    _known_keys(path, "train", raw.get("train") or {}, TRAIN_KEYS)
    _known_keys(path, "tune", raw.get("tune") or {}, TUNE_KEYS)
    for method in DEFAULT_GRIDS:
        _known_keys(path, f"tune.{method}", (raw.get("tune") or {}).get(method) or {}, GRID_KEYS)
    for name, settings in (raw.get("teachers") or {}).items():
        _known_keys(path, f"teachers.{name}", settings or {}, TRAIN_KEYS)
    for label, method in raw["methods"].items():
        if isinstance(method, dict):
            _known_keys(path, f"methods.{label}", method, METHOD_KEYS)
            _known_keys(path, f"methods.{label}.train", method.get("train") or {}, TRAIN_KEYS)
            _known_keys(path, f"methods.{label}.distill", method.get("distill") or {}, DISTILL_KEYS)
    return StudyConfig(path, raw)


def _known_keys(path: str, where: str, section, known: tuple[str, ...]) -> None:
    if not isinstance(section, dict):
        raise InputError(f"{path}: {where} must be a mapping, got {section!r}")
    unknown = [key for key in section if key not in known]
    if unknown:
        raise InputError(f"{path}: {where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")


def run_study(config_path: str, data_paths: list[str], seeds: tuple[int, ...], epochs: int | None = None,
              experiment: str | None = None, device: str = "auto", workers: int = 1) -> str:
    """Run (or resume) every cell, `workers` at a time (0: one per core); the study run id. Every dataset
    and cell is checked first, so a bad config or file fails before any run opens."""
    config = load_study_config(config_path)
    datasets = [load_multidomain(path) for path in data_paths]
    names = [data.name for data in datasets]
    if len(set(names)) < len(names):
        raise InputError(f"datasets must have distinct file names (they name the runs), got {', '.join(names)}")
    config.check_datasets(names)
    device = resolve_device(device)
    cells = [cell for data in datasets for cell in config.cells(data, seeds, epochs, device)]
    tracking.use_experiment(experiment)
    tags = {"task": "study", "dataset": ",".join(names), "method": "study"}
    params = {"config": config_path, "data": ",".join(data_paths), "seeds": ",".join(map(str, seeds)),
              "epochs": str(epochs or ""), "device": device, "workers": str(workers),
              "methods": ",".join(config.raw["methods"])}
    with tracking.parent_run(f"study {Path(config_path).stem}", tags, params) as study_id:
        tracking.log_text(Path(config_path).read_text(), "study_config.yaml")
        run_cells(cells, resume=True, workers=workers or default_workers())
        _summarise(cells, names + list(config.raw["methods"]))
    return study_id


def _summarise(cells: list[Cell], order: list[str]) -> None:
    """Log the study's tables and figures in its run; print its table, a row per dataset and a column per
    method (in `order`), and where the figures are."""
    hashes = {cell.hash for cell in cells} | {dependency.hash for cell in cells for dependency in cell.dependencies()}
    runs = tracking.finished_seed_runs(None)
    report = build_report(runs[runs["cell_hash"].isin(hashes)], order=order)
    where = report.log("summary")
    print_notes(report, "study")
    print(render(wide_table(report.tables["table"]), "markdown"))
    print(f"figures and tables: {where}")


def _build(where: str, kind, values: dict):
    """Options or a cell from config values; an unknown key or a bad value is an InputError saying where."""
    try:
        return kind(**values)
    except (TypeError, InputError) as error:
        raise InputError(f"{where}: {error}") from None


def _for_dataset(where: str, value, dataset: str):
    """A config value for `dataset`: the value itself, or its entry in a per-dataset mapping."""
    if not isinstance(value, dict):
        return value
    if dataset in value:
        return value[dataset]
    if "default" in value:
        return value["default"]
    raise InputError(f"{where} has no value for dataset {dataset!r} and no default")
