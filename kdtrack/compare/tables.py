"""Tables over the store: mean and sample std of the logged models' validation accuracy per dataset x method,
over the FINISHED per-seed runs of the baseline and the students; teachers apart, per dataset x domain."""
from __future__ import annotations

import pandas as pd

from .. import tracking

COLUMNS = ["dataset", "method", "n", "val_acc_mean", "val_acc_std"]


def results_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Baseline and student seed runs; one run per configuration hash (the newest) so reruns count once."""
    rows = runs[runs["task"].isin(["baseline", "student"])]
    return _summarise(rows, ["dataset", "method"])


def teachers_table(runs: pd.DataFrame) -> pd.DataFrame:
    return _summarise(runs[runs["task"] == "teacher"], ["dataset", "domain"])


def load_seed_runs(experiment: str | None) -> pd.DataFrame:
    return tracking.finished_seed_runs(experiment)


def _summarise(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rows = rows.sort_values("start_time").drop_duplicates("config_hash", keep="last")
    table = rows.groupby(keys, sort=True)["model_val_acc"].agg(n="count", val_acc_mean="mean", val_acc_std="std")
    table[["val_acc_mean", "val_acc_std"]] *= 100
    return table.reset_index()


def render(table: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return table.to_csv(index=False, float_format="%.2f")
    shown = table.copy()
    for column in ("val_acc_mean", "val_acc_std"):
        shown[column] = shown[column].map(lambda value: f"{value:.2f}")
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    lines = ["| " + " | ".join(str(value) for value in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *lines])
