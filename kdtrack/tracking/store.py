"""Every MLflow call kdtrack makes lives here: runs, tags, params, metrics, artifacts, models, look-ups.

The tracking store is MLflow's own default (or MLFLOW_TRACKING_URI); the active experiment is MLflow's
(or MLFLOW_EXPERIMENT_NAME, or `mlflow run --experiment-name`) unless a command names one.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.entities import Metric, Run
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from ..errors import InputError
from ..models.mlp import MLP, MLPConfig

TAG = "kdtrack."
STATE_DICT_PATH = "checkpoint/state_dict.pt"
HISTORY_PATH = "history.parquet"
_METRICS_PER_CALL = 1000  # MLflow's log_batch limit
ACCURACY_METRICS = ("model_val_acc", "best_val_acc", "final_val_acc")
"""A per-seed run's validation accuracy at its logged model, its best checkpoint and its last epoch."""


@dataclass
class SeedRun:
    """Everything one per-seed (or per-seed-and-domain) child run logs."""

    name: str
    tags: dict[str, str]
    params: dict[str, str]
    history: pd.DataFrame
    """One row per epoch: `epoch` and the per-epoch metrics."""
    summary: dict[str, float]
    model: MLP
    input_example: np.ndarray


def use_experiment(name: str | None) -> None:
    if name:
        try:
            mlflow.set_experiment(name)
        except mlflow.exceptions.MlflowException as error:
            raise InputError(f"experiment {name!r}: {error.message.splitlines()[0]}") from None


@contextmanager
def parent_run(name: str, tags: dict[str, str], params: dict[str, str]) -> Iterator[str]:
    """A run for one command; nested under the active run if there is one (a study, `mlflow run`).

    MLflow ends it FAILED if the body raises, so an interrupted command never leaves it RUNNING.
    """
    nested = mlflow.active_run() is not None
    with mlflow.start_run(run_name=None if _resumed_by_mlflow_run(nested) else name, nested=nested) as run:
        mlflow.set_tags({TAG + key: value for key, value in tags.items()})
        logged = run.data.params  # `mlflow run` has logged the entry point's own parameters already
        mlflow.log_params({key: value for key, value in params.items() if key not in logged})
        yield run.info.run_id


def _resumed_by_mlflow_run(nested: bool) -> bool:
    """Under `mlflow run` the outermost run already exists and keeps the name MLflow gave it."""
    return not nested and "MLFLOW_RUN_ID" in os.environ


def log_seed_run(seed_run: SeedRun, log_every: int) -> str:
    """Log one child run of the active run: tags, params, thinned metrics, history, summary, model."""
    with mlflow.start_run(run_name=seed_run.name, nested=True) as run:
        run_id = run.info.run_id
        mlflow.set_tags({TAG + key: value for key, value in seed_run.tags.items()})
        mlflow.log_params(seed_run.params)
        _log_history(run_id, seed_run.history, log_every)
        mlflow.log_metrics(seed_run.summary)
        _log_model(seed_run.model, seed_run.input_example)
    return run_id


def log_trial(name: str, tags: dict[str, str], params: dict[str, str], metrics: dict[str, float]) -> str:
    """A child run of the active run that records a trial's settings and scores, no model."""
    with mlflow.start_run(run_name=name, nested=True) as run:
        mlflow.set_tags({TAG + key: value for key, value in tags.items()})
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
    return run.info.run_id


def log_text(text: str, name: str) -> None:
    """A text artifact of the active run (a study's config, say)."""
    mlflow.log_text(text, name)


def log_summary(metrics: dict[str, float]) -> None:
    mlflow.log_metrics(metrics)


def auto_log_every(epochs: int) -> int:
    """The default metric thinning: at most about 1,000 logged points per metric."""
    return max(1, math.ceil(epochs / 1000))


def _log_history(run_id: str, history: pd.DataFrame, log_every: int) -> None:
    """Per-epoch metrics at every `log_every`-th epoch and the last; the full history as parquet."""
    epochs = history["epoch"].to_numpy()
    keep = (epochs % log_every == 0) | (epochs == epochs[-1])
    now = int(time.time() * 1000)
    metrics = [
        Metric(column, float(value), now, int(epoch))
        for column in history.columns
        if column != "epoch"
        for epoch, value in zip(epochs[keep], history[column].to_numpy()[keep])
    ]
    client = MlflowClient()
    for start in range(0, len(metrics), _METRICS_PER_CALL):
        client.log_batch(run_id, metrics=metrics[start : start + _METRICS_PER_CALL])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / HISTORY_PATH
        history.to_parquet(path, index=False)
        mlflow.log_artifact(str(path))


def _log_model(model: MLP, input_example: np.ndarray) -> None:
    """The model in MLflow's default format, plus its state_dict for a full rebuild (see load_mlp)."""
    model = model.eval()
    with torch.no_grad():
        output = model(torch.from_numpy(input_example)).numpy()
    mlflow.pytorch.log_model(
        model,
        name="model",
        signature=infer_signature(input_example, output),
        input_example=input_example,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(STATE_DICT_PATH).name
        torch.save(model.state_dict(), path)
        mlflow.log_artifact(str(path), artifact_path=str(Path(STATE_DICT_PATH).parent))


def load_mlp(run_id: str) -> MLP:
    """Rebuild a run's full model from its architecture params and state_dict (weights only)."""
    run = MlflowClient().get_run(run_id)
    path = MlflowClient().download_artifacts(run_id, STATE_DICT_PATH)
    model = MLP(MLPConfig.from_params(run.data.params))
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def get_run(run_id: str) -> Run:
    try:
        return MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException as error:
        raise InputError(f"run {run_id}: not found in the tracking store ({mlflow.get_tracking_uri()})") from error


def child_runs(parent_id: str) -> list[Run]:
    parent = get_run(parent_id)
    return MlflowClient().search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=5000
    )


def find_finished(config_hash: str, method: str | None = None) -> Run | None:
    """The newest FINISHED run of any experiment with this configuration hash (and `method` tag), if any."""
    client = MlflowClient()
    experiment_ids = _all_experiment_ids(client)
    method_filter = f" and tags.`{TAG}method` = '{method}'" if method else ""
    runs = client.search_runs(
        experiment_ids,
        filter_string=f"tags.`{TAG}config_hash` = '{config_hash}' and attributes.status = 'FINISHED'{method_filter}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def finished_seed_runs(experiment: str | None) -> pd.DataFrame:
    """Every FINISHED per-seed run (of `experiment`, or of all experiments): its kdtrack tags, its
    summary accuracies and start time, one row per run."""
    client = MlflowClient()
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise InputError(f"experiment {experiment!r}: not found in the tracking store ({mlflow.get_tracking_uri()})")
        experiment_ids = [found.experiment_id]
    else:
        experiment_ids = _all_experiment_ids(client)
    runs = mlflow.search_runs(experiment_ids, filter_string="attributes.status = 'FINISHED'", output_format="list",
                              max_results=50000)
    rows = [
        {**{key[len(TAG):]: value for key, value in run.data.tags.items() if key.startswith(TAG)},
         "run_id": run.info.run_id, "start_time": run.info.start_time,
         **{metric: run.data.metrics.get(metric) for metric in ACCURACY_METRICS}}
        for run in runs
        if TAG + "seed" in run.data.tags
    ]
    columns = ["task", "dataset", "method", "selection", "domain", "seed", "cell_hash", "config_hash", "run_id",
               "start_time", *ACCURACY_METRICS]
    return pd.DataFrame(rows, columns=columns)


def _all_experiment_ids(client: MlflowClient) -> list[str]:
    return [experiment.experiment_id for experiment in client.search_experiments()]


def tag(run: Run, key: str) -> str | None:
    return run.data.tags.get(TAG + key)
