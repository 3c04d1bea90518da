"""A study: every method of a config on every dataset and seed, as one graph of cells nested under one study
run, resumed where it stopped, ending with its table and figures. The config's grammar is the same for
every study; a study (kdtrack.multidomain.study, kdtrack.images.study) says which options exist and makes
the cells.

    study: multidomain                 # or images (default multidomain)
    epochs: 30000                      # every model's, unless `train` or a method says otherwise
    seeds: [0, 10, 1234]               # the seeds, where the command names none (else DEFAULT_SEEDS)
    train: {selection: holdout}        # options of every model
    teachers: {es: {early_stopping: true}}   # named teacher settings (overrides of `train`)
    teacher_seed: 0                    # every student learns from this seed's teachers (else: its own seed's)
    tune: {epochs: 5000, kd: {alpha: [0, 0.3, 0.7], temperature: [4, 9]}}   # the study's tuning grids
    methods:
      baseline: {task: baseline}
      kd-es: {teachers: es, train: {early_stopping: true}, distill: {distiller: kd, alpha: tuned, temperature: 9}}

A value may differ per dataset (a mapping keyed by the dataset's name, with an optional `default`), and an
option the study can tune may be `tuned`: then a tune cell chooses it on the holdout first.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd
import yaml
from matplotlib.figure import Figure

from .. import files, tracking
from ..compare.report import build_report, caption, print_notes
from ..compare.tables import render, wide_table
from ..engine import resolve_device
from ..errors import InputError
from .cells import Cell, Data
from .options import DEFAULT_SEEDS, MAX_EPOCHS, MAX_SEED, check_label, parse_seeds, shown
from .scheduler import Executor, run_cells
from .workers import default_workers

SECTIONS = ("study", "dataset", "epochs", "seeds", "train", "teachers", "teacher_seed", "tune", "methods")
METHOD_KEYS = ("task", "train", "teachers", "distill")
TASKS = ("baseline", "distill")
"""A method trains alone (the reference the others are compared with) or learns from teachers."""
MAX_CONFIG_BYTES = 2**20


class Study(Protocol):
    """What a study gives the spine: the names its config may use, its data, its cells, and the figures only
    it can draw from its runs."""

    name: str
    train_keys: tuple[str, ...]
    distill_keys: tuple[str, ...]
    tune_keys: tuple[str, ...]

    def check(self, config: StudyConfig) -> None:
        """Checks of the config beyond its keys' names."""

    def load_data(self, config: StudyConfig, given: list[str] | None) -> list[Data]:
        """The study's datasets: those `given` on the command line, or the study's default."""

    def cells(self, config: StudyConfig, data: Data, seeds: tuple[int, ...], epochs: int | None,
              device: str) -> list[Cell]:
        """Every cell the config makes on `data` (each with what it depends on)."""

    def figures(self, runs: pd.DataFrame, notes: list[str]) -> dict[str, Figure]:
        """The figures only this study can draw from finished per-seed runs (of any study); a reason it
        cannot draw one goes into `notes`."""


@dataclass(frozen=True)
class MethodSpec:
    """One method of a config, its values resolved for one dataset (a tuned value stays `tuned`)."""

    label: str
    where: str
    task: str
    train: dict
    teachers: dict
    """The teachers' options: `train`'s less the method's own, with the named teacher settings."""
    teachers_name: str | None
    distill: dict


@dataclass(frozen=True)
class StudyConfig:
    path: str
    raw: dict

    @property
    def study(self) -> str:
        return self.raw.get("study") or "multidomain"

    def section(self, name: str) -> dict:
        return self.raw.get(name) or {}

    @property
    def methods(self) -> list[str]:
        return list(self.raw["methods"])

    @property
    def seeds(self) -> tuple[int, ...] | None:
        """The config's seeds (a list of whole numbers), if it names them."""
        seeds = self.raw.get("seeds")
        if seeds is None:
            return None
        if not isinstance(seeds, list) or not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds):
            raise InputError(f"{self.path}: seeds must be a list of whole numbers, got {shown(seeds)}")
        return build(self.path, parse_seeds, {"text": ",".join(map(str, seeds))})

    @property
    def tune_epochs(self) -> int | None:
        """Tuning may train shorter than the cells it tunes."""
        return self.section("tune").get("epochs")

    def method_specs(self, dataset: str, epochs: int | None = None) -> Iterator[MethodSpec]:
        """Every method of the config, its values for `dataset`; `epochs` overrides the config's."""
        base = {**({"epochs": self.raw["epochs"]} if "epochs" in self.raw else {}), **self.section("train"),
                **({"epochs": epochs} if epochs else {})}
        for label, method in self.raw["methods"].items():
            where = f"{self.path}: methods.{label}"
            task = method.get("task", "distill")
            if task not in TASKS:
                raise InputError(f"{where}.task must be baseline or distill, got {shown(task)}")
            train = self.for_dataset(where + ".train", {**base, **(method.get("train") or {})}, dataset)
            teachers_name = method.get("teachers")
            teachers = self.for_dataset(f"{where}.teachers", {**base, **self._teacher_settings(where, teachers_name)}, dataset)
            distill = self.for_dataset(f"{where}.distill", method.get("distill") or {}, dataset)
            yield MethodSpec(label, where, task, train, teachers, teachers_name, distill)

    def for_dataset(self, where: str, values: dict, dataset: str) -> dict:
        """`values` with each per-dataset mapping replaced by its entry for `dataset` (or its default)."""
        resolved = {}
        for key, value in values.items():
            if isinstance(value, dict):
                if dataset not in value and "default" not in value:
                    raise InputError(f"{where}.{key} has no value for dataset {dataset!r} and no default")
                value = value.get(dataset, value.get("default"))
            resolved[key] = value
        return resolved

    def check_datasets(self, names: list[str]) -> None:
        """Every per-dataset mapping names only datasets of the study and `default`: a misspelled name would
        otherwise fall back to `default` unseen."""
        sections = [("train", self.section("train"))]
        sections += [(f"teachers.{name}", settings or {}) for name, settings in self.section("teachers").items()]
        for label, method in self.raw["methods"].items():
            sections += [(f"methods.{label}.{part}", method.get(part) or {}) for part in ("train", "distill")]
        for where, section in sections:
            for key, value in section.items():
                stray = [name for name in value if name != "default" and name not in names] if isinstance(value, dict) else []
                if stray:
                    raise InputError(f"{self.path}: {where}.{key}: {shown(stray[0])} names no dataset of this study "
                                     f"({', '.join(names)}); a per-dataset mapping takes their names and default")

    def _teacher_settings(self, where: str, name: str | None) -> dict:
        if name is None:
            return {}
        teachers = self.section("teachers")
        if not isinstance(name, str) or name not in teachers:
            raise InputError(f"{where}.teachers names {shown(name)}, which the config's teachers section lacks")
        return teachers[name] or {}


def read_config(path: str) -> StudyConfig:
    """A study config's YAML with its overall shape checked, and its method labels (which are names); the
    study's own names are checked by `check_config`. A section left empty (`train:`) is an empty mapping."""
    try:
        text = files.read_regular_file(path, MAX_CONFIG_BYTES).decode("utf-8")
    except files.FileProblem as problem:
        raise InputError(f"{path}: cannot read the study config: {problem}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}), "
                         "expected a YAML study config") from None
    try:
        raw = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as error:  # ValueError: an int of over 4,300 digits
        raise InputError(f"{path}: not valid YAML ({_first_line(error)})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("methods"), dict) or not raw["methods"]:
        raise InputError(f"{path}: a study config needs a `methods` mapping")
    for label in raw["methods"]:
        try:
            check_label(label)
        except InputError as error:
            raise InputError(f"{path}: methods: {error}") from None
    known_keys(path, "the config", raw, SECTIONS)
    for section in ("train", "teachers", "tune"):
        if not isinstance(raw.get(section) or {}, dict):
            raise InputError(f"{path}: `{section}` must be a mapping")
    return StudyConfig(path, raw)


def check_config(config: StudyConfig, study: Study) -> None:
    """Every key of the config is one the study knows, where it stands: a key it does not know anywhere is
    an InputError naming where it is."""
    path = config.path
    known_keys(path, "train", config.section("train"), study.train_keys)
    known_keys(path, "tune", config.section("tune"), study.tune_keys)
    config.seeds  # noqa: B018 (checked even where the command names the seeds)
    epochs = config.tune_epochs
    if epochs is not None and (type(epochs) is not int or not 1 <= epochs <= MAX_EPOCHS):
        raise InputError(f"{path}: tune.epochs must be a whole number in [1, {MAX_EPOCHS:,}], got {shown(epochs)}")
    seed = config.raw.get("teacher_seed")
    if seed is not None and (type(seed) is not int or not 0 <= seed < MAX_SEED):
        raise InputError(f"{path}: teacher_seed must be a whole number in [0, 2**32), got {shown(seed)}")
    for name, settings in config.section("teachers").items():
        known_keys(path, f"teachers.{name}", settings or {}, study.train_keys)
    for label, method in config.raw["methods"].items():
        known_keys(path, f"methods.{label}", method, METHOD_KEYS)
        known_keys(path, f"methods.{label}.train", method.get("train") or {}, study.train_keys)
        known_keys(path, f"methods.{label}.distill", method.get("distill") or {}, study.distill_keys)
    study.check(config)


def known_keys(path: str, where: str, section, known: tuple[str, ...]) -> None:
    if not isinstance(section, dict):
        raise InputError(f"{path}: {where} must be a mapping, got {shown(section)}")
    unknown = [key for key in section if key not in known]
    if unknown:
        raise InputError(f"{path}: {where}: unknown key {shown(unknown[0])} (known: {', '.join(known)})")


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def build(where: str, kind: Callable, values: dict):
    """Options or a cell from config values; an unknown key or a bad value is an InputError saying where."""
    try:
        return kind(**values)
    except (TypeError, InputError) as error:
        raise InputError(f"{where}: {error}") from None


def run_study(study: Study, config: StudyConfig, data: list[str] | None, seeds: tuple[int, ...] | None,
              epochs: int | None = None, experiment: str | None = None, device: str = "auto", workers: int = 1,
              executor: str = "local", address: str | None = None) -> str:
    """Run (or resume) every cell of `config` at `seeds` (None: the config's, else DEFAULT_SEEDS), `workers`
    at a time (0: one per core), or on the Ray cluster at `address` under `executor` ray; the study run id.
    Every dataset and cell is checked first, so a bad config or file fails before any run opens."""
    check_config(config, study)
    seeds = seeds or config.seeds or parse_seeds(DEFAULT_SEEDS)
    datasets = study.load_data(config, data)
    names = [dataset.name for dataset in datasets]
    if len(set(names)) < len(names):
        raise InputError(f"datasets must have distinct names (they name the runs), got {', '.join(names)}")
    for dataset, first in same_data(datasets):
        print(f"study: {dataset.source} holds the same data as {first.source}, so its cells are those of {first.name} "
              f"(a cell is its content, not its name): the table shows them once, as {first.name}", file=sys.stderr)
    config.check_datasets(names)
    cluster = _cluster(executor, address)
    device = cluster.device(device) if cluster else resolve_device(device)
    cells = [cell for dataset in datasets for cell in study.cells(config, dataset, seeds, epochs, device)]
    tracking.use_experiment(experiment)
    if cluster:
        cluster.ready()
    tags = {"task": "study", "dataset": ",".join(names), "method": "study"}
    params = {"config": config.path, "study": study.name, "data": ",".join(dataset.source for dataset in datasets),
              "seeds": ",".join(map(str, seeds)), "epochs": str(epochs or ""), "device": device,
              "workers": str(workers), "executor": executor, "methods": ",".join(config.methods)}
    hashes = {cell.hash for cell in graph(cells)}
    with tracking.parent_run(f"study {Path(config.path).stem}", tags, params) as study_id:
        tracking.log_text(Path(config.path).read_text(), "study_config.yaml")
        tracking.log_text("\n".join(sorted(hashes)), tracking.STUDY_CELLS)  # compare follows them to other experiments
        run_cells(cells, resume=True, workers=workers or default_workers(), executor=cluster)
        summarise(study, hashes, names + config.methods)
    return study_id


def same_data(datasets: list[Data]) -> list[tuple[Data, Data]]:
    """(later, first) for each dataset that holds the same data as an earlier one under another name: its cells
    are the earlier one's (a cell is its content), so its rows would vanish from the study's table unseen."""
    first: dict[str, Data] = {}
    return [(data, first[data.fingerprint]) for data in datasets if first.setdefault(data.fingerprint, data) is not data]


def _cluster(executor: str, address: str | None) -> Executor | None:
    """The Ray cluster's executor under `executor` ray (Ray is imported only then); None for this machine's
    workers."""
    if executor == "ray":
        from .ray_cluster import RayCluster

        return RayCluster(address)
    if address:
        raise InputError("--address names a Ray cluster: it goes with --executor ray")
    return None


def summarise(study: Study, hashes: set[str], order: list[str]) -> None:
    """Log the tables and figures of the cells `hashes` (a study's, and all they depend on) in the study's run;
    print its table, a row per dataset and a column per method (in `order`), and where the figures are."""
    runs = tracking.finished_seed_runs(None)
    tunes = tracking.finished_tune_runs(None)
    report = build_report(runs[runs["cell_hash"].isin(hashes)], order=order,
                          tunes=tunes[tunes["cell_hash"].isin(hashes)], extras=study.figures)
    where = report.log("summary")
    print_notes(report, "study")
    print(render(wide_table(report.tables["table"]), "markdown"))
    print(caption(report.tables["table"]))
    print(f"figures and tables: {where}")


def graph(cells: list[Cell]) -> list[Cell]:
    """`cells` and every cell they depend on, however deep."""
    seen: dict[str, Cell] = {}
    stack = list(cells)
    while stack:
        cell = stack.pop()
        if cell.hash not in seen:
            seen[cell.hash] = cell
            stack.extend(cell.dependencies())
    return list(seen.values())
