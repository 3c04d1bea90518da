"""The multi-domain commands: each makes the cell it is asked for and runs it, with what it depends on."""
from __future__ import annotations

import dataclasses

from ..spine.jobs import Job, run_command
from ..spine.teachers import Teachers, TeachersRun
from ..spine.tuning import DEFAULT_TUNE_RULE, tuned_values
from .cells.baseline import BaselineCell
from .cells.students import StudentCell
from .cells.teachers import TeachersCell
from .cells.tune import GridTuneCell, TuneGrid
from .data import load_multidomain
from .options import DistillOptions


def run_baseline(job: Job, data: str) -> str:
    return run_command(job, BaselineCell(**job.cell_inputs(load_multidomain(data))))


def run_teachers(job: Job, data: str) -> str:
    return run_command(job, TeachersCell(**job.cell_inputs(load_multidomain(data))))


def run_distill(job: Job, data: str, distill: DistillOptions, teachers: str | None = None, tuned: str | None = None) -> str:
    """`teachers`: a teachers run id, else finished teachers of the same configuration are reused and the
    missing ones trained first. `tuned`: a tune run id whose chosen values (alpha, temperature, ...) replace
    `distill`'s."""
    inputs = job.cell_inputs(load_multidomain(data))
    if tuned:
        chosen = tuned_values(tuned, inputs["data"].fingerprint, distiller=distill.distiller)
        distill = dataclasses.replace(distill, **chosen)
    cell = StudentCell(**inputs, label=distill.distiller, distill=distill, teachers=_teachers(inputs, teachers))
    return run_command(job, cell)


def run_tune(job: Job, data: str, grid: TuneGrid, step_order: str, teachers: str | None = None,
             rule: str = DEFAULT_TUNE_RULE) -> str:
    inputs = job.cell_inputs(load_multidomain(data))
    return run_command(job, GridTuneCell(**inputs, grid=grid, step_order=step_order, teachers=_teachers(inputs, teachers),
                                         rule=rule))


def _teachers(inputs: dict, run_id: str | None) -> Teachers:
    """The teachers given by run id, or those of the student's options, selected as teachers select (their
    role's default) whatever selects the student."""
    if run_id:
        return TeachersRun(run_id, inputs["data"], domains=tuple(inputs["data"].domains))
    return TeachersCell(**{**inputs, "train": dataclasses.replace(inputs["train"], select_on=None)})
