"""What a tuning rule does to a tuned student: the same study under several rules (each in its own store),
the student's gain on the baseline under each, and each rule against the first, seed by seed.

    .venv/bin/python benchmarks/tune_rules.py --method kd-mixture \\
        --stores best=STORES/before/mlflow.db@before,simplest-1se=STORES/after/mlflow.db@after

Per dataset: `--method` minus the baseline under each rule (mean over seeds, points), and each later rule
minus the first for the student itself, seed by seed (mean, paired t-test's p). The last row pools the
datasets: the mean of the per-dataset means, with a t-test over datasets. The baseline and the teachers
do not depend on the rule, so each store's are the same models (checked: their accuracies must agree).
"""
from __future__ import annotations

import argparse

import mlflow
import numpy as np
import pandas as pd

from kdtrack.compare.tables import current_rows, difference_stats, render
from kdtrack.tracking import finished_seed_runs, study_order


def accuracies(database: str, experiment: str, method: str) -> tuple[pd.DataFrame, list[str]]:
    """Per dataset x seed, the baseline's and `method`'s validation accuracy (percent) in one store."""
    mlflow.set_tracking_uri(f"sqlite:///{database}")
    rows, _ = current_rows(finished_seed_runs(experiment), order=study_order(experiment))
    rows = rows[rows["method"].isin(["baseline", method])]
    wide = rows.pivot(index=["dataset", "seed"], columns="method", values="model_val_acc") * 100
    return wide, [name for name in study_order(experiment) if name in set(rows["dataset"])]


def rule_table(stores: dict[str, tuple[str, str]], method: str) -> pd.DataFrame:
    by_rule = {rule: accuracies(database, experiment, method) for rule, (database, experiment) in stores.items()}
    (first, (reference, datasets)), *others = by_rule.items()
    for rule, (wide, _) in others:
        if not np.allclose(wide["baseline"], reference["baseline"].reindex(wide.index)):
            raise SystemExit(f"{rule}: its baseline differs from {first}'s: not the same study")
    table = []
    for dataset in [*datasets, "all (mean of datasets)"]:
        row = {"dataset": dataset}
        for rule, (wide, _) in by_rule.items():
            gains = (wide[method] - wide["baseline"]).groupby("dataset").mean()
            row[f"{rule}: gain"] = f"{gains.mean() if dataset not in gains else gains[dataset]:+.2f}"
        for rule, (wide, _) in others:
            change = (wide[method] - reference[method].reindex(wide.index)).dropna()
            values = change.groupby("dataset").mean().to_numpy() if dataset not in datasets else change[dataset].to_numpy()
            stats = difference_stats(values)
            row[f"{rule} − {first}"] = f"{stats['diff_mean']:+.2f} (p {stats['p_value']:.3f})" \
                if not np.isnan(stats["p_value"]) else f"{stats['diff_mean']:+.2f}"
        table.append(row)
    return pd.DataFrame(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", required=True, help="RULE=PATH/mlflow.db@EXPERIMENT,...; the first is the reference")
    parser.add_argument("--method", default="kd-mixture")
    args = parser.parse_args()
    stores = {}
    for item in args.stores.split(","):
        rule, where = item.split("=", 1)
        database, experiment = where.rsplit("@", 1)
        stores[rule] = (database, experiment)
    print(render(rule_table(stores, args.method), "markdown"))


if __name__ == "__main__":
    main()
