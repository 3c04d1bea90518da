"""Microseconds per model-epoch of the training engine, one thread, for the stacks a study trains and as the
stack and the data grow; through the native step and the PyTorch step (the engine before the native step).

    .venv/bin/python benchmarks/engine_speed.py [--epochs 2000] [--table stacks|models|samples]

Every epoch includes its validation and selection passes and the best-checkpoint bookkeeping; the data
is the assignment's size (2,160 fit / 240 selection / 300 validation samples) unless --table samples.
Quoted in the README; run by hand on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from kdtrack.distillers import make_distiller
from kdtrack.engine import Batch, OptimConfig, TrainSpec, train
from kdtrack.models.mlp import MLPConfig, StackedMLP, init_mlps

STACKS = [  # name, models, method, steps per epoch, data share, batch norm
    ("baseline, 5 seeds", 5, "ce", 1, 1, False),
    ("teachers, 5 seeds x 3 domains", 15, "ce", 1, 3, False),
    ("kd student, 5 seeds, joint", 5, "kd", 1, 1, False),
    ("kd student, 5 seeds, per-domain", 5, "kd", 3, 1, False),
    ("kd student with batch norm, 5 seeds", 5, "kd", 1, 1, True),
    ("tune grid, 8 trials x 5 seeds", 40, "kd", 1, 1, False),
    ("one model alone", 1, "ce", 1, 1, False),
]


def batch(n: int, models: int, teacher: bool, generator: torch.Generator) -> Batch:
    x = torch.randn(n, 2, generator=generator) * 2
    logits = torch.randn(models, n, 2, generator=generator) if teacher else None
    return Batch(x[None], (x.norm(dim=1) > 1.2).long()[None], teacher=logits)


def us_per_model_epoch(models: int, method: str, steps: int, share: int, batch_norm: bool, epochs: int,
                       n_fit: int = 2160, n_selection: int = 240, repeats: int = 3) -> float:
    """Best of `repeats` runs; `share`: each model sees 1/share of the data (3 for a domain teacher)."""
    generator = torch.Generator().manual_seed(0)
    teacher = method != "ce"
    fit = [batch(n_fit // share // steps, models, teacher, generator) for _ in range(steps)]
    valid, selection = batch(300 // share, models, teacher, generator), batch(n_selection // share, models, teacher, generator)
    best = float("inf")
    for _ in range(repeats):
        stack = StackedMLP(init_mlps(MLPConfig(batch_norm=batch_norm), list(range(models))))
        start = time.perf_counter()
        train(stack, make_distiller(method, epochs), fit, valid, TrainSpec(epochs, OptimConfig()), selection)
        best = min(best, (time.perf_counter() - start) / epochs / models * 1e6)
    return best


def steps() -> list[tuple[str, str | None]]:
    return [("native", None), ("PyTorch", "torch")]


def with_step(engine: str | None, measure):
    if engine:
        os.environ["KDTRACK_ENGINE"] = engine
    else:
        os.environ.pop("KDTRACK_ENGINE", None)
    return measure()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--table", choices=("stacks", "models", "samples"), default="stacks")
    args = parser.parse_args()
    torch.set_num_threads(1)
    us_per_model_epoch(5, "kd", 1, 1, False, 20)  # warm-up: the first calls pay for building and loading
    if args.table == "stacks":
        print("| stack (1 thread) | native step, us/model-epoch | PyTorch step, us/model-epoch | speed-up |")
        print("|---|---|---|---|")
        for name, models, method, steps_, share, batch_norm in STACKS:
            native, torch_ = (with_step(engine, lambda: us_per_model_epoch(models, method, steps_, share, batch_norm,
                                                                           args.epochs, repeats=1 if engine else 3))
                              for _, engine in steps())
            print(f"| {name} | {native:.0f} | {torch_:.0f} | {torch_ / native:.1f}x |", flush=True)
    elif args.table == "models":
        print("| models per stack (CE, 2,160 samples) | native, us/model-epoch | PyTorch, us/model-epoch |\n|---|---|---|")
        for models in (1, 5, 20, 80, 320):
            native, torch_ = (with_step(engine, lambda: us_per_model_epoch(models, "ce", 1, 1, False, args.epochs,
                                                                           repeats=1))
                              for _, engine in steps())
            print(f"| {models} | {native:.0f} | {torch_:.0f} |", flush=True)
    else:
        print("| training samples (5 models, CE; 90% fit, 10% selection) | native, us/model-epoch |\n|---|---|")
        for total in (2400, 24000, 240000):
            epochs = max(20, args.epochs * 2400 // total)
            native = with_step(None, lambda: us_per_model_epoch(5, "ce", 1, 1, False, epochs, n_fit=total * 9 // 10,
                                                                n_selection=total // 10, repeats=1))
            print(f"| {total:,} | {native:.0f} |", flush=True)


if __name__ == "__main__":
    main()
