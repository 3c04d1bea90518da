"""What a study and `kdtrack compare` leave for a reader: run names and params that line up in the UI, the
data each run saw (MLflow dataset tracking), a loss-curve figure per cell, the study's wide table, and a
compare run holding the tables and figures (also written with --out)."""
import contextlib
import io

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from kdtrack.cli import main
from kdtrack.compare import figures
from kdtrack.multidomain import load_multidomain, make_multidomain, save_multidomain
from kdtrack.multidomain.splits import domain_subset, make_splits
from kdtrack.multidomain.options import MLPTrainOptions

PNG = b"\x89PNG\r\n\x1a\n"
SHARED_STORE = "study"  # conftest points MLflow at it for each test that uses it
CONFIG = """
epochs: 30
train: {selection: holdout}
methods:
  baseline: {task: baseline}
  kd: {distill: {distiller: kd, alpha: 0.5, temperature: 4}}
  anneal: {distill: {distiller: anneal-jafari, temperature: 3}}
"""


def run(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    data = folder / "tiny.pkl"
    save_multidomain(make_multidomain(0.75, 1, n_train=300, n_valid=90, name="tiny"), data)
    config = folder / "mini.yaml"
    config.write_text(CONFIG)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        mlflow.set_tracking_uri(uri)
        printed = run(["study", "--config", str(config), "--data", str(data), "--seeds", "0,10", "--experiment-name", "mini"])
        yield {"uri": uri, "folder": folder, "printed": printed, "data": load_multidomain(data)}
        mlflow.set_tracking_uri(None)


def all_runs() -> list:
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def test_runs_are_named_for_method_dataset_and_seed_and_carry_the_same_params(study):
    runs = all_runs()
    names = {run.info.run_name for run in runs}
    assert {"study mini", "baseline · tiny", "teachers · tiny", "kd · tiny", "anneal · tiny"} <= names
    assert {"seed 0 · baseline · tiny", "seed 10 · kd · tiny", "seed 0 · d2 · teachers · tiny"} <= names
    for seed_run in (run for run in runs if "kdtrack.seed" in run.data.tags):
        params, tags = seed_run.data.params, seed_run.data.tags
        assert params["dataset"] == tags["kdtrack.dataset"] == "tiny"
        assert params["seed"] == tags["kdtrack.seed"]
        assert params["method"] == tags["kdtrack.method"]  # the study's name for it: what a user groups runs by
        if tags["kdtrack.task"] == "student":  # the distiller under a param of its own
            assert params["distiller"] == {"kd": "kd", "anneal": "anneal-jafari"}[tags["kdtrack.method"]]


def test_every_training_run_records_the_data_it_saw(study):
    data = study["data"]
    splits = make_splits(data, MLPTrainOptions())
    for seed_run in (run for run in all_runs() if "kdtrack.seed" in run.data.tags):
        inputs = {next(t.value for t in entry.tags if t.key == "mlflow.data.context"): entry.dataset
                  for entry in seed_run.inputs.dataset_inputs}
        assert set(inputs) == {"training", "selection", "validation"}
        domain = seed_run.data.tags.get("kdtrack.domain")
        own = [splits.fit, splits.selection, data.valid]
        if domain is not None:
            own = [domain_subset(split, int(domain)) for split in own]
        for context, split in zip(("training", "selection", "validation"), own):
            assert inputs[context].digest == split.fingerprint
            assert data.source in inputs[context].source


def test_each_cell_logs_its_curves_and_the_study_its_table_and_figures(study):
    client = MlflowClient()
    parents = [run for run in all_runs() if run.data.tags.get("kdtrack.task") in ("baseline", "teachers", "distill")
               and "kdtrack.seed" not in run.data.tags]
    assert len(parents) == 4
    for parent in parents:
        assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["curves.png"]
    study_run = next(run for run in all_runs() if run.data.tags.get("kdtrack.task") == "study")
    logged = {a.path.split("/")[-1] for a in client.list_artifacts(study_run.info.run_id, "summary")}
    assert {"table.csv", "table.md", "accuracy.png", "curves.png", "teacher_curves.png", "annealing.png",
            "boundaries_tiny.png"} <= logged
    lines = study["printed"].strip().splitlines()
    assert [cell.strip() for cell in lines[0].strip("|").split("|")] == ["dataset", "baseline", "kd", "anneal"]
    row = [cell.strip() for cell in lines[2].strip("|").split("|")]
    accuracies = [r.data.metrics["model_val_acc"] for r in all_runs() if r.data.tags.get("kdtrack.method") == "kd"
                  and "kdtrack.seed" in r.data.tags]
    assert row[0] == "tiny" and row[2] == f"{100 * np.mean(accuracies):.2f} ± {100 * np.std(accuracies, ddof=1):.2f}"
    assert lines[-2].startswith("figures and tables: ") and lines[-1] == study_run.info.run_id


def test_compare_logs_a_run_with_its_tables_and_figures_and_writes_them_with_out(study, tmp_path):
    out = tmp_path / "out"
    printed = run(["compare", "--experiment-name", "mini", "--paired", "baseline", "--format", "csv", "--out", str(out)])
    paired = pd.read_csv(io.StringIO(printed))
    assert list(paired.columns) == ["dataset", "method", "n", "diff_mean", "diff_std", "ci_low", "ci_high", "p_value",
                                    "p_holm"]
    expected = {"table.csv", "table.md", "paired_baseline.csv", "paired_baseline.md", "accuracy.png", "curves.png",
                "teacher_curves.png", "annealing.png", "boundaries_tiny.png", "paired_baseline.png"}
    assert {path.name for path in out.iterdir()} == expected
    for path in out.glob("*.png"):
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
    table = pd.read_csv(out / "table.csv")
    assert list(table["method"]) == ["baseline", "kd", "anneal"] and set(table["n"]) == {2}
    compare = [r for r in all_runs() if r.data.tags.get("kdtrack.task") == "compare"]
    assert len(compare) == 1 and compare[0].info.experiment_id == mlflow.get_experiment_by_name("mini").experiment_id
    logged = {a.path for a in MlflowClient().list_artifacts(compare[0].info.run_id)}
    assert logged == expected
    assert MlflowClient().get_run(compare[0].info.run_id).data.params["paired"] == "baseline"


def test_figures_draw_what_they_are_given(tmp_path):
    """Each figure function on hand-made inputs: a titled figure with one axis per panel."""
    history = pd.DataFrame({"epoch": np.arange(1, 101), "train_loss": np.linspace(1, 0.01, 100),
                            "val_loss": np.linspace(1, 0.02, 100), "val_acc": np.linspace(0.5, 0.9, 100),
                            "temperature": np.r_[np.repeat([1, 2], 25), np.full(50, 2)], "phase": np.repeat([1, 2], 50)})
    rows = pd.DataFrame({"dataset": ["a"] * 4 + ["b"] * 4, "method": ["x", "x", "y", "y"] * 2,
                         "seed": ["0", "1"] * 4, "model_val_acc": np.linspace(0.8, 0.95, 8)})
    points = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    drawn = {
        "accuracy": (figures.accuracy_bars(rows, "model_val_acc", "accuracy"), 2),
        "curves": (figures.curves({"a": {"x": [history, history]}, "b": {"x": [history]}}, "curves"), 6),
        "boundaries": (figures.decision_boundaries([[("one", lambda x: x)], [("two", lambda x: -x), ("three", lambda x: x)]],
                                                   points, (points[:, 0] > 0).astype(int), np.repeat([0, 1, 2], 20), "b"), 4),
        "schedules": (figures.schedules({"anneal": {"a": history}}, "s"), 1),
        "paired": (figures.paired_differences(rows.assign(diff=rows["model_val_acc"]), "ref"), 2),
    }
    for name, (figure, panels) in drawn.items():
        assert figure._suptitle is not None and len(figure.axes) == panels, name
        figure.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG
    assert drawn["curves"][0].axes[0].get_yscale() == "log", "losses falling by two decades are drawn on a log axis"
