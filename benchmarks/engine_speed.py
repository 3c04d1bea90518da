"""Milliseconds per epoch of the training engine for the stacks a study trains, on synthetic data of the
assignment's size (2,160 fit / 240 selection / 300 validation samples).

    .venv/bin/python benchmarks/engine_speed.py [--epochs 300] [--threads 1]

Quoted in the README; run by hand on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import time

import torch

from kdtrack.distillers import make_distiller
from kdtrack.engine import Batch, OptimConfig, train
from kdtrack.models.mlp import MLPConfig, StackedMLP, init_mlps


def batch(n: int, models: int, teacher: bool, generator: torch.Generator) -> Batch:
    x = torch.randn(n, 2, generator=generator) * 2
    logits = torch.randn(models, n, 2, generator=generator) if teacher else None
    return Batch(x[None], (x.norm(dim=1) > 1.2).long()[None], teacher=logits)


def per_epoch_ms(models: int, method: str, steps_per_epoch: int, share: int, epochs: int) -> float:
    """`share`: each model sees 1/share of the data (3 for a domain teacher)."""
    generator = torch.Generator().manual_seed(0)
    teacher = method != "ce"
    fit = [batch(2160 // share // steps_per_epoch, models, teacher, generator) for _ in range(steps_per_epoch)]
    valid, selection = batch(300 // share, models, teacher, generator), batch(240 // share, models, teacher, generator)
    stack = StackedMLP(init_mlps(MLPConfig(), list(range(models))))
    start = time.perf_counter()
    train(stack, make_distiller(method, epochs), fit, valid, epochs, OptimConfig(), selection)
    return (time.perf_counter() - start) / epochs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = [  # name, models, method, steps per epoch, data share
        ("baseline, 5 seeds", 5, "ce", 1, 1),
        ("teachers, 5 seeds x 3 domains", 15, "ce", 1, 3),
        ("kd student, 5 seeds, joint", 5, "kd", 1, 1),
        ("kd student, 5 seeds, per-domain", 5, "kd", 3, 1),
        ("tune grid, 8 trials x 5 seeds", 40, "kd", 1, 1),
        ("one model alone", 1, "ce", 1, 1),
    ]
    per_epoch_ms(5, "kd", 1, 1, 20)  # warm-up: first calls pay for lazy initialisation
    print(f"| stack ({args.threads} thread) | ms/epoch | s per 30,000 epochs |\n|---|---|---|")
    for name, models, method, steps, share in cases:
        ms = per_epoch_ms(models, method, steps, share, args.epochs)
        print(f"| {name} | {ms:.2f} | {ms * 30:.0f} |", flush=True)


if __name__ == "__main__":
    main()
