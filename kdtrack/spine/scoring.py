"""What every logged model is measured by, on the CPU: its accuracy, its size and its latency."""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

EVAL_BATCH = 512
LATENCY_REPEATS = 20


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The share of `x` that `model` classifies as `y`, exactly (correct / total), in batches."""
    with torch.no_grad():
        correct = sum(int((model(batch).argmax(dim=1) == labels).sum())
                      for batch, labels in zip(x.split(EVAL_BATCH), y.split(EVAL_BATCH)))
    return correct / len(y)


def parameter_count(model: nn.Module) -> int:
    """The parameters a deployed model holds (for SimKD: backbone, projector and the reused classifier)."""
    return sum(parameter.numel() for parameter in model.parameters())


def latency_ms(model: nn.Module, example: torch.Tensor) -> float:
    """The median time of one forward pass of `example` (one input) on the model's device, in milliseconds."""
    times = []
    with torch.no_grad():
        for _ in range(LATENCY_REPEATS + 1):
            start = time.perf_counter()
            model(example)
            times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[1:]))
