"""What `kdtrack compare` (and a study, when it ends) finds in the store: its tables and figures, written to
a folder and logged as artifacts of a run."""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .. import tracking
from ..errors import InputError
from . import figures
from .tables import STUDENT_KEYS, TEACHER_KEYS, current_rows, paired_diffs, paired_table, render, summary_table, wide_table

METRIC_LABELS = {"model_val_acc": "validation accuracy of the logged model",
                 "best_val_acc": "validation accuracy at the selected checkpoint",
                 "final_val_acc": "validation accuracy at the last epoch"}
Extras = Callable[[pd.DataFrame, list[str]], dict[str, Figure]]
"""A study's own figures from finished per-seed runs, noting in the list why one cannot be drawn."""


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
            for name, table in self.tables.items():
                (folder / f"{name}.csv").write_text(render(table, "csv"))
                (folder / f"{name}.md").write_text(render(table, "markdown") + "\n")
            for name, figure in self.figures.items():
                figure.savefig(folder / f"{name}.png", **tracking.PNG_SAVE)
        except OSError as error:
            raise InputError(f"{folder}: cannot write there ({error.strerror or error})") from None

    def log(self, path: str | None = None) -> str:
        """Log every file into the active run (under `path`); where they went."""
        with tempfile.TemporaryDirectory() as folder:
            self.write(folder)
            return tracking.log_artifacts(folder, path)


def build_report(runs: pd.DataFrame, teachers: bool = False, paired: str | None = None,
                 metric: str = "model_val_acc", order: list[str] | None = None, tunes: pd.DataFrame | None = None,
                 extras: Extras | None = None, primary: str | None = None) -> Report:
    """Tables and figures over `runs` (rows of tracking.finished_seed_runs): the summary (of the teachers
    with `teachers`), the paired table against `paired` (with `primary`'s rows as its primary family), and
    the figures for them; the learning-rate (or any option's) sweeps of the tune runs `tunes` (rows of
    tracking.finished_tune_runs); the figures the studies draw themselves (`extras`). Datasets and methods
    in `order` where it names them."""
    report = Report()
    domain = runs["domain"].astype(object)
    runs = runs.assign(domain=domain.where(domain.notna(), runs["arch"]))  # image teachers: one per architecture
    students, notes = current_rows(runs, order=order)
    teacher_rows, teacher_notes = current_rows(runs, teachers=True)
    report.notes = teacher_notes if teachers else notes
    report.tables["table"] = summary_table(teacher_rows if teachers else students,
                                           TEACHER_KEYS if teachers else STUDENT_KEYS, metric)
    if paired:
        report.tables[f"paired_{paired}"] = paired_table(students, paired, metric, primary)
    if not students.empty:
        _student_figures(report, students, metric, paired)
        report.figures.update(extras(students, report.notes) if extras else {})
    if not teacher_rows.empty:
        curves = _histories(teacher_rows, "domain", lambda domain: f"domain {domain}" if domain.isdigit() else domain)
        report.figures["teacher_curves"] = figures.curves(curves, "Teachers: mean ± std over seeds")
    sweeps = _sweeps(tunes, order or []) if tunes is not None and not tunes.empty else {}
    if sweeps:
        report.figures["sweep"] = figures.sweeps(sweeps)
    return report


def _student_figures(report: Report, students: pd.DataFrame, metric: str, paired: str | None) -> None:
    label = METRIC_LABELS[metric]
    label = label[0].upper() + label[1:]
    colours = figures.method_colours(students["method"])  # the table's method order, one colour per method
    report.figures["accuracy"] = figures.accuracy_bars(students, metric, label, colours)
    histories = _histories(students, "method", str)
    report.figures["curves"] = figures.curves(
        histories, "Baseline and students: mean ± std over seeds (each method's loss is its own objective)", colours)
    annealed = {method: {dataset: runs[0] for dataset, runs in by_method.items() if "temperature" in runs[0]}
                for method, by_method in _by_method(histories).items()}
    annealed = {method: by_dataset for method, by_dataset in annealed.items() if by_dataset}
    if annealed:
        report.figures["annealing"] = figures.schedules(annealed, "Annealing: temperature over epochs\n(final phase shaded)")
    networks = students[students["arch"].notna()]
    if not networks.empty:  # what SimKD deploys beside what it scores
        report.figures["accuracy_vs_size"] = figures.accuracy_vs_size(networks, metric, label, colours)
    if paired:
        report.figures[f"paired_{paired}"] = figures.paired_differences(paired_diffs(students, paired, metric), paired,
                                                                        colours)


def _sweeps(tunes: pd.DataFrame, order: list[str]) -> dict[str, tuple[pd.DataFrame, dict[str, float]]]:
    """Each tune run's trials and choice, by the method it tuned (its label less `-tune`), newest first per
    method, in `order` where it names them."""
    tunes = tunes.assign(tuned=tunes["method"].str.removesuffix("-tune")).sort_values("start_time", ascending=False)
    tunes = tunes.drop_duplicates(["dataset", "tuned"])
    place = {name: index for index, name in enumerate(order)}
    tunes = tunes.assign(place=tunes["tuned"].map(place).fillna(len(order))).sort_values(["place", "start_time"])
    trials = {f"{row.tuned} · {row.dataset}": (tracking.load_trials(row.artifact_uri), row.chosen)
              for row in tunes.itertuples()}
    return {name: sweep for name, sweep in trials.items() if sweep[0] is not None}


def _histories(rows: pd.DataFrame, group: str, name) -> dict[str, dict[str, list[pd.DataFrame]]]:
    """dataset -> group name -> the histories of its runs, in the order of `rows` (current_rows': the
    table's datasets and groups, seeds in numeric order)."""
    out: dict[str, dict[str, list[pd.DataFrame]]] = {}
    for (dataset, key), runs in rows.groupby(["dataset", group], sort=False):
        out.setdefault(dataset, {})[name(key)] = [tracking.load_history(uri) for uri in runs["artifact_uri"]]
    return out


def _by_method(histories: dict[str, dict[str, list[pd.DataFrame]]]) -> dict[str, dict[str, list[pd.DataFrame]]]:
    out: dict[str, dict[str, list[pd.DataFrame]]] = {}
    for dataset, groups in histories.items():
        for method, runs in groups.items():
            out.setdefault(method, {})[dataset] = runs
    return out


def log_compare_run(report: Report, experiment: str | None, params: dict[str, str]) -> str:
    """A run of its own (kdtrack.task `compare`) in `experiment` holding the report; its id."""
    tracking.use_experiment(experiment)
    tags = {"task": "compare", "method": "compare", "dataset": ",".join(report.tables["table"]["dataset"].unique())}
    with tracking.parent_run(f"compare {experiment or 'all experiments'}", tags, params) as run_id:
        report.log()
    return run_id


def caption(table: pd.DataFrame, metric: str = "model_val_acc", paired: str | None = None) -> str:
    """What the numbers of a summary table (or of the paired table against `paired`) are: the metric, its
    units, and over how many seeds."""
    counts = sorted(set(table["n"]))
    if not counts:
        return "The table is empty: no FINISHED per-seed runs to summarise"
    seeds = (f"n = {counts[0]} seed{'s' if counts[0] > 1 else ''}" if len(counts) == 1
             else f"n = {counts[0]} to {counts[-1]} seeds (each row's n in table.csv)")
    if paired:
        return (f"Difference from {paired} in the {METRIC_LABELS[metric]}, in points, seed by seed over {seeds}: "
                "mean, sample std, 95% t-interval, paired t-test p and p_holm (Holm-corrected over the table)")
    label = METRIC_LABELS[metric]
    return f"{label[0].upper()}{label[1:]} in percent ({metric}): mean ± sample std over {seeds}"


def print_notes(report: Report, prefix: str) -> None:
    for note in report.notes:
        print(f"{prefix}: {note}", file=sys.stderr)


__all__ = ["Report", "build_report", "caption", "log_compare_run", "print_notes", "wide_table"]
