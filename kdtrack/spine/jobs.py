"""A command's plumbing, the same in every study: the options every training command is given, and running
the cells it makes (with what they depend on) in the experiment it names, under torchrun too."""
from __future__ import annotations

from dataclasses import dataclass

from .. import tracking
from ..engine import distributed, resolve_device
from .cells import Cell
from .options import TrainOptions, check_log_every
from .scheduler import run_cells


@dataclass(frozen=True)
class Job:
    """What every training command is given: its seeds, how each model trains, where its runs go, how often
    they log metrics and where they train."""

    seeds: tuple[int, ...]
    train: TrainOptions
    experiment: str | None = None
    log_every: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_log_every(self.log_every)

    def cell_inputs(self, data) -> dict:
        """What every cell of the command takes from the job, for `data`."""
        return {"data": data, "seeds": self.seeds, "train": self.train, "log_every": self.log_every,
                "device": resolve_device(self.device)}


def run_command(job: Job, cell: Cell) -> str | None:
    """Run `cell` anew (and what it depends on, reusing what has finished) in the job's experiment; its parent
    run id (None in a process other than torchrun's first)."""
    distributed.start(resolve_device(job.device))
    try:
        if distributed.is_main_process():
            tracking.use_experiment(job.experiment)
        return run_cells([cell], resume=False)[0]
    finally:
        distributed.stop()
