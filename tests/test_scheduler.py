"""The scheduler: a study's graph in dependency order with shared teachers trained once, the same numbers
with one worker or two, a terminated study that leaves no run RUNNING, and what it says of its progress."""
import contextlib
import io
import itertools
import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest

from kdtrack import progress
from kdtrack.cli import main
from kdtrack.multidomain import load_multidomain, make_multidomain, save_multidomain
from kdtrack.multidomain.study import MULTIDOMAIN
from kdtrack.spine.study import StudyConfig
from kdtrack.spine.scheduler import plan_cells, waited_on_first

CONFIG = {
    "epochs": 40,
    "train": {"selection": "holdout"},
    "tune": {"kd": {"alpha": [0.3, 0.7], "temperature": [4]}, "epochs": 20},
    "methods": {
        "baseline": {"task": "baseline"},
        "kd": {"distill": {"alpha": 0.5, "temperature": 4}},
        "kd-es": {"distill": {"alpha": "tuned", "temperature": 4}},
        "kd-bn": {"train": {"batch_norm": True}, "distill": {"alpha": 0.5, "temperature": 4}},
    },
}


@pytest.fixture()
def dataset(tmp_path):
    path = tmp_path / "tiny.pkl"
    save_multidomain(make_multidomain(0.75, 2, n_train=240, n_valid=60, name="tiny"), path)
    return str(path)


def write_config(tmp_path) -> str:
    import yaml

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return str(path)


def test_plan_puts_dependencies_first_and_trains_shared_teachers_once(tracking_uri, dataset):
    cells = MULTIDOMAIN.cells(StudyConfig("study.yaml", CONFIG), load_multidomain(dataset), (0, 10), None, "cpu")
    steps, done = plan_cells(cells, resume=True)
    plan = [cell for cell, _ in steps]
    assert done == 0
    names = [cell.name for cell in plan]
    assert names.count("teachers · tiny") == 1, "kd, kd-es and kd-bn share one teachers cell"
    assert sorted(names) == sorted(["baseline · tiny", "teachers · tiny", "kd-es-tune · tiny", "kd · tiny",
                                    "kd-es · tiny", "kd-bn · tiny"])
    position = {name: index for index, name in enumerate(names)}
    for student in ("kd · tiny", "kd-es · tiny", "kd-bn · tiny"):
        assert position["teachers · tiny"] < position[student]
    assert position["teachers · tiny"] < position["kd-es-tune · tiny"] < position["kd-es · tiny"]


def test_workers_start_what_the_longest_chains_wait_on_first(tracking_uri, dataset):
    """Teachers gate a tune cell that gates a student: teachers, then the tune cell, then the others in plan
    order (the baseline, which nothing waits on, among them)."""
    cells = MULTIDOMAIN.cells(StudyConfig("study.yaml", CONFIG), load_multidomain(dataset), (0, 10), None, "cpu")
    plan, _ = plan_cells(cells, resume=True)
    first = [cell.name for cell, _ in waited_on_first(plan)]
    rest = [cell.name for cell, _ in plan if cell.name not in ("teachers · tiny", "kd-es-tune · tiny")]
    assert first == ["teachers · tiny", "kd-es-tune · tiny", *rest]


def run_study(config: str, data: str, uri: str, workers: int, monkeypatch) -> dict:
    """A study in its own store; each per-seed run's logged accuracy, best epoch and loss, by method, seed
    and domain."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["study", "--config", config, "--data", data, "--seeds", "0,10", "--workers", str(workers)]) == 0
        runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert {run.info.status for run in runs} == {"FINISHED"}
    study = next(run for run in runs if run.data.tags["kdtrack.task"] == "study")
    cells = [run for run in runs if run.data.tags["kdtrack.task"] in ("baseline", "teachers", "distill", "tune")
             and "kdtrack.seed" not in run.data.tags]
    assert {run.data.tags["mlflow.parentRunId"] for run in cells} == {study.info.run_id}, "cells nest under the study"
    return {(run.data.tags["kdtrack.method"], run.data.tags["kdtrack.seed"], run.data.tags.get("kdtrack.domain")):
            (run.data.metrics["model_val_acc"], run.data.metrics["best_epoch"], run.data.metrics["best_val_loss"])
            for run in runs if "kdtrack.seed" in run.data.tags}


def test_two_workers_give_the_numbers_one_gives(tmp_path, dataset, monkeypatch):
    config = write_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    alone = run_study(config, dataset, f"sqlite:///{tmp_path / 'one.db'}", 1, monkeypatch)
    together = run_study(config, dataset, f"sqlite:///{tmp_path / 'two.db'}", 2, monkeypatch)
    assert len(alone) == 2 * (1 + 3 + 3) and alone == together


def test_terminated_study_leaves_no_run_running(tmp_path, dataset):
    """SIGTERM (a scheduler's time limit) to a study whose cells train in workers: every open run, the
    workers' included, ends FAILED, and the command exits 130."""
    config = tmp_path / "long.yaml"
    config.write_text("epochs: 200000\nmethods:\n  baseline: {task: baseline}\n  kd: {distill: {alpha: 0.5}}\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs_in(uri)  # the store exists before the study starts, so that reading it races nothing
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    study = subprocess.Popen([sys.executable, "-m", "kdtrack", "study", "--config", str(config), "--data", dataset,
                              "--seeds", "0", "--workers", "2"], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(running(uri)) < 3:  # the study, and the baseline and teachers cells in their workers
            assert time.monotonic() < deadline and study.poll() is None, "the cells did not start"
            time.sleep(0.5)
        study.send_signal(signal.SIGTERM)
        assert study.wait(timeout=60) == 130
    finally:
        study.kill()
    statuses = [run.info.status for run in runs_in(uri)]
    assert set(statuses) == {"FAILED"} and len(statuses) >= 3


def running(uri: str) -> list:
    return [run for run in runs_in(uri) if run.info.status == "RUNNING"]


def runs_in(uri: str) -> list:
    """Every run of the store, which opening creates if it does not exist yet."""
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(search_all_experiments=True, output_format="list")
    finally:
        mlflow.set_tracking_uri(None)


def test_a_cells_work_is_its_epochs_times_its_models(tracking_uri, dataset):
    """What the study's time estimate weighs cells by: teachers are a model per domain and seed, a tuning
    grid a model per trial and seed."""
    cells = MULTIDOMAIN.cells(StudyConfig("study.yaml", CONFIG), load_multidomain(dataset), (0, 10), None, "cpu")
    plan, _ = plan_cells(cells, resume=True)
    work = {cell.name: cell.work for cell, _ in plan}
    assert work["teachers · tiny"] == 40 * 2 * 3
    assert work["kd-es-tune · tiny"] == 20 * 2 * 2  # alpha 0.3 and 0.7 at T 4
    assert work["kd · tiny"] == work["baseline · tiny"] == 40 * 2


def test_the_time_left_is_the_time_so_far_times_the_work_left_over_the_work_done(monkeypatch):
    clock = itertools.count(0.0, 10.0)  # each reading 10 s after the last
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    remaining = progress.Remaining(total=100)
    assert remaining.finished(25) == "25% of the work (epochs x models) done in 00:10, about 00:30 left"
    assert remaining.finished(25) == "50% of the work (epochs x models) done in 00:20, about 00:20 left"
    assert remaining.finished(50) == "100% of the work (epochs x models) done in 00:30, about 00:00 left"


def test_a_progress_line_is_written_once_for_each_redraw_and_once_at_the_end(monkeypatch):
    """Each cell's last line (100%) was written twice: by the last update and again on closing."""
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    stream = io.StringIO()
    bar = progress.Progress("cell", 5, stream)
    for done in range(1, 6):
        bar.tick(done, lambda: "mean val_acc 0.9")
    lines = stream.getvalue().splitlines()
    assert [line.split(": ")[1].split()[0] for line in lines] == ["0/5", "1/5", "2/5", "3/5", "4/5", "5/5"]
    assert lines[-1].endswith("mean val_acc 0.9")
