"""What the option classes of both studies share: numbers coerced to their declared types, params as text,
and one-line errors."""
from __future__ import annotations

from dataclasses import asdict, fields

from .errors import InputError


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
