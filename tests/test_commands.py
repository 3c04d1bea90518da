"""baseline, teachers and distill end to end on the real data: what each run logs, checked against the
models reloaded from the store."""
import contextlib
import io

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient

from kdtrack.cli import main
from kdtrack.multidomain import load_multidomain
from kdtrack.multidomain.options import MLPTrainOptions
from kdtrack.multidomain.splits import make_splits

SEEDS = "0,10"
EPOCHS = 40


@pytest.fixture(scope="module")
def store(tmp_path_factory, real_data_dir):
    """One store with a baseline, a teachers and a distill invocation on the real data (separation 0.5)."""
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        patch.chdir(folder)
        data = str(real_data_dir / "data_d0.5.pkl")
        common = ["--data", data, "--seeds", SEEDS, "--epochs", str(EPOCHS), "--log-every", "1"]
        ids = {command: run_command([command, *common]) for command in ("baseline", "teachers")}
        ids["distill"] = run_command(["distill", *common, "--teachers", ids["teachers"], "--alpha", "0.7", "--temperature", "4"])
        yield {"ids": ids, "data": load_multidomain(data), "uri": f"sqlite:///{folder / 'mlflow.db'}"}


@pytest.fixture(autouse=True)
def _use_store(request, monkeypatch):
    if "store" in request.fixturenames:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", request.getfixturevalue("store")["uri"])


def run_command(argv):
    """Run a kdtrack command in-process; the parent run id it prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue().split()[-1]


def _children(parent_id):
    return mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                              output_format="list")


def _accuracy(model, x, y):
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def test_every_invocation_is_a_parent_with_a_child_per_model(store):
    ids = store["ids"]
    assert len(_children(ids["baseline"])) == 2
    assert len(_children(ids["teachers"])) == 6
    assert len(_children(ids["distill"])) == 2
    for run_id in ids.values():
        run = MlflowClient().get_run(run_id)
        assert run.info.status == "FINISHED"
        accuracies = [child.data.metrics["model_val_acc"] for child in _children(run_id)]
        assert run.data.metrics["val_acc_mean"] == pytest.approx(np.mean(accuracies))
        assert run.data.metrics["val_acc_std"] == pytest.approx(np.std(accuracies, ddof=1))
        assert run.data.params["seeds"] == SEEDS
        assert run.data.tags["kdtrack.dataset"] == "data_d0.5"


@pytest.mark.parametrize("command", ["baseline", "teachers", "distill"])
def test_child_runs_log_the_contract(store, command):
    for child in _children(store["ids"][command]):
        tags, params, metrics = child.data.tags, child.data.params, child.data.metrics
        assert child.info.status == "FINISHED"
        assert tags["kdtrack.seed"] in SEEDS.split(",") and params["seed"] == tags["kdtrack.seed"]
        assert tags["kdtrack.selection"] == "holdout" and len(tags["kdtrack.config_hash"]) == 16
        assert params["epochs"] == str(EPOCHS) and params["lr"] == "0.001" and params["hidden"] == "20,10"
        for name in ("best_epoch", "best_val_loss", "best_val_acc", "final_val_acc", "model_val_acc"):
            assert name in metrics
        for name in ("train_loss", "val_loss", "train_acc", "val_acc", "selection_loss"):
            steps = [m.step for m in MlflowClient().get_metric_history(child.info.run_id, name)]
            assert sorted(steps) == list(range(1, EPOCHS + 1))
        history = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=child.info.run_id, artifact_path="history.parquet"))
        assert list(history["epoch"]) == list(range(1, EPOCHS + 1))
        best = int(metrics["best_epoch"])
        if command == "distill":  # a student's latest epoch within one standard error of its best holdout accuracy
            n = len(make_splits(store["data"], MLPTrainOptions()).selection.y)
            top = history["selection_acc"].max()
            near = history.index[history["selection_acc"] >= top - np.sqrt(top * (1 - top) / n)]
            assert near[-1] + 1 == best
        else:
            assert history["selection_loss"].idxmin() + 1 == best
        assert metrics["best_val_loss"] == pytest.approx(history["val_loss"][best - 1])
        logged = MlflowClient().get_logged_model(child.outputs.model_outputs[0].model_id)
        assert {metric.key: metric.value for metric in logged.metrics} == {
            name: metrics[name] for name in ("best_epoch", "best_val_loss", "best_val_acc", "final_val_acc", "model_epoch",
                                             "model_val_acc", "model_parameters", "latency_ms_per_image")}
    tasks = {"baseline": "baseline", "teachers": "teacher", "distill": "student"}
    assert {child.data.tags["kdtrack.task"] for child in _children(store["ids"][command])} == {tasks[command]}


def _domain_valid(data, child):
    domain = child.data.tags.get("kdtrack.domain")
    if domain is None:
        return data.valid.x, data.valid.y
    rows = data.valid.d == int(domain)
    return data.valid.x[rows], data.valid.y[rows]


@pytest.mark.parametrize("command", ["baseline", "teachers", "distill"])
def test_logged_model_scores_exactly_its_logged_accuracy(store, command):
    for child in _children(store["ids"][command]):
        x, y = _domain_valid(store["data"], child)
        model = mlflow.pytorch.load_model(f"runs:/{child.info.run_id}/model")
        assert _accuracy(model, x, y) == child.data.metrics["best_val_acc"] == child.data.metrics["model_val_acc"]
        points = pd.DataFrame(x.astype(np.float64), columns=["x0", "x1"])  # as a CSV of points reads
        predictions = mlflow.pyfunc.load_model(f"runs:/{child.info.run_id}/model").predict(points)
        assert float((np.asarray(predictions).argmax(1) == y).mean()) == child.data.metrics["best_val_acc"]


def test_state_dict_rebuilds_the_full_model_with_weights_only(store):
    from kdtrack.tracking import load_model

    child = _children(store["ids"]["baseline"])[0]
    path = mlflow.artifacts.download_artifacts(run_id=child.info.run_id, artifact_path="checkpoint/state_dict.pt")
    assert set(torch.load(path, weights_only=True)) == set(load_model(child.info.run_id).state_dict())
    x, y = _domain_valid(store["data"], child)
    assert _accuracy(load_model(child.info.run_id), x, y) == child.data.metrics["model_val_acc"]


def test_students_learn_from_their_seeds_in_domain_teachers(store):
    """The student's logged validation loss at its best epoch equals the KD loss recomputed from the
    reloaded student and the reloaded teachers it names, each sample with its own domain's teacher."""
    from kdtrack.tracking import load_model

    data = store["data"]
    teachers = {(c.data.tags["kdtrack.seed"], c.data.tags["kdtrack.domain"]): c.info.run_id
                for c in _children(store["ids"]["teachers"])}
    x = torch.from_numpy(data.valid.x)
    for student in _children(store["ids"]["distill"]):
        seed = student.data.tags["kdtrack.seed"]
        named = student.data.tags["kdtrack.teacher_run_ids"].split(",")
        assert named == [teachers[(seed, str(d))] for d in (0, 1, 2)]
        teacher_logits = torch.zeros(len(x), 2)
        with torch.no_grad():
            for domain, run_id in enumerate(named):
                rows = torch.from_numpy(data.valid.d == domain)
                teacher_logits[rows] = load_model(run_id)(x[rows])
            logits = load_model(student.info.run_id)(x)
        alpha, temperature = 0.7, 4.0
        soft = F.kl_div(F.log_softmax(logits / temperature, 1), F.softmax(teacher_logits / temperature, 1), reduction="batchmean")
        loss = (1 - alpha) * F.cross_entropy(logits, torch.from_numpy(data.valid.y)) + alpha * temperature**2 * soft
        assert student.data.metrics["best_val_loss"] == pytest.approx(loss.item(), rel=1e-4)
        assert student.data.params["alpha"] == "0.7" and student.data.params["temperature"] == "4.0"


def test_distill_without_teachers_reuses_finished_teachers_of_the_same_configuration(store, real_data_dir):
    before = len(mlflow.search_runs(search_all_experiments=True, filter_string="tags.`kdtrack.task` = 'teacher'", output_format="list"))
    args = ["distill", "--data", str(real_data_dir / "data_d0.5.pkl"), "--seeds", SEEDS, "--epochs", str(EPOCHS), "--log-every", "1"]
    parent = run_command(args)
    after = len(mlflow.search_runs(search_all_experiments=True, filter_string="tags.`kdtrack.task` = 'teacher'", output_format="list"))
    assert after == before
    student = _children(parent)[0]
    named = set(student.data.tags["kdtrack.teacher_run_ids"].split(","))
    assert named <= {c.info.run_id for c in _children(store["ids"]["teachers"])}


def test_same_seed_same_numbers(store):
    def histories(parent):
        children = sorted(_children(parent), key=lambda child: child.data.tags["kdtrack.seed"])
        return [pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=child.info.run_id, artifact_path="history.parquet"))
                for child in children]

    data = MlflowClient().get_run(store["ids"]["baseline"]).data.params["data"]
    again = run_command(["baseline", "--data", data, "--seeds", SEEDS, "--epochs", str(EPOCHS), "--log-every", "1"])
    for first, second in zip(histories(store["ids"]["baseline"]), histories(again)):
        pd.testing.assert_frame_equal(first, second)


def test_a_student_with_alpha_0_trains_exactly_as_the_baseline(store):
    """alpha = 0 leaves the labels alone: the baseline's objective on the student's steps, so the same seeds
    give the baseline's numbers epoch by epoch (selected on that objective, as the baseline is)."""
    def histories(parent):
        children = sorted(_children(parent), key=lambda child: child.data.tags["kdtrack.seed"])
        return [pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=child.info.run_id, artifact_path="history.parquet"))
                for child in children]

    data = MlflowClient().get_run(store["ids"]["baseline"]).data.params["data"]
    student = run_command(["distill", "--data", data, "--seeds", SEEDS, "--epochs", str(EPOCHS), "--log-every", "1",
                           "--teachers", store["ids"]["teachers"], "--alpha", "0", "--select-on", "objective"])
    for baseline, alone in zip(histories(store["ids"]["baseline"]), histories(student)):
        pd.testing.assert_frame_equal(baseline, alone)


def test_students_select_on_accuracy_within_its_noise_and_the_baseline_on_its_objective_by_default(store):
    """What every model is scored by selects a student's checkpoint; the criterion is a param of every run."""
    for command, expected in (("baseline", "objective"), ("teachers", "objective"), ("distill", "accuracy-1se")):
        parent = MlflowClient().get_run(store["ids"][command])
        assert parent.data.params["select_on"] == expected
        assert {child.data.params["select_on"] for child in _children(parent.info.run_id)} == {expected}


def test_a_mixture_student_learns_every_teacher_weighted_by_p_domain_given_x(store):
    """kd-mixture's logged validation loss at its best epoch equals Hinton's loss recomputed from the reloaded
    student and teachers, each sample's target sum_d p(d | x) softmax(teacher_d(x)), with p(d | x) a
    logistic regression refit here on the student's fit split."""
    from sklearn.linear_model import LogisticRegression

    from kdtrack.multidomain.options import MLPTrainOptions
    from kdtrack.multidomain.splits import make_splits
    from kdtrack.tracking import load_model

    data = store["data"]
    fit = make_splits(data, MLPTrainOptions()).fit
    weights = torch.from_numpy(LogisticRegression(max_iter=1000).fit(fit.x, fit.d).predict_proba(data.valid.x)).float()
    alpha, temperature = 0.7, 4.0
    parent = run_command(["distill", "--data", MlflowClient().get_run(store["ids"]["baseline"]).data.params["data"],
                          "--seeds", SEEDS, "--epochs", str(EPOCHS), "--teachers", store["ids"]["teachers"],
                          "--method", "kd-mixture", "--alpha", str(alpha), "--temperature", str(temperature)])
    x, y = torch.from_numpy(data.valid.x), torch.from_numpy(data.valid.y)
    for student in _children(parent):
        with torch.no_grad():
            experts = torch.stack([F.softmax(load_model(run_id)(x), 1)
                                   for run_id in student.data.tags["kdtrack.teacher_run_ids"].split(",")], 1)
            target = (weights.unsqueeze(-1) * experts).sum(1)
            logits = load_model(student.info.run_id)(x)
        soft_target = F.softmax(torch.log(target) / temperature, 1)
        soft = F.kl_div(F.log_softmax(logits / temperature, 1), soft_target, reduction="batchmean")
        loss = (1 - alpha) * F.cross_entropy(logits, y) + alpha * temperature**2 * soft
        assert student.data.metrics["best_val_loss"] == pytest.approx(loss.item(), rel=1e-4)
        assert student.data.params["method"] == "kd-mixture"
