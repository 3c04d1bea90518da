"""Why the engine's fast path is a compiled C kernel and not torch.compile: one epoch of a five-model
baseline stack (full-batch forward, cross-entropy, backward by torch.func, Adam, a validation pass) as one
torch.compile'd function, against the same function in eager PyTorch.

    .venv/bin/python benchmarks/compile_probe.py [--epochs 2000]

It prints the first call's time (the compile, in a fresh Inductor cache) and the steady microseconds per
model-epoch. The epoch does less than the engine's (no selection pass, no checkpoint bookkeeping), which
favours torch.compile; compare with `engine_speed.py`'s native column. Run by hand on an idle machine.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import torch.nn.functional as F

MODELS, FIT, VALID = 5, 2160, 300
BETA1, BETA2, EPS, LR = 0.9, 0.999, 1e-8, 1e-3


def data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 2, generator=generator) * 2
    return x.expand(MODELS, n, 2).contiguous(), (x.norm(dim=1) > 1.2).long()


def init(generator: torch.Generator) -> list[torch.Tensor]:
    shapes = [(2, 20), (1, 20), (20, 10), (1, 10), (10, 2), (1, 2)]
    return [torch.randn(MODELS, *shape, generator=generator) * 0.3 for shape in shapes]


def logits(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2, w3, b3 = params
    hidden = torch.relu(torch.baddbmm(b1, x, w1))
    hidden = torch.relu(torch.baddbmm(b2, hidden, w2))
    return torch.baddbmm(b3, hidden, w3)


def loss(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The sum over models of each model's mean cross-entropy: each model's gradient is its own."""
    out = logits(params, x)
    return F.cross_entropy(out.flatten(0, 1), y.repeat(MODELS), reduction="sum") / y.numel()


grad_and_loss = torch.func.grad_and_value(loss)


def epoch(params, first, second, step, x, y, x_valid, y_valid):
    grads, train_loss = grad_and_loss(params, x, y)
    step = step + 1
    updated, firsts, seconds = [], [], []
    for param, grad, m, v in zip(params, grads, first, second):
        m = BETA1 * m + (1 - BETA1) * grad
        v = BETA2 * v + (1 - BETA2) * grad * grad
        m_hat, v_hat = m / (1 - BETA1**step), v / (1 - BETA2**step)
        updated.append(param - LR * m_hat / (v_hat.sqrt() + EPS))
        firsts.append(m)
        seconds.append(v)
    valid = logits(updated, x_valid)
    val_loss = F.cross_entropy(valid.transpose(1, 2), y_valid.expand(MODELS, -1), reduction="none").mean(dim=1)
    val_acc = (valid.argmax(dim=-1) == y_valid).float().mean(dim=1)
    return updated, firsts, seconds, step, train_loss, val_loss, val_acc


def measure(step_fn, epochs: int) -> tuple[float, float]:
    """(seconds of the first call, steady microseconds per model-epoch)."""
    generator = torch.Generator().manual_seed(0)
    (x, y), (x_valid, y_valid) = data(FIT, generator), data(VALID, generator)
    params = init(generator)
    first, second = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    step = torch.zeros(())
    start = time.perf_counter()
    params, first, second, step, *_ = step_fn(params, first, second, step, x, y, x_valid, y_valid)
    first_call = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(epochs):
        params, first, second, step, *_ = step_fn(params, first, second, step, x, y, x_valid, y_valid)
    return first_call, (time.perf_counter() - start) / epochs / MODELS * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        compiled = measure(torch.compile(epoch, fullgraph=True, dynamic=False), args.epochs)
    eager = measure(epoch, args.epochs)
    print("| one epoch of a 5-model stack (1 thread) | first call | us/model-epoch |\n|---|---|---|")
    print(f"| torch.compile (fresh cache) | {compiled[0]:.1f} s | {compiled[1]:.0f} |")
    print(f"| eager PyTorch | {eager[0]:.2f} s | {eager[1]:.0f} |")


if __name__ == "__main__":
    main()
