"""How close the methods come to the best that any classifier of x alone can do on each dataset: the
Bayes-optimal accuracy on its validation split, beside the study's accuracies.

    MLFLOW_TRACKING_URI=... .venv/bin/python benchmarks/bayes_ceiling.py --experiment-name default \\
        --methods baseline,kd,kd-es,kd-mixture --out docs/ceiling.png

The data (kdtrack.multidomain.generate; the real files are shaped the same) draws each domain's points from
a unit normal around its centre and labels a point 1 outside a disk around it. Knowing that, the best
prediction from x alone is p(y=1 | x) = sum_d p(d | x) [|x - c_d| > r_d], p(d | x) from equal unit normals.
Here each domain's disk (c_d, r_d) is read off its training points: y = 1 exactly when |x|^2 - 2 c.x +
|c|^2 - r^2 > 0, a linear rule in (x, |x|^2), which a logistic regression of large C recovers. The rule's
accuracy on the validation split is the ceiling; a finite split can let a model beat it by luck.
"""
from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression

from kdtrack.compare import figures
from kdtrack.compare.tables import current_rows
from kdtrack.multidomain import load_multidomain
from kdtrack.multidomain.data import MultiDomainData
from kdtrack.tracking import finished_seed_runs, study_order


def disk(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """The centre and radius of the disk outside which y = 1."""
    rule = LogisticRegression(C=1e6, max_iter=10000).fit(np.column_stack([x, (x**2).sum(axis=1)]), y)
    (w1, w2, w3), b = rule.coef_[0], rule.intercept_[0]
    centre = -np.array([w1, w2]) / (2 * w3)
    return centre, float(np.sqrt(centre @ centre - b / w3))


def bayes_accuracy(data: MultiDomainData) -> float:
    """The accuracy on the validation split of the Bayes rule for the data's geometry, read off train."""
    train, valid = data.train, data.valid
    disks = [disk(train.x[train.d == d], train.y[train.d == d]) for d in data.domains]
    centres, thresholds = np.stack([c for c, _ in disks]), np.array([r for _, r in disks])
    distance = np.linalg.norm(valid.x[:, None, :] - centres[None], axis=2)
    log_density = -0.5 * distance**2
    posterior = np.exp(log_density - log_density.max(axis=1, keepdims=True))
    posterior /= posterior.sum(axis=1, keepdims=True)
    p_ring = (posterior * (distance > thresholds)).sum(axis=1)
    return float(((p_ring > 0.5) == valid.y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment-name", default="default")
    parser.add_argument("--methods", default="baseline,kd,kd-es,kd-mixture")
    parser.add_argument("--out", default=None, help="write the figure there (PNG)")
    args = parser.parse_args()
    methods = args.methods.split(",")
    rows, _ = current_rows(finished_seed_runs(args.experiment_name), order=study_order(args.experiment_name))
    rows = rows[rows["method"].isin(methods)]
    ceilings = {dataset: 100 * bayes_accuracy(load_multidomain(path))
                for dataset, path in rows.groupby("dataset", sort=False)["data"].first().items()}
    print("| dataset | Bayes-optimal | " + " | ".join(methods) + " |\n|---|---|" + "---|" * len(methods))
    for dataset, ceiling in ceilings.items():
        means = rows[rows["dataset"] == dataset].groupby("method")["model_val_acc"].mean() * 100
        print(f"| {dataset} | {ceiling:.2f} | " + " | ".join(f"{means.get(m, np.nan):.2f}" for m in methods) + " |")
    if args.out:
        figure = figures.accuracy_bars(rows, "model_val_acc", "Validation accuracy")
        for ax in figure.axes:
            ax.axhline(ceilings[ax.get_title()], color="black", ls="--", lw=1, label="Bayes-optimal from x alone")
        figure.axes[0].legend(loc="lower left", fontsize=8)
        figure.suptitle("Validation accuracy against the best any classifier of x alone can do (dashed: the Bayes-optimal "
                        "rule of the data's geometry)\nmean ± sample std over seeds (bars), each seed (points)")
        figure.savefig(args.out)


if __name__ == "__main__":
    main()
