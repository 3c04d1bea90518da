"""The report-protocol study against the report's Table 1 (../shared/data/multidomain/README.md).

    MLFLOW_TRACKING_URI=... .venv/bin/python benchmarks/report_check.py --experiment-name report

baseline, kd and kd-es pass when their mean lies within max(2 x the report's std, 1.0 point) of the
report's mean; anneal passes when its mean beats the report's annealing mean.
"""
from __future__ import annotations

import argparse

from kdtrack.compare.report import build_report
from kdtrack.tracking import finished_seed_runs

REPORT = {  # dataset stem -> method -> (mean, std), validation accuracy in percent, seeds 0,10,1234,99,2021
    "data": {"baseline": (99.53, 0.18), "kd": (99.46, 0.18), "kd-es": (99.80, 0.18), "anneal": (93.46, 0.83)},
    "data_d0.75": {"baseline": (99.40, 0.28), "kd": (99.60, 0.28), "kd-es": (99.66, 0.24), "anneal": (93.73, 4.83)},
    "data_d0.5": {"baseline": (97.80, 0.18), "kd": (97.99, 0.33), "kd-es": (98.13, 0.18), "anneal": (85.40, 5.81)},
    "data_d0.25": {"baseline": (78.80, 1.37), "kd": (77.33, 1.33), "kd-es": (78.06, 0.72), "anneal": (67.39, 3.28)},
}


def verdict(method: str, ours: float, mean: float, std: float) -> str:
    if method == "anneal":
        return "beats" if ours > mean else "does not beat"
    tolerance = max(2 * std, 1.0)
    return f"within {tolerance:.2f}" if abs(ours - mean) <= tolerance else f"outside {tolerance:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment-name", default="report")
    args = parser.parse_args()
    table = build_report(finished_seed_runs(args.experiment_name)).tables["table"]
    print("| separation file | method | n | kdtrack | report | check |\n|---|---|---|---|---|---|")
    for row in table.itertuples(index=False):
        if row.dataset in REPORT and row.method in REPORT[row.dataset]:
            mean, std = REPORT[row.dataset][row.method]
            print(f"| {row.dataset} | {row.method} | {row.n} | {row.val_acc_mean:.2f} ± {row.val_acc_std:.2f} | "
                  f"{mean:.2f} ± {std:.2f} | {verdict(row.method, row.val_acc_mean, mean, std)} |")


if __name__ == "__main__":
    main()
