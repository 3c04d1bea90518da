"""The image commands: each makes the cell it is asked for and runs it, in this process or in every process
torchrun started. Several learning rates tune the rate on the holdout first (a tune cell), then the chosen
rate trains at every seed."""
from __future__ import annotations

from ..spine.jobs import Job, run_command
from .cells import NetworkCell, StudentCell, TeacherCell, resolve_teacher, tune_rate
from .data import load_image_data
from .options import ImageKDOptions, SimKDOptions


def run_train_teacher(job: Job, dataset: str, folder: str | None, lrs: tuple[float, ...] = ()) -> str | None:
    return run_command(job, tuned(TeacherCell(**job.cell_inputs(load_image_data(dataset, folder))), lrs))


def run_student(job: Job, dataset: str, folder: str | None, teacher: str, distill: ImageKDOptions | SimKDOptions,
                teacher_seed: int | None = None, lrs: tuple[float, ...] = ()) -> str | None:
    """A KD or SimKD student per seed from the teachers `teacher` names (kdtrack.images.cells.resolve_teacher),
    named for its variant (`kd`, `simkd`, `simkd-kl`, ...)."""
    inputs = job.cell_inputs(load_image_data(dataset, folder))
    teachers = resolve_teacher(teacher, inputs["data"], teacher_seed)
    return run_command(job, tuned(StudentCell(**inputs, label=distill.label(), teachers=teachers, distill=distill), lrs))


def tuned(cell: NetworkCell, lrs: tuple[float, ...]) -> NetworkCell:
    """`cell`, or, given several rates, `cell` at the rate a tune cell chooses among them on the holdout."""
    return tune_rate(cell, lrs) if len(lrs) > 1 else cell
