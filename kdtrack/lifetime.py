"""How long a kdtrack process lives: a study's worker as long as its study, and a command that `mlflow run`
started as long as that `mlflow run`.

Killed, `mlflow run` leaves its command running (re-parented to PID 1, training and logging on), where a
user expects the command to end with it, its runs FAILED, as on SIGTERM. So a command ends like on SIGTERM
when the `mlflow run` that started it ends, and only then: a command started with `nohup kdtrack study &`
outlives the shell that started it, as nohup means. Linux only (process descriptors); elsewhere a process
lives as it always did.
"""
from __future__ import annotations

import os
import select
import signal
import threading
from pathlib import Path


def end_with(pid: int, signum: int) -> None:
    """Send this process `signum` the moment process `pid` ends, however it ends (kill -9 included): a
    thread waits on `pid`'s process descriptor, which works whether or not `pid` is this process's parent."""
    if not hasattr(os, "pidfd_open"):
        return
    try:
        ended = os.pidfd_open(pid)
    except ProcessLookupError:  # it has ended already
        os.kill(os.getpid(), signum)
        return

    def watch() -> None:
        select.select([ended], [], [])
        os.kill(os.getpid(), signum)

    threading.Thread(target=watch, name=f"end with process {pid}", daemon=True).start()


def end_with_mlflow_run() -> None:
    """Under `mlflow run`, end like on SIGTERM when it ends. `mlflow run` is recognised by what it does: it
    sets MLFLOW_RUN_ID for its command and starts it (through `bash -c`, which may exec it), so the process
    is a descendant of a process whose command line is `mlflow run ...`."""
    if "MLFLOW_RUN_ID" not in os.environ:
        return
    launcher = mlflow_run_ancestor()
    if launcher is not None:
        end_with(launcher, signal.SIGTERM)


def mlflow_run_ancestor(pid: int | None = None) -> int | None:
    """The nearest ancestor of `pid` (default: this process) that is an `mlflow run`; None if there is
    none, or where /proc cannot say."""
    pid = os.getppid() if pid is None else _parent(pid)
    while pid is not None and pid > 1:
        if is_mlflow_run(_command_line(pid)):
            return pid
        pid = _parent(pid)
    return None


def is_mlflow_run(argv: list[str]) -> bool:
    """Whether a command line is MLflow's `run` command: `mlflow run ...`, `python .../mlflow run ...` or
    `python -m mlflow run ...`."""
    return any(Path(word).name == "mlflow" and argv[index + 1:index + 2] == ["run"] for index, word in enumerate(argv))


def _command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None
