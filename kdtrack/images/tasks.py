"""The image commands: each makes the cell it is asked for (one per learning rate of a sweep) and runs it,
in this process or in every process torchrun started."""
from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

from .. import tracking
from ..engine import distributed, resolve_device
from ..options import check_log_every
from ..scheduler import run_cells
from .cells import KDCell, NetworkCell, SimKDCell, TeacherCell
from .data import load_image_data
from .options import ImageKDOptions, ImageTrainOptions, SimKDOptions


@dataclass(frozen=True)
class ImageJob:
    """What every image command is given. Several learning rates make a sweep: a cell per rate, nested
    under one sweep run."""

    dataset: str
    data: str | None
    seeds: tuple[int, ...]
    train: ImageTrainOptions
    lrs: tuple[float, ...] = ()
    experiment: str | None = None
    log_every: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_log_every(self.log_every)
        self.trainings  # noqa: B018 (checks every rate of a sweep before a run opens or a teacher is looked up)

    @cached_property
    def trainings(self) -> tuple[ImageTrainOptions, ...]:
        """The training options of each cell: one per rate of a sweep."""
        return tuple(dataclasses.replace(self.train, lr=lr) for lr in self.lrs or (self.train.lr,))

    def cell_inputs(self) -> dict:
        return {"data": load_image_data(self.dataset, self.data), "seeds": self.seeds, "train": self.train,
                "log_every": self.log_every, "device": resolve_device(self.device)}


def run_train_teacher(job: ImageJob) -> str | None:
    return _run(job, lambda inputs: TeacherCell(**inputs))


def run_image_kd(job: ImageJob, teacher: str, options: ImageKDOptions) -> str | None:
    return _run(job, lambda inputs: KDCell(**inputs, teacher=teacher, distill=options))


def run_simkd(job: ImageJob, teacher: str, options: SimKDOptions) -> str | None:
    return _run(job, lambda inputs: SimKDCell(**inputs, teacher=teacher, distill=options))


def _run(job: ImageJob, make: Callable[[dict], NetworkCell]) -> str | None:
    """The cell's run id (the sweep's, for several rates); None in a process other than torchrun's first."""
    inputs = job.cell_inputs()
    distributed.start(inputs["device"])
    try:
        main = distributed.is_main_process()
        if main:
            tracking.use_experiment(job.experiment)
        cells = [make({**inputs, "train": train}) for train in job.trainings]
        if len(cells) == 1:
            return run_cells(cells, resume=False)[0]
        first = cells[0]
        tags = {key: value for key, value in first.tags("sweep").items() if key not in ("config_hash", "cell_hash")}
        sweep = tracking.parent_run(f"lr sweep · {first.label} · {first.data.name}", tags,
                                    {**first.parent_params(), "lr": ",".join(f"{lr:g}" for lr in job.lrs)})
        with sweep if main else nullcontext() as sweep_id:
            run_cells(cells, resume=False)
        return sweep_id
    finally:
        distributed.stop()
