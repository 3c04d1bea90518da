"""kdtrack through a team's tracking server: `mlflow server` on a private PostgreSQL with MLflow's
basic-auth (two studies at once, compare, register, a champion loaded back over HTTP; refused without
credentials or with a wrong password, one line and nothing written), and a server that goes away in the
middle of a study and comes back."""
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from kdtrack.cli import main
from kdtrack.multidomain import load_multidomain, make_multidomain, save_multidomain
from kdtrack.tracking import load_model
from servers import (FAST_FAILING_HTTP, MlflowServer, Postgres, all_runs, compare_counts, duplicated_configurations,
                     finish, kdtrack, postgres_bin, start_study)
from test_reliability import CONFIG, METHODS, wait_until

ADMIN = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "kdtrack-test-admin"}


def unavailable(reason: str):
    """Skip where the team server's parts are missing; fail under CI, which installs them (.ci/run)."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def write_data(folder: Path) -> None:
    for seed, name in ((2, "tiny"), (3, "other")):
        save_multidomain(make_multidomain(0.75, seed, n_train=240, n_valid=60, name=name), folder / f"{name}.pkl")
    (folder / "study.yaml").write_text(CONFIG.format(epochs=300))


@pytest.fixture(scope="module")
def postgres():
    bin_dir = postgres_bin()
    if bin_dir is None:
        unavailable("PostgreSQL's binaries are missing (/usr/lib/postgresql/*/bin): apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is missing: pip install kdtrack[server]")
    server = Postgres(bin_dir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def team(postgres, tmp_path_factory):
    """`mlflow server --app-name basic-auth` on a fresh PostgreSQL database, its users in SQLite."""
    folder = tmp_path_factory.mktemp("team")
    write_data(folder)
    (folder / "auth.ini").write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{folder / 'users.db'}\n"
                                     "admin_username = admin\nauth_cache_ttl_seconds = 600\nauthorization_function = "
                                     "mlflow.server.auth:authenticate_request_basic_auth\n")
    auth = {"MLFLOW_AUTH_CONFIG_PATH": str(folder / "auth.ini"), "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN["MLFLOW_TRACKING_PASSWORD"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "kdtrack-test"}
    server = MlflowServer(postgres.create_database("team"), folder, auth).start()
    try:
        yield {"uri": server.uri, "folder": folder, "env": {"MLFLOW_TRACKING_URI": server.uri, **ADMIN}}
    finally:
        server.stop()


def test_two_studies_at_once_through_a_postgresql_server(team, monkeypatch):
    """Both finish with every run FINISHED, compare counts both whole, and the best student registers and
    loads back over HTTP at its logged accuracy."""
    folder, env = team["folder"], team["env"]
    studies = [start_study(folder / "study.yaml", str(folder / f"{name}.pkl"), env, folder, "--workers", "1",
                           "--experiment-name", "team") for name in ("tiny", "other")]
    results = [finish(study) for study in studies]
    assert [code for code, _ in results] == [0, 0], [err[-6000:] for _, err in results]
    for key, value in ADMIN.items():
        monkeypatch.setenv(key, value)
    runs = all_runs(team["uri"])
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert duplicated_configurations(runs) == {}
    assert compare_counts(env, folder) == {(name, method): 2 for name in ("tiny", "other") for method in METHODS}

    registered = kdtrack(["register", "--best", "--method", "kd", "--experiment-name", "team", "--name", "team-kd"],
                         env, folder)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.split()[0] == "models:/team-kd@champion"
    mlflow.set_tracking_uri(team["uri"])
    try:
        version = MlflowClient().get_model_version_by_alias("team-kd", "champion")
        valid = load_multidomain(folder / f"{version.tags['dataset']}.pkl").valid
        frame = pd.DataFrame(valid.x.astype(np.float64), columns=["x0", "x1"])
        predicted = mlflow.pyfunc.load_model("models:/team-kd@champion").predict(frame)
        rebuilt = load_model("models:/team-kd@champion")(torch.from_numpy(valid.x)).detach().numpy()
    finally:
        mlflow.set_tracking_uri(None)
    for logits in (np.asarray(predicted), rebuilt):
        assert float((logits.argmax(1) == valid.y).mean()) == float(version.tags["val_acc"])


@pytest.mark.parametrize("credentials, phrase", [
    ({}, "it asks who you are (HTTP 401): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    ({**ADMIN, "MLFLOW_TRACKING_PASSWORD": "wrong"}, "it refused the credentials of user 'admin' (HTTP 401)"),
])
@pytest.mark.parametrize("command", [["study", "--config", "study.yaml", "--data", "tiny.pkl", "--seeds", "0"],
                                     ["compare"], ["register", "--best", "--method", "kd", "--name", "m"]])
def test_without_the_right_credentials_a_command_is_one_line_and_writes_nothing(team, monkeypatch, capsys,
                                                                                credentials, phrase, command):
    for key, value in ADMIN.items():
        monkeypatch.setenv(key, value)
    before = [(run.info.run_id, run.info.status) for run in all_runs(team["uri"])]
    for key in ADMIN:
        monkeypatch.delenv(key)
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team["uri"])
    monkeypatch.chdir(team["folder"])
    mlflow.set_tracking_uri(team["uri"])
    try:
        capsys.readouterr()
        code = main(command)
    finally:
        mlflow.set_tracking_uri(None)
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"kdtrack: error: tracking store {team['uri']}: {phrase}"), err
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err
    for key, value in ADMIN.items():
        monkeypatch.setenv(key, value)
    assert [(run.info.run_id, run.info.status) for run in all_runs(team["uri"])] == before


@pytest.fixture()
def server(tmp_path):
    """`mlflow server` on a SQLite store, to stop and start again."""
    write_data(tmp_path)
    server = MlflowServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_study_whose_server_goes_away_ends_in_one_line_and_completes_when_it_is_back(server, tmp_path):
    """The server is stopped once a model has FINISHED: the study ends with one line saying the store is
    unreachable (after MLflow's retries, shortened here); once the server is back, the same command ends the
    runs it had left RUNNING as KILLED and completes the study, every model once and whole."""
    env = {"MLFLOW_TRACKING_URI": server.uri, **FAST_FAILING_HTTP}
    argv = (tmp_path / "study.yaml", str(tmp_path / "tiny.pkl"), env, tmp_path, "--workers", "1")
    study = start_study(*argv)
    try:
        wait_until(lambda: any(run.info.status == "FINISHED" and "kdtrack.seed" in run.data.tags
                               for run in all_runs(server.uri)), "a finished model", study)
        server.stop()
        code, err = finish(study)
    finally:
        study.kill()
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"kdtrack: error: tracking store {server.uri}: unreachable (")

    server.start()
    left = [run for run in all_runs(server.uri) if run.info.status == "RUNNING"]
    code, err = finish(start_study(*argv))
    assert code == 0, err
    assert f"kdtrack: ended {len(left)} run(s) as KILLED" in err and left
    runs = all_runs(server.uri)
    assert "RUNNING" not in {run.info.status for run in runs}
    assert duplicated_configurations(runs) == {}
    assert compare_counts(env, tmp_path) == {("tiny", method): 2 for method in METHODS}
    client = MlflowClient(server.uri)
    for run in runs:
        if run.info.status == "FINISHED" and "kdtrack.seed" in run.data.tags:  # whole: its files and its model
            files = {item.path for item in client.list_artifacts(run.info.run_id)}
            assert {"history.parquet", "checkpoint"} <= files and run.outputs.model_outputs
