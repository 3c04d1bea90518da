"""`kdtrack register` and the model registry: which run --best chooses, the version's tags and alias, the
registered model reloaded through both MLflow flavours and MLflow's own `models predict` at exactly its
run's logged accuracy, load_model by URI, every refusal, and the same round trip through `mlflow server`."""
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from kdtrack.cli import main
from kdtrack.multidomain import load_multidomain, make_multidomain, save_multidomain
from kdtrack.tracking import best_run, load_model
from servers import MlflowServer

BIN = Path(sys.executable).parent
SEEDS = "0,10,1234"
SHARED_STORE = "store"  # conftest points MLflow at it for each test that uses it


def run(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue()


def accuracy(predict, points: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(predict(points)).argmax(1) == labels).mean())


def seed_runs(method: str) -> list:
    return mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.`kdtrack.method` = '{method}' and tags.`kdtrack.seed` != ''")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A baseline and a kd student, three seeds each, in experiment `reg`."""
    folder = tmp_path_factory.mktemp("registry")
    data = folder / "small.pkl"
    save_multidomain(make_multidomain(0.5, 2, n_train=300, n_valid=90, name="small"), data)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        mlflow.set_tracking_uri(uri)
        common = ["--data", str(data), "--seeds", SEEDS, "--epochs", "40", "--experiment-name", "reg"]
        run(["baseline", *common])
        run(["distill", *common])
        yield {"uri": uri, "data": load_multidomain(data), "folder": folder}
        mlflow.set_tracking_uri(None)


def test_best_picks_the_highest_model_accuracy_then_the_lower_loss_then_the_earlier_run(store):
    runs = seed_runs("kd")
    expected = sorted(runs, key=lambda r: (-r.data.metrics["model_val_acc"], r.data.metrics["best_val_loss"],
                                           r.info.start_time))[0]
    assert best_run("reg", "kd") == expected.info.run_id
    assert best_run("reg", "kd", "small") == expected.info.run_id
    assert best_run(None, "kd") == expected.info.run_id  # every experiment: this store has one


def test_best_breaks_ties_by_loss_then_start_time(monkeypatch):
    import kdtrack.tracking.registry as registry

    table = pd.DataFrame({"method": "kd", "dataset": "d", "run_id": ["a", "b", "c", "d"],
                          "model_val_acc": [0.9, 0.95, 0.95, 0.95], "best_val_loss": [0.1, 0.3, 0.2, 0.2],
                          "start_time": [1, 2, 4, 3]})
    monkeypatch.setattr(registry, "finished_seed_runs", lambda experiment: table)
    assert best_run("x", "kd") == "d"
    assert best_run("x", "kd", "d") == "d"


def test_registered_champion_reloads_through_both_flavours_at_its_logged_accuracy(store, capsys):
    printed = run(["register", "--best", "--experiment-name", "reg", "--method", "kd", "--name", "small-kd"]).split()
    assert printed == ["models:/small-kd@champion", "version", "1"]
    client = MlflowClient()
    version = client.get_model_version_by_alias("small-kd", "champion")
    source = client.get_run(version.run_id)
    assert version.run_id == best_run("reg", "kd")
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"kdtrack register: models:/small-kd@champion is run {version.run_id} (method kd, dataset small, seed "
        f"{source.data.tags['kdtrack.seed']}, validation accuracy of its model {100 * source.data.metrics['model_val_acc']:.2f}%)")
    for key in ("dataset", "method", "seed", "selection", "config_hash", "data_hash"):
        assert version.tags[key] == source.data.tags[f"kdtrack.{key}"]
    logged = source.data.metrics["model_val_acc"]
    assert float(version.tags["val_acc"]) == logged

    valid = store["data"].valid
    model = mlflow.pytorch.load_model("models:/small-kd@champion")
    assert accuracy(lambda x: model(torch.from_numpy(x)).detach().numpy(), valid.x, valid.y) == logged
    pyfunc = mlflow.pyfunc.load_model("models:/small-kd@champion")
    assert [spec.name for spec in pyfunc.metadata.signature.inputs] == ["x0", "x1"]
    frame = pd.DataFrame(valid.x.astype(np.float64), columns=["x0", "x1"])
    assert accuracy(pyfunc.predict, frame, valid.y) == logged
    full = load_model("models:/small-kd@champion")
    assert accuracy(lambda x: full(torch.from_numpy(x)).detach().numpy(), valid.x, valid.y) == logged
    assert load_model(f"runs:/{version.run_id}/model").state_dict().keys() == full.state_dict().keys()

    again = run(["register", "--run-id", version.run_id, "--name", "small-kd"]).split()
    assert again == ["models:/small-kd@champion", "version", "2"]
    assert str(client.get_model_version_by_alias("small-kd", "champion").version) == "2"


def test_mlflow_models_predict_reads_a_csv_of_points(store):
    run(["register", "--best", "--experiment-name", "reg", "--method", "baseline", "--name", "small-baseline"])
    valid = store["data"].valid
    points = store["folder"] / "points.csv"
    pd.DataFrame(valid.x.astype(np.float64), columns=["x0", "x1"]).to_csv(points, index=False)
    output = store["folder"] / "predictions.json"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"]}
    subprocess.run([str(BIN / "mlflow"), "models", "predict", "-m", "models:/small-baseline@champion", "-i", str(points),
                    "-t", "csv", "-o", str(output), "--env-manager", "local"], env=env, check=True, capture_output=True,
                   timeout=300)
    records = json.loads(output.read_text())["predictions"]  # one record per point: the logits of classes 0 and 1
    logits = pd.DataFrame(records)[["0", "1"]].to_numpy(dtype=float)
    version = MlflowClient().get_model_version_by_alias("small-baseline", "champion")
    assert logits.shape == (len(valid.y), 2)
    assert float((logits.argmax(1) == valid.y).mean()) == float(version.tags["val_acc"])


REFUSED = {
    # case: (options beyond --name, the name, phrases of the one error line)
    "no such run": (["--run-id", "0123456789abcdef0123456789abcdef"], "m", ["not found in the tracking store"]),
    "a parent run": (None, "m", ["is not a FINISHED per-seed run"]),
    "no such experiment": (["--best", "--experiment-name", "nope", "--method", "kd"], "m", ["experiment 'nope'"]),
    "no such method": (["--best", "--experiment-name", "reg", "--method", "fitnets"], "m",
                       ["no FINISHED per-seed run of method 'fitnets'"]),
    "no such dataset": (["--best", "--experiment-name", "reg", "--method", "kd", "--dataset", "other"], "m",
                        ["on dataset 'other'"]),
    "a name MLflow refuses": (["--best", "--experiment-name", "reg", "--method", "kd"], "a/b", ["model name 'a/b'"]),
    "an alias MLflow refuses": (["--best", "--experiment-name", "reg", "--method", "kd", "--alias", "v1"], "fresh",
                                ["alias 'v1'"]),
    "both run and best": (["--run-id", "x", "--best", "--experiment-name", "reg", "--method", "kd"], "m",
                          ["--run-id ID or --best"]),
    "best without method": (["--best", "--experiment-name", "reg"], "m", ["needs --method"]),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refusals_are_one_line_and_register_nothing(store, capsys, case):
    options, name, phrases = REFUSED[case]
    if options is None:  # the distill command's parent run
        parent = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                    filter_string="tags.`kdtrack.task` = 'distill'")[0]
        options = ["--run-id", parent.info.run_id]
    client = MlflowClient()
    before = {(m.name, v.version) for m in client.search_registered_models() for v in client.search_model_versions(f"name='{m.name}'")}
    capsys.readouterr()
    assert main(["register", *options, "--name", name]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("kdtrack: error: ") and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in err
    after = {(m.name, v.version) for m in client.search_registered_models() for v in client.search_model_versions(f"name='{m.name}'")}
    assert after == before


def test_register_and_load_through_a_tracking_server(tmp_path, monkeypatch):
    server = MlflowServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path).start()
    uri = server.uri
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.chdir(tmp_path)
        mlflow.set_tracking_uri(uri)
        data = tmp_path / "served.pkl"
        save_multidomain(make_multidomain(1.0, 5, n_train=150, n_valid=60, name="served"), data)
        run(["baseline", "--data", str(data), "--seeds", "0,10", "--epochs", "20", "--experiment-name", "remote"])
        printed = run(["register", "--best", "--experiment-name", "remote", "--method", "baseline", "--name", "served"])
        assert printed.split()[0] == "models:/served@champion"
        version = MlflowClient().get_model_version_by_alias("served", "champion")
        valid = load_multidomain(data).valid
        frame = pd.DataFrame(valid.x.astype(np.float64), columns=["x0", "x1"])
        assert accuracy(mlflow.pyfunc.load_model("models:/served@champion").predict, frame, valid.y) == float(version.tags["val_acc"])
        model = mlflow.pytorch.load_model("models:/served@champion")
        assert accuracy(lambda x: model(torch.from_numpy(x)).detach().numpy(), valid.x, valid.y) == float(version.tags["val_acc"])
    finally:
        mlflow.set_tracking_uri(None)
        server.stop()
