"""The default study (configs/default.yaml on the embedded data/) on a two-node Ray cluster of this machine
against the same study with `--workers 2`: the wall time of each, from start to exit, and whether their
per-seed numbers are the same.

    .venv/bin/python benchmarks/ray_study.py [--epochs 3000] [--seeds 0,10,1234,99,2021]

The cluster is tests/servers.LocalRay (two `ray start`, one CPU each, bound to 127.0.0.1, token auth, usage
statistics off, HOME in a temporary folder); a cluster of two nodes needs a tracking server, so the Ray study
logs to `mlflow server` (tests/servers.MlflowServer, SQLite behind it) and the local one to a SQLite file.
Quoted in docs/cluster.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from servers import LocalRay, MlflowServer, all_runs  # noqa: E402


def study(env: dict[str, str], folder: Path, epochs: str, seeds: str, *options: str) -> float:
    """`kdtrack study` on the default config and data; its wall time in seconds."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "kdtrack", "study", "--seeds", seeds, "--epochs", epochs, "--device", "cpu",
                    *options], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=open(folder / f"study{len(options)}.log", "w"))
    return time.monotonic() - started


def results(uri: str) -> dict:
    """Each FINISHED per-seed run's logged accuracy and best epoch, by dataset, method, seed and domain."""
    return {tuple(run.data.tags.get(f"kdtrack.{key}") for key in ("dataset", "method", "seed", "domain")):
            (run.data.metrics["model_val_acc"], run.data.metrics["best_epoch"])
            for run in all_runs(uri) if "kdtrack.seed" in run.data.tags and run.info.status == "FINISHED"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", default="3000")
    parser.add_argument("--seeds", default="0,10,1234,99,2021")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="kdtrack-ray-study-"))
    cluster = LocalRay(folder, gpus=(0, 0)).start()
    server = MlflowServer(f"sqlite:///{folder / 'server.db'}", folder).start()
    try:
        ray_env = {**os.environ, **cluster.env, "MLFLOW_TRACKING_URI": server.uri}
        on_ray = study(ray_env, folder, args.epochs, args.seeds, "--executor", "ray", "--address", cluster.address)
    finally:
        cluster.stop()
    local_uri = f"sqlite:///{folder / 'local.db'}"
    local = study({**os.environ, "MLFLOW_TRACKING_URI": local_uri}, folder, args.epochs, args.seeds, "--workers", "2")
    try:
        ray_results = results(server.uri)
        cells = len([run for run in all_runs(server.uri) if "kdtrack.seed" not in run.data.tags
                     and run.data.tags.get("kdtrack.task") not in ("study", "tune-trial", None)])
        ray_failed = [run for run in all_runs(server.uri) if run.info.status != "FINISHED"]
    finally:
        server.stop()
    same = ray_results == results(local_uri)
    print(f"epochs {args.epochs}, seeds {args.seeds}: {cells} cells, {len(ray_results)} per-seed runs")
    print(f"--executor ray, two nodes of one CPU: {on_ray:.0f} s")
    print(f"--workers 2: {local:.0f} s")
    print(f"same per-seed numbers: {same}; runs not FINISHED on Ray: {len(ray_failed)}; logs in {folder}")


if __name__ == "__main__":
    main()
