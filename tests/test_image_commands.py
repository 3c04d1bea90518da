"""The image path end to end on digits, as a user runs it: train-teacher, then simkd (and its variants) and
image-kd from the logged teacher. Each leaves FINISHED runs whose models reload through both MLflow flavours
and through kdtrack at the accuracy their runs logged; bad input is one line and no run."""
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from image_runs import assert_reloads_at_logged_accuracy, children as _children, digits_test_split as _test_images, run
from kdtrack.cli import main
from kdtrack.images.cells import accuracy
from kdtrack.tracking import load_model

SHARED_STORE = "store"
EPOCHS = "3"
SEEDS = "0,1"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One teacher and every kind of student, in one store."""
    folder = tmp_path_factory.mktemp("images")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    common = ("--dataset", "digits", "--epochs", EPOCHS, "--seeds", SEEDS, "--lr", "0.05")  # l2 SimKD learns fast at 0.05
    teacher = run("train-teacher", *common, "--arch", "resnet8x4")
    teacher_seed = _children(teacher)[0]
    model = f"runs:/{teacher_seed.info.run_id}/model"
    variant = ("--dataset", "digits", "--epochs", "2", "--seeds", "0", "--teacher", model)
    students = {
        "l2": run("simkd", *common, "--teacher", model),
        "kd": run("image-kd", *common, "--teacher", model),
        "kl": run("simkd", *variant, "--loss", "kl"),
        "multi": run("simkd", *variant, "--projector", "multi"),
        "all-layer": run("simkd", *variant, "--projector", "all-layer", "--use-labels"),
    }
    return {"uri": uri, "teacher": teacher, "teacher_model": model, "students": students}


def test_every_command_leaves_finished_runs_tagged_per_seed(store):
    for parent_id, method, task in [(store["teacher"], "ce", "teacher"),
                                    *[(run, "kd" if name == "kd" else "simkd", "student")
                                      for name, run in store["students"].items()]]:
        parent = MlflowClient().get_run(parent_id)
        assert parent.info.status == "FINISHED"
        assert parent.data.tags["kdtrack.method"] == method and parent.data.tags["kdtrack.task"] == task
        children = _children(parent_id)
        seeds = [run.data.tags["kdtrack.seed"] for run in children]
        assert seeds == (["0"] if MlflowClient().get_run(parent_id).data.params["epochs"] == "2" else ["0", "1"])
        for child in children:
            assert child.info.status == "FINISHED" and child.data.tags["kdtrack.dataset"] == "digits"
            assert child.data.params["world_size"] == "1"
            history = MlflowClient().get_metric_history(child.info.run_id, "train_loss")
            assert len(history) == int(child.data.params["epochs"])
        accuracies = [run.data.metrics["model_val_acc"] for run in children]
        assert parent.data.metrics["val_acc_mean"] == pytest.approx(np.mean(accuracies))


def test_the_variants_are_told_apart_by_their_params(store):
    params = {name: MlflowClient().get_run(run).data.params for name, run in store["students"].items()}
    assert params["kl"]["loss"] == "kl" and params["l2"]["loss"] == "l2"
    assert params["multi"]["projector"] == "multi" and params["all-layer"]["use_labels"] == "true"
    assert params["kd"]["alpha"] == "0.9" and params["kd"]["temperature"] == "4.0"


def test_the_kl_variant_never_has_a_negative_loss(store):
    for child in _children(store["students"]["kl"]):
        losses = [m.value for m in MlflowClient().get_metric_history(child.info.run_id, "train_loss")]
        assert min(losses) >= 0


def test_a_simkd_student_learns(store):
    """Well above chance (10%) after three epochs."""
    for child in _children(store["students"]["l2"]):
        assert child.data.metrics["model_val_acc"] > 0.5


@pytest.mark.parametrize("name", ["teacher", "l2", "multi", "kd"])
def test_models_reload_through_both_flavours_at_the_logged_accuracy(store, name):
    parent = store["teacher"] if name == "teacher" else store["students"][name]
    assert_reloads_at_logged_accuracy(_children(parent)[0])


def test_a_simkd_model_is_deployed_without_the_teacher_backbone(store):
    child = _children(store["students"]["l2"])[0]
    teacher = load_model(store["teacher_model"])
    model = load_model(child.info.run_id)
    assert child.data.metrics["model_parameters"] == sum(p.numel() for p in model.parameters())
    assert not any(name.startswith("stages") or name.startswith("stem") for name, _ in model.named_parameters())
    assert torch.equal(model.classifier.weight, teacher.classifier.weight)
    assert child.data.metrics["latency_ms_per_image"] > 0
    assert child.data.params["teacher"] == store["teacher_model"]


def test_the_multi_projector_is_dropped_from_the_deployed_model(store):
    single = load_model(_children(store["students"]["l2"])[0].info.run_id)
    multi = load_model(_children(store["students"]["multi"])[0].info.run_id)
    assert single.state_dict().keys() == multi.state_dict().keys()


@pytest.mark.parametrize("argv, message", [
    (["simkd", "--teacher", "runs:/0123456789abcdef/model"], "not found in the tracking store"),
    (["train-teacher", "--dataset", "cifar100"], "cifar100"),
    (["train-teacher", "--dataset", "cifar100", "--data", "/no/such/folder"], "/no/such/folder"),
    (["train-teacher", "--epochs", "3", "--milestones", "5"], "milestones"),
    (["simkd", "--teacher", "x", "--multi-weight", "1.5"], "multi-weight"),
    (["simkd", "--teacher", "x", "--factor", "0"], "factor"),
    (["image-kd", "--teacher", "x", "--alpha", "2"], "alpha"),
    (["train-teacher", "--lr", "-1"], "lr"),
])
def test_bad_input_is_one_line_and_no_run(store, capsys, argv, message):
    before = len(mlflow.search_runs(search_all_experiments=True))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert len(mlflow.search_runs(search_all_experiments=True)) == before


def test_a_student_refuses_a_teacher_that_is_not_an_image_network(store, capsys):
    student = _children(store["students"]["l2"])[0]
    assert main(["simkd", "--teacher", f"runs:/{student.info.run_id}/model", "--epochs", "1", "--seeds", "0"]) == 2
    assert "not an image network teacher" in capsys.readouterr().err


def test_torchrun_leaves_one_run_per_seed(store, tmp_path):
    """Two processes under torchrun (DistributedDataParallel, gloo): one parent and one child per seed,
    world_size 2 logged, the student's model reloadable."""
    torchrun = Path(sys.executable).parent / "torchrun"
    for argv in (["train-teacher", "--arch", "resnet8x4"], ["simkd", "--teacher", store["teacher_model"]]):
        before = {run.info.run_id for run in MlflowClient().search_runs(_experiments(), max_results=5000)}
        result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "kdtrack", *argv,
                                 "--epochs", "1", "--seeds", "5"], cwd=tmp_path, capture_output=True, text=True,
                                env={**os.environ, "MLFLOW_TRACKING_URI": store["uri"]}, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        new = [run for run in MlflowClient().search_runs(_experiments(), max_results=5000)
               if run.info.run_id not in before]
        assert len(new) == 2, [run.info.run_name for run in new]
        parent = next(run for run in new if "kdtrack.seed" not in run.data.tags)
        child = next(run for run in new if "kdtrack.seed" in run.data.tags)
        assert result.stdout.split() == [parent.info.run_id]
        assert child.data.params["world_size"] == "2" and child.data.tags["kdtrack.seed"] == "5"
        assert all(run.info.status == "FINISHED" for run in new)
        x, y = _test_images()
        assert accuracy(load_model(child.info.run_id), x, y) == pytest.approx(child.data.metrics["model_val_acc"])


def _experiments() -> list[str]:
    return [experiment.experiment_id for experiment in MlflowClient().search_experiments()]


def test_a_learning_rate_sweep_is_a_cell_per_rate_under_one_run(store):
    sweep = run("simkd", "--epochs", "1", "--seeds", "0", "--teacher", store["teacher_model"], "--lr", "0.01,0.05")
    parent = MlflowClient().get_run(sweep)
    assert parent.data.tags["kdtrack.task"] == "sweep" and parent.data.params["lr"] == "0.01,0.05"
    assert "kdtrack.config_hash" not in parent.data.tags  # a sweep is not a configuration of its own
    cells = sorted(MlflowClient().search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{sweep}'"),
                   key=lambda run: float(run.data.params["lr"]))
    assert [cell.data.params["lr"] for cell in cells] == ["0.01", "0.05"]
    for cell in cells:
        assert cell.info.status == "FINISHED" and cell.data.tags["kdtrack.method"] == "simkd"
        assert [child.data.params["lr"] for child in _children(cell.info.run_id)] == [cell.data.params["lr"]]
