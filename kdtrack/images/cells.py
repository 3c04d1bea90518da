"""The image cells: a network per seed (a teacher, a student alone, a KD or a SimKD student), each seed trained
by kdtrack.images.training (in this process, or side by side in seed workers when the command has them) and
logged here as a child run of the cell's run; and the tune cell that chooses a cell's learning rate on the
holdout.

Under torchrun every process trains every seed together (DistributedDataParallel) and only the first
process talks to MLflow, so one command leaves one run per seed.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.pool
import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from .. import tracking
from ..engine import Stopwatch, TrainResult
from ..engine.distributed import world_size
from ..errors import InputError
from ..spine.cells import ModelRecord, in_background
from ..spine.teachers import Teachers, TeachersRun, TeachingCell, check_holdout
from ..spine.tuning import Trial, TunedCell, TuneCell
from ..spine.workers import fork_server, seed_workers, worker_pool
from . import SEED_WORKER_IMPORTS, augment, training
from .data import ImageData, ImageSplit
from .options import ImageKDOptions, ImageTrainOptions, SimKDOptions, check_rates, scaled_milestones
from .training import SeedTrained, SeedTraining


@dataclass(frozen=True, kw_only=True)
class NetworkCell(TunedCell):
    """Networks of `train.arch` on `data`, one per seed. Making one checks the holdout, so a dataset too
    small to carve one from is an error before any run opens."""

    default_select_on = "accuracy"
    data: ImageData
    train: ImageTrainOptions

    def __post_init__(self):
        super().__post_init__()
        self.splits  # noqa: B018 (checks the holdout)

    @property
    def name(self) -> str:
        return f"{self.label} {self.train.arch} · {self.data.name}"

    @cached_property
    def splits(self) -> tuple[ImageSplit, ImageSplit]:
        """(fit, selection): the selection holdout carved from train, stratified by class."""
        try:
            return training.selection_split(self.data, self.train)
        except ValueError as error:
            raise InputError(f"{self.data.name}: {error}") from None

    def at_rate(self, lr: float, seeds: tuple[int, ...]) -> NetworkCell:
        """This cell at learning rate `lr` (a trial of a tune cell), untuned, over `seeds`."""
        return dataclasses.replace(self, train=dataclasses.replace(self.train, lr=lr), seeds=seeds, tuned=(), tuned_by=None)

    def train_models(self, engine: Stopwatch) -> Iterator[ModelRecord]:
        """Each seed's network as its run's record, in seed order. On a CPU with several torch threads the seeds
        train at once, in worker processes that start now (while the parent run opens), this process's threads
        shared among them, and each seed is logged here as soon as it and those before it have trained;
        elsewhere (a GPU, torchrun, inside a study's worker, one thread or one seed) one after another in this
        process (kdtrack.spine.workers.seed_workers)."""
        workers = seed_workers(len(self.seeds), self.device)
        if workers == 1:
            return self._records(self._in_turn, torch.get_num_threads(), engine)
        server = fork_server(SEED_WORKER_IMPORTS, logging=False)
        threads = max(1, torch.get_num_threads() // workers)
        return self._records(in_background(lambda: self._in_workers(server, workers, threads)).result, threads, engine)

    def _records(self, trained: Callable[[], Iterator[SeedTrained]], threads: int,
                 engine: Stopwatch) -> Iterator[ModelRecord]:
        """Each seed's record; its run's tag torch_threads says how many threads trained it: on a CPU the count
        changes the last bits (oneDNN splits its sums among them)."""
        tags = {"torch_threads": str(threads)} if self.device == "cpu" else {}
        for (result, model, stopwatch), seed in zip(trained(), self.seeds):  # to its end: the workers then leave
            engine.add(stopwatch)
            yield self.record({"seed": seed}, result, 0, model, self._test, self._inputs,
                              tags={**tags, **self.seed_tags(seed)}, params={"world_size": str(world_size())})

    def _in_turn(self) -> Iterator[SeedTrained]:
        return (self.seed_training(seed).timed() for seed in self.seeds)

    def _in_workers(self, server: multiprocessing.context.BaseContext, workers: int,
                    threads: int) -> Iterator[SeedTrained]:
        """The seeds given to `workers` processes of `server`, with `threads` torch threads each."""
        seeds = [pickle.dumps(self.seed_training(seed)) for seed in self.seeds]
        pool = worker_pool(server, workers, threads, tracked=False)
        return _collected(pool, pool.imap(training.train_in_worker, seeds))

    def seed_tags(self, seed: int) -> dict[str, str]:
        return {}

    def seed_training(self, seed: int) -> SeedTraining:
        """What training the network of `seed` takes, at the chosen options."""
        return SeedTraining(seed=seed, label=self.model_name(seed=seed), data=self.data, options=self.resolve(self.train),
                            device=self.device)

    @cached_property
    def _test(self) -> tuple[Tensor, Tensor]:
        """The test split as the networks see it: what each logged model is scored on."""
        transform = training.network_input(self.data, self.train)
        return transform(augment.nchw(self.data.test.x), None), torch.from_numpy(self.data.test.y)

    @cached_property
    def _inputs(self) -> dict[str, tracking.DataInput]:
        fit, selection = self.splits
        return {context: tracking.DataInput(split.x, split.y, self.data.source, self.data.name, split.fingerprint)
                for context, split in (("training", fit), ("selection", selection), ("validation", self.data.test))}


@dataclass(frozen=True, kw_only=True)
class TeacherCell(NetworkCell, TeachingCell):
    """Networks trained on the labels alone (`ce`), to teach the students."""

    task = "teacher"
    member_task = "teacher"
    shared = True
    label: str = "ce"

    @property
    def name(self) -> str:
        return f"teacher {self.train.arch} · {self.data.name}"


@dataclass(frozen=True, kw_only=True)
class BaselineCell(NetworkCell):
    """A student network trained on the labels alone: what every distilled student is compared with."""

    task = "baseline"
    member_task = "baseline"


@dataclass(frozen=True, kw_only=True)
class StudentCell(NetworkCell):
    """A student taught by `teachers` with `distill`'s objective (Hinton KD, or SimKD and its variants)."""

    task = "student"
    member_task = "student"
    teachers: Teachers
    distill: ImageKDOptions | SimKDOptions

    def __post_init__(self):
        super().__post_init__()
        check_holdout(self.train, self.teachers, f"teacher {self.teachers.option or 'cell'}")

    def identity(self) -> dict:
        return {**super().identity(), "distill": self.distill.params(), "teachers": self.teachers.hash}

    def dependencies(self) -> tuple:
        return super().dependencies() + self.teachers.teacher_cells(self.seeds)

    def params(self) -> dict[str, str]:
        return {**super().params(), **self.distill.params(), "teacher": self.teachers.option}

    @cached_property
    def teacher_runs(self) -> dict[tuple[int, ...], str]:
        """Each seed's teacher run, looked up once for the cell."""
        return self.teachers.runs(self.seeds)

    def seed_training(self, seed: int) -> SeedTraining:
        """A student's also takes its teacher, read from the store here (once per process)."""
        return dataclasses.replace(super().seed_training(seed), teacher=tracking.checkpoint(self.teacher_runs[(seed,)]),
                                   distill=self.distill)

    def seed_tags(self, seed: int) -> dict[str, str]:
        return {"teacher_run_ids": self.teacher_runs[(seed,)]}


def resolve_teacher(reference: str, data: ImageData, seed: int | None = None) -> TeachersRun:
    """The teachers a `--teacher` names, looked up once: a train-teacher command's parent run (its id or
    `runs:/ID`; each student seed learns from the teacher of its own seed, or all from `seed`'s), or one
    teacher's run or registered model. Anything else is one line."""
    return TeachersRun(tracking.run_of_model(reference), data, seed, reference, seed_option="--teacher-seed")


@dataclass(frozen=True, kw_only=True)
class RateTuneCell(TuneCell, NetworkCell):
    """The learning rates `rates` of the cell `target`, each trained at every seed of this cell (the tune
    seeds) and scored on the holdout."""

    target: NetworkCell
    rates: tuple[float, ...]

    @property
    def tuned_options(self) -> tuple[str, ...]:
        return ("lr",)

    @property
    def trial_count(self) -> int:
        return len(self.rates)

    def identity(self) -> dict:
        return {**super().identity(), "target": {"task": self.target.task, **self.target.identity()},
                "rates": list(self.rates), "seeds": sorted(self.seeds)}

    def dependencies(self) -> tuple:
        return self.target.dependencies()

    def parent_params(self) -> dict[str, str]:
        return {**super().parent_params(), "lrs": ",".join(f"{rate:g}" for rate in self.rates)}

    def train_models(self, engine: Stopwatch) -> Iterator[tuple[float, TrainResult]]:
        for rate in self.rates:
            trial = self.target.at_rate(rate, self.seeds)
            for seed in self.seeds:
                with engine.timing():
                    result, _ = trial.seed_training(seed).run()
                yield rate, result

    def score(self, trained: Iterable[tuple[float, TrainResult]]) -> list[Trial]:
        """Each rate's selection accuracy and cross-entropy at every seed's selected epoch."""
        trials: dict[float, Trial] = {}
        for rate, result in trained:
            best = int(result.best_epoch[0]) - 1
            trial = trials.setdefault(rate, Trial({"lr": rate}, [], []))
            trial.selection_acc.append(float(result.history["selection_acc"][best, 0]))
            trial.selection_ce.append(float(result.history["selection_loss"][best, 0]))
        return list(trials.values())


def _collected(pool: multiprocessing.pool.Pool, results: Iterator[bytes]) -> Iterator[SeedTrained]:
    """The workers' results in seed order as they finish; the pool ends after the last, or on an error or
    an interrupt (a worker still training stops: seed workers open no runs, this process logs them)."""
    try:
        for trained in results:
            yield pickle.loads(trained)
    finally:
        pool.terminate()  # SIGTERM: an idle worker leaves, a training one stops
        pool.join()


def tune_rate(cell: NetworkCell, rates: tuple[float, ...], seeds: tuple[int, ...] | None = None,
              epochs: int | None = None) -> NetworkCell:
    """`cell` at the learning rate a tune cell chooses among `rates` on the holdout, trying each at `seeds`
    (default: the cell's) for `epochs` (default: the cell's; the milestones scale with them)."""
    check_rates(cell.train, rates)
    target = cell.at_rate(rates[0], seeds or cell.seeds)
    if epochs is not None:
        shorter = dataclasses.replace(target.train, epochs=epochs, milestones=scaled_milestones(epochs))
        target = dataclasses.replace(target, train=shorter)
    tune = RateTuneCell(data=cell.data, seeds=target.seeds, train=target.train, label=f"{cell.label}-tune",
                        device=cell.device, target=target, rates=rates)
    return dataclasses.replace(cell, train=dataclasses.replace(cell.train, lr=rates[0]), tuned_by=tune, tuned=("lr",))
