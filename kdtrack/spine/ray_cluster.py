"""A study's cells as the tasks of a Ray cluster (`kdtrack study --executor ray`, the extra `kdtrack[ray]`).

Planning stays in the study's process; each planned cell becomes a task, submitted with the references of the
tasks of the cells it needs, so that Ray starts it once they have finished, on a node with the CPUs and GPUs
it asks for (Cell.resources). Results stay in the tracking store: a task returns its cell's parent run id.

What crosses to a task: the cell (pickled here, by reference to kdtrack's classes: it is read only by a
worker that runs the same kdtrack and hash version, checked first; a worker with other code would compute
other identities), where to log (the store's absolute URI, the experiment, the study's run), and the
MLFLOW_TRACKING_* credentials a team's server asks for: a task sees neither this process's directory nor its
environment. Image data crosses as a reference (kdtrack.images.data.ImageData.__reduce__); multi-domain data,
a few hundred kB, as it is.

Faults: a task whose worker or node is lost is run once more (Ray's max_retries): its claim's holder is gone,
so the new attempt takes the claim over and ends the lost attempt's RUNNING runs KILLED. A cell's own
exception is not retried. An interrupted study (Ctrl-C, SIGTERM) cancels its tasks, whose runs end FAILED; a
study killed outright ends its tasks with it (Ray ends the tasks of a driver that is gone).
"""
from __future__ import annotations

import os
import pickle
import signal
import socket
from importlib.metadata import version

import torch

from .. import progress, tracking
from ..errors import ClusterError, InputError
from .cells import HASH_VERSION, Cell
from .claiming import run_claimed
from .scheduler import Executor, Key

CANCEL_SECONDS = 30
"""How long an interrupted study waits for its cancelled tasks to end their runs FAILED."""


def code_version() -> tuple[str, int]:
    """What must be the same on every machine of a study: kdtrack's version and the hash version."""
    return version("kdtrack"), HASH_VERSION


class RayCluster(Executor):
    """The Ray cluster at `address` (HOST:PORT of its head, as `ray start --head` prints it)."""

    chains = True

    def __init__(self, address: str | None):
        try:
            import ray
        except ImportError:
            raise InputError("--executor ray needs Ray: pip install 'kdtrack[ray]'") from None
        address = address or os.environ.get("RAY_ADDRESS")
        if not address:
            raise InputError("--executor ray needs --address HOST:PORT (or RAY_ADDRESS) of a running Ray cluster: "
                             "`ray start --head` on one machine prints it (docs/cluster.md)")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)
                    if signal.getsignal(number) is not None}
        try:
            ray.init(address=address, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise InputError(f"Ray cluster at {address}: {_first_line(error)}") from None
        finally:  # Ray's own handlers would abort the study: Ctrl-C and SIGTERM stay interrupts (runs end FAILED)
            for number, handler in handlers.items():
                signal.signal(number, handler)
        self.ray = ray
        self.nodes = [node for node in ray.nodes() if node["Alive"]]
        self.room = 1 << 30  # Ray holds back what the cluster has no room for
        self.task = ray.remote(max_retries=1, retry_exceptions=False)(_run_task)
        self.keys: dict = {}

    def device(self, name: str) -> str:
        """The device on the cluster's machines, not this one's: auto is cuda where it has a GPU."""
        gpus = self.ray.cluster_resources().get("GPU", 0)
        if name == "auto":
            return "cuda" if gpus else "cpu"
        if name == "cuda" and not gpus:
            raise InputError(f"device cuda: no node of the Ray cluster has a GPU ({len(self.nodes)} node(s))")
        return name

    def ready(self) -> None:
        """A store or artifact location that only this machine sees cannot serve several nodes."""
        local = tracking.machine_local_locations()
        if len(self.nodes) > 1 and local:
            raise InputError(f"{local[0]} is seen by this machine only, and the Ray cluster has {len(self.nodes)} "
                             "nodes: run an MLflow tracking server (mlflow server --backend-store-uri postgresql://... "
                             "--artifacts-destination ...) and set MLFLOW_TRACKING_URI=http://HOST:PORT (docs/cluster.md)")

    def start(self, cell: Cell, needs: list) -> object:
        credentials = {name: value for name, value in os.environ.items()
                       if name.startswith("MLFLOW_TRACKING_") and name != "MLFLOW_TRACKING_URI"}
        ref = self.task.options(**self.task_options(cell)).remote(
            code_version(), tracking.process_context(), credentials, pickle.dumps(cell), *needs)
        self.keys[ref] = cell
        return ref

    @staticmethod
    def task_options(cell: Cell) -> dict:
        """What the cell's task asks Ray for: its CPUs and GPUs (Ray sets CUDA_VISIBLE_DEVICES to those it
        gives), and its name in Ray's task list."""
        resources = cell.resources()
        return {"num_cpus": resources.cpus, "num_gpus": resources.gpus, "name": cell.name}

    def finished(self) -> tuple[Key, str | None]:
        ray = self.ray
        done = []
        while not done:  # in short waits, so that a signal reaches this process
            done, _ = ray.wait(list(self.keys), num_returns=1, timeout=1.0)
        cell = self.keys.pop(done[0])
        try:
            return cell.key, ray.get(done[0])
        except ray.exceptions.RayTaskError as error:
            raise _cause(error) from None
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.ObjectLostError, ray.exceptions.OutOfMemoryError) as error:
            raise ClusterError(f"{cell.name}: lost twice with its worker or node ({type(error).__name__}); "
                               "run the study again to resume it") from None

    def stop(self) -> None:
        running = list(self.keys)
        for ref in running:
            self.ray.cancel(ref)  # KeyboardInterrupt in a running task: its runs end FAILED
        self.ray.wait(running, num_returns=len(running), timeout=CANCEL_SECONDS)
        self.ray.shutdown()

    def close(self) -> None:
        self.ray.shutdown()


def _run_task(code: tuple[str, int], context: tuple, credentials: dict[str, str], cell: bytes, *needs) -> str | None:
    """A cell in a Ray worker: refused when the worker's code is not the study's; else run under its claim,
    logging where the study does (`needs`, the run ids of the cells it needs, only order it after them)."""
    import ray

    if code_version() != code:
        raise ClusterError(f"a Ray worker on {socket.gethostname()} runs kdtrack {code_version()[0]} with hash version "
                         f"{code_version()[1]}, the study kdtrack {code[0]} with hash version {code[1]}: install "
                         "the study's kdtrack on every machine of the cluster")
    os.environ.update(credentials)
    tracking.adopt_context(context)
    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    progress.lines_only()  # several workers share the study's terminal
    return run_claimed(pickle.loads(cell), task=f"ray task {ray.get_runtime_context().get_task_id()}")


def _cause(error) -> BaseException:
    """The exception a task raised (a kdtrack error stays one line), or Ray's, when it could not cross."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
