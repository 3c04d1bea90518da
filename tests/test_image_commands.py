"""The image path end to end on digits, as a user runs it: train-teacher, then simkd (and its variants) and
image-kd from the logged teacher. Each leaves FINISHED runs whose models reload through both MLflow flavours
and through kdtrack at the accuracy their runs logged; bad input is one line and no run."""
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from image_runs import assert_reloads_at_logged_accuracy, children as _children, digits_test_split as _test_images, run
from kdtrack.cli import main
from kdtrack.errors import InputError
from kdtrack.spine.scoring import accuracy
from kdtrack.images.options import recipe
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
    methods = {"l2": "simkd", "kd": "kd", "kl": "simkd-kl", "multi": "simkd-multi", "all-layer": "simkd-all-layer-labels"}
    for parent_id, method, task in [(store["teacher"], "ce", "teacher"),
                                    *[(run, methods[name], "student") for name, run in store["students"].items()]]:
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
    assert (params["kd"]["ce_weight"], params["kd"]["kd_weight"], params["kd"]["temperature"]) == ("1.0", "1.0", "4.0")
    assert {name: params[name]["distiller"] for name in params} == {name: "kd" if name == "kd" else "simkd" for name in params}


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
    (["image-kd", "--teacher", "x", "--kd-weight", "-1"], "kd-weight"),
    (["simkd", "--teacher", "0123456789abcdef"], "not found in the tracking store"),
    (["train-teacher", "--lr", "-1"], "lr"),
])
def test_bad_input_is_one_line_and_no_run(store, capsys, argv, message):
    before = len(mlflow.search_runs(search_all_experiments=True))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert len(mlflow.search_runs(search_all_experiments=True)) == before


@pytest.mark.parametrize("which", ["seed run", "parent run"])
def test_a_student_refuses_what_is_not_a_teacher_in_one_line(store, capsys, which):
    """A student's run, by its own id or its parent's, names no teacher: one line, exit 2, no run."""
    parent = store["students"]["l2"]
    reference = f"runs:/{_children(parent)[0].info.run_id}/model" if which == "seed run" else parent
    before = len(mlflow.search_runs(search_all_experiments=True))
    assert main(["simkd", "--teacher", reference, "--epochs", "1", "--seeds", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("is not a finished teacher" in err[0] or "names no teacher" in err[0])
    assert len(mlflow.search_runs(search_all_experiments=True)) == before


def test_a_teacher_named_by_its_parent_run_teaches_each_seed_its_own(store):
    """The id train-teacher printed: each student seed learns from the teacher of its seed, or every seed
    from the one --teacher-seed names."""
    teachers = {run.data.tags["kdtrack.seed"]: run.info.run_id for run in _children(store["teacher"])}
    own = run("simkd", "--epochs", "1", "--seeds", SEEDS, "--teacher", store["teacher"])
    assert {kid.data.tags["kdtrack.seed"]: kid.data.tags["kdtrack.teacher_run_ids"] for kid in _children(own)} == teachers
    one = run("simkd", "--epochs", "1", "--seeds", SEEDS, "--teacher", store["teacher"], "--teacher-seed", "1")
    assert {kid.data.tags["kdtrack.teacher_run_ids"] for kid in _children(one)} == {teachers["1"]}


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


def test_several_rates_are_tuned_on_the_holdout_then_the_chosen_one_trains_every_seed(store):
    """--lr with several rates: a tune cell tries each at every seed and chooses on the holdout; the student
    then trains at the chosen rate, its runs naming the rate, that it was tuned and by which run."""
    printed = run("simkd", "--epochs", "1", "--seeds", SEEDS, "--teacher", store["teacher_model"], "--lr", "0.01,0.05")
    student = MlflowClient().get_run(printed)
    tune = MlflowClient().get_run(student.data.params["tuned_by"])
    assert tune.data.tags["kdtrack.task"] == "tune" and tune.data.params["lrs"] == "0.01,0.05"
    trials = MlflowClient().search_runs([tune.info.experiment_id], f"tags.mlflow.parentRunId = '{tune.info.run_id}'")
    scores = {float(trial.data.params["lr"]): trial.data.metrics["selection_acc_mean"] for trial in trials}
    assert set(scores) == {0.01, 0.05} and scores[tune.data.metrics["best_lr"]] == max(scores.values())
    for kid in _children(printed):
        assert float(kid.data.params["lr"]) == tune.data.metrics["best_lr"]
        assert (kid.data.params["tuned"], kid.data.params["tuned_by"]) == ("lr", tune.info.run_id)


def test_precision_is_a_param_and_part_of_the_identity_and_compile_is_neither():
    """bf16 changes the numbers; compiling changes only how they are computed (within float tolerance), as
    the device does."""
    train = recipe("digits", precision="bf16", compile=True)
    assert train.params()["precision"] == "bf16" and "compile" not in train.params()
    assert replace(train, compile=False) == train and replace(train, precision="float32") != train
    with pytest.raises(InputError, match="precision must be one of float32, bf16, got 'fp16'"):
        recipe("digits", precision="fp16")


def test_seeds_train_side_by_side_as_each_would_alone(tracking_uri):
    """With two torch threads a command's two seeds train at once, in two one-thread worker processes that
    log their runs under the command's run; each seed's numbers are those it gets alone with one thread."""
    threads = torch.get_num_threads()
    args = ("train-teacher", "--dataset", "digits", "--arch", "resnet8x4", "--epochs", "1")
    try:
        torch.set_num_threads(2)
        side_by_side = _children(run(*args, "--seeds", "0,1"))
        torch.set_num_threads(1)
        alone = [_children(run(*args, "--seeds", seed))[0] for seed in ("0", "1")]
    finally:
        torch.set_num_threads(threads)
    assert [child.data.tags["kdtrack.seed"] for child in side_by_side] == ["0", "1"]
    for together, by_itself in zip(side_by_side, alone):
        assert together.info.status == "FINISHED"
        assert together.data.tags["kdtrack.torch_threads"] == by_itself.data.tags["kdtrack.torch_threads"] == "1"
        for metric in ("train_loss", "val_loss", "model_val_acc", "best_epoch"):
            assert together.data.metrics[metric] == by_itself.data.metrics[metric], metric
        assert_reloads_at_logged_accuracy(together)
