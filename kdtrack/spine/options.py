"""The options every model's training shares, whatever the study: one base the studies' options extend, its
checks, numbers coerced to their declared types, params as text, and one-line errors.

Each role owns its defaults: a study's options class its recipe (epochs, rate), a cell class what selects
its checkpoints (`select_on` left None here is the cell's `default_select_on`)."""
from __future__ import annotations

import math
import re
import reprlib
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from ..engine import SELECT_ON, TrainSpec
from ..engine.optim import OptimConfig
from ..errors import InputError

MAX_SEED = 2**32
DEFAULT_SEEDS = "0,10,1234,99,2021"
"""The seeds a command trains when neither it nor its study config names any: the report's."""
MAX_EPOCHS = 10**7
"""More epochs than any study trains (the assignment's are 30,000): a history of 10 million epochs per model
already takes 240 MB."""
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
"""A method's label: it names runs and rows, and goes into the store's search filters as it is."""
SELECTIONS = ("holdout", "validation")


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """How one model trains, as every study has it: epochs, learning rate and weight decay; which split
    selects its checkpoint (`selection`: `holdout`, carved from train, or `validation`) and by what
    (`select_on`, SELECT_ON); the holdout's share and seed. A study's options add the rest."""

    selections: ClassVar[tuple[str, ...]] = SELECTIONS
    """The selection policies a study supports."""

    epochs: int
    lr: float
    weight_decay: float = 0.0
    select_on: str | None = None
    selection: str = "holdout"
    selection_fraction: float = 0.1
    selection_seed: int = 0

    def __post_init__(self):
        for field in fields(self):  # a YAML list is the tuple the command line gives
            if isinstance(getattr(self, field.name), list):
                object.__setattr__(self, field.name, tuple(getattr(self, field.name)))
        coerce_numbers(self)
        require(1 <= self.epochs <= MAX_EPOCHS, f"epochs must lie in [1, {MAX_EPOCHS:,}], got {self.epochs}")
        require(0 < self.lr < math.inf, f"lr must be a positive finite number, got {self.lr}")
        require(0 <= self.weight_decay < math.inf, f"weight-decay must be a finite number >= 0, got {self.weight_decay}")
        require(self.select_on is None or self.select_on in SELECT_ON,
                f"select-on must be one of {', '.join(SELECT_ON)}, got {self.select_on!r}")
        require(self.selection in self.selections,
                f"selection must be one of {', '.join(self.selections)}, got {self.selection!r}")
        require(0 < self.selection_fraction < 1, f"selection-fraction must lie in (0, 1), got {self.selection_fraction}")
        require(0 <= self.selection_seed < MAX_SEED, f"selection-seed must lie in [0, 2**32), got {self.selection_seed}")

    @property
    def optim(self) -> OptimConfig:
        raise NotImplementedError

    def spec(self, device: str) -> TrainSpec:
        """What the engine needs of these options to train on `device`."""
        return TrainSpec(self.epochs, self.optim, self.select_on, device)

    def params(self) -> dict[str, str]:
        return params_of(self)


def check_log_every(log_every: int) -> None:
    """Both studies' jobs: metrics every N epochs, or 0 for about 50 points per metric (tracking.METRIC_POINTS)."""
    require(log_every >= 0, f"log-every must be 0 (auto) or positive, got {log_every}")


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"seeds must be comma-separated integers, got {text!r}") from None
    require(bool(seeds), "seeds must name at least one seed")
    require(len(set(seeds)) == len(seeds), f"seeds must not repeat, got {text!r}")
    require(min(seeds) >= 0 and max(seeds) < MAX_SEED, f"seeds must lie in [0, 2**32), got {text!r}")
    return seeds


def coerce_numbers(options) -> None:
    """Make every field its declared type, so that 4 from a YAML file and 4.0 from the command line are one
    configuration (same params, same hash); a value of another type (a YAML file can hold anything) is an
    InputError naming the option. A field that may be None (`str | None`) may be None."""
    for field in fields(options):
        value = getattr(options, field.name)
        kind = field.type.removesuffix(" | None")
        if value is None and kind != field.type:
            continue
        if kind in ("float", "int"):
            value = _number(field.name, value, int if kind == "int" else float)
        elif kind == "tuple[int, ...]":
            require(isinstance(value, (tuple, list)), f"{_option(field.name)} must be a list of whole numbers, got {shown(value)}")
            value = tuple(_number(field.name, item, int) for item in value)
        elif kind in ("bool", "str"):
            require(isinstance(value, bool if kind == "bool" else str),
                    f"{_option(field.name)} must be {'true or false' if kind == 'bool' else 'text'}, got {shown(value)}")
        object.__setattr__(options, field.name, value)


def _number(name: str, value, kind: type) -> int | float:
    """`value` as a float, or as an int if it is a whole number (4.0 is 4); an InputError otherwise."""
    whole = "a whole number" if kind is int else "a number"
    require(not isinstance(value, (bool, str)), f"{_option(name)} must be {whole}, got {shown(value)}")
    try:
        converted = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{_option(name)} must be {whole}, got {shown(value)}") from None
    require(kind is float or converted == value, f"{_option(name)} must be {whole}, got {shown(value)}")
    return converted


def _option(name: str) -> str:
    return name.replace("_", "-")


def shown(value) -> str:
    """A value as an error message quotes it: short, whatever it holds (a config file can hold anything)."""
    try:
        return reprlib.repr(value)
    except ValueError:  # an int of more digits than Python prints
        return f"an integer of {value.bit_length()} bits"


def check_label(label) -> None:
    """A method's label: letters, digits, spaces and . _ -, starting with a letter or digit, at most 100."""
    require(isinstance(label, str) and LABEL.fullmatch(label) is not None,
            f"a method's label must be letters, digits, spaces, '.', '_' and '-' (at most 100, starting with a letter "
            f"or digit), got {shown(label)}")


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
