"""The options of the multi-domain tasks, checked once, logged as params and hashed into a cell's identity."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..distillers import DISTILL_METHODS
from ..engine.optim import OPTIMIZERS, SCHEDULES, OptimConfig
from ..errors import InputError
from ..options import MAX_SEED, check_training, coerce_numbers, params_of, require
from ..models.mlp import MLPConfig

SELECTIONS = ("holdout", "validation")
STUDENT_SELECT_ON = "accuracy-1se"
"""What selects a student's checkpoint unless told otherwise: what it is scored by, accuracy, with one
standard error's tolerance for the holdout's noise. Its distillation loss stops it too early where domains
overlap; the cross-entropy of a student taught at a high temperature is lowest long before its accuracy is
highest; and the best holdout accuracy alone, on a few hundred samples, peaks by chance early in training
(README, Results). The baseline and the teachers keep their training objective, their cross-entropy."""
STEP_ORDERS = ("joint", "per-domain")


@dataclass(frozen=True)
class TrainOptions:
    """How one model trains. `selection` says which split picks the checkpoint: `holdout`, carved from
    train, or `validation`, as the report did. `early_stopping` logs the checkpoint that `select_on` prefers
    on that split (its training objective, its cross-entropy, or its accuracy) as the model; without it the
    last epoch's."""

    epochs: int = 30000
    hidden: tuple[int, ...] = (20, 10)
    batch_norm: bool = False
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    amsgrad: bool = False
    schedule: str = "constant"
    early_stopping: bool = True
    select_on: str = "objective"
    selection: str = "holdout"
    selection_fraction: float = 0.1
    selection_seed: int = 0

    def __post_init__(self):
        check_training(self)
        require(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        require(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        require(self.selection in SELECTIONS, f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        require(bool(self.hidden) and min(self.hidden) >= 1, f"hidden sizes must be positive, got {self.hidden}")

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(self.lr, self.optimizer, self.weight_decay, self.amsgrad, self.schedule)

    def mlp(self, in_features: int = 2, n_classes: int = 2) -> MLPConfig:
        return MLPConfig(in_features, self.hidden, n_classes, self.batch_norm)

    def params(self) -> dict[str, str]:
        return params_of(self)


@dataclass(frozen=True)
class DistillOptions:
    """The student's objective. `step_order` is `joint` (one step per epoch on all data, each sample
    with its in-domain teacher) or `per-domain` (the report's: one step per domain per epoch)."""

    method: str = "kd"
    alpha: float = 0.5
    temperature: float = 9.0
    step_order: str = "joint"

    def __post_init__(self):
        coerce_numbers(self)
        require(self.method in DISTILL_METHODS, f"method must be one of {', '.join(DISTILL_METHODS)}, got {self.method!r}")
        require(0 <= self.alpha <= 1, f"alpha must lie in [0, 1], got {self.alpha}")
        require(0 < self.temperature < math.inf, f"temperature must be a positive finite number, got {self.temperature}")
        require(self.method != "anneal-jafari" or self.temperature == int(self.temperature),
                 f"temperature (tau_max) must be a whole number for anneal-jafari, got {self.temperature}")
        require(self.step_order in STEP_ORDERS, f"step-order must be one of {', '.join(STEP_ORDERS)}, got {self.step_order!r}")

    def params(self) -> dict[str, str]:
        return params_of(self)


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"seeds must be comma-separated integers, got {text!r}") from None
    require(bool(seeds), "seeds must name at least one seed")
    require(len(set(seeds)) == len(seeds), f"seeds must not repeat, got {text!r}")
    require(min(seeds) >= 0 and max(seeds) < MAX_SEED, f"seeds must lie in [0, 2**32), got {text!r}")
    return seeds
