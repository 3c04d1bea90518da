"""tune, study and compare: what they log, that the tuning grid equals separate runs, that a study
resumes, and that compare's numbers are the per-seed runs' own."""
import contextlib
import io
import math
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from kdtrack.cli import main
from kdtrack.multidomain import make_multidomain, save_multidomain
from kdtrack.spine.study import read_config

SEEDS = "0,10"


def run(argv):
    """Run a kdtrack command in-process; its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue()


def children(parent_id):
    return mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                              output_format="list")


def seed_runs(task=None):
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return [r for r in runs if "kdtrack.seed" in r.data.tags and (task is None or r.data.tags["kdtrack.task"] == task)]


@pytest.fixture()
def dataset(tmp_path):
    path = tmp_path / "small.pkl"
    save_multidomain(make_multidomain(0.5, 3, n_train=300, n_valid=90, name="small"), path)
    return str(path)


def test_tune_grid_equals_separate_distill_runs(tracking_uri, dataset):
    """Under the validation policy the selection split is validation, so a trial's score is exactly the
    val_acc_mean of a distill run with the same alpha and temperature."""
    common = ["--data", dataset, "--seeds", SEEDS, "--epochs", "30", "--selection", "validation"]
    tune_id = run(["tune", *common, "--alphas", "0.2,0.8", "--temperatures", "2,6"]).split()[-1]
    trials = [c for c in children(tune_id) if c.data.tags["kdtrack.task"] == "tune-trial"]
    assert len(trials) == 4
    tune = MlflowClient().get_run(tune_id)
    best = max(trials, key=lambda t: t.data.metrics["selection_acc_mean"])
    assert tune.data.metrics["best_selection_acc"] == pytest.approx(best.data.metrics["selection_acc_mean"])
    assert tune.data.metrics["top_selection_acc"] == tune.data.metrics["best_selection_acc"]  # the default rule: best
    assert (tune.data.metrics["best_alpha"], tune.data.metrics["best_temperature"]) in {(0.2, 2), (0.2, 6), (0.8, 2), (0.8, 6)}
    for trial in trials[:2]:
        alpha, temperature = trial.data.params["alpha"], trial.data.params["temperature"]
        distill_id = run(["distill", *common, "--alpha", alpha, "--temperature", temperature]).split()[-1]
        distilled = MlflowClient().get_run(distill_id).data.metrics["val_acc_mean"]
        assert distilled == pytest.approx(trial.data.metrics["selection_acc_mean"], abs=1e-9)
    tuned_id = run(["distill", *common, "--tuned", tune_id]).split()[-1]
    params = MlflowClient().get_run(tuned_id).data.params
    assert float(params["alpha"]) == tune.data.metrics["best_alpha"]
    assert float(params["temperature"]) == tune.data.metrics["best_temperature"]


def test_tune_grid_tries_alpha_0_once_and_only_what_a_method_can_tune():
    from kdtrack.errors import InputError
    from kdtrack.multidomain.cells.tune import TuneGrid

    assert TuneGrid("kd", (0.0, 0.5), (2.0, 6.0)).trials() == [
        {"alpha": 0.0, "temperature": 2.0}, {"alpha": 0.5, "temperature": 2.0}, {"alpha": 0.5, "temperature": 6.0}]
    assert TuneGrid("kd").alphas[0] == 0.0  # the default grid can choose not to distil
    assert TuneGrid("anneal-jafari", temperatures=(9.0, 18.0)).trials() == [{"temperature": 9.0}, {"temperature": 18.0}]
    for grid, message in (({"distiller": "anneal-jafari", "alphas": (0.5,)}, "alphas: distiller anneal-jafari has no alpha"),
                          ({"distiller": "anneal-cosine"}, "distiller 'anneal-cosine' cannot be tuned"),
                          ({"distiller": "anneal-jafari", "temperatures": (4.5,)}, "must be whole numbers"),
                          ({"distiller": "kd", "alphas": (1.5,)}, "alphas must be values in [0, 1]")):
        with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
            TuneGrid(**grid)


def test_tune_of_annealing_scores_each_tau_max_as_a_distill_run_would(tracking_uri, dataset):
    common = ["--data", dataset, "--seeds", SEEDS, "--epochs", "30", "--selection", "validation"]
    tune_id = run(["tune", *common, "--method", "anneal-jafari", "--temperatures", "2,5"]).split()[-1]
    tune = MlflowClient().get_run(tune_id)
    assert tune.data.params["distiller"] == "anneal-jafari" and tune.data.params["temperatures"] == "2,5"
    trials = {float(c.data.params["temperature"]): c.data.metrics["selection_acc_mean"] for c in children(tune_id)
              if c.data.tags["kdtrack.task"] == "tune-trial"}
    assert set(trials) == {2.0, 5.0}
    for tau_max, score in trials.items():
        distilled = run(["distill", *common, "--method", "anneal-jafari", "--temperature", str(tau_max)]).split()[-1]
        assert MlflowClient().get_run(distilled).data.metrics["val_acc_mean"] == pytest.approx(score, abs=1e-9)
    tuned = MlflowClient().get_run(run(["distill", *common, "--method", "anneal-jafari", "--tuned", tune_id]).split()[-1])
    assert float(tuned.data.params["temperature"]) == tune.data.metrics["best_temperature"]
    assert main(["distill", *common, "--method", "kd", "--tuned", tune_id]) == 2  # tuned for another method


def test_a_tune_run_keeps_the_trial_its_rule_picks_from_its_logged_scores(tracking_uri, dataset):
    """Under the validation policy the selection split is the 90 validation points. Every rule trains the
    same trials; each keeps the simplest trial (lowest alpha, then temperature) whose logged accuracy is
    within its tolerance of the best's: none for `best`, the best's binomial standard error for
    `simplest-1se`, the trial's own gap standard error for `simplest-paired-1se`. The rule is a param and
    part of the configuration's hash."""
    common = ["tune", "--data", dataset, "--seeds", "0,10", "--epochs", "30", "--selection", "validation",
              "--alphas", "0,0.5,0.9", "--temperatures", "2,6"]
    hashes, scores_by_rule = set(), []
    for rule in ("best", "simplest-1se", "simplest-paired-1se"):
        tune_id = run([*common, "--tune-rule", rule]).split()[-1]
        tune = MlflowClient().get_run(tune_id)
        trials = sorted((c for c in children(tune_id) if c.data.tags["kdtrack.task"] == "tune-trial"),
                        key=lambda c: int(c.data.tags["kdtrack.trial"]))
        values = [(float(c.data.params["alpha"]), float(c.data.params["temperature"])) for c in trials]
        acc = [c.data.metrics["selection_acc_mean"] for c in trials]
        ce = [c.data.metrics["selection_ce_mean"] for c in trials]
        best = max(range(len(trials)), key=lambda i: (acc[i], -ce[i]))
        top = acc[best]
        assert tune.data.metrics["top_selection_acc"] == pytest.approx(top)
        assert tune.data.metrics["top_selection_acc_se"] == pytest.approx(math.sqrt(top * (1 - top) / 90))
        assert trials[best].data.metrics["selection_gap_se"] == 0
        tolerance = {"best": [0.0] * len(trials), "simplest-1se": [math.sqrt(top * (1 - top) / 90)] * len(trials),
                     "simplest-paired-1se": [c.data.metrics["selection_gap_se"] for c in trials]}[rule]
        within = [i for i in range(len(trials)) if top - acc[i] <= tolerance[i] + 1e-12]
        kept = best if rule == "best" else min(within, key=lambda i: values[i])
        assert tune.data.params["tune_rule"] == rule
        assert (tune.data.metrics["best_alpha"], tune.data.metrics["best_temperature"]) == values[kept]
        assert tune.data.metrics["best_selection_acc"] == pytest.approx(acc[kept])
        hashes.add(tune.data.tags["kdtrack.config_hash"])
        scores_by_rule.append(acc)
    assert len(hashes) == 3, "the rule is part of the tune cell's identity"
    assert scores_by_rule[0] == scores_by_rule[1] == scores_by_rule[2], "the rule chooses; it trains nothing else"
    with pytest.raises(SystemExit) as bad:
        main([*common, "--tune-rule", "lowest"])
    assert bad.value.code == 2


CONFIG = """
epochs: 20
train: {selection: holdout}
teachers:
  es: {early_stopping: true}
tune: {kd: {alpha: [0.3, 0.7]}, epochs: 10}
methods:
  baseline: {task: baseline}
  kd-es:
    teachers: es
    distill: {distiller: kd, alpha: tuned, temperature: {default: 9, small: 4}}
  anneal:
    teachers: es
    train: {early_stopping: false}
    distill: {distiller: anneal-cosine, alpha: 0.5, temperature: 9, step_order: per-domain}
  anneal-twin:             # the same configuration under another name: a row of its own
    teachers: es
    train: {early_stopping: false}
    distill: {distiller: anneal-cosine, alpha: 0.5, temperature: 9, step_order: per-domain}
"""

PLAN = ("{total} cell(s), teachers and tuning grids counted: {done} done before (a FINISHED run for every seed; "
        "their runs stay under the run that trained them), {left} to train")


def test_study_runs_the_grid_nested_and_resumes(tracking_uri, dataset, tmp_path, capsys):
    """...and says at its start how many cells (per dataset: 4 methods, their teachers and kd-es's tuning
    grid) are done and how many will train."""
    other = tmp_path / "other.pkl"
    save_multidomain(make_multidomain(1.0, 4, n_train=300, n_valid=90, name="other"), other)
    config = tmp_path / "study.yaml"
    config.write_text(CONFIG)
    argv = ["study", "--config", str(config), "--data", f"{dataset},{other}", "--seeds", SEEDS]
    study_id = run(argv).split()[-1]
    assert PLAN.format(total=12, done=0, left=12) in capsys.readouterr().err.splitlines()

    cells = children(study_id)
    assert {(c.data.tags["kdtrack.dataset"], c.data.tags["kdtrack.method"]) for c in cells
            if c.data.tags["kdtrack.task"] not in ("tune", "teachers")} \
        == {(d, m) for d in ("small", "other") for m in ("baseline", "kd-es", "anneal", "anneal-twin")}
    assert len(seed_runs("baseline")) == 4 and len(seed_runs("student")) == 12
    assert len(seed_runs("teacher")) == 2 * 2 * 3  # shared by every student
    twins = {m: sorted(r.data.metrics["model_val_acc"] for r in seed_runs("student") if r.data.tags["kdtrack.method"] == m)
             for m in ("anneal", "anneal-twin")}
    assert twins["anneal"] == twins["anneal-twin"], "same configuration, same numbers"
    tunes = [c for c in cells if c.data.tags["kdtrack.task"] == "tune"]
    assert len(tunes) == 2 and all(t.data.params["epochs"] == "10" for t in tunes)
    small_student = next(r for r in seed_runs("student") if r.data.tags["kdtrack.dataset"] == "small"
                         and r.data.tags["kdtrack.method"] == "kd-es")
    assert small_student.data.params["temperature"] == "4.0" and small_student.data.params["epochs"] == "20"

    before = {r.info.run_id for r in seed_runs()}
    run(argv)
    assert {r.info.run_id for r in seed_runs()} == before, "a finished study must not train anything again"
    assert PLAN.format(total=12, done=12, left=0) in capsys.readouterr().err.splitlines()

    config.write_text(CONFIG + "  kd-bn:\n    teachers: es\n    train: {batch_norm: true}\n    distill: {alpha: 0.5, temperature: 4}\n")
    run(argv)
    assert PLAN.format(total=14, done=12, left=2) in capsys.readouterr().err.splitlines()
    added = [r for r in seed_runs() if r.info.run_id not in before]
    assert {(r.data.tags["kdtrack.method"], r.data.tags["kdtrack.task"]) for r in added} == {("kd-bn", "student")}
    assert len(added) == 4


def test_compare_reports_the_seed_runs_mean_and_sample_std(tracking_uri, dataset, capsys):
    run(["baseline", "--data", dataset, "--seeds", "0,10,1234", "--epochs", "15"])
    run(["baseline", "--data", dataset, "--seeds", "0,10,1234", "--epochs", "15"])  # the same cells again
    accuracies = [r.data.metrics["model_val_acc"] for r in seed_runs("baseline")][:3]
    csv = run(["compare", "--format", "csv"]).strip().splitlines()
    assert csv[0] == "dataset,method,n,val_acc_mean,val_acc_std"
    assert csv[1].split(",")[:3] == ["small", "baseline", "3"]
    assert float(csv[1].split(",")[3]) == pytest.approx(100 * np.mean(accuracies), abs=0.005)
    assert float(csv[1].split(",")[4]) == pytest.approx(100 * np.std(accuracies, ddof=1), abs=0.005)
    finals = [r.data.metrics["final_val_acc"] for r in seed_runs("baseline")][:3]
    last_epoch = run(["compare", "--format", "csv", "--metric", "final_val_acc"]).strip().splitlines()
    assert float(last_epoch[1].split(",")[3]) == pytest.approx(100 * np.mean(finals), abs=0.005)
    markdown = [[cell.strip() for cell in line.strip("|").split("|")] for line in run(["compare"]).strip().splitlines()]
    assert markdown[0] == ["dataset", "method", "n", "val_acc_mean", "val_acc_std"]
    assert markdown[2][:3] == ["small", "baseline", "3"] and markdown[2][3] == csv[1].split(",")[3]
    run(["teachers", "--data", dataset, "--seeds", "0", "--epochs", "5"])
    teachers = run(["compare", "--teachers", "--format", "csv"]).strip().splitlines()
    assert teachers[0] == "dataset,domain,n,val_acc_mean,val_acc_std" and len(teachers) == 4
    capsys.readouterr()
    run(["baseline", "--data", dataset, "--seeds", "0,10", "--epochs", "9"])  # another configuration, same name
    newest = run(["compare", "--format", "csv"]).strip().splitlines()
    assert newest[1].split(",")[:3] == ["small", "baseline", "2"]
    assert "small baseline: 1 older configuration(s) left out" in capsys.readouterr().err


def test_report_config_holds_the_reports_hyperparameters():
    config = read_config("configs/report.yaml")
    expected = {  # the report's Table: Q2 (alpha, T), Q3 M1 (alpha, T), Q3 M2 (alpha, T_max)
        "data": ((0.5, 9), (0.81, 9), (0.81, 9)),
        "data_d0.75": ((0.5, 9), (0.69, 9), (0.69, 9)),
        "data_d0.5": ((0.5, 9), (0.69, 9), (0.81, 18)),
        "data_d0.25": ((0.5, 18), (0.3, 9), (0.72, 33)),
    }
    for stem, values in expected.items():
        cells = {method.label: method for method in config.method_specs(stem)}
        assert [(cells[m].distill["alpha"], cells[m].distill["temperature"]) for m in ("kd", "kd-es")] == list(values[:2])
        assert cells["anneal"].distill["temperature"] == values[2][1]  # the report's T_max as tau_max
        assert (cells["anneal-cosine"].distill["alpha"], cells["anneal-cosine"].distill["temperature"]) == values[2]
        assert cells["kd-es"].train["early_stopping"] and not cells["kd"].train["early_stopping"]
        assert cells["kd-es"].teachers["early_stopping"] and not cells["kd"].teachers["early_stopping"]
        assert all(cell.train["selection"] == "validation" and cell.train["epochs"] == 30000 for cell in cells.values())
        assert cells["anneal"].distill["distiller"] == "anneal-jafari" and cells["kd"].distill["step_order"] == "per-domain"
        assert cells["anneal"].train["early_stopping"], "kdtrack keeps annealing's best final-phase checkpoint"


@pytest.mark.parametrize("text,message", [
    ("train: {}\n", "needs a `methods` mapping"),
    ("methods: {kd: {teachers: nope}}\n", "methods.kd.teachers names 'nope'"),
    ("methods: {kd: {distill: {alpha: {other: 0.5}}}}\n", "methods.kd.distill.alpha: 'other' names no dataset of this study"),
    ("methods: {kd: {distill: {alpha: {default: 0.5, smal: 0.7}}}}\n", "methods.kd.distill.alpha: 'smal' names no dataset"),
    ("methods: {kd: {train: {epoch: 5}}}\n", "methods.kd.train: unknown key 'epoch'"),
    ("epoch: 5\nmethods: {kd: {}}\n", "the config: unknown key 'epoch'"),
    ("methods: {kd: {distill: {alpha: 3}}}\n", "alpha must lie in [0, 1]"),
    ("methods: {kd: {task: fit}}\n", "methods.kd.task must be baseline or distill"),
    ("methods: [unclosed\n", "not valid YAML"),
    ("tune: {alphas: [0.3]}\nmethods: {kd: {}}\n", "tune: unknown key 'alphas'"),
    ("tune: {kd: {alpha: [0.3], beta: [1]}}\nmethods: {kd: {distill: {alpha: tuned}}}\n", "tune.kd: unknown key 'beta'"),
    ("tune: {kd: {alpha: [2]}}\nmethods: {kd: {distill: {alpha: tuned}}}\n", "tune.kd: alphas must be values in [0, 1]"),
    ("methods: {a: {distill: {distiller: anneal-jafari, alpha: tuned}}}\n", "alpha cannot be tuned for anneal-jafari"),
    ("methods: {a: {distill: {distiller: anneal-cosine, temperature: tuned}}}\n", "tunable: nothing"),
    ("tune: {rule: lowest}\nmethods: {kd: {}}\n", "tune.rule: tune rule must be one of best, simplest-1se, simplest-paired-1se, got 'lowest'"),
    ("seeds: 0,10\nmethods: {kd: {}}\n", "seeds must be a list of whole numbers, got '0,10'"),
    ("seeds: [0, 0]\nmethods: {kd: {}}\n", "seeds must not repeat"),
])
def test_bad_study_configs_are_one_line_errors_before_any_run(tracking_uri, dataset, tmp_path, capsys, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["study", "--config", str(config), "--data", dataset, *([] if "seeds" in text else ["--seeds", "0"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"kdtrack: error: {config}") and message in err[0]
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def test_paired_table_compares_the_chosen_accuracy():
    import pandas as pd

    from kdtrack.compare.tables import paired_table

    rows = pd.DataFrame({"dataset": "d", "seed": ["0", "1", "2"] * 2, "method": ["kd"] * 3 + ["kd-bn"] * 3,
                         "model_val_acc": [0.90, 0.80, 0.70, 0.91, 0.82, 0.70],
                         "final_val_acc": [0.90, 0.80, 0.70, 0.80, 0.80, 0.80]})
    by_model = paired_table(rows, "kd").iloc[0]
    by_last = paired_table(rows, "kd", "final_val_acc").iloc[0]
    assert (by_model["method"], by_model["n"]) == ("kd-bn", 3)
    assert by_model["diff_mean"] == pytest.approx(1.0) and by_model["diff_std"] == pytest.approx(1.0)
    assert by_last["diff_mean"] == pytest.approx(0.0) and by_last["diff_std"] == pytest.approx(10.0)


def test_paired_comparison_matches_a_hand_computation(tracking_uri, dataset):
    from scipy import stats

    common = ["--data", dataset, "--seeds", "0,10,1234", "--epochs", "25"]
    run(["baseline", *common])
    run(["distill", *common, "--alpha", "0.9", "--temperature", "2"])
    accuracy = {(r.data.tags["kdtrack.task"], int(r.data.tags["kdtrack.seed"])): r.data.metrics["model_val_acc"]
                for r in seed_runs() if r.data.tags["kdtrack.task"] in ("baseline", "student")}
    student = [accuracy[("student", seed)] for seed in (0, 10, 1234)]
    baseline = [accuracy[("baseline", seed)] for seed in (0, 10, 1234)]
    diff = 100 * (np.array(student) - np.array(baseline))
    lines = run(["compare", "--paired", "baseline", "--format", "csv"]).strip().splitlines()
    assert lines[0] == "dataset,method,n,diff_mean,diff_std,ci_low,ci_high,p_value,p_holm"
    dataset_name, method, n, mean, std, low, high, p_value, p_holm = lines[1].split(",")
    assert (dataset_name, method, n) == ("small", "kd", "3")
    assert float(mean) == pytest.approx(diff.mean(), abs=0.005)
    assert float(std) == pytest.approx(diff.std(ddof=1), abs=0.005)
    expected_p = stats.ttest_rel(student, baseline).pvalue if diff.std() > 0 else float("nan")
    assert float(p_value) == pytest.approx(expected_p, abs=0.0005, nan_ok=True)
    assert float(p_holm) == pytest.approx(expected_p, abs=0.0005, nan_ok=True)  # one comparison: nothing to correct
    half = stats.t.ppf(0.975, 2) * diff.std(ddof=1) / np.sqrt(3)
    assert (float(low), float(high)) == (pytest.approx(diff.mean() - half, abs=0.005), pytest.approx(diff.mean() + half, abs=0.005))
    assert main(["compare", "--paired", "nonesuch"]) == 2


def test_paired_table_corrects_p_values_by_holm_over_the_whole_table():
    """Holm by hand: the k-th smallest of m p-values times (m - k + 1), kept monotone, capped at 1; a
    comparison without variance has no p and is not counted."""
    import pandas as pd
    from scipy import stats

    from kdtrack.compare.tables import paired_table

    gains = {"a": [1.0, 2.0, 1.5, 2.5], "b": [0.1, -0.2, 0.3, 0.0], "c": [3.0, 2.0, 4.0, 3.5], "same": [1.0] * 4}
    rows = [{"dataset": "d", "seed": str(seed), "method": "ref", "model_val_acc": 0.5} for seed in range(4)]
    rows += [{"dataset": "d", "seed": str(seed), "method": method, "model_val_acc": 0.5 + gain / 100}
             for method, values in gains.items() for seed, gain in enumerate(values)]
    table = paired_table(pd.DataFrame(rows), "ref").set_index("method")
    raw = {method: stats.ttest_1samp(gains[method], 0.0).pvalue for method in "abc"}
    order = sorted(raw, key=raw.get)
    expected, running = {}, 0.0
    for rank, method in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[method]))
        expected[method] = running
    for method in "abc":
        assert table.loc[method, "p_value"] == pytest.approx(raw[method])
        assert table.loc[method, "p_holm"] == pytest.approx(expected[method])
    assert np.isnan(table.loc["same", "p_value"]) and np.isnan(table.loc["same", "p_holm"])
    assert table.loc["same", "diff_mean"] == pytest.approx(1.0)


def test_primary_family_is_corrected_apart_with_its_minimum_detectable_effect():
    """The primary method's rows are one family (Holm by hand over them alone), the rest another; the
    minimum detectable effect is the mean difference at which a two-sided t-test at 0.05 / (family size)
    has 80% power, by the noncentral t distribution."""
    import pandas as pd
    from scipy import stats

    from kdtrack.compare.tables import minimum_detectable_effect, paired_table, seeds_needed
    from kdtrack.errors import InputError

    gains = {("d1", "mix"): [1.0, 2.0, 1.5, 2.5], ("d2", "mix"): [0.1, -0.2, 0.3, 0.0],
             ("d1", "other"): [3.0, 2.0, 4.0, 3.5]}
    rows = [{"dataset": d, "seed": str(seed), "method": "ref", "model_val_acc": 0.5} for d in ("d1", "d2") for seed in range(4)]
    rows += [{"dataset": d, "seed": str(seed), "method": m, "model_val_acc": 0.5 + gain / 100}
             for (d, m), values in gains.items() for seed, gain in enumerate(values)]
    table = paired_table(pd.DataFrame(rows), "ref", primary="mix")
    assert list(table["family"]) == ["primary", "primary", "secondary"]
    assert list(zip(table["dataset"], table["method"])) == [("d1", "mix"), ("d2", "mix"), ("d1", "other")]
    raw = [stats.ttest_1samp(gains[key], 0.0).pvalue for key in [("d1", "mix"), ("d2", "mix"), ("d1", "other")]]
    low, high = sorted(raw[:2])
    holm = {low: min(1.0, 2 * low), high: max(min(1.0, 2 * low), min(1.0, high))}
    assert table["p_holm"].tolist() == pytest.approx([holm[raw[0]], holm[raw[1]], raw[2]])  # a family of one: raw p
    for row, level in zip(table.itertuples(), (0.025, 0.025, 0.05)):
        std = np.std(gains[(row.dataset, row.method)], ddof=1)
        critical = stats.t.ppf(1 - level / 2, 3)
        shift = row.mde / std * np.sqrt(4)
        power = stats.nct.sf(critical, 3, shift) + stats.nct.cdf(-critical, 3, shift)
        assert power == pytest.approx(0.8, abs=1e-4)
    assert seeds_needed(1.3, minimum_detectable_effect(20, 1.3, 0.005), 0.005) == 20  # the inverse, at 20 seeds
    with pytest.raises(InputError, match="method 'nonesuch': no paired differences from 'ref'"):
        paired_table(pd.DataFrame(rows), "ref", primary="nonesuch")


def test_verdict_config_runs_end_to_end_and_compare_reports_its_primary_family(tracking_uri, dataset, capsys):
    """configs/verdict.yaml at tiny size: the baseline, the teachers, kd-mixture's tuning and kd-mixture;
    then its pre-declared primary comparison."""
    path = str(Path(__file__).resolve().parents[1] / "configs" / "verdict.yaml")
    config = read_config(path)
    assert len(config.seeds) == 20 and config.section("tune")["rule"] == "best"
    assert list(config.raw["methods"]) == ["baseline", "kd-mixture"]
    run(["study", "--config", path, "--data", dataset, "--seeds", "0,10", "--epochs", "15", "--experiment-name", "verdict"])
    tunes = [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
             if r.data.tags["kdtrack.task"] == "tune"]
    assert len(tunes) == 1 and tunes[0].data.params["tune_rule"] == "best"
    assert {(r.data.tags["kdtrack.method"], r.data.tags["kdtrack.seed"]) for r in seed_runs("student")} \
        == {("kd-mixture", "0"), ("kd-mixture", "10")}
    lines = run(["compare", "--experiment-name", "verdict", "--paired", "baseline", "--primary", "kd-mixture",
                 "--format", "csv"]).strip().splitlines()
    assert lines[0] == "family,dataset,method,n,diff_mean,diff_std,ci_low,ci_high,p_value,p_holm,mde"
    assert [line.split(",")[:4] for line in lines[1:]] == [["primary", "small", "kd-mixture", "2"]]
    capsys.readouterr()
    assert main(["compare", "--experiment-name", "verdict", "--primary", "kd-mixture"]) == 2
    assert capsys.readouterr().err.strip() == "kdtrack: error: compare --primary needs --paired (the method it is compared against)"


def test_a_study_trains_the_configs_seeds_when_told_none(tracking_uri, dataset, tmp_path):
    config = tmp_path / "seeds.yaml"
    config.write_text("epochs: 5\nseeds: [3, 4]\nmethods: {baseline: {task: baseline}}\n")
    run(["study", "--config", str(config), "--data", dataset])
    assert sorted(r.data.tags["kdtrack.seed"] for r in seed_runs("baseline")) == ["3", "4"]
