"""Tables over the store: mean and sample std of the validation accuracy (by default the logged models')
per dataset x method, over the FINISHED per-seed runs of the baseline and the students; teachers apart, per
dataset x domain.

A row describes one configuration. Reruns of a configuration count once (the newest run per seed), and
where one method name was used for several configurations on a dataset (say `distill` with two alphas),
the newest configuration is shown and the others are named in a note.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import InputError

STUDENT_KEYS = ["dataset", "method"]
TEACHER_KEYS = ["dataset", "domain"]


def current_rows(runs: pd.DataFrame, teachers: bool = False, order: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The runs of the students and the baseline (or of the teachers), per group its newest configuration,
    one run per seed (the newest); and notes naming the older configurations left out. Datasets and methods
    come in `order` where it names them (a study's), else in the order they first ran."""
    keys = TEACHER_KEYS if teachers else STUDENT_KEYS
    rows = runs[runs["task"] == "teacher"] if teachers else runs[runs["task"].isin(["baseline", "student"])]
    rows = rows.fillna({"cell_hash": ""}).sort_values("start_time")
    rows = rows.drop_duplicates(["config_hash", "method"], keep="last")
    newest = rows.groupby(keys)["cell_hash"].transform("last")
    notes = [
        f"{' '.join(map(str, group))}: {len(cells) - 1} older configuration(s) left out "
        "(give each configuration its own method name or experiment to compare them)"
        for group, cells in rows.groupby(keys)["cell_hash"].unique().items()
        if len(cells) > 1
    ]
    return _ordered(rows[rows["cell_hash"] == newest], keys[1], order or []), notes


def _ordered(rows: pd.DataFrame, group: str, order: list[str]) -> pd.DataFrame:
    """Datasets, then groups within one (the baseline first), by their place in `order` or else by when
    they first ran; each group's seeds in numeric order."""
    def rank(column: str) -> pd.Series:
        first = rows.groupby(column)["start_time"].transform("min")
        return rows[column].map({name: place for place, name in enumerate(order)}).fillna(len(order)).astype(int) \
            .mul(10**15).add(first)

    keys = pd.DataFrame({"dataset": rank("dataset"), "later": rows[group] != "baseline", "group": rank(group),
                         "seed": pd.to_numeric(rows["seed"])})
    return rows.loc[keys.sort_values(list(keys.columns)).index]


def summary_table(rows: pd.DataFrame, keys: list[str], metric: str = "model_val_acc") -> pd.DataFrame:
    """Per group of `keys`: n, and the mean and sample std of `metric` in percent; for networks (the image
    study), what the logged model deploys beside it: its parameters and its median CPU latency per image."""
    groups = rows.groupby(keys, sort=False)
    table = groups[metric].agg(n="count", val_acc_mean="mean", val_acc_std="std")
    table[["val_acc_mean", "val_acc_std"]] *= 100
    if rows["arch"].notna().any():
        table["parameters"] = groups["model_parameters"].median().astype("Int64")
        table["latency_ms"] = groups["latency_ms_per_image"].median()
    return table.reset_index()


def wide_table(summary: pd.DataFrame) -> pd.DataFrame:
    """A summary as a row per dataset and a column per method, each cell `mean ± std`."""
    text = summary.assign(cell=[f"{mean:.2f} ± {std:.2f}" if not np.isnan(std) else f"{mean:.2f}"
                                for mean, std in zip(summary["val_acc_mean"], summary["val_acc_std"])])
    order = list(dict.fromkeys(summary["method"]))
    wide = text.pivot(index="dataset", columns="method", values="cell")
    return wide.reindex(index=list(dict.fromkeys(summary["dataset"])), columns=order).reset_index().rename_axis(columns=None)


def paired_diffs(rows: pd.DataFrame, reference: str, metric: str = "model_val_acc") -> pd.DataFrame:
    """Per dataset, method and seed, the difference in points from `reference` of the same seed."""
    if reference not in set(rows["method"]):
        raise InputError(f"method {reference!r}: no finished per-seed runs to compare against")
    by_seed = rows.set_index(["dataset", "seed"])
    reference_acc = by_seed.loc[by_seed["method"] == reference, metric]
    others = by_seed[by_seed["method"] != reference]
    diffs = others.assign(diff=100 * (others[metric] - reference_acc.reindex(others.index)))
    return diffs.reset_index()[["dataset", "method", "seed", "diff"]].dropna(subset=["diff"]).reset_index(drop=True)


def paired_table(rows: pd.DataFrame, reference: str, metric: str = "model_val_acc",
                 primary: str | None = None) -> pd.DataFrame:
    """Per dataset x method, the difference from `reference` seed by seed (in points): its mean, sample std
    and 95% t-interval, the paired t-test's two-sided p-value (is the gain larger than seed noise?), and that
    p corrected by Holm's step-down method for the number of comparisons in the table (`p_holm`).

    With `primary`, that method's rows are the pre-declared primary family, one test per dataset, and every
    other row is secondary: `family` says which, primary rows come first, each family is corrected apart, and
    `mde` is the smallest mean difference the row's test detects with 80% power at the level Holm demands
    of the first test in its family (0.05 / its size), given the row's n and measured std."""
    table = [{"dataset": dataset, "method": method, **difference_stats(group["diff"].to_numpy())}
             for (dataset, method), group in paired_diffs(rows, reference, metric).groupby(["dataset", "method"], sort=False)]
    table = pd.DataFrame(table, columns=["dataset", "method", "n", "diff_mean", "diff_std", "ci_low", "ci_high", "p_value"])
    if primary is None:
        table["p_holm"] = holm(table["p_value"].to_numpy(dtype=float))
        return table
    if primary not in set(table["method"]):
        raise InputError(f"method {primary!r}: no paired differences from {reference!r} to make the primary comparison")
    table.insert(0, "family", np.where(table["method"] == primary, "primary", "secondary"))
    table = table.sort_values("family", kind="stable").reset_index(drop=True)
    families = table.groupby("family")["p_value"]
    table["p_holm"] = families.transform(lambda p: holm(p.to_numpy(dtype=float)))
    levels = 0.05 / families.transform("count")
    table["mde"] = [minimum_detectable_effect(n, std, level) for n, std, level in zip(table["n"], table["diff_std"], levels)]
    return table


def difference_stats(diff: np.ndarray) -> dict[str, float]:
    """Paired differences, seed by seed: their number, mean, sample std, 95% t-interval, and the t-test's
    two-sided p-value against no difference (NaN where the differences do not vary)."""
    varies = len(diff) > 1 and diff.std() > 0
    half = t_half_width(diff) if len(diff) > 1 else np.nan
    return {"n": len(diff), "diff_mean": diff.mean(), "diff_std": diff.std(ddof=1) if len(diff) > 1 else np.nan,
            "ci_low": diff.mean() - half, "ci_high": diff.mean() + half,
            "p_value": stats.ttest_1samp(diff, 0.0).pvalue if varies else np.nan}


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-corrected p-values of a family of tests; a missing p (NaN: no variance) is not a test of it."""
    from statsmodels.stats.multitest import multipletests  # statsmodels takes a second to import: only here

    corrected = np.full(len(p_values), np.nan)
    tested = ~np.isnan(p_values)
    if tested.any():
        corrected[tested] = multipletests(p_values[tested], method="holm")[1]
    return corrected


def minimum_detectable_effect(n: int, std: float, level: float, power: float = 0.8) -> float:
    """The smallest mean paired difference that a two-sided one-sample t-test of `n` differences of sample
    std `std` detects at `level` with probability `power` (NaN where the std is unknown or zero)."""
    if n < 2 or not std > 0:
        return np.nan
    return float(_t_test_power().solve_power(nobs=n, alpha=level, power=power)) * std


def seeds_needed(std: float, effect: float, level: float, power: float = 0.8) -> int:
    """How many paired differences of std `std` a two-sided t-test at `level` needs to detect a mean
    difference of `effect` with probability `power`."""
    seeds = _t_test_power().solve_power(effect_size=abs(effect) / std, alpha=level, power=power)
    return math.ceil(round(seeds, 6))  # the solver's own tolerance must not cost a seed


def _t_test_power():
    from statsmodels.stats.power import TTestPower  # statsmodels takes a second to import: only here

    return TTestPower()


def t_half_width(values: np.ndarray) -> float:
    """Half the width of the 95% t-interval of the mean; 0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    return float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))


def render(table: pd.DataFrame, fmt: str) -> str:
    """CSV, or a markdown table; accuracies in percent with two decimals, p-values (`p_...`) with three."""
    shown = table.copy()
    for column in shown.columns:
        if column.startswith("p_"):
            shown[column] = shown[column].map(lambda value: f"{value:.3f}")
        elif shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda value: f"{value:.2f}")
    if fmt == "csv":
        return shown.to_csv(index=False)
    return shown.to_markdown(index=False, tablefmt="github", disable_numparse=True)
