"""A study on a Ray cluster (`kdtrack study --executor ray`), on local clusters bound to 127.0.0.1
(tests/servers.LocalRay): the table of `--workers 1` on two nodes; a study on Ray and one on local workers at
once through one `mlflow server`, each cell trained once; a worker killed mid-cell, the cell retried and
nothing left RUNNING or logged twice; SIGTERM cancelling the tasks; GPUs placed by what a cell asks for
(logical GPUs, no CUDA); a worker with another hash version refused. Skipped without Ray (kdtrack[ray])."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kdtrack.multidomain import make_multidomain, save_multidomain
from kdtrack.spine.cells import HASH_VERSION
from servers import LocalRay, all_runs, duplicated_configurations, finish, start_study, trainings
from test_scheduler import run_study, write_config

pytest.importorskip("ray")

DEADLINE = 300  # seconds: a limit on waiting for an event, never a measured time
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two nodes of one CPU each; the second has two logical GPUs (Ray counts them, no CUDA needed), which
    cells on the CPU never ask for."""
    cluster = LocalRay(tmp_path_factory.mktemp("ray"), gpus=(0, 2)).start()
    yield cluster
    cluster.stop()


def dataset(folder: Path, seed: int) -> str:
    """A tiny dataset of its own per test: its cells are the test's alone in the shared server."""
    path = folder / "tiny.pkl"
    save_multidomain(make_multidomain(0.75, seed, n_train=240, n_valid=60, name="tiny"), path)
    return str(path)


def on_ray(cluster: LocalRay, uri: str, config: Path | str, data: str, folder: Path, experiment: str,
           *options: str) -> subprocess.Popen:
    return start_study(Path(config), data, {**cluster.env, "MLFLOW_TRACKING_URI": uri}, folder, "--executor", "ray",
                       "--address", cluster.address, "--device", "cpu", "--experiment-name", experiment, *options)


def runs_of(uri: str, experiment: str) -> list:
    found = MlflowClient(uri).get_experiment_by_name(experiment)  # None until the study has made it
    return [run for run in all_runs(uri) if found and run.info.experiment_id == found.experiment_id]


def seed_results(runs: list) -> dict:
    """Each per-seed run's logged accuracy, best epoch and loss, by method, seed and domain."""
    return {(run.data.tags["kdtrack.method"], run.data.tags["kdtrack.seed"], run.data.tags.get("kdtrack.domain")):
            (run.data.metrics["model_val_acc"], run.data.metrics["best_epoch"], run.data.metrics["best_val_loss"])
            for run in runs if "kdtrack.seed" in run.data.tags}


def claims_left(uri: str) -> list[str]:
    return [model.name for model in MlflowClient(uri).search_registered_models("name LIKE 'kdtrack-claim-%'")]


def wait_until(condition, what: str, process: subprocess.Popen):
    deadline = time.monotonic() + DEADLINE
    while not (found := condition()):
        assert process.poll() is None, f"the study ended before {what}: {process.stderr.read()[-4000:]}"
        assert time.monotonic() < deadline, f"waited in vain for {what}"
        time.sleep(0.5)
    return found


def test_a_two_node_cluster_gives_the_table_of_one_worker(cluster, sqlite_server, tmp_path, monkeypatch):
    config, data = write_config(tmp_path), dataset(tmp_path, 11)
    code, err = finish(on_ray(cluster, sqlite_server, config, data, tmp_path, "two-nodes"))
    assert code == 0, err[-6000:]
    runs = runs_of(sqlite_server, "two-nodes")
    assert {run.info.status for run in runs} == {"FINISHED"} and duplicated_configurations(runs) == {}
    trained = trainings(err)
    assert len(trained) == 6 and set(trained.values()) == {1}, trained
    monkeypatch.chdir(tmp_path)
    assert seed_results(runs) == run_study(config, data, f"sqlite:///{tmp_path / 'one.db'}", 1, monkeypatch)
    assert claims_left(sqlite_server) == []


def test_a_study_on_ray_and_one_on_local_workers_at_once_train_each_cell_once(cluster, sqlite_server, tmp_path):
    config, data = write_config(tmp_path), dataset(tmp_path, 12)
    studies = [on_ray(cluster, sqlite_server, config, data, tmp_path, "at-once"),
               start_study(config, data, {"MLFLOW_TRACKING_URI": sqlite_server}, tmp_path, "--workers", "1",
                           "--device", "cpu", "--experiment-name", "at-once")]
    results = [finish(study) for study in studies]
    for name, (_, err) in zip(("ray", "local"), results):
        (tmp_path / f"{name}.err").write_text(err)
    assert [code for code, _ in results] == [0, 0], "\n".join(err[-8000:] for code, err in results if code)
    runs = runs_of(sqlite_server, "at-once")
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert duplicated_configurations(all_runs(sqlite_server)) == {}, "nothing twice, in any experiment"
    trained = trainings(*[err for _, err in results])
    assert len(trained) == 6 and set(trained.values()) == {1}, trained
    assert len(seed_results(runs)) == 2 * (1 + 3 + 3)
    assert claims_left(sqlite_server) == []


def test_a_worker_killed_mid_cell_is_retried_and_nothing_is_left_running_or_logged_twice(cluster, sqlite_server,
                                                                                          tmp_path):
    """kill -9 of the worker process training a cell (a lost worker): Ray runs the task again, which takes
    the dead worker's claim over, ends its RUNNING runs KILLED and trains the cell; the study completes."""
    config = tmp_path / "long.yaml"
    config.write_text("epochs: 4000\nmethods:\n  baseline: {task: baseline}\n  kd: {distill: {alpha: 0.5}}\n")
    study = on_ray(cluster, sqlite_server, config, dataset(tmp_path, 13), tmp_path, "killed")

    def training():
        cells = [run for run in runs_of(sqlite_server, "killed") if run.info.status == "RUNNING"
                 and run.data.tags.get("kdtrack.task") in ("baseline", "teachers")]
        return cells[0].data.tags["kdtrack.pid"] if cells else None

    worker = wait_until(training, "a cell's run to open", study)
    os.kill(int(worker), signal.SIGKILL)
    code, err = finish(study)
    assert code == 0, err[-6000:]
    assert "took over the claim of pid " + worker in err
    runs = runs_of(sqlite_server, "killed")
    killed = [run for run in runs if run.info.status == "KILLED"]
    assert killed and {run.data.tags["kdtrack.pid"] for run in killed} == {worker}
    assert {run.info.status for run in runs} == {"FINISHED", "KILLED"}
    assert duplicated_configurations(runs) == {}
    assert len(seed_results([run for run in runs if run.info.status == "FINISHED"])) == 2 * (1 + 3 + 1)
    assert claims_left(sqlite_server) == []


def test_sigterm_cancels_the_studys_tasks_and_their_runs_end_failed(cluster, sqlite_server, tmp_path):
    config = tmp_path / "long.yaml"
    config.write_text("epochs: 500000\nmethods:\n  baseline: {task: baseline}\n  kd: {distill: {alpha: 0.5}}\n")
    study = on_ray(cluster, sqlite_server, config, dataset(tmp_path, 14), tmp_path, "terminated")
    wait_until(lambda: len([run for run in runs_of(sqlite_server, "terminated") if run.info.status == "RUNNING"]) >= 3,
               "the study and its baseline and teachers cells to run", study)
    study.send_signal(signal.SIGTERM)
    code, err = finish(study, timeout=120)
    assert code == 130, err[-6000:]
    assert err.strip().splitlines()[-1] == "kdtrack: interrupted; any run it had open is marked FAILED"
    statuses = [run.info.status for run in runs_of(sqlite_server, "terminated")]
    assert set(statuses) == {"FAILED"} and len(statuses) >= 3
    assert claims_left(sqlite_server) == []


PLACEMENT = """
import dataclasses, json, os, sys
import ray
from kdtrack.multidomain import load_multidomain
from kdtrack.multidomain.study import MULTIDOMAIN
from kdtrack.spine.cells import Resources
from kdtrack.spine.ray_cluster import RayCluster
from kdtrack.spine.study import StudyConfig

cluster = RayCluster(sys.argv[1])
config = StudyConfig("study.yaml", {"epochs": 5, "methods": {"baseline": {"task": "baseline"}}})
cell = MULTIDOMAIN.cells(config, load_multidomain(sys.argv[2]), (0,), None, "cpu")[0]

class TwoGPUs(type(cell)):  # a cell that trains with DDP on two GPUs
    def resources(self):
        return Resources(gpus=2)

@ray.remote
def placed():
    return ray.get_runtime_context().get_assigned_resources(), os.environ.get("CUDA_VISIBLE_DEVICES")

cells = {"cpu": cell, "cuda": dataclasses.replace(cell, device="cuda"),
         "ddp": TwoGPUs(**{field.name: getattr(cell, field.name) for field in dataclasses.fields(cell)})}
found = {name: ray.get(placed.options(**RayCluster.task_options(one)).remote()) for name, one in cells.items()}
print(json.dumps({"auto": cluster.device("auto"), **found}))
"""


def test_a_cell_gets_the_gpus_it_asks_for(cluster, tmp_path):
    """Ray gives a cell on CUDA one of the cluster's GPUs, a DDP cell of two both, a cell on the CPU none;
    `auto` means cuda on a cluster with GPUs."""
    placed = subprocess.run([sys.executable, "-c", PLACEMENT, cluster.address, dataset(tmp_path, 15)],
                            env={**os.environ, **cluster.env}, capture_output=True, text=True, timeout=DEADLINE)
    assert placed.returncode == 0, placed.stderr[-4000:]
    found = json.loads(placed.stdout.strip().splitlines()[-1])
    assert found["auto"] == "cuda"
    assert found["cpu"][0] == {"CPU": 1.0} and not found["cpu"][1]
    assert found["cuda"][0] == {"CPU": 1.0, "GPU": 1.0} and found["cuda"][1] in ("0", "1")
    assert found["ddp"][0] == {"CPU": 1.0, "GPU": 2.0} and sorted(found["ddp"][1].split(",")) == ["0", "1"]


def test_a_worker_with_another_hash_version_is_refused_in_one_line(tmp_path):
    """A node whose kdtrack computes other identities (here: another HASH_VERSION, its copy first on its
    PYTHONPATH) refuses the study's cells: one line, exit 1, no cell run."""
    other = tmp_path / "other"
    shutil.copytree(REPO / "kdtrack", other / "kdtrack", ignore=shutil.ignore_patterns("__pycache__"))
    cells = other / "kdtrack" / "spine" / "cells.py"
    cells.write_text(re.sub(r"^HASH_VERSION = \d+", "HASH_VERSION = 999", cells.read_text(), flags=re.M))
    cluster = LocalRay(tmp_path, gpus=(0,), env={"PYTHONPATH": str(other)}).start()
    try:
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        code, err = finish(on_ray(cluster, uri, write_config(tmp_path), dataset(tmp_path, 16), tmp_path, "refused"))
    finally:
        cluster.stop()
    assert code == 1, err[-6000:]
    errors = [line for line in err.splitlines() if line.startswith("kdtrack: error:")]
    assert len(errors) == 1 and "Traceback" not in err.split("kdtrack: error:")[-1]
    assert re.fullmatch(r"kdtrack: error: a Ray worker on \S+ runs kdtrack [\d.]+ with hash version 999, the study "
                        rf"kdtrack [\d.]+ with hash version {HASH_VERSION}: install the study's kdtrack on every "
                        r"machine of the cluster", errors[0]), errors[0]
    assert not [run for run in all_runs(uri) if "kdtrack.seed" in run.data.tags], "no cell ran"
