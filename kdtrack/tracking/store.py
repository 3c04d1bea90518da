"""Runs and look-ups: the MLflow calls that write a run (tags, params, metrics, artifacts, models) and read
finished ones back. The rest of kdtrack's MLflow calls are beside it in this package: the model registry
(registry.py), reaching the store and ending dead processes' runs (connection.py), cells' claims (claims.py).

The tracking store is MLflow's own default (or MLFLOW_TRACKING_URI); the active experiment is MLflow's
(or MLFLOW_EXPERIMENT_NAME, or `mlflow run --experiment-name`) unless a command names one.
"""
from __future__ import annotations

import functools
import math
import os
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import mlflow
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from mlflow.entities import Metric, Param, Run
from mlflow.models import ModelSignature, infer_signature, set_signature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema
from torch.nn.utils import skip_init

from ..errors import InputError
from ..metrics import ACCURACY_METRICS
from ..models import from_checkpoint
from . import claims, connection
from .connection import TAG, process_tags, quoted

# kdtrack reads back many small artifacts (histories, checkpoints); a progress bar for each floods stderr
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# kdtrack's stdout carries results (run ids, tables, CSV); MLflow would add a run's URL there under a server
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

STATE_DICT_PATH = "checkpoint/state_dict.pt"
HISTORY_PATH = "history.parquet"
TRIALS_PATH = "trials.parquet"
STUDY_CELLS = "study_cells.txt"
"""A study run's artifact: the configuration hash of every cell it used, one a line, wherever they ran."""
_PER_CALL = {"entities": 1000, "params": 100}  # MLflow's log_batch limits
METRIC_POINTS = 50
"""Points per metric that a run logs by default: enough for the UI's charts, and cheap to write (each
point costs about 0.1 ms on SQLite, where a 30,000-epoch model trains in 2 s: 100 points were a tenth of a
seed run's logging); history.parquet keeps every epoch, and the figures draw from it."""
SUMMARY_METRICS = (*ACCURACY_METRICS, "best_val_loss", "model_epoch", "model_parameters", "latency_ms_per_image")


@dataclass
class DataInput:
    """A dataset a run saw, for MLflow's dataset tracking: its features and targets, the file it came
    from, its name and its content hash."""

    features: np.ndarray
    targets: np.ndarray
    source: str
    name: str
    digest: str


@dataclass
class SeedRun:
    """Everything one per-seed (or per-seed-and-domain) child run logs."""

    name: str
    tags: dict[str, str]
    params: dict[str, str]
    history: pd.DataFrame
    """One row per epoch: `epoch` and the per-epoch metrics."""
    summary: dict[str, float]
    model: torch.nn.Module
    input_example: np.ndarray
    """A few inputs: points (N, features) become named columns in the signature; images stay tensors."""
    inputs: dict[str, DataInput]
    """The data it saw, by context (`training`, `validation`)."""


def use_experiment(name: str | None) -> None:
    if name:
        connection.open_store()
        try:
            experiment = mlflow.set_experiment(name)
            # MLflow 3.17 leaves the experiment inactive when another process created it at the same moment
            mlflow.set_experiment(experiment_id=experiment.experiment_id)
        except mlflow.exceptions.MlflowException as error:
            raise InputError(f"experiment {name!r}: {error.message.splitlines()[0]}") from None


def machine_local_locations() -> list[str]:
    """Where the runs of the active experiment would go that only this machine sees: the store, and the
    experiment's artifact location (a path: `mlflow server` without --artifacts-destination, or a SQLite
    store's ./mlruns)."""
    uri = mlflow.get_tracking_uri()
    experiment = connection.client().get_experiment(mlflow.tracking.fluent._get_experiment_id())
    return [where for where in (uri, experiment.artifact_location) if connection.machine_local(where)]


_outer_run_id: str | None = None
"""In a worker process of a study: the study's run, which the runs opened here nest under."""


def process_context() -> tuple[str, str | None, str | None]:
    """Where this process logs: the store (a relative path made absolute, for a process that runs
    elsewhere), the active run's experiment and the active run."""
    run = mlflow.active_run()
    return connection.absolute_uri(mlflow.get_tracking_uri()), run and run.info.experiment_id, run and run.info.run_id


def adopt_context(context: tuple[str, str | None, str | None]) -> None:
    """Log where another process does (`process_context`), nesting runs under its active run."""
    global _outer_run_id
    uri, experiment, _outer_run_id = context
    os.environ.pop("MLFLOW_RUN_ID", None)  # under `mlflow run`, that run is the other process's to hold
    mlflow.set_tracking_uri(uri)
    if experiment is not None:  # without asking the store: a worker's first call to it is in a cell it runs
        os.environ["MLFLOW_EXPERIMENT_ID"] = experiment


@contextmanager
def parent_run(name: str, tags: dict[str, str], params: dict[str, str]) -> Iterator[str]:
    """A run for one command; nested under the active run if there is one (a study, `mlflow run`), or under
    the run set by `nest_under`.

    MLflow ends it FAILED if the body raises, so an interrupted command never leaves it RUNNING; a command's
    first run ends first the runs that dead processes of this host left RUNNING (kill -9), and clears their
    claims.
    """
    nested = mlflow.active_run() is not None
    outer = None if nested else _outer_run_id
    if not nested and outer is None:
        connection.end_dead_runs()
        claims.clear_dead()
    with mlflow.start_run(run_name=name, nested=nested or outer is not None, parent_run_id=outer,
                          tags=_run_tags(tags)) as run:
        if _resumed_by_mlflow_run(nested):  # `mlflow run` named it at random; name it for what it runs
            connection.client().update_run(run.info.run_id, name=name)
        logged = run.data.params  # `mlflow run` has logged the entry point's own parameters already
        mlflow.log_params({key: value for key, value in params.items() if key not in logged})
        yield run.info.run_id


def _run_tags(tags: dict[str, str]) -> dict[str, str]:
    """kdtrack's tags of a run and the process writing it, set as the run is created."""
    return {**{TAG + key: value for key, value in tags.items()}, **process_tags()}


def _resumed_by_mlflow_run(nested: bool) -> bool:
    """Under `mlflow run` the outermost run already exists, under a name MLflow gave it."""
    return not nested and _outer_run_id is None and "MLFLOW_RUN_ID" in os.environ


def log_seed_run(seed_run: SeedRun, log_every: int) -> str:
    """Log one child run of the active run: tags and params, its model, thinned metrics and the summary (the
    summary also as the logged model's metrics), the data it saw, and its history and checkpoint files.

    The model is logged before any metric: MLflow would otherwise read back every metric's history to link
    the run's step-0 metrics to the new model; kdtrack links the summary itself, in the same write."""
    with mlflow.start_run(run_name=seed_run.name, nested=True, tags=_run_tags(seed_run.tags)) as run:
        _log_batch(run.info.run_id, [], seed_run.params)
        model_id = _log_model(seed_run.model, seed_run.input_example)
        now = int(time.time() * 1000)
        summary = [Metric(key, value, now, 0, model_id=model_id) for key, value in seed_run.summary.items()]
        _log_batch(run.info.run_id, _thinned(seed_run.history, log_every, now) + summary, {})
        _log_inputs(seed_run.inputs)
        with tempfile.TemporaryDirectory() as folder:
            seed_run.history.to_parquet(Path(folder) / HISTORY_PATH, index=False)
            (Path(folder) / STATE_DICT_PATH).parent.mkdir()
            torch.save(seed_run.model.state_dict(), Path(folder) / STATE_DICT_PATH)
            mlflow.log_artifacts(folder)
    return run.info.run_id


def log_trial(name: str, tags: dict[str, str], params: dict[str, str], metrics: dict[str, float]) -> str:
    """A child run of the active run that records a trial's settings and scores, no model."""
    with mlflow.start_run(run_name=name, nested=True, tags=_run_tags(tags)) as run:
        now = int(time.time() * 1000)
        _log_batch(run.info.run_id, [Metric(key, value, now, 0) for key, value in metrics.items()], params)
    return run.info.run_id


def log_text(text: str, name: str) -> None:
    """A text artifact of the active run (a study's config, say)."""
    mlflow.log_text(text, name)


def log_summary(metrics: dict[str, float]) -> None:
    mlflow.log_metrics(metrics)


PNG_SAVE = {"format": "png", "pil_kwargs": {"compress_level": 1}}
"""How kdtrack saves a figure: zlib's fastest level writes a cell's curves in three quarters of the time
of the default level (6), for a file a fifth larger."""


def log_figure(figure: Figure, path: str) -> None:
    """A matplotlib figure as a PNG artifact of the active run."""
    mlflow.log_figure(figure, path, save_kwargs=PNG_SAVE)


def log_artifacts(folder: str | Path, path: str | None = None) -> str:
    """Every file of `folder` as artifacts of the active run; where they went (a URI)."""
    mlflow.log_artifacts(str(folder), path)
    return mlflow.get_artifact_uri(path)


def _log_inputs(inputs: dict[str, DataInput]) -> None:
    """MLflow's dataset tracking: what a run trained and was validated on, by content hash and file."""
    datasets = []
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and warns which it took
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        for given in inputs.values():
            datasets.append(mlflow.data.from_numpy(given.features, source=given.source, targets=given.targets,
                                                   name=given.name, digest=given.digest))
    connection.retried(lambda: mlflow.log_inputs(datasets, contexts=list(inputs), tags_list=[{} for _ in inputs]),
                       "logging the datasets")


def auto_log_every(epochs: int) -> int:
    """The default metric thinning: at most about METRIC_POINTS logged points per metric."""
    return max(1, math.ceil(epochs / METRIC_POINTS))


def _thinned(history: pd.DataFrame, log_every: int, now: int) -> list[Metric]:
    """The per-epoch metrics at every `log_every`-th epoch and at the last."""
    epochs = history["epoch"].to_numpy()
    keep = (epochs % log_every == 0) | (epochs == epochs[-1])
    return [Metric(column, float(value), now, int(epoch))
            for column in history.columns if column != "epoch"
            for epoch, value in zip(epochs[keep], history[column].to_numpy()[keep])]


def _log_batch(run_id: str, metrics: list[Metric], params: dict[str, str]) -> None:
    """Everything in calls of at most MLflow's limits: 1,000 entities, 100 params each."""
    client = connection.client()
    params = [Param(key, value) for key, value in params.items()]
    while metrics or params:
        some_params, params = params[:_PER_CALL["params"]], params[_PER_CALL["params"]:]
        room = _PER_CALL["entities"] - len(some_params)
        some_metrics, metrics = metrics[:room], metrics[room:]
        client.log_batch(run_id, metrics=some_metrics, params=some_params)


@functools.cache
def prepare_model_logging() -> None:
    """Save a throwaway network once per process, as log_model saves each model: the first save pays ~2 s that
    the next do not (torch.export tracing convolutions and batch norm for the first time, MLflow scanning the
    installed packages to check the requirements), spent here while models train instead of after the last
    has trained. Its layers are made uninitialised (skip_init) and zeroed: initialising them would draw from
    torch's global generator while models are being seeded."""
    network = torch.nn.Sequential(skip_init(torch.nn.Conv2d, 1, 1, 3, bias=False), torch.nn.BatchNorm2d(1),
                                  torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                  skip_init(torch.nn.Linear, 1, 2))
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
    with tempfile.TemporaryDirectory() as folder:
        mlflow.pytorch.save_model(network, f"{folder}/model", **_saved_as(network, np.zeros((2, 1, 4, 4), np.float32)))


def _log_model(model: torch.nn.Module, input_example: np.ndarray) -> str:
    """The model in MLflow's default format (its state_dict, for a full rebuild, is logged beside it); its
    logged model's id.

    The pt2 format needs a tensor signature to export the model. A model of points then gets the columns
    `x0`, `x1`, ... (doubles, as a CSV of points reads) as its signature, so that MLflow's pyfunc,
    `mlflow models predict` and `mlflow models serve` take a frame of points; an image model keeps its
    tensor signature (normalised float32 images, N x C x H x W). The output is the classes' logits.
    """
    saved_as = _saved_as(model, input_example)
    logged = mlflow.pytorch.log_model(
        model,
        name="model",
        validate_serving_input=False,  # kdtrack's tests reload every kind of model it logs; this would reload each
        **saved_as,
    )
    if input_example.ndim == 2:
        columns = Schema([ColSpec("double", name) for name in input_columns(input_example.shape[1])])
        set_signature(logged.model_uri, ModelSignature(inputs=columns, outputs=saved_as["signature"].outputs))
    return logged.model_id


def _saved_as(model: torch.nn.Module, input_example: np.ndarray) -> dict:
    """How a model is saved (and `model` put in eval mode): its tensor signature, input example and
    requirements."""
    model.eval()
    with torch.no_grad():
        output = model(torch.from_numpy(input_example)).numpy()
    return {"signature": infer_signature(input_example, output), "input_example": input_example,
            "pip_requirements": [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]}


def input_columns(n_features: int) -> list[str]:
    """The names of a logged model's input columns: x0, x1, ..."""
    return [f"x{index}" for index in range(n_features)]


def load_history(artifact_uri: str) -> pd.DataFrame:
    """A per-seed run's full per-epoch history, from the run's artifact location (a row of
    `finished_seed_runs` has it)."""
    return pd.read_parquet(_download(artifact_uri, HISTORY_PATH))


def _download(artifact_uri: str, path: str) -> str:
    """A local copy of the artifact `path` of the run whose artifacts are at `artifact_uri`: a fifth of the
    time that asking by run id takes, which looks the run up twice and its logged models once first."""
    return mlflow.artifacts.download_artifacts(artifact_uri=f"{artifact_uri}/{path}")


def load_model(model: str) -> torch.nn.Module:
    """Rebuild the full model of a run (a run id, `runs:/ID/model`, or a registered `models:/NAME@ALIAS`
    or `models:/NAME/VERSION`) from its architecture params and state_dict (weights only): an MLP, a
    ResNet, or a deployed SimKD student, in eval mode."""
    return from_checkpoint(*checkpoint(run_of_model(model)))


@functools.lru_cache(maxsize=512)
def checkpoint(run_id: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """A run's params and state_dict, read from the store once per process: every student cell of a dataset
    loads the same teachers, and a finished run's artifacts do not change. Callers copy the tensors into a
    network of their own (load_state_dict), so the cached ones stay as they were read."""
    run = get_run(run_id)
    return run.data.params, torch.load(_download(run.info.artifact_uri, STATE_DICT_PATH), weights_only=True)


def run_of_model(model: str) -> str:
    """The run id behind a model reference: a run id, `runs:/ID/...`, `models:/NAME@ALIAS`,
    `models:/NAME/VERSION` or a logged model `models:/m-...`."""
    client = connection.client()
    try:
        if model.startswith("runs:/"):
            return model.removeprefix("runs:/").split("/")[0]
        if not model.startswith("models:/"):
            return model
        reference = model.removeprefix("models:/")
        if "@" in reference:
            return client.get_model_version_by_alias(*reference.split("@", 1)).run_id
        if "/" in reference:
            return client.get_model_version(*reference.split("/", 1)).run_id
        return client.get_logged_model(reference).source_run_id
    except mlflow.exceptions.MlflowException as error:
        raise InputError(f"model {model}: not found in the tracking store ({error.message.splitlines()[0]})") from None


def get_run(run_id: str) -> Run:
    try:
        return connection.client().get_run(run_id)
    except mlflow.exceptions.MlflowException as error:
        raise InputError(f"run {run_id}: not found in the tracking store ({mlflow.get_tracking_uri()})") from error


def child_runs(parent_id: str) -> list[Run]:
    parent = get_run(parent_id)
    return connection.client().search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = {quoted(parent_id)}", max_results=5000
    )


def find_finished(config_hash: str, method: str | None = None) -> Run | None:
    """The newest FINISHED run of any experiment with this configuration hash (and `method` tag), if any."""
    client = connection.client()
    experiment_ids = _all_experiment_ids(client)
    method_filter = f" and tags.`{TAG}method` = {quoted(method)}" if method else ""
    runs = client.search_runs(
        experiment_ids,
        filter_string=f"tags.`{TAG}config_hash` = {quoted(config_hash)} and attributes.status = 'FINISHED'{method_filter}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def finished_models(cell_hash: str, method: str | None = None) -> dict[str, str]:
    """The FINISHED model runs of a cell's configuration in any experiment (and of `method`): the newest
    run id of each model's configuration hash."""
    client = connection.client()
    method_filter = f" and tags.`{TAG}method` = {quoted(method)}" if method else ""
    runs = client.search_runs(
        _all_experiment_ids(client),
        filter_string=f"tags.`{TAG}cell_hash` = {quoted(cell_hash)} and attributes.status = 'FINISHED'{method_filter}",
        order_by=["attributes.start_time DESC"],
        max_results=50000,
    )
    found: dict[str, str] = {}
    for run in runs:
        found.setdefault(tag(run, "config_hash"), run.info.run_id)
    return found


def finished_seed_runs(experiment: str | None) -> pd.DataFrame:
    """Every FINISHED per-seed run (of `experiment`, or of all experiments): its kdtrack tags, its data
    file, its architecture (networks of the image study; none for an MLP), its summary metrics, start time
    and artifact location, one row per run."""
    rows = [
        {**_row(run), "data": run.data.params.get("data"), "arch": run.data.params.get("arch"),
         **{metric: run.data.metrics.get(metric) for metric in SUMMARY_METRICS}}
        for run in _finished(experiment)
        if TAG + "seed" in run.data.tags
    ]
    columns = ["task", "dataset", "method", "selection", "domain", "seed", "cell_hash", "config_hash", "data_hash",
               "teacher_run_ids", "run_id", "experiment_id", "start_time", "artifact_uri", "data", "arch",
               *SUMMARY_METRICS]
    return pd.DataFrame(rows, columns=columns)


def finished_tune_runs(experiment: str | None) -> pd.DataFrame:
    """Every FINISHED tune cell's run (of `experiment`, or of all experiments): its kdtrack tags, what it
    tuned and chose, start time and artifact location (its trials table, `load_trials`), one row per run."""
    rows = [{**_row(run), "tuned_options": run.data.params.get("tuned_options"),
             "chosen": {key.removeprefix("best_"): value for key, value in run.data.metrics.items()
                        if key.startswith("best_") and key != "best_selection_acc"}}
            for run in _finished(experiment, f" and tags.`{TAG}task` = 'tune'")]
    columns = ["dataset", "method", "cell_hash", "run_id", "experiment_id", "start_time", "artifact_uri",
               "tuned_options", "chosen"]
    return pd.DataFrame(rows, columns=columns)


def compared_runs(experiment: str | None) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """What compare summarises: the FINISHED per-seed and tune runs of `experiment` (None: of all experiments),
    and those in other experiments of the cells its studies used (a study trains only what no experiment has
    finished: a study into a new experiment may train nothing there). With a sentence saying where those are,
    when there are any."""
    found = [finished_seed_runs(experiment), finished_tune_runs(experiment)]
    hashes = _studied_cells(experiment) if experiment else set()
    if not hashes:
        return *found, None
    elsewhere = [everywhere[everywhere["cell_hash"].isin(hashes) & ~everywhere["run_id"].isin(here["run_id"])]
                 for here, everywhere in zip(found, (finished_seed_runs(None), finished_tune_runs(None)))]
    if all(runs.empty for runs in elsewhere):
        return *found, None
    client = connection.client()
    names = sorted({client.get_experiment(experiment_id).name
                    for runs in elsewhere for experiment_id in runs["experiment_id"].unique()})
    note = (f"{sum(map(len, elsewhere))} run(s) of the cells that the studies of experiment {experiment!r} used "
            f"finished in other experiments ({', '.join(map(repr, names))}), where those studies found them: included")
    seeds, tunes = (pd.concat([here, more], ignore_index=True) for here, more in zip(found, elsewhere))
    return seeds, tunes, note


def _studied_cells(experiment: str) -> set[str]:
    """The cells that the FINISHED studies of `experiment` used (none for a study older than STUDY_CELLS)."""
    hashes: set[str] = set()
    for run in _finished(experiment, f" and tags.`{TAG}task` = 'study'"):
        try:
            hashes.update(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{STUDY_CELLS}").split())
        except (mlflow.exceptions.MlflowException, OSError):
            continue
    return hashes


def _finished(experiment: str | None, condition: str = "") -> list[Run]:
    client = connection.client()
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise InputError(f"experiment {experiment!r}: not found in the tracking store ({mlflow.get_tracking_uri()})")
        experiment_ids = [found.experiment_id]
    else:
        experiment_ids = _all_experiment_ids(client)
    return mlflow.search_runs(experiment_ids, filter_string=f"attributes.status = 'FINISHED'{condition}",
                              output_format="list", max_results=50000)


def _row(run: Run) -> dict:
    """A run's kdtrack tags (without the prefix), id, experiment, start time and artifact location."""
    return {**{key[len(TAG):]: value for key, value in run.data.tags.items() if key.startswith(TAG)},
            "run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "start_time": run.info.start_time,
            "artifact_uri": run.info.artifact_uri}


def log_table(table: pd.DataFrame, path: str) -> None:
    """A table as a parquet artifact of the active run."""
    with tempfile.TemporaryDirectory() as folder:
        table.to_parquet(Path(folder) / path, index=False)
        mlflow.log_artifact(str(Path(folder) / path))


def load_trials(artifact_uri: str) -> pd.DataFrame | None:
    """A tune run's trials table (kdtrack.spine.tuning.trials_table), from its artifact location; None for a
    tune run logged before tune runs held one."""
    try:
        return pd.read_parquet(_download(artifact_uri, TRIALS_PATH))
    except mlflow.exceptions.MlflowException as error:
        if "No such artifact" in str(error) or error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def study_order(experiment: str | None) -> list[str]:
    """The datasets and methods of the newest finished study (in `experiment`, or in any), in the order its
    config names them; empty when there is none. Cells run side by side start in no fixed order, so this
    is the order tables and figures keep."""
    client = connection.client()
    found = client.get_experiment_by_name(experiment) if experiment else None
    experiment_ids = [found.experiment_id] if found else [] if experiment else _all_experiment_ids(client)
    runs = mlflow.search_runs(experiment_ids, filter_string=f"attributes.status = 'FINISHED' and tags.{TAG}task = 'study'",
                              order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
    if not runs:
        return []
    return tag(runs[0], "dataset").split(",") + runs[0].data.params.get("methods", "").split(",")


def _all_experiment_ids(client: MlflowClient) -> list[str]:
    return [experiment.experiment_id for experiment in client.search_experiments()]


def tag(run: Run, key: str) -> str | None:
    return run.data.tags.get(TAG + key)
