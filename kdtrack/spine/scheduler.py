"""Running a graph of cells: every cell after the cells it depends on, each configuration once, the models
already finished in the store skipped; one after another, or in worker processes (one torch thread each)
as soon as what they depend on has finished. A cell's result depends on its inputs alone, so a graph gives
the same numbers with any number of workers."""
from __future__ import annotations

import multiprocessing
import os
import queue
import select
import signal
import sys
import threading
import time

import torch

from .. import progress, tracking
from .cells import Cell

Key = tuple[str, str]

LOGGING_MODULES = ("mlflow.pytorch", "torch.export", "torch._dynamo", "torch._functorch.aot_autograd")
"""What a worker needs before its first cell besides the cells' own modules: MLflow, and what
mlflow.pytorch.log_model's torch.export imports. Workers fork from a server that has imported them once."""


def run_cells(cells: list[Cell], resume: bool = True, workers: int = 1) -> list[str | None]:
    """Run `cells` and what they depend on; for each of `cells`, its parent run id (None when it had
    nothing left to train). Dependencies always skip their finished models; `cells` themselves do so
    under `resume`. With several workers, cells run in processes of their own, nested under the active run."""
    plan = plan_cells(cells, resume)
    if workers > 1 and len(plan) > 1:
        ran = _run_in_workers(plan, workers)
    else:
        ran = {}
        for number, (cell, _) in enumerate(plan, 1):
            if len(plan) > 1:
                _say(f"cell {number}/{len(plan)}: {cell.name} (seeds {','.join(map(str, cell.seeds))})")
            ran[cell.key] = cell.run()
    skipped = len({cell.key for cell in cells} - set(ran))
    if skipped:
        _say(f"{skipped} cell(s) already had a FINISHED run for every seed, skipped")
    return [ran.get(cell.key) for cell in cells]


def plan_cells(cells: list[Cell], resume: bool) -> list[tuple[Cell, set[Key]]]:
    """The cells to run, each after the cells it needs (by key). Cells of one configuration (one key) are
    merged into one over the union of their seeds, so teachers shared by several students train once."""
    nodes: dict[Key, Cell] = {}
    needs: dict[Key, set[Key]] = {}

    def visit(cell: Cell, skip_finished: bool) -> Key | None:
        if skip_finished and (cell := cell.pending()) is None:
            return None
        required = {key for dependency in cell.dependencies() if (key := visit(dependency, True))}
        known = nodes.get(cell.key)
        if known is None:
            nodes[cell.key] = cell
        else:
            nodes[cell.key] = known.with_seeds(known.seeds + tuple(s for s in cell.seeds if s not in known.seeds))
        needs.setdefault(cell.key, set()).update(required)
        return cell.key

    for cell in cells:
        visit(cell, resume)
    order: list[Key] = []
    while len(order) < len(nodes):
        order.append(next(key for key in nodes if key not in order and needs[key] <= set(order)))
    return [(nodes[key], needs[key]) for key in order]


def waited_on_first(plan: list[tuple[Cell, set[Key]]]) -> list[tuple[Cell, set[Key]]]:
    """The plan with the cells that the longest chains of other cells wait on first (teachers, then tune
    cells, then the rest), otherwise in its order: workers start what gates the most work first, so that no
    tuning is left to run alone at the end while the other workers idle."""
    waiting_on: dict[Key, int] = {}
    for cell, needs in reversed(plan):  # a cell comes after every cell it needs
        for key in needs:
            waiting_on[key] = max(waiting_on.get(key, 0), waiting_on.get(cell.key, 0) + 1)
    return sorted(plan, key=lambda item: -waiting_on.get(item[0].key, 0))


def default_workers() -> int:
    """One worker per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _worker_context(cells: list[Cell]) -> multiprocessing.context.BaseContext:
    """Processes forked from a server that imported the modules of `cells` and LOGGING_MODULES, nothing else:
    no torch threads, store connections or MLflow state of this process, and none of the ~6 s of CPU that a
    spawned interpreter spends importing them before its first cell."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(sorted({type(cell).__module__ for cell in cells}) + list(LOGGING_MODULES))
    return context


def _run_in_workers(plan: list[tuple[Cell, set[Key]]], workers: int) -> dict[Key, str]:
    """Start each cell as soon as the cells it needs have finished, at most `workers` at a time."""
    context = _worker_context([cell for cell, _ in plan])
    results: queue.Queue = queue.Queue()
    here = (tracking.process_context(), os.getpid(), os.getcwd(), dict(os.environ))
    pool = context.Pool(workers, _start_worker, here)
    waiting, running, ran = waited_on_first(plan), {}, {}
    try:
        while waiting or running:
            for cell, needs in [item for item in waiting if item[1] <= set(ran)][: workers - len(running)]:
                waiting.remove((cell, needs))
                running[cell.key] = (cell, time.monotonic())
                _say(f"cell started ({len(ran) + len(running)}/{len(plan)}): {cell.name} "
                     f"(seeds {','.join(map(str, cell.seeds))})")
                pool.apply_async(_run_cell, (cell,), callback=lambda run_id, key=cell.key: results.put((key, run_id, None)),
                                 error_callback=lambda error, key=cell.key: results.put((key, None, error)))
            key, run_id, error = results.get()
            cell, started = running.pop(key)
            if error is not None:
                raise error
            ran[key] = run_id
            _say(f"cell finished ({len(ran)}/{len(plan)}) in {time.monotonic() - started:.0f}s: {cell.name}")
    except BaseException:
        pool.terminate()  # SIGTERM: a worker still training ends its runs FAILED, as a command does
        pool.join()
        raise
    pool.close()
    pool.join()
    return ran


def _start_worker(context: tuple, study: int, cwd: str, environment: dict[str, str]) -> None:
    """Become a worker of the study process `study`: its directory and environment (the server's are those
    of when it started), one torch thread, its store and run."""
    _die_with(study)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(environment)
    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, _interrupt)
    tracking.adopt_context(context)
    progress.LINES_ONLY = True  # several processes share the terminal: a line each, never a redrawn bar


def _die_with(study: int) -> None:
    """Linux: be killed the moment the study process ends, however it ends (kill -9 leaves it no chance to
    stop its workers), so that no orphan goes on training and logging a cell that a rerun of the study
    trains again. Its runs stay RUNNING until that rerun ends them KILLED, as the study's own. A thread
    waits on the study's process descriptor: the study is not this process's parent (the fork server is),
    and the fork server outlives the study while a worker holds its connection."""
    if not hasattr(os, "pidfd_open"):
        return
    try:
        study_ended = os.pidfd_open(study)
    except ProcessLookupError:  # it has ended already
        os._exit(128 + signal.SIGKILL)

    def watch() -> None:
        select.select([study_ended], [], [])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="die with the study", daemon=True).start()


_running: Cell | None = None


def _run_cell(cell: Cell) -> str:
    global _running
    _running = cell
    try:
        return cell.run()
    except KeyboardInterrupt:  # its runs have ended FAILED; the study says it was interrupted, once
        raise SystemExit(130) from None
    finally:
        _running = None


def _interrupt(signum, frame) -> None:
    """SIGTERM in a worker: a cell's open runs end FAILED (as in a command); an idle worker just leaves."""
    if _running is not None:
        raise KeyboardInterrupt
    sys.exit(128 + signum)  # with its finalizers: os._exit would leave its semaphores to the resource tracker


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
