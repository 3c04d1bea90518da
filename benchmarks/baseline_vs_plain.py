"""The whole `kdtrack baseline` process against a plain PyTorch loop that trains the same seeds one after
another, as separate processes timed from start to exit on the same data.

    .venv/bin/python benchmarks/baseline_vs_plain.py [--epochs 30000] [--seeds 0,10,1234,99,2021]

kdtrack runs in a fresh store (so it pays for creating it), with everything it logs; the plain loop is
what a researcher writes by hand (nn.Sequential, torch.optim.Adam, full batch, a validation pass and the
best checkpoint per epoch), with no tracking. Quoted in the README; run by hand on an idle machine.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "sep0.50.pkl"

PLAIN = """
import sys, time, copy
import torch, torch.nn as nn, torch.nn.functional as F
from kdtrack.multidomain import load_multidomain
torch.set_num_threads(1)
data = load_multidomain(sys.argv[1])
x, y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
xv, yv = torch.from_numpy(data.valid.x), torch.from_numpy(data.valid.y)
for seed in map(int, sys.argv[3].split(",")):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 20), nn.ReLU(), nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    best, best_state = float("inf"), None
    for epoch in range(int(sys.argv[2])):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            val = F.cross_entropy(model(xv), yv).item()
        if val < best:
            best, best_state = val, copy.deepcopy(model.state_dict())
"""


def timed(command: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30000)
    parser.add_argument("--seeds", default="0,10,1234,99,2021")
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as folder:
        kdtrack = timed([python, "-m", "kdtrack", "baseline", "--data", str(DATA), "--seeds", args.seeds,
                         "--epochs", str(args.epochs)], folder)
        plain = timed([python, "-c", PLAIN, str(DATA), str(args.epochs), args.seeds], folder)
    print(f"| {args.epochs} epochs, seeds {args.seeds} | kdtrack baseline (whole process, fresh store) | "
          f"plain PyTorch loop | speed-up |\n|---|---|---|---|\n| wall | {kdtrack:.1f} s | {plain:.1f} s | "
          f"{plain / kdtrack:.1f}x |")


if __name__ == "__main__":
    main()
