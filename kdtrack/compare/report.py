"""What `kdtrack compare` (and a study, when it ends) finds in the store: its tables and figures, written to
a folder and logged as artifacts of a run."""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .. import tracking
from ..errors import InputError
from ..multidomain.data import load_multidomain
from . import figures
from .tables import STUDENT_KEYS, TEACHER_KEYS, current_rows, paired_diffs, paired_table, render, summary_table, wide_table

METRIC_LABELS = {"model_val_acc": "validation accuracy of the logged model",
                 "best_val_acc": "validation accuracy of the best checkpoint",
                 "final_val_acc": "validation accuracy at the last epoch"}


@dataclass
class Report:
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def write(self, folder: str | Path) -> None:
        """Each table as CSV and markdown, each figure as PNG."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"{folder}: cannot write there ({error.strerror})") from None
        for name, table in self.tables.items():
            (folder / f"{name}.csv").write_text(render(table, "csv"))
            (folder / f"{name}.md").write_text(render(table, "markdown") + "\n")
        for name, figure in self.figures.items():
            figure.savefig(folder / f"{name}.png", **tracking.PNG_SAVE)

    def log(self, path: str | None = None) -> str:
        """Log every file into the active run (under `path`); where they went."""
        with tempfile.TemporaryDirectory() as folder:
            self.write(folder)
            return tracking.log_artifacts(folder, path)


def build_report(runs: pd.DataFrame, teachers: bool = False, paired: str | None = None,
                 metric: str = "model_val_acc", order: list[str] | None = None) -> Report:
    """Tables and figures over `runs` (rows of tracking.finished_seed_runs): the summary (of the teachers
    with `teachers`), the paired table against `paired`, and the figures for them; datasets and methods in
    `order` where it names them."""
    report = Report()
    students, notes = current_rows(runs, order=order)
    teacher_rows, teacher_notes = current_rows(runs, teachers=True)
    report.notes = teacher_notes if teachers else notes
    report.tables["table"] = summary_table(teacher_rows if teachers else students,
                                           TEACHER_KEYS if teachers else STUDENT_KEYS, metric)
    if paired:
        report.tables[f"paired_{paired}"] = paired_table(students, paired, metric)
    if not students.empty:
        _student_figures(report, students, metric, paired)
    if not teacher_rows.empty:
        curves = _histories(teacher_rows, "domain", lambda domain: f"domain {domain}")
        report.figures["teacher_curves"] = figures.curves(curves, "Teachers per domain: mean ± std over seeds")
    return report


def _student_figures(report: Report, students: pd.DataFrame, metric: str, paired: str | None) -> None:
    label = METRIC_LABELS[metric]
    report.figures["accuracy"] = figures.accuracy_bars(students, metric, label[0].upper() + label[1:])
    histories = _histories(students, "method", str)
    report.figures["curves"] = figures.curves(
        histories, "Baseline and students: mean ± std over seeds (each method's loss is its own objective)")
    annealed = {method: {dataset: runs[0] for dataset, runs in by_method.items() if "temperature" in runs[0]}
                for method, by_method in _by_method(histories).items()}
    annealed = {method: by_dataset for method, by_dataset in annealed.items() if by_dataset}
    if annealed:
        report.figures["annealing"] = figures.schedules(annealed, "Annealing: temperature over epochs\n(final phase shaded)")
    for dataset, rows in students[students["arch"].isna()].groupby("dataset"):  # MLPs on points, not images
        panels = _boundary_panels(rows, report.notes)
        if panels is not None:
            report.figures[f"boundaries_{dataset}"] = panels(dataset)
    if paired:
        report.figures[f"paired_{paired}"] = figures.paired_differences(paired_diffs(students, paired, metric), paired)


def _histories(rows: pd.DataFrame, group: str, name) -> dict[str, dict[str, list[pd.DataFrame]]]:
    """dataset -> group name -> the histories of its runs, in seed order."""
    out: dict[str, dict[str, list[pd.DataFrame]]] = {}
    for (dataset, key), runs in rows.sort_values("seed").groupby(["dataset", group], sort=False):
        out.setdefault(dataset, {})[name(key)] = [tracking.load_history(uri) for uri in runs["artifact_uri"]]
    return dict(sorted(out.items()))


def _by_method(histories: dict[str, dict[str, list[pd.DataFrame]]]) -> dict[str, dict[str, list[pd.DataFrame]]]:
    out: dict[str, dict[str, list[pd.DataFrame]]] = {}
    for dataset, groups in histories.items():
        for method, runs in groups.items():
            out.setdefault(method, {})[dataset] = runs
    return out


def _boundary_panels(rows: pd.DataFrame, notes: list[str]):
    """For 2-D data whose file can be read here: a function drawing the baseline, the domain teachers and
    every student of one seed (the lowest every method has) over the validation points."""
    dataset = rows["dataset"].iloc[0]
    try:
        data = load_multidomain(rows["data"].iloc[0])
    except (InputError, TypeError) as error:
        notes.append(f"{dataset}: no decision boundaries, its data file cannot be read here ({error})")
        return None
    common = set.intersection(*(set(group["seed"]) for _, group in rows.groupby("method")))
    if data.valid.x.shape[1] != 2 or not common:
        return None
    seed = min(common, key=int)
    runs = rows[rows["seed"] == seed]
    baseline, students = runs[runs["task"] == "baseline"], runs[runs["task"] == "student"]
    first = [(f"{run.method}: {100 * run.model_val_acc:.1f}%", tracking.load_model(run.run_id))
             for run in baseline.itertuples()]
    if not students.empty:  # the teachers the first student learnt from
        first += [(f"teacher, domain {domain}", tracking.load_model(run_id))
                  for domain, run_id in zip(data.domains, students["teacher_run_ids"].iloc[0].split(","))]
    second = [(f"{run.method}: {100 * run.model_val_acc:.1f}%", tracking.load_model(run.run_id))
              for run in students.itertuples()]
    valid = data.valid

    def draw(name: str) -> Figure:
        return figures.decision_boundaries([row for row in (first, second) if row], valid.x, valid.y, valid.d,
                                           f"{name}, seed {seed}: decisions over the validation points "
                                           "(validation accuracy in the titles)")
    return draw


def log_compare_run(report: Report, experiment: str | None, params: dict[str, str]) -> str:
    """A run of its own (kdtrack.task `compare`) in `experiment` holding the report; its id."""
    tracking.use_experiment(experiment)
    tags = {"task": "compare", "method": "compare", "dataset": ",".join(report.tables["table"]["dataset"].unique())}
    with tracking.parent_run(f"compare {experiment or 'all experiments'}", tags, params) as run_id:
        report.log()
    return run_id


def print_notes(report: Report, prefix: str) -> None:
    for note in report.notes:
        print(f"{prefix}: {note}", file=sys.stderr)


__all__ = ["Report", "build_report", "log_compare_run", "print_notes", "wide_table"]
