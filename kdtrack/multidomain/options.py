"""The options of the multi-domain tasks, checked once, logged as params and hashed into a cell's identity."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..distillers import DISTILL_METHODS
from ..engine.optim import OPTIMIZERS, SCHEDULES, OptimConfig
from ..models.mlp import MLPConfig
from ..spine.options import TrainOptions, coerce_numbers, params_of, require

STEP_ORDERS = ("joint", "per-domain")


@dataclass(frozen=True, kw_only=True)
class MLPTrainOptions(TrainOptions):
    """How one MLP trains: the assignment's recipe (full-batch Adam at lr 1e-3 for 30,000 epochs, a
    2-20-10-2 ReLU network). `early_stopping` logs the checkpoint that `select_on` prefers on the selection
    split as the model; without it the last epoch's."""

    epochs: int = 30000
    lr: float = 1e-3
    hidden: tuple[int, ...] = (20, 10)
    batch_norm: bool = False
    optimizer: str = "adam"
    amsgrad: bool = False
    schedule: str = "constant"
    early_stopping: bool = True

    def __post_init__(self):
        super().__post_init__()
        require(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        require(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        require(bool(self.hidden) and min(self.hidden) >= 1, f"hidden sizes must be positive, got {self.hidden}")

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(self.lr, self.optimizer, self.weight_decay, self.amsgrad, self.schedule)

    def mlp(self, in_features: int = 2, n_classes: int = 2) -> MLPConfig:
        return MLPConfig(in_features, self.hidden, n_classes, self.batch_norm)


@dataclass(frozen=True)
class DistillOptions:
    """The student's objective: a `distiller` (kdtrack.distillers) and the options it reads. `step_order` is
    `joint` (one step per epoch on all data, each sample with its in-domain teacher) or `per-domain` (the
    report's: one step per domain per epoch)."""

    distiller: str = "kd"
    alpha: float = 0.5
    temperature: float = 9.0
    step_order: str = "joint"

    def __post_init__(self):
        coerce_numbers(self)
        require(self.distiller in DISTILL_METHODS,
                f"distiller must be one of {', '.join(DISTILL_METHODS)}, got {self.distiller!r}")
        require(0 <= self.alpha <= 1, f"alpha must lie in [0, 1], got {self.alpha}")
        require(0 < self.temperature < math.inf, f"temperature must be a positive finite number, got {self.temperature}")
        require(self.distiller != "anneal-jafari" or self.temperature == int(self.temperature),
                f"temperature (tau_max) must be a whole number for anneal-jafari, got {self.temperature}")
        require(self.step_order in STEP_ORDERS, f"step-order must be one of {', '.join(STEP_ORDERS)}, got {self.step_order!r}")

    def params(self) -> dict[str, str]:
        return params_of(self)
