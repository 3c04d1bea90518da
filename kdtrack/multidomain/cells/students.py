"""A student per seed, each sample taught by its in-domain teacher of the same seed (or by every domain's
teacher, as its distiller chooses)."""
from __future__ import annotations

from dataclasses import dataclass

from ...distillers import make_distiller
from ...spine.teachers import Teachers
from ...spine.tuning import TunedCell
from ..options import DistillOptions
from .base import MLPCell, Stack
from .teachers import check_taught, student_batches


@dataclass(frozen=True, kw_only=True)
class StudentCell(TunedCell, MLPCell):
    """Students of `distill`'s objective, taught by `teachers`; the `tuned` fields of `distill` are those
    the tune cell `tuned_by` chose."""

    task = "distill"
    member_task = "student"
    default_select_on = "accuracy-1se"
    """What a student is scored by, accuracy, with one standard error's tolerance for the holdout's noise:
    its distillation loss stops it too early where domains overlap; the cross-entropy of a student taught at
    a high temperature is lowest long before its accuracy is highest; and the best holdout accuracy alone,
    on a few hundred samples, peaks by chance early in training (README, Results)."""
    distill: DistillOptions
    teachers: Teachers

    def __post_init__(self):
        super().__post_init__()
        check_taught(self.data, self.seeds, self.train, self.teachers, self.distill.distiller)

    def identity(self) -> dict:
        return {**super().identity(), "distill": self.distill.params(), "teachers": self.teachers.hash}

    def dependencies(self) -> tuple:
        return super().dependencies() + self.teachers.teacher_cells(self.seeds)

    def params(self) -> dict[str, str]:
        return {**super().params(), **self.resolve(self.distill).params(), "teachers": self.teachers.option}

    def stack(self) -> Stack:
        distill, domains = self.resolve(self.distill), self.data.domains
        runs = self.teachers.runs(self.seeds)
        distiller = make_distiller(distill.distiller, self.epochs, distill.alpha, distill.temperature)
        train_batches, valid, selection = student_batches(self.data, self.splits, runs, distiller, distill.step_order,
                                                          self.seeds)
        members = [self.member(seed, teacher_run_ids=",".join(runs[(seed, domain)] for domain in domains))
                   for seed in self.seeds]
        return Stack(members, distiller, train_batches, valid, selection)
