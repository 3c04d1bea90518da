"""The image study as a config, at a tiny size on digits: run through `mlflow run` and `kdtrack study`, resumed
without retraining anything, compared one row per declared method; each method's rate chosen on the holdout
alone (permuting the test labels changes no choice)."""
import contextlib
import dataclasses
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from kdtrack.cli import main
from kdtrack.images.cells import BaselineCell, tune_rate
from kdtrack.images.data import ImageSplit, load_digits
from kdtrack.images.options import recipe
from kdtrack.spine.scheduler import run_cells
from kdtrack.tracking import finished_tune_runs, load_trials

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_STORE = "study"
SEEDS = "0,1"
METHODS = ("student", "kd", "simkd", "simkd-kl")
CONFIG = """
study: images
dataset: digits
epochs: 1
train: {arch: resnet8x4, lr: tuned, batch_size: 128}
teachers: {t: {arch: resnet8x4, lr: 0.05}}
teacher_seed: 0
tune: {lr: [0.02, 0.1], seeds: 1}
methods:
  student: {task: baseline}
  kd: {teachers: t, distill: {distiller: kd}}
  simkd: {teachers: t, distill: {distiller: simkd}}
  simkd-kl: {teachers: t, distill: {distiller: simkd, loss: kl}}
"""


def run(argv: list[str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(argv) == 0, err.getvalue()[-3000:]
    return out.getvalue() + err.getvalue()


def seed_runs() -> list:
    return [run for run in mlflow.search_runs(search_all_experiments=True, output_format="list")
            if "kdtrack.seed" in run.data.tags]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study under `mlflow run -e image_study`, then the same study again through `kdtrack study`."""
    folder = tmp_path_factory.mktemp("image-study")
    config = folder / "tiny.yaml"
    config.write_text(CONFIG)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=uri, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    command = [str(BIN / "mlflow"), "run", str(REPO), "-e", "image_study", "--env-manager", "local",
               "-P", f"config={config}", "-P", f"seeds={SEEDS}", "-P", "workers=2"]
    first = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-4000:]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        mlflow.set_tracking_uri(uri)
        before = {run.info.run_id for run in seed_runs()}
        again = run(["study", "--config", str(config), "--seeds", SEEDS, "--workers", "1"])
        yield {"uri": uri, "first": first, "again": again, "before": before, "config": config}
        mlflow.set_tracking_uri(None)


def test_the_study_ran_every_declared_method_at_every_seed(study):
    runs = seed_runs()
    students = [run for run in runs if run.data.tags["kdtrack.task"] in ("baseline", "student")]
    by_method = {}
    for seed_run in students:
        by_method.setdefault(seed_run.data.tags["kdtrack.method"], []).append(seed_run.data.tags["kdtrack.seed"])
    assert {method: sorted(seeds) for method, seeds in by_method.items()} == {method: ["0", "1"] for method in METHODS}
    teachers = [run for run in runs if run.data.tags["kdtrack.task"] == "teacher"]
    assert [run.data.tags["kdtrack.seed"] for run in teachers] == ["0"], "one teacher, of teacher_seed, for all"
    for student in (run for run in students if run.data.tags["kdtrack.task"] == "student"):
        assert student.data.tags["kdtrack.teacher_run_ids"] == teachers[0].info.run_id


def test_each_method_trains_at_the_rate_its_tune_cell_chose_and_says_so(study):
    client = MlflowClient()
    for seed_run in (run for run in seed_runs() if run.data.tags["kdtrack.task"] != "teacher"):
        tune = client.get_run(seed_run.data.params["tuned_by"])
        assert tune.data.tags["kdtrack.task"] == "tune" and tune.data.params["lrs"] == "0.02,0.1"
        assert float(seed_run.data.params["lr"]) == tune.data.metrics["best_lr"]
        assert seed_run.data.params["tuned"] == "lr"
        trials = load_trials(tune.info.artifact_uri)
        assert sorted(trials["lr"]) == [0.02, 0.1] and list(trials["seed"]) == [0, 0]  # tune.seeds: the first seed
        means = trials.groupby("lr")["selection_acc"].mean()
        assert means[tune.data.metrics["best_lr"]] == means.max()


def test_a_resumed_study_trains_nothing_again(study):
    assert {run.info.run_id for run in seed_runs()} == study["before"]
    assert re.search(r"^(\d+) cell\(s\), teachers and tuning grids counted: \1 done before .*, 0 to train$", study["again"],
                     re.MULTILINE), "every cell (the teacher and the tuning grids among them) counted as done"


def test_compare_has_one_row_per_declared_method_with_every_seed(study):
    table = run(["compare", "--format", "csv"]).splitlines()
    header = table[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in table[1:] if line.count(",") == len(header) - 1]
    assert [(row["method"], row["n"]) for row in rows] == [(method, "2") for method in METHODS]
    assert all(int(row["parameters"]) > 0 and float(row["latency_ms"]) > 0 for row in rows)
    assert int(rows[2]["parameters"]) > int(rows[0]["parameters"]), "SimKD deploys a projector beside the backbone"
    paired = run(["compare", "--format", "csv", "--paired", "student"]).splitlines()
    assert {line.split(",")[1] for line in paired[1:] if line.startswith("digits,")} == set(METHODS[1:])


def test_the_study_logs_its_sweep_and_size_figures(study):
    client = MlflowClient()
    study_run = next(run for run in mlflow.search_runs(search_all_experiments=True, output_format="list")
                     if run.data.tags.get("kdtrack.task") == "study")
    logged = {artifact.path.split("/")[-1] for artifact in client.list_artifacts(study_run.info.run_id, "summary")}
    assert {"table.csv", "accuracy.png", "curves.png", "sweep.png", "accuracy_vs_size.png"} <= logged


def test_the_chosen_rate_does_not_see_the_test_labels(tmp_path, monkeypatch):
    """The same tune cell on digits and on digits with its test labels permuted, in a store of its own: the
    same trials, the same holdout scores, the same choice."""
    monkeypatch.chdir(tmp_path)
    previous = mlflow.get_tracking_uri()  # the module's study store is still MLflow's
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    digits = load_digits()
    permuted = dataclasses.replace(digits, test=ImageSplit(digits.test.x, np.random.default_rng(0).permutation(digits.test.y)))
    chosen = []
    for data in (digits, permuted):
        cell = BaselineCell(data=data, seeds=(0,), train=recipe("digits", epochs=1, batch_size=128), label="alone")
        tune = tune_rate(cell, (0.02, 0.1)).tuned_by
        run_cells([tune])
        tunes = finished_tune_runs(None)
        chosen.append(load_trials(tunes.loc[tunes["cell_hash"] == tune.hash, "artifact_uri"].item()))
    mlflow.set_tracking_uri(previous)
    columns = ["lr", "seed", "selection_acc", "selection_ce"]
    assert chosen[0][columns].equals(chosen[1][columns])


@pytest.mark.parametrize("config", ["configs/simkd-digits.yaml", "configs/simkd-cifar100.yaml"])
def test_the_shipped_image_configs_build_their_graphs(config, tmp_path, monkeypatch):
    """Every method of each shipped config becomes a cell (a tuned one after its tune cell, a student after
    its teachers' cell), on a CIFAR-100-shaped folder for the CIFAR config; nothing trains."""
    from cifar_folder import write_cifar100_folder
    from kdtrack.spine.study import check_config, graph, read_config
    from kdtrack.studies import study_of

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    study = read_config(str(REPO / config))
    kind = study_of(study)
    check_config(study, kind)
    folder = [str(write_cifar100_folder(tmp_path / "cifar", 1000, 100))] if study.raw["dataset"] == "cifar100" else None
    data = kind.load_data(study, folder)[0]
    cells = kind.cells(study, data, (0, 1), None, "cpu")
    assert [cell.label for cell in cells] == list(study.raw["methods"])
    tasks = {cell.task for cell in graph(cells)}
    assert {"baseline", "student", "teacher"} <= tasks and ("tune" in tasks) == any(
        "tuned" in str(method) for method in [study.raw.get("train"), *study.raw["methods"].values()])
