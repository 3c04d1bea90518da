"""A student per seed, each sample taught by its in-domain teacher of the same seed."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from ... import tracking
from ...distillers import make_distiller, tunable
from ...errors import InputError
from ..options import DistillOptions
from .base import MLPCell, Stack
from .teachers import Teachers, check_taught, student_batches, teacher_dependencies

if TYPE_CHECKING:
    from .tune import TuneCell

@dataclass(frozen=True, kw_only=True)
class StudentCell(MLPCell):
    """Students of `distill`'s objective, taught by `teachers`. With `tuned_by`, the `tuned` fields of
    `distill` are the values that tune cell chose; its identity then stands in for them, so the cell's own
    identity is known before the tuning runs."""

    task = "distill"
    member_task = "student"
    distill: DistillOptions
    teachers: Teachers
    tuned_by: TuneCell | None = None
    tuned: tuple[str, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        check_taught(self.data, self.seeds, self.train, self.teachers)

    def identity(self) -> dict:
        distill = self.distill.params()
        for key in self.tuned:
            distill[key] = f"tuned by {self.tuned_by.hash}"
        return {"distill": distill, "teachers": self.teachers.hash}

    def dependencies(self) -> tuple:
        return teacher_dependencies(self.teachers, self.seeds) + ((self.tuned_by,) if self.tuned_by else ())

    @cached_property
    def tune_run_id(self) -> str:
        """The finished run of the tune cell, once it has finished."""
        return tracking.find_finished(self.tuned_by.hash).info.run_id

    @cached_property
    def resolved(self) -> DistillOptions:
        """`distill` with the tuned values, once the tune cell has finished."""
        if not self.tuned:
            return self.distill
        chosen = tuned_values(self.tune_run_id, method=self.distill.method)
        return dataclasses.replace(self.distill, **{key: chosen[key] for key in self.tuned})

    def params(self) -> dict[str, str]:
        return {**super().params(), **self.resolved.params()}

    def parent_params(self) -> dict[str, str]:
        tuned = {"tuned": ",".join(self.tuned), "tuned_by": self.tune_run_id} if self.tuned else {}
        return {**super().parent_params(), "teachers": self.teachers.option, **tuned}

    def stack(self) -> Stack:
        distill, domains = self.resolved, self.data.domains
        runs = self.teachers.runs(self.seeds)
        distiller = make_distiller(distill.method, self.epochs, distill.alpha, distill.temperature)
        train_batches, valid, selection = student_batches(self.data, self.splits, runs, distiller, distill.step_order,
                                                          self.seeds)
        members = [self.member(seed, teacher_run_ids=",".join(runs[(seed, domain)] for domain in domains))
                   for seed in self.seeds]
        return Stack(members, distiller, train_batches, valid, selection)


def tuned_values(run_id: str, data_hash: str | None = None, method: str | None = None) -> dict[str, float]:
    """The values a finished tune run chose (`alpha`, `temperature`, ...), checked to be of the data
    `data_hash` and for the distillation `method` if given."""
    run = tracking.get_run(run_id)
    metrics = run.data.metrics
    if tracking.tag(run, "task") != "tune" or "best_selection_acc" not in metrics or run.info.status != "FINISHED":
        raise InputError(f"run {run_id}: is not a finished tune run")
    if data_hash is not None and tracking.tag(run, "data_hash") != data_hash:
        raise InputError(f"run {run_id}: was tuned on other data")
    tuned_method = run.data.params.get("tuned_method", "kd")
    if method is not None and tuned_method != method:
        raise InputError(f"run {run_id}: tuned method {tuned_method}, not {method}")
    return {name: metrics[f"best_{name}"] for name in tunable(tuned_method)}
