"""Running a graph of cells: every cell after the cells it depends on, each configuration once, the models
already finished in the store skipped, each cell under its claim (kdtrack.spine.claiming), so that no other
process trains it meanwhile. One loop (run_plan) says when a cell starts; an executor starts it: in this
process, one after another; in local worker processes (one torch thread each) as soon as what it depends
on has finished; or as a task of a Ray cluster (kdtrack.spine.ray_cluster). A cell's result depends on its
inputs alone, so a graph gives the same numbers on any executor."""
from __future__ import annotations

import queue
import time
from abc import ABC, abstractmethod

from .. import progress
from ..engine import resolve_device
from .cells import Cell
from .claiming import run_claimed
from .workers import fork_server, interruptible, worker_pool

Key = tuple[str, str]


def run_cells(cells: list[Cell], resume: bool = True, workers: int = 1,
              executor: Executor | None = None) -> list[str | None]:
    """Run `cells` and what they depend on; for each of `cells`, its parent run id (None when it had
    nothing left to train, or another process trained it). Dependencies always skip their finished models;
    `cells` themselves do so under `resume`. The cells run in this process, or with several `workers` in
    processes of their own, or on `executor` (a Ray cluster's); nested under the active run."""
    plan, done = plan_cells(cells, resume)
    if done or len(plan) > 1:
        progress.say(f"{done + len(plan)} cell(s), teachers and tuning grids counted: {done} done before (a FINISHED run "
             f"for every seed; their runs stay under the run that trained them), {len(plan)} to train")
    if executor is None:
        executor = LocalWorkers(workers, [cell for cell, _ in plan]) if workers > 1 and len(plan) > 1 else InProcess()
    ran = run_plan(plan, executor)
    return [ran.get(cell.key) for cell in cells]


class Executor(ABC):
    """How and where a plan's cells run; the scheduler's loop (run_plan) says when. `room`: how many cells
    may run at once; `chains`: whether a cell may start before the cells it needs have finished, given what
    `start` returned for them (the executor then holds it back until they have)."""

    room: int = 1
    chains: bool = False

    def device(self, name: str) -> str:
        """`name` (cpu, cuda, auto) as the device the cells train on: this machine's."""
        return resolve_device(name)

    def ready(self) -> None:
        """Check what the executor needs of the store, once the study's experiment is set and before its run
        opens: an InputError if it cannot be used."""

    @abstractmethod
    def start(self, cell: Cell, needs: list) -> object:
        """Start `cell` (after `needs`, what `start` returned for the cells it needs); a handle of it."""

    @abstractmethod
    def finished(self) -> tuple[Key, str | None]:
        """Wait for the next cell to finish: its key and parent run id; a cell's error is raised."""

    def stop(self) -> None:
        """End the cells still running or waiting to (an interrupt, or another cell's error): their runs end
        FAILED."""

    def close(self) -> None:
        """Every cell has finished."""


def run_plan(plan: list[tuple[Cell, set[Key]]], executor: Executor) -> dict[Key, str | None]:
    """Start each cell once the cells it needs have finished (or started, on an executor that chains them),
    those that gate the most work first, at most `executor.room` at a time; each cell's parent run id. After
    each cell, the share of the work done and an estimate of the time left."""
    waiting, running, handles, ran = waited_on_first(plan), {}, {}, {}
    remaining = progress.Remaining(sum(cell.work for cell, _ in plan))
    try:
        while waiting or running:
            for cell, needs in list(waiting):
                if len(running) >= executor.room:
                    break
                if needs <= set(handles if executor.chains else ran):
                    waiting.remove((cell, needs))
                    running[cell.key] = (cell, time.monotonic())
                    if len(plan) > 1:
                        progress.say(f"cell started ({len(ran) + len(running)}/{len(plan)}): {cell.name} "
                             f"(seeds {','.join(map(str, cell.seeds))})")
                    handles[cell.key] = executor.start(cell, [handles[key] for key in needs])
            key, run_id = executor.finished()
            cell, started = running.pop(key)
            ran[key] = run_id
            if len(plan) > 1:
                progress.say(f"cell finished ({len(ran)}/{len(plan)}) in {time.monotonic() - started:.0f}s: {cell.name}; "
                     f"{remaining.finished(cell.work)}")
    except BaseException:
        executor.stop()
        raise
    executor.close()
    return ran


class InProcess(Executor):
    """One cell after another, in this process."""

    def __init__(self):
        self.done: list[tuple[Key, str | None]] = []

    def start(self, cell: Cell, needs: list) -> None:
        self.done.append((cell.key, run_claimed(cell)))

    def finished(self) -> tuple[Key, str | None]:
        return self.done.pop(0)


def plan_cells(cells: list[Cell], resume: bool) -> tuple[list[tuple[Cell, set[Key]]], int]:
    """The cells to run, each after the cells it needs (by key), and how many cells of the graph need not
    run (their every model FINISHED before). Cells of one configuration (one key) are merged into one over
    the union of their seeds, so teachers shared by several students train once."""
    nodes: dict[Key, Cell] = {}
    needs: dict[Key, set[Key]] = {}
    finished: set[Key] = set()

    def visit(cell: Cell, skip_finished: bool) -> Key | None:
        if skip_finished:
            if (pending := cell.pending()) is None:
                finished.add(cell.key)
                count_finished(cell.dependencies())
                return None
            cell = pending
        required = {key for dependency in cell.dependencies() if (key := visit(dependency, True))}
        known = nodes.get(cell.key)
        if known is None:
            nodes[cell.key] = cell
        else:
            nodes[cell.key] = known.with_seeds(known.seeds + tuple(s for s in cell.seeds if s not in known.seeds))
        needs.setdefault(cell.key, set()).update(required)
        return cell.key

    def count_finished(dependencies: tuple[Cell, ...]) -> None:
        """What a finished cell depended on is done too where it finished (a reused teacher or tuning grid)."""
        for dependency in dependencies:
            if dependency.key not in finished and dependency.pending() is None:
                finished.add(dependency.key)
                count_finished(dependency.dependencies())

    for cell in cells:
        visit(cell, resume)
    order: list[Key] = []
    while len(order) < len(nodes):
        order.append(next(key for key in nodes if key not in order and needs[key] <= set(order)))
    return [(nodes[key], needs[key]) for key in order], len(finished - set(nodes))


def waited_on_first(plan: list[tuple[Cell, set[Key]]]) -> list[tuple[Cell, set[Key]]]:
    """The plan with the cells that the longest chains of other cells wait on first (teachers, then tune
    cells, then the rest), otherwise in its order: workers start what gates the most work first, so that no
    tuning is left to run alone at the end while the other workers idle."""
    waiting_on: dict[Key, int] = {}
    for cell, needs in reversed(plan):  # a cell comes after every cell it needs
        for key in needs:
            waiting_on[key] = max(waiting_on.get(key, 0), waiting_on.get(cell.key, 0) + 1)
    return sorted(plan, key=lambda item: -waiting_on.get(item[0].key, 0))


class LocalWorkers(Executor):
    """`workers` processes of this machine, forked from a server that has imported the modules of `cells`."""

    def __init__(self, workers: int, cells: list[Cell]):
        self.room = workers
        self.results: queue.Queue = queue.Queue()
        self.pool = worker_pool(fork_server(type(cell).__module__ for cell in cells), workers)

    def start(self, cell: Cell, needs: list) -> None:
        self.pool.apply_async(_run_cell, (cell,), callback=lambda run_id: self.results.put((cell.key, run_id, None)),
                              error_callback=lambda error: self.results.put((cell.key, None, error)))

    def finished(self) -> tuple[Key, str | None]:
        key, run_id, error = self.results.get()
        if error is not None:
            raise error
        return key, run_id

    def stop(self) -> None:
        self.pool.terminate()  # SIGTERM: a worker still training ends its runs FAILED, as a command does
        self.pool.join()

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


def _run_cell(cell: Cell) -> str:
    return interruptible(run_claimed, cell, "local worker")
