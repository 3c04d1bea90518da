"""Optimizers and learning-rate schedules. Each is elementwise per parameter, so it is safe on a stack."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "onecycle")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    amsgrad: bool = False
    schedule: str = "constant"


def make_optimizer(params, config: OptimConfig) -> Optimizer:
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=config.lr, weight_decay=config.weight_decay, amsgrad=config.amsgrad)


def make_scheduler(optimizer: Optimizer, config: OptimConfig, total_steps: int) -> LRScheduler | None:
    """One-cycle peaks at `lr`; the scheduler steps once per optimizer step."""
    if config.schedule == "onecycle":
        return OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)
    return None
