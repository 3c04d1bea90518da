"""alpha and temperature for Hinton KD, searched on the selection split.

The whole grid of trials x seeds trains as one stack. A trial's score is its students' mean accuracy on
the selection split (the holdout, or validation under the report's policy) at their selected checkpoints,
ties broken by the lower mean cross-entropy there; KD losses themselves are not comparable across alpha
and T, so they cannot rank trials.
"""
from __future__ import annotations

import dataclasses
import itertools

import torch
import torch.nn.functional as F

from .. import tracking
from ..distillers import make_distiller
from ..errors import InputError
from .common import Job, accuracy, cell_hash, cell_tags, fit, mean_std, run_params, run_tags, selected
from .distill import Students, prepare_students, student_batches
from .inputs import tensors
from .options import DistillOptions, TrainOptions
from .teachers import complete_teachers

DEFAULT_ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9)
DEFAULT_TEMPERATURES = (1.0, 4.0, 9.0, 18.0)


@dataclasses.dataclass(frozen=True)
class TuneGrid:
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES

    def __post_init__(self):
        if not self.alphas or not all(0 <= a <= 1 for a in self.alphas):
            raise InputError(f"alphas must be values in [0, 1], got {self.alphas}")
        if not self.temperatures or not all(t > 0 for t in self.temperatures):
            raise InputError(f"temperatures must be positive, got {self.temperatures}")

    def trials(self) -> list[tuple[float, float]]:
        return list(itertools.product(self.alphas, self.temperatures))


def run_tune(job: Job, grid: TuneGrid, distill: DistillOptions = DistillOptions(), teachers: str | None = None,
             teacher_train: TrainOptions | None = None) -> str:
    """The tune run id (an earlier FINISHED one of the same configuration when `skip_finished`)."""
    if distill.method != "kd":
        raise InputError(f"tune searches alpha and temperature for method kd, not {distill.method!r}")
    students = prepare_students(job, teachers, teacher_train)
    data = students.data
    digest = _tune_hash(job, students, distill, grid)
    if job.skip_finished and (done := tracking.find_finished(digest)):
        return done.info.run_id
    label = job.label or "tune"
    params = {**run_params(job), "step_order": distill.step_order, "teachers": teachers or "",
              "alphas": ",".join(map(str, grid.alphas)), "temperatures": ",".join(map(str, grid.temperatures))}
    with tracking.parent_run(f"tune {data.name}", cell_tags("tune", data, job, label, digest), params) as parent_id:
        complete_teachers(students.teacher_job, data, students.teachers, job.seeds)
        scores = _score_trials(job, students, distill, grid)
        for (alpha, temperature), (acc, ce) in zip(grid.trials(), scores):
            tracking.log_trial(f"alpha {alpha} T {temperature:g}", run_tags("tune-trial", data, job, label),
                               {"alpha": str(alpha), "temperature": str(temperature)},
                               {**mean_std("selection_acc", acc), **mean_std("selection_ce", ce)})
        best = max(range(len(scores)), key=lambda i: (sum(scores[i][0]), -sum(scores[i][1])))
        alpha, temperature = grid.trials()[best]
        tracking.log_summary({"best_alpha": alpha, "best_temperature": temperature,
                              "best_selection_acc": sum(scores[best][0]) / len(job.seeds)})
    return parent_id


def _score_trials(job: Job, students: Students, distill: DistillOptions, grid: TuneGrid) -> list[tuple[list[float], list[float]]]:
    """Per trial, the selection accuracy and cross-entropy of each seed's selected student."""
    trials, seeds = grid.trials(), job.seeds
    train_batches, valid, selection = student_batches(students, distill, seeds, repeats=len(trials))
    distiller = make_distiller("kd", job.train.epochs, alpha=[a for a, _ in trials for _ in seeds],
                               temperature=[t for _, t in trials for _ in seeds])
    model, result = fit(job, "tune", students.data, list(seeds) * len(trials), distiller, train_batches, valid, selection)
    split = students.data.valid if students.splits.selection is None else students.splits.selection
    x, y = tensors(split)
    scores = []
    for trial in range(len(trials)):
        accs, ces = [], []
        for offset in range(len(seeds)):
            student = selected(job, model, result, trial * len(seeds) + offset)
            accs.append(accuracy(student, split))
            with torch.no_grad():
                ces.append(float(F.cross_entropy(student(x), y)))
        scores.append((accs, ces))
    return scores


def _tune_hash(job: Job, students: Students, distill: DistillOptions, grid: TuneGrid) -> str:
    return cell_hash("tune", students.data, job.train, seeds=sorted(job.seeds), step_order=distill.step_order,
                     grid=dataclasses.asdict(grid), teachers=students.teachers.cell)
