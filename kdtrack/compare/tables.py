"""Tables over the store: mean and sample std of the validation accuracy (by default the logged models')
per dataset x method, over the FINISHED per-seed runs of the baseline and the students; teachers apart, per
dataset x domain.

A row describes one configuration. Reruns of a configuration count once (the newest run per seed), and
where one method name was used for several configurations on a dataset (say `distill` with two alphas),
the newest configuration is shown and the others are named in a note.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .. import tracking
from ..errors import InputError


def compare_table(experiment: str | None, teachers: bool = False, paired: str | None = None,
                  metric: str = "model_val_acc") -> tuple[pd.DataFrame, list[str]]:
    """The table `kdtrack compare` prints, and notes on configurations it left out. `metric` is one of
    tracking.ACCURACY_METRICS."""
    runs = tracking.finished_seed_runs(experiment)
    if teachers:
        rows, notes = _current(runs[runs["task"] == "teacher"], ["dataset", "domain"])
        return _summarise(rows, ["dataset", "domain"], metric), notes
    rows, notes = _current(runs[runs["task"].isin(["baseline", "student"])], ["dataset", "method"])
    return (paired_table(rows, paired, metric) if paired else _summarise(rows, ["dataset", "method"], metric)), notes


def paired_table(rows: pd.DataFrame, reference: str, metric: str = "model_val_acc") -> pd.DataFrame:
    """Per dataset x method, the difference from `reference` seed by seed (in points), its mean and
    sample std, and the paired t-test's two-sided p-value: is the gain larger than seed noise?"""
    by_seed = rows.pivot(index=["dataset", "seed"], columns="method", values=metric)
    if reference not in by_seed:
        raise InputError(f"method {reference!r}: no finished per-seed runs to compare against")
    table = []
    for dataset, seeds in by_seed.groupby(level="dataset"):
        for method in sorted(m for m in seeds.columns if m != reference):
            pairs = seeds[[method, reference]].dropna()
            diff = 100 * (pairs[method] - pairs[reference]).to_numpy()
            if len(diff) == 0:
                continue
            varies = len(diff) > 1 and diff.std() > 0
            table.append({"dataset": dataset, "method": method, "n": len(diff), "diff_mean": diff.mean(),
                          "diff_std": diff.std(ddof=1) if len(diff) > 1 else np.nan,
                          "p_value": stats.ttest_rel(pairs[method], pairs[reference]).pvalue if varies else np.nan})
    return pd.DataFrame(table, columns=["dataset", "method", "n", "diff_mean", "diff_std", "p_value"])


def _current(rows: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Per group, the runs of its newest configuration, one per seed (the newest)."""
    rows = rows.fillna({"cell_hash": ""}).sort_values("start_time")
    rows = rows.drop_duplicates(["config_hash", "method"], keep="last")
    newest = rows.groupby(keys)["cell_hash"].transform("last")
    notes = [
        f"{' '.join(map(str, group))}: {len(cells) - 1} older configuration(s) left out "
        "(give each configuration its own method name or experiment to compare them)"
        for group, cells in rows.groupby(keys)["cell_hash"].unique().items()
        if len(cells) > 1
    ]
    return rows[rows["cell_hash"] == newest], notes


def _summarise(rows: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    table = rows.groupby(keys, sort=True)[metric].agg(n="count", val_acc_mean="mean", val_acc_std="std")
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
