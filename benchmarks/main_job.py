"""The main job (the default study on the four embedded datasets, five seeds, 30,000 epochs) in a fresh
store, with 1 and with 2 workers: its wall time, and how much of the work was not training.

    .venv/bin/python benchmarks/main_job.py [--workers 1,2] [--epochs 30000]

Each cell's run records the CPU seconds of its process during the cell (`cell_cpu_seconds`) and of its
training thread in the engine (`train_cpu_seconds`), and the same in wall time (`cell_seconds`,
`train_seconds`); the rest of a cell is tracking (runs, metrics, models, figures, and the store's disk
writes, which only the wall time sees). The whole job is counted too: the machine's busy CPU time
(/proc/stat) over the run, of which all but the engine's training is process start-up, the workers' fork
server, planning, the cells' tracking and the study's summary; and the wall time during which no engine
trained at all (nothing but start-up, tracking and the summary on the critical path). Quoted in the
README; run by hand on an otherwise idle machine.
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
    print("| workers | wall | of it, nothing training | job's CPU time | of which training | not training, of CPU "
          "| cells' wall time | tracking in cells, wall |")
    print("|---|---|---|---|---|---|---|---|")
    for workers in map(int, args.workers.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            uri = f"sqlite:///{folder}/mlflow.db"
            start, busy = time.perf_counter(), busy_cpu_seconds()
            subprocess.run([sys.executable, "-m", "kdtrack", "study", "--config", str(REPO / "configs" / "default.yaml"),
                            "--data", DATASETS, "--epochs", str(args.epochs), "--workers", str(workers)],
                           cwd=folder, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall, job_cpu = time.perf_counter() - start, busy_cpu_seconds() - busy
            mlflow.set_tracking_uri(uri)
            cells = [run for run in mlflow.search_runs(search_all_experiments=True, output_format="list")
                     if "cell_cpu_seconds" in run.data.metrics]
        training_cpu, cell_wall, training_wall = (sum(run.data.metrics[name] for run in cells) for name in
                                                  ("train_cpu_seconds", "cell_seconds", "train_seconds"))
        idle_of_training = wall - training_span(cells)
        print(f"| {workers} | {wall / 60:.1f} min | {idle_of_training:.0f} s ({100 * idle_of_training / wall:.1f}%) | "
              f"{job_cpu:.0f} s | {training_cpu:.0f} s | {job_cpu - training_cpu:.0f} s "
              f"({100 * (1 - training_cpu / job_cpu):.1f}%) | {cell_wall:.0f} s ({len(cells)} cells) | "
              f"{cell_wall - training_wall:.0f} s ({100 * (cell_wall - training_wall) / cell_wall:.1f}%) |", flush=True)


def training_span(cells: list) -> float:
    """Seconds during which at least one cell's engine was training: the union of the intervals from each
    cell's start (its training starts with it, beside the opening of its run) for `train_seconds`."""
    intervals = sorted((run.info.start_time / 1000, run.info.start_time / 1000 + run.data.metrics["train_seconds"])
                       for run in cells)
    span, reach = 0.0, -float("inf")
    for begin, end in intervals:
        span += max(0.0, end - max(begin, reach))
        reach = max(reach, end)
    return span


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent not idle since boot: every process of the job, whoever reaps it."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
