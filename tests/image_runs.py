"""What the image-path tests share: running a command, a parent run's per-seed children, digits' test split
as network input, and the check that a logged model reloads at the accuracy its run logged."""
from __future__ import annotations

import contextlib
import io

import mlflow
import numpy as np
import pytest
import torch
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from kdtrack.cli import main
from kdtrack.images import augment
from kdtrack.spine.scoring import accuracy
from kdtrack.images.data import load_digits
from kdtrack.tracking import load_model


def run(*argv: str) -> str:
    """A command's printed run id."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue().split()[-1]


def children(parent_id: str) -> list[Run]:
    """A parent run's per-seed runs, by seed."""
    parent = MlflowClient().get_run(parent_id)
    runs = MlflowClient().search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    return sorted(runs, key=lambda run: int(run.data.tags["kdtrack.seed"]))


def digits_test_split() -> tuple[torch.Tensor, torch.Tensor]:
    """Digits' test images as the networks see them, and their labels."""
    data = load_digits()
    return augment.to_float(augment.nchw(data.test.x), data.mean, data.std), torch.from_numpy(data.test.y)


def assert_reloads_at_logged_accuracy(child: Run) -> None:
    """The run's model, rebuilt by kdtrack and loaded by MLflow's pytorch and pyfunc flavours, scores the
    accuracy the run logged on digits' test split."""
    x, y = digits_test_split()
    logged = child.data.metrics["model_val_acc"]
    assert accuracy(load_model(child.info.run_id), x, y) == pytest.approx(logged)
    uri = f"runs:/{child.info.run_id}/model"
    pytorch = mlflow.pytorch.load_model(uri)
    with torch.no_grad():
        assert float((pytorch(x).argmax(dim=1) == y).float().mean()) == pytest.approx(logged)
    pyfunc = mlflow.pyfunc.load_model(uri)
    assert pyfunc.metadata.signature is not None
    predicted = torch.from_numpy(np.asarray(pyfunc.predict(x.numpy()))).argmax(dim=1)
    assert float((predicted == y).float().mean()) == pytest.approx(logged)
