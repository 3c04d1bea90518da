"""The image path on scikit-learn's digits: a ResNet-32x4 teacher, a ResNet-8x4 student from scratch, KD,
SimKD and each SimKD variant, three seeds each (the digits recipe unless --epochs), in a fresh store.

    .venv/bin/python benchmarks/image_digits.py [--epochs 10] [--seeds 0,1,2]

Prints a markdown table: test accuracy of the logged model (selected on a holdout of train), mean ± sample
std over seeds, the deployed model's parameters, and each command's wall time. Quoted in the README; run
by hand on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np

ROWS = [
    ("teacher (resnet32x4)", "train-teacher", ["--arch", "resnet32x4"]),
    ("student from scratch (resnet8x4)", "train-teacher", ["--arch", "resnet8x4"]),
    ("KD (alpha 0.9, T 4)", "image-kd", []),
    ("SimKD (l2, f 2)", "simkd", []),
    ("SimKD, kl loss", "simkd", ["--loss", "kl"]),
    ("SimKD, multi projector", "simkd", ["--projector", "multi"]),
    ("SimKD, all-layer projectors", "simkd", ["--projector", "all-layer"]),
    ("SimKD, use labels", "simkd", ["--use-labels"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", default="")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    common = ["--dataset", "digits", "--seeds", args.seeds] + (["--epochs", args.epochs] if args.epochs else [])
    print("| model | test accuracy (%) | parameters | wall |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        teacher = None
        for label, command, options in ROWS:
            argv = [sys.executable, "-m", "kdtrack", command, *common, *options]
            if command != "train-teacher":
                argv += ["--teacher", teacher]
            start = time.perf_counter()
            parent = subprocess.run(argv, cwd=folder, env=env, check=True, capture_output=True, text=True).stdout.split()[-1]
            wall = time.perf_counter() - start
            children = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                          filter_string=f"tags.mlflow.parentRunId = '{parent}'")
            accuracies = 100 * np.array([run.data.metrics["model_val_acc"] for run in children])
            parameters = int(children[0].data.metrics["model_parameters"])
            if teacher is None:
                seed0 = min(children, key=lambda run: int(run.data.tags["kdtrack.seed"]))
                teacher = f"runs:/{seed0.info.run_id}/model"
            print(f"| {label} | {accuracies.mean():.2f} ± {accuracies.std(ddof=1):.2f} | {parameters:,} | "
                  f"{wall / 60:.1f} min |", flush=True)


if __name__ == "__main__":
    main()
