"""Optimizers and learning-rate schedules. Each is elementwise per parameter, so it is safe on a stack.

The MLP studies train with Adam or AdamW; the image recipes with SGD and momentum under a step schedule
(the learning rate times `gamma` at each milestone epoch)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, MultiStepLR, OneCycleLR

OPTIMIZERS = ("adam", "adamw")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
"""torch.optim's defaults, which kdtrack keeps (the native step reads them from here)."""
SCHEDULES = ("constant", "onecycle")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    optimizer: str = "adam"
    """adam or adamw (OPTIMIZERS), or sgd (the image recipes)."""
    weight_decay: float = 0.0
    amsgrad: bool = False
    schedule: str = "constant"
    """constant or onecycle (SCHEDULES), or multistep (the image recipes)."""
    momentum: float = 0.9
    """SGD's momentum."""
    milestones: tuple[int, ...] = ()
    """multistep: the epochs after which the learning rate is multiplied by `gamma`."""
    gamma: float = 0.1


def make_optimizer(params, config: OptimConfig) -> Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=config.lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=config.weight_decay,
                amsgrad=config.amsgrad)


def make_scheduler(optimizer: Optimizer, config: OptimConfig, total_steps: int,
                   steps_per_epoch: int = 1) -> LRScheduler | None:
    """One-cycle peaks at `lr`; multistep drops at its milestone epochs. The scheduler steps once per
    optimizer step."""
    if config.schedule == "onecycle":
        return OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)
    if config.schedule == "multistep":
        return MultiStepLR(optimizer, [epoch * steps_per_epoch for epoch in config.milestones], config.gamma)
    return None


def step_schedule(config: OptimConfig, total_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The learning rate and Adam's beta1 at every optimizer step, as torch's own optimizer and scheduler
    set them (one-cycle cycles beta1 too), read off a one-parameter stand-in."""
    if config.schedule == "constant":
        return np.full(total_steps, config.lr), np.full(total_steps, ADAM_BETAS[0])
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], config)
    scheduler = make_scheduler(optimizer, config, total_steps)
    group = optimizer.param_groups[0]
    lr, beta1 = np.empty(total_steps), np.empty(total_steps)
    for step in range(total_steps):
        lr[step], beta1[step] = group["lr"], group["betas"][0]
        optimizer.step()  # no gradient: leaves the stand-in as it is, but keeps the scheduler's order of calls
        scheduler.step()
    return lr, beta1
