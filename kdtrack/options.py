"""What the option classes of both studies share: numbers coerced to their declared types, params as text,
and one-line errors."""
from __future__ import annotations

import math
from dataclasses import asdict, fields

from .engine.trainer import SELECT_ON
from .errors import InputError

MAX_SEED = 2**32


def check_training(options) -> None:
    """The checks both studies' training options share: coerced numbers, then epochs, learning rate,
    weight decay, what selects the checkpoint, and the holdout's share and seed."""
    coerce_numbers(options)
    require(options.epochs >= 1, f"epochs must be at least 1, got {options.epochs}")
    require(0 < options.lr < math.inf, f"lr must be a positive finite number, got {options.lr}")
    require(0 <= options.weight_decay < math.inf, f"weight-decay must be a finite number >= 0, got {options.weight_decay}")
    require(options.select_on in SELECT_ON, f"select-on must be one of {', '.join(SELECT_ON)}, got {options.select_on!r}")
    require(0 < options.selection_fraction < 1, f"selection-fraction must lie in (0, 1), got {options.selection_fraction}")
    require(0 <= options.selection_seed < MAX_SEED, f"selection-seed must lie in [0, 2**32), got {options.selection_seed}")


def check_log_every(log_every: int) -> None:
    """Both studies' jobs: metrics every N epochs, or 0 for about 50 points per metric (tracking.METRIC_POINTS)."""
    require(log_every >= 0, f"log-every must be 0 (auto) or positive, got {log_every}")


def coerce_numbers(options) -> None:
    """Make numeric fields their declared type, so that 4 from a YAML file and 4.0 from the command line
    are one configuration (same params, same hash)."""
    for field in fields(options):
        kind = {"float": float, "int": int}.get(field.type)
        value = getattr(options, field.name)
        if kind is None or isinstance(value, bool):
            continue
        try:
            converted = kind(value)
        except (TypeError, ValueError):
            raise InputError(f"{field.name.replace('_', '-')} must be a number, got {value!r}") from None
        if kind is int and converted != value:
            raise InputError(f"{field.name.replace('_', '-')} must be a whole number, got {value!r}")
        object.__setattr__(options, field.name, converted)


def params_of(options) -> dict[str, str]:
    values = asdict(options)
    return {field.name: _param_text(values[field.name]) for field in fields(options)}


def _param_text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)
