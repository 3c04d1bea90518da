"""The multi-domain commands: each makes the cell it is asked for and runs it, with what it depends on."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .. import tracking
from ..engine import resolve_device
from ..options import check_log_every
from ..scheduler import run_cells
from .cells.baseline import BaselineCell
from .cells.students import StudentCell, tuned_values
from .cells.teachers import TeachersCell, TeachersRun
from .cells.tune import TuneCell, TuneGrid
from .data import load_multidomain
from .options import DistillOptions, TrainOptions


@dataclass(frozen=True)
class Job:
    """What every training command is given."""

    data: str
    seeds: tuple[int, ...]
    train: TrainOptions = field(default_factory=TrainOptions)
    experiment: str | None = None
    log_every: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_log_every(self.log_every)

    def cell_inputs(self) -> dict:
        return {"data": load_multidomain(self.data), "seeds": self.seeds, "train": self.train, "log_every": self.log_every,
                "device": resolve_device(self.device)}


def run_baseline(job: Job) -> str:
    return _run(job, BaselineCell(**job.cell_inputs()))


def run_teachers(job: Job) -> str:
    return _run(job, TeachersCell(**job.cell_inputs()))


def run_distill(job: Job, distill: DistillOptions, teachers: str | None = None, tuned: str | None = None) -> str:
    """`teachers`: a teachers run id, else finished teachers of the same configuration are reused and the
    missing ones trained first. `tuned`: a tune run id whose chosen values (alpha, temperature, ...) replace
    `distill`'s."""
    inputs = job.cell_inputs()
    if tuned:
        distill = dataclasses.replace(distill, **tuned_values(tuned, inputs["data"].fingerprint, distill.method))
    cell = StudentCell(**inputs, label=distill.method, distill=distill, teachers=_teachers(inputs, teachers))
    return _run(job, cell)


def run_tune(job: Job, grid: TuneGrid, step_order: str, teachers: str | None = None) -> str:
    inputs = job.cell_inputs()
    return _run(job, TuneCell(**inputs, grid=grid, step_order=step_order, teachers=_teachers(inputs, teachers)))


def _teachers(inputs: dict, run_id: str | None) -> TeachersCell | TeachersRun:
    """The teachers given by run id, or those of the student's options, selected as teachers are (on their
    objective, which is their cross-entropy) whatever selects the student."""
    if run_id:
        return TeachersRun(run_id, inputs["data"])
    return TeachersCell(**{**inputs, "train": dataclasses.replace(inputs["train"], select_on=TrainOptions.select_on)})


def _run(job: Job, cell) -> str:
    tracking.use_experiment(job.experiment)
    return run_cells([cell], resume=False)[0]
