"""How many seeds a verdict needs: from the spread of a study's paired differences, the smallest gain each
design detects and the seeds each gain needs.

    MLFLOW_TRACKING_URI=... .venv/bin/python benchmarks/verdict_power.py --experiment-name after \\
        --primary kd-mixture --seeds 5,10,20,40 --gains 0.5,1.0

Per dataset: the sample std of `--primary`'s differences from the baseline seed by seed (points), their
mean; the minimum detectable effect (MDE) at 80% power for each number of seeds in `--seeds`; and the seeds
needed to detect each gain in `--gains` with 80% power. The test is the verdict's: a two-sided paired
t-test at the level Holm's correction demands of its first test over the family of one test per dataset,
0.05 / (number of datasets), so a gain of the MDE survives the correction with 80% power whatever the
other datasets show. (statsmodels' TTestPower; the std measured on few seeds is itself noisy.)
"""
from __future__ import annotations

import argparse

import pandas as pd

from kdtrack.compare.tables import current_rows, minimum_detectable_effect, paired_table, render, seeds_needed
from kdtrack.tracking import finished_seed_runs, study_order


def power_table(experiment: str, primary: str, seeds: list[int], gains: list[float]) -> pd.DataFrame:
    rows, _ = current_rows(finished_seed_runs(experiment), order=study_order(experiment))
    paired = paired_table(rows, "baseline")
    paired = paired[paired["method"] == primary]
    level = 0.05 / len(paired)
    table = []
    for row in paired.itertuples():
        table.append({"dataset": row.dataset, "n": row.n, "diff mean": f"{row.diff_mean:+.2f}", "diff std": row.diff_std,
                      **{f"MDE, {n} seeds": minimum_detectable_effect(n, row.diff_std, level) for n in seeds},
                      **{f"seeds for {gain:g}": seeds_needed(row.diff_std, gain, level) for gain in gains}})
    return pd.DataFrame(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment-name", required=True)
    parser.add_argument("--primary", default="kd-mixture")
    parser.add_argument("--seeds", default="5,10,20,40")
    parser.add_argument("--gains", default="0.5,1.0")
    args = parser.parse_args()
    table = power_table(args.experiment_name, args.primary, [int(n) for n in args.seeds.split(",")],
                        [float(gain) for gain in args.gains.split(",")])
    print(render(table, "markdown"))


if __name__ == "__main__":
    main()
