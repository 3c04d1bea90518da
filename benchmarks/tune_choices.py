"""What the holdout chose for each tuned student, and what the student then gained on the baseline.

    MLFLOW_TRACKING_URI=... .venv/bin/python benchmarks/tune_choices.py --experiment-name after

Per dataset x tuned method of a finished study: the tune run's rule and the values it kept (one choice for
all seeds: a trial is scored by its seeds' mean accuracy on the holdout), the holdout accuracy of the kept
trial, of the best trial with its standard error, and of alpha = 0 (the labels alone; with the standard
error of its gap to the best trial where the tune run logged it); then the student's
validation accuracy minus the baseline's, seed by seed (mean, 95% t-interval, paired t-test's p), as
`kdtrack compare --paired baseline` gives it.
"""
from __future__ import annotations

import argparse

import mlflow
import pandas as pd

from kdtrack.compare.tables import current_rows, paired_table, render
from kdtrack.tracking import child_runs, finished_seed_runs, get_run, study_order


def tune_choices(experiment: str, reference: str = "baseline") -> pd.DataFrame:
    rows, _ = current_rows(finished_seed_runs(experiment), order=study_order(experiment))
    paired = paired_table(rows, reference).set_index(["dataset", "method"])
    cells = mlflow.search_runs(experiment_names=[experiment], output_format="list",
                               filter_string="attributes.status = 'FINISHED' and tags.`kdtrack.task` = 'distill'")
    current = set(rows["cell_hash"])
    table = []
    for cell in cells:
        if "tuned_by" not in cell.data.params or cell.data.tags["kdtrack.cell_hash"] not in current:
            continue
        tune = get_run(cell.data.params["tuned_by"])
        metrics, key = tune.data.metrics, (cell.data.tags["kdtrack.dataset"], cell.data.tags["kdtrack.method"])
        labels_alone = [trial.data.metrics for trial in child_runs(tune.info.run_id) if trial.data.params.get("alpha") == "0.0"]
        diff = paired.loc[key]
        table.append({
            "dataset": key[0], "method": key[1], "rule": tune.data.params.get("tune_rule", "best"),
            "kept": " ".join(f"{name.removeprefix('best_')} {metrics[name]:g}" for name in ("best_alpha", "best_temperature")
                             if name in metrics),
            "holdout: kept": f"{100 * metrics['best_selection_acc']:.2f}",
            "best ± SE": f"{100 * metrics['top_selection_acc']:.2f} ± {100 * metrics['top_selection_acc_se']:.2f}"
                         if "top_selection_acc" in metrics else "-",
            "alpha 0 (gap SE)": _labels_alone(labels_alone[0]) if labels_alone else "-",
            f"{key[1]} − {reference}": f"{diff['diff_mean']:+.2f} [{diff['ci_low']:+.2f}, {diff['ci_high']:+.2f}]",
            "p": f"{diff['p_value']:.3f}",
        })
    order = {name: place for place, name in enumerate(study_order(experiment))}
    return pd.DataFrame(table).sort_values("dataset", key=lambda names: names.map(order), kind="stable")


def _labels_alone(metrics: dict[str, float]) -> str:
    """alpha 0's holdout accuracy, and the standard error of its gap to the best trial where it was logged."""
    gap = f" ({100 * metrics['selection_gap_se']:.2f})" if "selection_gap_se" in metrics else ""
    return f"{100 * metrics['selection_acc_mean']:.2f}{gap}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment-name", required=True)
    args = parser.parse_args()
    print(render(tune_choices(args.experiment_name), "markdown"))


if __name__ == "__main__":
    main()
