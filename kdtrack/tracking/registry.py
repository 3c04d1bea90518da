"""The model registry: which run to register, and registering it. MLflow 3's conventions: the version is
made from the run's logged model, and is found by an alias (`champion`) rather than a stage. The version
carries the tags a reader needs to trust it."""
from __future__ import annotations

import contextlib
import io

from dataclasses import dataclass

import mlflow
from mlflow.tracking import MlflowClient

from ..errors import InputError
from .store import TAG, finished_seed_runs, get_run, parent_run

VERSION_TAGS = ("task", "dataset", "method", "seed", "domain", "selection", "config_hash", "data_hash")


@dataclass(frozen=True)
class Registered:
    name: str
    alias: str
    version: str
    run_id: str
    tags: dict[str, str]
    """The version's tags: the run's dataset, method, seed, ... and `val_acc`, its model_val_acc."""

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"

    def source(self) -> str:
        """Which run the version is, in a line: its id, method, dataset, seed (and domain) and accuracy."""
        found = [f"{key} {self.tags[key]}" for key in ("method", "dataset", "seed", "domain") if key in self.tags]
        accuracy = float(self.tags["val_acc"])
        return f"run {self.run_id} ({', '.join(found)}, validation accuracy of its model {100 * accuracy:.2f}%)"


def best_run(experiment: str | None, method: str, dataset: str | None = None) -> str:
    """The FINISHED per-seed run of `method` (on `dataset`) in `experiment` (None: in any) whose logged
    model scored best on validation; ties go to the lower best validation loss, then to the earlier run."""
    runs = finished_seed_runs(experiment)
    runs = runs[(runs["method"] == method) & runs["model_val_acc"].notna()]
    if dataset is not None:
        runs = runs[runs["dataset"] == dataset]
    if runs.empty:
        on = f" on dataset {dataset!r}" if dataset is not None else ""
        where = f"experiment {experiment!r}" if experiment else "the tracking store"
        raise InputError(f"{where}: no FINISHED per-seed run of method {method!r}{on}")
    ranked = runs.assign(loss=runs["best_val_loss"].fillna(float("inf"))).sort_values(
        ["model_val_acc", "loss", "start_time"], ascending=[False, True, True])
    return ranked["run_id"].iloc[0]


def register(run_id: str, name: str, alias: str = "champion") -> Registered:
    """Register the logged model of per-seed run `run_id` as a new version of `name`, move `alias` to it,
    and record the act as a run of the active experiment (kdtrack.task `register`). Anything MLflow refuses
    is an InputError, and leaves nothing registered."""
    run = get_run(run_id)
    if TAG + "seed" not in run.data.tags or run.info.status != "FINISHED":
        raise InputError(f"run {run_id}: is not a FINISHED per-seed run with a model "
                         f"(its status is {run.info.status}, its kdtrack.task {run.data.tags.get(TAG + 'task')!r})")
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        raise InputError(f"run {run_id}: has no logged model")
    tags = {key: run.data.tags[TAG + key] for key in VERSION_TAGS if TAG + key in run.data.tags}
    tags.update(run_id=run_id, val_acc=str(run.data.metrics.get("model_val_acc")))
    client = MlflowClient()
    existed = _registered(client, name)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # MLflow's own lines say "registered" before the alias is set
            version = mlflow.register_model(f"models:/{outputs[0].model_id}", name, tags=tags).version
    except mlflow.exceptions.MlflowException as error:
        raise InputError(f"model name {name!r}: {error.message.splitlines()[0]}") from None
    try:
        client.set_registered_model_alias(name, alias, version)
    except mlflow.exceptions.MlflowException as error:
        client.delete_model_version(name, version)
        if not existed:
            client.delete_registered_model(name)
        raise InputError(f"alias {alias!r}: {error.message.splitlines()[0]}") from None
    registered = Registered(name, alias, str(version), run_id, tags)
    record = {key: tags[key] for key in ("dataset", "method") if key in tags}
    with parent_run(f"register {registered.uri}", {"task": "register", **record},
                    {"source_run_id": run_id, "name": name, "alias": alias, "version": registered.version}):
        pass
    return registered


def _registered(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        return False
    return True
