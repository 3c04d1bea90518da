"""The main job (the default study on the four embedded datasets, five seeds, 30,000 epochs) in a fresh
store, with 1 and with 2 workers: its wall time, and how much of the work was not training.

    .venv/bin/python benchmarks/main_job.py [--workers 1,2] [--epochs 30000]

Each cell's run records the CPU seconds of its process during the cell (`cell_cpu_seconds`) and of its
training thread in the engine (`train_cpu_seconds`), and the same in wall time (`cell_seconds`,
`train_seconds`); the rest of a cell is tracking (runs, metrics, models, figures, and the store's disk
writes, which only the wall time sees). Process start-up and the study's own summary are counted apart.
Quoted in the README; run by hand on an otherwise idle machine.
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

REPO = Path(__file__).resolve().parents[1]
DATASETS = ",".join(str(REPO / "data" / f"sep{s}.pkl") for s in ("1.00", "0.75", "0.50", "0.25"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--epochs", type=int, default=30000)
    args = parser.parse_args()
    print("| workers | wall | cells' CPU time | of which training | tracking, CPU | cells' wall time | tracking, wall |")
    print("|---|---|---|---|---|---|---|")
    for workers in map(int, args.workers.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            uri = f"sqlite:///{folder}/mlflow.db"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "kdtrack", "study", "--config", str(REPO / "configs" / "default.yaml"),
                            "--data", DATASETS, "--epochs", str(args.epochs), "--workers", str(workers)],
                           cwd=folder, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            mlflow.set_tracking_uri(uri)
            cells = [run.data.metrics for run in mlflow.search_runs(search_all_experiments=True, output_format="list")
                     if "cell_cpu_seconds" in run.data.metrics]
        cpu, training_cpu, cell_wall, training_wall = (sum(metrics[name] for metrics in cells) for name in
                                                       ("cell_cpu_seconds", "train_cpu_seconds", "cell_seconds", "train_seconds"))
        print(f"| {workers} | {wall / 60:.1f} min | {cpu:.0f} s ({len(cells)} cells) | {training_cpu:.0f} s | "
              f"{cpu - training_cpu:.0f} s ({100 * (cpu - training_cpu) / cpu:.1f}%) | {cell_wall:.0f} s | "
              f"{cell_wall - training_wall:.0f} s ({100 * (cell_wall - training_wall) / cell_wall:.1f}%) |", flush=True)


if __name__ == "__main__":
    main()
