"""What early stopping costs or gains each student: its logged (selected) model's validation accuracy minus
its last epoch's, seed by seed, with a 95% t-interval and the paired t-test's p; and the epochs selected.

    MLFLOW_TRACKING_URI=... .venv/bin/python benchmarks/stopping_cost.py --experiment-name default

Reads a finished study's store (the newest configuration per dataset x method, as `kdtrack compare`).
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from kdtrack.compare.tables import current_rows, difference_stats, render
from kdtrack.tracking import finished_seed_runs, study_order


def stopping_cost(rows: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x method of the students: selected minus last epoch, in points."""
    table = []
    for (dataset, method), group in rows[rows["task"] == "student"].groupby(["dataset", "method"], sort=False):
        diff = difference_stats(100 * (group["model_val_acc"] - group["final_val_acc"]).to_numpy())
        table.append({"dataset": dataset, "method": method, "n": diff["n"],
                      "selected − last": f"{diff['diff_mean']:+.2f} [{diff['ci_low']:+.2f}, {diff['ci_high']:+.2f}]",
                      "p": "-" if np.isnan(diff["p_value"]) else f"{diff['p_value']:.3f}",
                      "epochs selected": f"{int(group['model_epoch'].min())} to {int(group['model_epoch'].max())}"})
    return pd.DataFrame(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment-name", default=None)
    args = parser.parse_args()
    rows, _ = current_rows(finished_seed_runs(args.experiment_name), order=study_order(args.experiment_name))
    print(render(stopping_cost(rows), "markdown"))


if __name__ == "__main__":
    main()
