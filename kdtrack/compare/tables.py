"""Tables over the store: mean and sample std of the logged models' validation accuracy per dataset x method,
over the FINISHED per-seed runs of the baseline and the students; teachers apart, per dataset x domain."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .. import tracking
from ..errors import InputError

COLUMNS = ["dataset", "method", "n", "val_acc_mean", "val_acc_std"]


def results_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Baseline and student seed runs; one run per configuration hash (the newest) so reruns count once."""
    rows = runs[runs["task"].isin(["baseline", "student"])]
    return _summarise(rows, ["dataset", "method"])


def paired_table(runs: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per dataset x method, the difference from `reference` seed by seed (in points), its mean and
    sample std, and the paired t-test's two-sided p-value: is the gain larger than seed noise?"""
    rows = _latest(runs[runs["task"].isin(["baseline", "student"])])
    by_seed = rows.pivot_table(index=["dataset", "seed"], columns="method", values="model_val_acc")
    if reference not in by_seed:
        raise InputError(f"method {reference!r}: no finished per-seed runs to compare against")
    table = []
    for dataset, seeds in by_seed.groupby(level="dataset"):
        for method in sorted(m for m in seeds.columns if m != reference):
            pairs = seeds[[method, reference]].dropna()
            diff = 100 * (pairs[method] - pairs[reference]).to_numpy()
            if len(diff) == 0:
                continue
            p_value = stats.ttest_rel(pairs[method], pairs[reference]).pvalue if len(diff) > 1 and diff.std() > 0 else np.nan
            table.append({"dataset": dataset, "method": method, "n": len(diff), "diff_mean": diff.mean(),
                          "diff_std": diff.std(ddof=1) if len(diff) > 1 else np.nan, "p_value": p_value})
    return pd.DataFrame(table, columns=["dataset", "method", "n", "diff_mean", "diff_std", "p_value"])


def teachers_table(runs: pd.DataFrame) -> pd.DataFrame:
    return _summarise(runs[runs["task"] == "teacher"], ["dataset", "domain"])


def load_seed_runs(experiment: str | None) -> pd.DataFrame:
    return tracking.finished_seed_runs(experiment)


def _latest(rows: pd.DataFrame) -> pd.DataFrame:
    """One run per configuration hash, the newest, so that a rerun counts once."""
    return rows.sort_values("start_time").drop_duplicates("config_hash", keep="last")


def _summarise(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rows = _latest(rows)
    table = rows.groupby(keys, sort=True)["model_val_acc"].agg(n="count", val_acc_mean="mean", val_acc_std="std")
    table[["val_acc_mean", "val_acc_std"]] *= 100
    return table.reset_index()


def render(table: pd.DataFrame, fmt: str) -> str:
    """CSV, or a markdown table; accuracies in percent with two decimals, p-values with three."""
    shown = table.copy()
    for column in shown.columns:
        if column == "p_value":
            shown[column] = shown[column].map(lambda value: f"{value:.3f}")
        elif shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda value: f"{value:.2f}")
    if fmt == "csv":
        return shown.to_csv(index=False)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    lines = ["| " + " | ".join(str(value) for value in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *lines])
