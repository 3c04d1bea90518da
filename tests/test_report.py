"""What a study and `kdtrack compare` leave for a reader: run names and params that line up in the UI, the
data each run saw (MLflow dataset tracking), a loss-curve figure per cell, the study's wide table, and a
compare run holding the tables and figures (also written with --out)."""
import contextlib
import io

import mlflow
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.text import Text
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
    assert lines[-3] == "Validation accuracy of the logged model in percent (model_val_acc): mean ± sample std over n = 2 seeds"
    assert lines[-2].startswith("figures and tables: ") and lines[-1] == study_run.info.run_id


def test_compare_logs_a_run_with_its_tables_and_figures_and_writes_them_with_out(study, tmp_path, capsys):
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
    said = capsys.readouterr().err.splitlines()[-1]  # which files, where they went
    named, where = said.removeprefix("kdtrack compare: tables and figures (").split(") ")
    assert {file for name in named.split(", ") for file in (name.replace(".csv/.md", ".csv"), name.replace(".csv/.md", ".md"))} \
        == expected
    assert where == f"written to {out} and logged in run {compare[0].info.run_id}"


def test_a_tables_caption_names_its_metric_units_and_seeds():
    from kdtrack.compare.report import caption

    table = pd.DataFrame({"dataset": ["a", "a"], "method": ["x", "y"], "n": [5, 3]})
    assert caption(table) == ("Validation accuracy of the logged model in percent (model_val_acc): mean ± sample std "
                              "over n = 3 to 5 seeds (each row's n in table.csv)")
    assert caption(table.assign(n=1), "best_val_acc") == ("Validation accuracy at the selected checkpoint in percent "
                                                          "(best_val_acc): mean ± sample std over n = 1 seed")
    assert caption(table.assign(n=2), paired="x").startswith(
        "Difference from x in the validation accuracy of the logged model, in points, seed by seed over n = 2 seeds: ")
    assert caption(table.iloc[:0]) == "The table is empty: no FINISHED per-seed runs to summarise"


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


def drawn_colours(figure, kind: str) -> dict[str, str]:
    """The colour each method has in a report's figure, read from what is drawn: the bars of accuracy, the
    markers of paired, the legend of curves."""
    colours = {}
    if kind == "curves":
        legend = figure.legends[0]
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            colours[text.get_text().split(" (n=")[0]] = to_hex(handle.get_color())
        return colours
    for ax in figure.axes:
        names = [label.get_text() for label in ax.get_xticklabels()]
        if kind == "accuracy":
            for patch in ax.patches:
                colours[names[round(patch.get_x() + patch.get_width() / 2)]] = to_hex(patch.get_facecolor(), keep_alpha=False)
        else:
            for line in ax.lines:
                if line.get_marker() == "D":
                    colours[names[round(line.get_xdata()[0])]] = to_hex(line.get_color())
    return colours


def test_a_method_has_one_colour_in_every_figure_of_a_report(study):
    from kdtrack.compare.report import build_report
    from kdtrack.tracking import finished_seed_runs, study_order

    report = build_report(finished_seed_runs("mini"), paired="kd", order=study_order("mini"))
    accuracy = drawn_colours(report.figures["accuracy"], "accuracy")
    paired = drawn_colours(report.figures["paired_kd"], "paired")
    curves = drawn_colours(report.figures["curves"], "curves")
    assert list(accuracy) == list(curves) == ["baseline", "kd", "anneal"], "the table's method order"
    assert len(set(accuracy.values())) == 3
    assert curves == accuracy and paired == {method: accuracy[method] for method in ("baseline", "anneal")}
    for ax in report.figures["curves"].axes:  # each panel's lines in the legend's colours
        assert {to_hex(line.get_color()) for line in ax.lines} == set(accuracy.values())


def test_boundary_panels_each_give_their_accuracy(study):
    from kdtrack.compare.report import build_report
    from kdtrack.studies import figures as study_figures
    from kdtrack.tracking import finished_seed_runs

    figure = build_report(finished_seed_runs("mini"), extras=study_figures).figures["boundaries_tiny"]
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert len(titles) == 1 + 3 + 2 and all(title.endswith("%") or title.endswith("% on its domain") for title in titles)
    teachers = {run.data.tags["kdtrack.domain"]: run.data.metrics["model_val_acc"] for run in all_runs()
                if run.data.tags.get("kdtrack.task") == "teacher" and run.data.tags["kdtrack.seed"] == "0"}
    for domain, accuracy in teachers.items():
        assert f"teacher, domain {domain}: {100 * accuracy:.1f}% on its domain" in titles


def two_seeds(losses: tuple[float, float], accuracies: tuple[float, float], phase: bool = False) -> list[pd.DataFrame]:
    """Two seeds' histories of 100 epochs, flat at the given losses and accuracies (a phase column: the
    first 50 epochs phase 1, at a loss a thousand times larger)."""
    histories = []
    for loss, accuracy in zip(losses, accuracies):
        history = pd.DataFrame({"epoch": np.arange(1, 101), "train_loss": np.full(100, loss),
                                "val_loss": np.full(100, loss), "val_acc": np.full(100, accuracy)})
        if phase:
            history["phase"] = np.repeat([1.0, 2.0], 50)
            history.loc[:49, ["train_loss", "val_loss"]] = 1000 * loss
        histories.append(history)
    return histories


def test_curves_bands_stay_within_what_the_quantity_can_be_and_losses_within_the_last_phase():
    """Seeds at losses 0.1 and 1.9 (mean - std < 0) and accuracies 0.9 and 1.0 (mean + std > 100%): the
    bands stop at 0 and at 100%. An annealing history's loss is drawn over its last phase alone."""
    figure = figures.curves({"a": {"x": two_seeds((0.1, 1.9), (0.9, 1.0)), "anneal": two_seeds((0.2, 0.3), (0.8, 0.9), True)}},
                            "bands")
    for ax, (low, high) in zip(figure.axes, ((0.0, None), (0.0, None), (None, 100.0))):
        edges = np.concatenate([band.get_paths()[0].vertices[:, 1] for band in ax.collections])
        assert edges.min() >= 0.0 and (high is None or edges.max() <= high)
        assert edges.min() == low if low is not None else edges.max() == high, "the wide band is cut there"
    for ax in figure.axes[:2]:
        anneal = ax.lines[1]
        assert anneal.get_xdata().min() == 51 and anneal.get_ydata().max() < 1, "phase 1's loss is left out"
    assert figure.axes[2].lines[1].get_xdata().min() == 1, "the accuracy is drawn over every epoch"


def test_accuracy_panels_follow_the_tables_dataset_order_on_one_axis():
    rows = pd.DataFrame({"dataset": np.repeat(["sep1.00", "sep0.50", "sep0.25"], 4), "method": ["x", "x", "y", "y"] * 3,
                         "seed": ["0", "1"] * 6, "model_val_acc": np.linspace(0.6, 0.95, 12)})
    figure = figures.accuracy_bars(rows, "model_val_acc", "accuracy")
    assert [ax.get_title() for ax in figure.axes] == ["sep1.00", "sep0.50", "sep0.25"]
    assert len({ax.get_ylim() for ax in figure.axes}) == 1
    assert len({round(ax.get_position().y0, 3) for ax in figure.axes}) == 2, "wrapped into two rows, not a strip"


def test_annealing_says_which_schedules_are_one_line():
    def history(tau: int) -> pd.DataFrame:
        epochs = np.arange(1, 101)
        return pd.DataFrame({"epoch": epochs, "temperature": np.minimum(tau, 1 + epochs // 10),
                             "phase": np.where(epochs <= 50, 1.0, 2.0)})

    figure = figures.schedules({"anneal": {"a": history(4), "b": history(9), "c": history(4)}}, "s")
    ax = figure.axes[0]
    assert len(ax.lines) == 2
    assert [text.get_text() for text in ax.get_legend().get_texts()][:2] == ["a, c (identical: one line)", "b"]


def shown_tick_labels(axis) -> list[Text]:
    """The tick labels an axis draws (major and minor: a log axis labels some minor ticks): those of ticks
    within its view."""
    low, high = sorted(axis.get_view_interval())
    ticks = [*zip(axis.get_majorticklocs(), axis.get_majorticklabels()),
             *zip(axis.get_minorticklocs(), axis.get_minorticklabels())]
    return [label for location, label in ticks if low <= location <= high and label.get_text()]


def outside(figure) -> list[str]:
    """The visible texts of `figure` (tick labels, titles, legends) that stick out of it once drawn."""
    FigureCanvasAgg(figure).draw()
    renderer, box = figure.canvas.get_renderer(), figure.bbox
    texts = [text for ax in figure.axes for text in (*shown_tick_labels(ax.xaxis), *shown_tick_labels(ax.yaxis),
                                                      ax.title, ax.xaxis.label, ax.yaxis.label)]
    texts += [figure._suptitle, *(text for legend in figure.legends for text in legend.get_texts())]
    return [text.get_text() for text in texts if text is not None and text.get_visible() and text.get_text()
            and not all(box.padded(1).contains(*corner) for corner in text.get_window_extent(renderer).corners())]


def test_every_text_of_every_figure_lies_inside_it_and_tick_labels_clear_the_panel_beside():
    """Including log loss axes spanning a decade or so, whose labels ("6×10⁻¹") were cut at the left edge
    and ran into the panel beside."""
    falling = [pd.DataFrame({"epoch": np.arange(1, 301), "train_loss": np.geomspace(0.7, 0.06, 300) * (1 + 0.1 * seed),
                             "val_loss": np.geomspace(0.7, 0.03, 300), "val_acc": np.linspace(0.5, 0.99, 300)})
               for seed in range(2)]
    rows = pd.DataFrame({"dataset": np.repeat(["a", "b", "c"], 6), "method": ["baseline", "kd-adamw-onecycle", "kd-mixture"] * 6,
                         "seed": np.tile(["0", "0", "0", "1", "1", "1"], 3), "model_val_acc": np.linspace(0.6, 0.95, 18)})
    points = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    drawn = {
        "curves": figures.curves({"a": {"kd": falling, "kd-es": falling}, "b": {"kd": falling}}, "c"),
        "accuracy": figures.accuracy_bars(rows, "model_val_acc", "Validation accuracy of the logged model"),
        "paired": figures.paired_differences(rows.assign(diff=rows["model_val_acc"]), "kd"),
        "boundaries": figures.decision_boundaries([[("teacher, domain 0: 92.0% on its domain", lambda x: x)]], points,
                                                  (points[:, 0] > 0).astype(int), np.repeat([0, 1, 2], 20), "title"),
        "schedules": figures.schedules({"anneal": {"a": pd.DataFrame({"epoch": [1, 2], "temperature": [1, 2],
                                                                       "phase": [1.0, 2.0]})}}, "s"),
    }
    assert drawn["curves"].axes[0].get_yscale() == "log"
    for name, figure in drawn.items():
        assert outside(figure) == [], name
    renderer = drawn["curves"].canvas.get_renderer()
    for left, right in zip(drawn["curves"].axes, drawn["curves"].axes[1:]):
        if round(left.get_position().y0, 3) == round(right.get_position().y0, 3):  # side by side
            labels = [label.get_window_extent(renderer).x0 for label in shown_tick_labels(right.yaxis)]
            assert min(labels) > left.get_window_extent(renderer).x1
