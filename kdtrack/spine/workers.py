"""Worker processes of this machine, for a study's cells (kdtrack.spine.scheduler) and for an image cell's
seeds (kdtrack.images.cells): forked from a server that imported what their tasks need once, each with a
share of the cores' torch threads, ending with the process that started them."""
from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.pool
import os
import signal
import sys
from collections.abc import Iterable
from typing import Callable, TypeVar

import torch

from .. import lifetime, progress

T = TypeVar("T")

LOGGING_MODULES = ("mlflow.pytorch", "torch.export", "torch._dynamo", "torch._functorch.aot_autograd")
"""What a worker needs before its first task besides the tasks' own modules: MLflow, and what
mlflow.pytorch.log_model's torch.export imports. Workers fork from a server that has imported them once."""


def default_workers() -> int:
    """One worker per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fork_server(modules: Iterable[str], logging: bool = True) -> multiprocessing.context.BaseContext:
    """The context whose processes fork from a server that imported `modules` (and, for workers that log,
    LOGGING_MODULES), nothing else: no torch threads, store connections or MLflow state of this process, and
    none of the seconds of CPU that a spawned interpreter spends importing them before its first task. The
    server starts now, if it has not yet, and imports in the background; call from the main thread (it sets
    the signals its workers inherit). One server serves the process: the modules of its first call are the
    ones it imports (a worker imports what else its tasks need)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(sorted(set(modules)) + (list(LOGGING_MODULES) if logging else []))
    _without_interrupts(multiprocessing.forkserver.ensure_running)
    atexit.unregister(_stop_fork_server)  # registered once, however many callers
    atexit.register(_stop_fork_server)
    return context


def _stop_fork_server() -> None:
    """At exit, when its workers have gone: the fork server ends at once. Left to notice the exit, it takes ~2 s
    to unload what it imported, holding this process's stdout and stderr open meanwhile (a caller reading
    them waits for it)."""
    server = multiprocessing.forkserver._forkserver._forkserver_pid  # no public handle: CPython's own
    if server is not None:
        os.kill(server, signal.SIGKILL)


def worker_pool(context: multiprocessing.context.BaseContext, workers: int, threads: int = 1,
                tracked: bool = True) -> multiprocessing.pool.Pool:
    """`workers` processes forked by `context`'s server (fork_server), with `threads` torch threads each, in this
    process's directory and environment and, if `tracked` (their tasks log), its store and run. It returns once
    they run: after the server's imports."""
    tracking_context = None
    if tracked:
        from .. import tracking  # MLflow: seconds of imports that fork_server's caller may still be spending

        tracking_context = tracking.process_context()
    here = (tracking_context, os.getpid(), os.getcwd(), dict(os.environ), threads)
    return context.Pool(workers, _start_worker, here)


def seed_workers(seeds: int, device: str) -> int:
    """How many processes train a cell's `seeds` at once: on a CPU, one per torch thread of this process (its
    share of the cores: OMP_NUM_THREADS, a study worker's one, a Ray task's CPUs) up to the seeds; 1 on a
    GPU, under torchrun, and in a worker process (which may not start processes of its own)."""
    if device != "cpu" or int(os.environ.get("WORLD_SIZE", "1")) > 1 or multiprocessing.current_process().daemon:
        return 1
    return min(seeds, torch.get_num_threads())


def start_seed_workers(seeds: int, device: str, imports: Iterable[str]) -> None:
    """Where seed_workers would train `seeds` in several processes, start their fork server now: it imports
    `imports` (the seeds' training: seconds) beside what the caller imports meanwhile, on another core."""
    if seed_workers(seeds, device) > 1:
        fork_server(imports, logging=False)


def interruptible(task: Callable[..., T], *args) -> T:
    """In a worker: `task(*args)`, which SIGTERM (the pool's terminate) interrupts as Ctrl-C interrupts a
    command, so that the runs it has open end FAILED, and the worker leaves quietly (the process that started
    it says it was interrupted, once). Outside a task SIGTERM keeps its action (a worker's: the default),
    which ends the worker at once: a Python handler would not, since an idle worker waits in a semaphore (the
    pool's task queue) that the signal need not interrupt (the kernel may hand it to another thread, or it
    may land in a finaliser that swallows the exit), and the pool's terminate then waits for it for ever."""
    outside = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return task(*args)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, outside)
        sys.stdout.flush()  # an idle worker ends without its finalisers: nothing of the task's left buffered


def _without_interrupts(start: Callable[[], T]) -> T:
    """`start()` with Ctrl-C (SIGINT) ignored, so that the process it starts (the fork server, and so the
    workers forked from it, which get the signals it started with) ignore it from their first instruction: a
    terminal's Ctrl-C goes to every process of the foreground group, and a worker interrupted while it starts
    up prints a traceback of its own. An ignored signal stays ignored across fork and exec (a blocked one does
    not: the fork server is started with an empty mask), and Python leaves it so. The starting process answers
    Ctrl-C alone, ending its workers with SIGTERM (pool.terminate), at which their runs end FAILED. SIGINT is
    blocked meanwhile, so that a Ctrl-C that comes while it is ignored reaches this process once its handler
    is back."""
    if not hasattr(signal, "pthread_sigmask"):
        return start()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return start()
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _start_worker(context: tuple | None, starter: int, cwd: str, environment: dict[str, str], threads: int) -> None:
    """Become a worker of the process `starter`: its directory and environment (the server's are those of
    when it started), `threads` torch threads, and with a tracking `context` its store and run."""
    _die_with(starter)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(environment)
    torch.set_num_threads(threads)
    if context is not None:
        from .. import tracking  # imported already where the server preloads the workers' tasks

        tracking.adopt_context(context)
    progress.lines_only()  # several processes share the terminal: a line each, never a redrawn bar


def _die_with(starter: int) -> None:
    """Linux: be killed the moment the starting process ends, however it ends (kill -9 leaves it no chance to
    stop its workers), so that no orphan goes on training and logging what a rerun trains again. Its runs stay
    RUNNING until that rerun ends them KILLED, as the starter's own. The starter is not this process's parent
    (the fork server is), and the fork server outlives it while a worker holds its connection: so a process
    descriptor, not the parent's death, says when."""
    lifetime.end_with(starter, signal.SIGKILL)


def _interrupt(signum, frame) -> None:
    """SIGTERM in a worker's task: its open runs end FAILED, as Ctrl-C ends a command's."""
    raise KeyboardInterrupt
