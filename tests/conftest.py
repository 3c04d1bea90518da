"""Shared fixtures. The real assignment data lives in ../shared beside the checkout and never in the repo:
tests that need it skip on a developer machine without it and fail loudly in CI (CI=true)."""
import os
from pathlib import Path

import mlflow
import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA_DIR = REPO.parent / "shared" / "data" / "multidomain"
SESSION_EXPERIMENT_ID = os.environ.get("MLFLOW_EXPERIMENT_ID")
REAL_FILES = ["data.pkl", "data_d0.75.pkl", "data_d0.5.pkl", "data_d0.25.pkl"]


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    if not all((REAL_DATA_DIR / name).is_file() for name in REAL_FILES):
        message = f"the real assignment data is missing from {REAL_DATA_DIR}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return REAL_DATA_DIR


@pytest.fixture()
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh SQLite store per test, so that no test sees another's runs."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture(autouse=True)
def _no_active_experiment_left_behind():
    """A command given --experiment-name makes that experiment MLflow's active one for the process (and sets
    MLFLOW_EXPERIMENT_ID for its children); a later test with a fresh store must not inherit it."""
    yield
    mlflow.tracking.fluent._active_experiment_id = None
    if SESSION_EXPERIMENT_ID is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = SESSION_EXPERIMENT_ID


@pytest.fixture(autouse=True)
def _module_store(request, monkeypatch):
    """A module whose tests share one store built once names that fixture in SHARED_STORE (it yields a dict
    with the store's "uri"); each test that uses it then points MLflow at that store."""
    name = getattr(request.module, "SHARED_STORE", None)
    if name and name in request.fixturenames:
        uri = request.getfixturevalue(name)["uri"]
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory) -> str:
    """`mlflow server` on 127.0.0.1 on a SQLite store of its own, shared by a test module; its URI."""
    from servers import MlflowServer

    folder = tmp_path_factory.mktemp("server")
    server = MlflowServer(f"sqlite:///{folder / 'mlflow.db'}", folder).start()
    yield server.uri
    server.stop()
