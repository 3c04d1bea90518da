"""One cell of each study held to the tracking contract of DESIGN.md by one checker: the tags, params, per-epoch
and summary metrics, model, checkpoint, history and data lineage of every per-seed run, and the parent's
summary. Both studies stand on one spine, so one checker serves both."""
import contextlib
import io

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from kdtrack.cli import main
from kdtrack.multidomain import make_multidomain, save_multidomain
from kdtrack.tracking import load_model

SUMMARY = ("best_epoch", "best_val_loss", "best_val_acc", "final_val_acc", "model_epoch", "model_val_acc",
           "model_parameters", "latency_ms_per_image")
PER_EPOCH = ("train_loss", "val_loss", "train_acc", "val_acc")
TAGS = ("task", "dataset", "seed", "method", "selection", "config_hash", "cell_hash", "data_hash", "host", "pid")


def printed(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue().split()[-1]


def check_cell(parent_id: str, task: str, method: str, options: dict[str, str], valid: tuple) -> None:
    """The parent run `parent_id` and each of its per-seed runs against the contract; `options` are params the
    command was given, `valid` the (inputs, labels) a logged model is scored on."""
    client = MlflowClient()
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    seeds = parent.data.params["seeds"].split(",")
    assert sorted(child.data.tags["kdtrack.seed"] for child in children) == sorted(seeds)
    accuracies = []
    for child in children:
        tags, params, metrics = child.data.tags, child.data.params, child.data.metrics
        assert child.info.status == "FINISHED"
        assert all(f"kdtrack.{name}" in tags for name in TAGS)
        assert (tags["kdtrack.task"], tags["kdtrack.method"], params["method"]) == (task, method, method)
        assert tags["kdtrack.teacher_run_ids"]  # a student names its teachers
        assert {name: params[name] for name in options} == options
        assert params["seed"] == tags["kdtrack.seed"] and params["dataset"] == tags["kdtrack.dataset"]
        assert tags["kdtrack.seed"] in child.info.run_name and method in child.info.run_name
        assert all(name in metrics for name in SUMMARY)
        epochs = int(params["epochs"])
        history = pd.read_parquet(mlflow.artifacts.download_artifacts(f"{child.info.artifact_uri}/history.parquet"))
        assert list(history["epoch"]) == list(range(1, epochs + 1)) and set(PER_EPOCH) <= set(history.columns)
        for name in PER_EPOCH:
            points = client.get_metric_history(child.info.run_id, name)
            assert points and points[-1].step == epochs and points[-1].value == pytest.approx(history[name].iloc[-1])
        selected = int(metrics["best_epoch"])
        assert metrics["best_val_acc"] == pytest.approx(history["val_acc"].iloc[selected - 1])
        assert metrics["final_val_acc"] == pytest.approx(history["val_acc"].iloc[-1])
        assert metrics["best_val_acc"] * len(valid[1]) == pytest.approx(round(metrics["best_val_acc"] * len(valid[1])), abs=1e-9)
        contexts = {next(t.value for t in entry.tags if t.key == "mlflow.data.context") for entry in child.inputs.dataset_inputs}
        assert {"training", "validation"} <= contexts
        assert child.outputs.model_outputs, "the selected checkpoint is logged as a model"
        model = load_model(child.info.run_id)  # from its state_dict and architecture params, weights only
        with torch.no_grad():
            assert float((model(valid[0]).argmax(dim=1) == valid[1]).double().mean()) == pytest.approx(metrics["model_val_acc"])
        uri = f"runs:/{child.info.run_id}/model"
        assert mlflow.pyfunc.load_model(uri).metadata.signature is not None
        mlflow.pytorch.load_model(uri)
        accuracies.append(metrics["model_val_acc"])
    assert parent.data.metrics["val_acc_mean"] == pytest.approx(np.mean(accuracies))
    assert parent.data.metrics["val_acc_std"] == pytest.approx(np.std(accuracies, ddof=1))


def test_a_multidomain_student_cell_keeps_the_contract(tracking_uri, tmp_path):
    path = tmp_path / "small.pkl"
    data = make_multidomain(1.0, 0, n_train=300, n_valid=60, name="small")
    save_multidomain(data, path)
    parent = printed(["distill", "--data", str(path), "--seeds", "0,10", "--epochs", "30", "--alpha", "0.7"])
    valid = torch.from_numpy(data.valid.x).float(), torch.from_numpy(data.valid.y)
    check_cell(parent, "student", "kd", {"alpha": "0.7", "epochs": "30", "select_on": "accuracy-1se",
                                          "distiller": "kd"}, valid)


def test_an_image_student_cell_keeps_the_contract(tracking_uri):
    from kdtrack.images import augment
    from kdtrack.images.data import load_digits

    common = ["--dataset", "digits", "--epochs", "2", "--seeds", "0,1", "--arch", "resnet8x4", "--batch-size", "128"]
    teacher = printed(["train-teacher", *common])
    parent = printed(["simkd", *common, "--teacher", teacher, "--loss", "kl"])
    data = load_digits()
    valid = augment.to_float(augment.nchw(data.test.x), data.mean, data.std), torch.from_numpy(data.test.y)
    check_cell(parent, "student", "simkd-kl", {"loss": "kl", "epochs": "2", "select_on": "accuracy",
                                                "distiller": "simkd", "teacher": teacher}, valid)


def test_warming_up_model_logging_draws_nothing_from_the_seeded_generator():
    """It runs while seeded models are being built (kdtrack.spine.cells): a draw would change their weights."""
    from kdtrack.tracking.store import prepare_model_logging

    torch.manual_seed(0)
    state = torch.get_rng_state()
    prepare_model_logging.__wrapped__()
    assert torch.equal(torch.get_rng_state(), state)
