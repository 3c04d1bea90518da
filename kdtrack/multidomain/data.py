"""Load, validate and save the multi-domain assignment data.

The schema is a dict of numpy arrays (``REQUIRED_KEYS``), stored as a pickle like the real
files or as an ``.npz``.

Pickles are read with an unpickler whose only globals are the few names numpy's own array
pickles use, and even those are stand-ins that merely record what the file says. Admitting the
real ``numpy.dtype`` would not be safe: the file's BUILD state goes to ``dtype.__setstate__``,
which trusts flags such as "holds object pointers" and so lets a corrupt or hostile file crash
the process. The stand-ins become real arrays only afterwards, and only for plain number and text
dtypes, whose bytes numpy copies without interpreting them.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from kdtrack.errors import InputError

REQUIRED_KEYS = ("x_train", "y_train", "d_train", "x_valid", "y_valid", "d_valid")

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO_OPCODE = b"\x80"  # every pickle of protocol 2 or later starts with it
_PLAIN_DTYPE = re.compile(r"[biufcSU][0-9]+")  # as numpy pickles them: 'f8', 'i8', 'U5', ...
_BYTE_ORDERS = ("<", ">", "|", "=")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_SHOWN_VALUES = 5


@dataclass(frozen=True, eq=False)
class Split:
    x: np.ndarray  # (N, 2) float32
    y: np.ndarray  # (N,) int64
    d: np.ndarray  # (N,) int64


@dataclass(frozen=True, eq=False)
class MultiDomainData:
    """A dataset: its name (the file stem, which names runs), its splits, and the file it came from."""

    name: str
    train: Split
    valid: Split
    source: str = ""

    @property
    def domains(self) -> list[int]:
        """The sorted distinct training domains."""
        return [int(domain) for domain in np.unique(self.train.d)]

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the content, so that a renamed copy of a file is recognised as the same data."""
        return split_fingerprint(self.train, self.valid)


def split_fingerprint(*splits: Split) -> str:
    """A short hash of the content of `splits`."""
    digest = hashlib.sha256()
    for split in splits:
        for array in (split.x, split.y, split.d):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def load_multidomain(path: str | os.PathLike) -> MultiDomainData:
    """Read and check a data file; every problem is an InputError of one line "{path}: {problem}"."""
    path = Path(path)
    try:
        payload = _read(path)
        _check_keys(payload)
        arrays = {key: _to_numpy(key, payload[key]) for key in REQUIRED_KEYS}
        train, valid = _split(arrays, "train"), _split(arrays, "valid")
        _check_domains(train, valid)
    except _Problem as problem:
        message = " ".join(f"{path}: {problem}".splitlines())
        raise InputError(message) from problem.__cause__
    return MultiDomainData(name=path.stem, train=train, valid=valid, source=str(path))


def save_multidomain(data: MultiDomainData, path: str | os.PathLike) -> None:
    """Write ``data`` as an .npz when the suffix says so, else as a pickle like the real files
    (protocol 3, float64 x, int64 y and d)."""
    path = Path(path)
    arrays = {}
    for split_name, split in (("train", data.train), ("valid", data.valid)):
        arrays[f"x_{split_name}"] = split.x.astype(np.float64)
        arrays[f"y_{split_name}"] = split.y.astype(np.int64)
        arrays[f"d_{split_name}"] = split.d.astype(np.int64)
    try:
        if path.suffix == ".npz":
            np.savez(path, **arrays)
        else:
            with path.open("wb") as file:
                pickle.dump(arrays, file, protocol=3)
    except OSError as error:
        raise InputError(f"{path}: cannot write the file ({error.strerror})") from error


class _Problem(Exception):
    """What is wrong with a file; load_multidomain prefixes the path and raises InputError."""


# ---- reading -------------------------------------------------------------------------------


def _read(path: Path) -> dict:
    if not path.exists():
        raise _Problem("no such file")
    if path.is_dir():
        raise _Problem("is a directory, expected a .pkl or .npz file")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise _Problem(f"cannot read the file ({error.strerror})") from error
    if not raw:
        raise _Problem("file is empty")
    payload = _read_npz(raw) if raw.startswith(_ZIP_MAGIC) else _unpickle(raw)
    if not isinstance(payload, dict):
        raise _Problem(f"expected a dict of numpy arrays, got {type(payload).__name__}")
    return payload


def _read_npz(raw: bytes) -> dict:
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except Exception as error:
        raise _Problem(f"truncated or corrupt .npz file ({_describe(error)})") from error


def _unpickle(raw: bytes) -> object:
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(raw)).load()
    except _Refused as refused:
        raise _Problem(
            f"refused to load '{refused}' (only numpy arrays and plain containers are allowed)"
        ) from None
    # A bad file can make the unpickler or the stand-ins raise almost anything.
    except Exception as error:
        if not raw.startswith(_PICKLE_PROTO_OPCODE):
            raise _Problem(f"not a pickle or .npz file ({_describe(error)})") from error
        raise _Problem(f"truncated or corrupt pickle ({_describe(error)})") from error


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


# ---- the restricted unpickler ----------------------------------------------------------------


class _Refused(pickle.UnpicklingError):
    pass


class _PickledDtype:
    """Stands in for ``numpy.dtype(spec, align, copy)``; BUILD hands it the dtype's state."""

    def __init__(self, spec: object, *_align_copy: object) -> None:
        self.spec = spec
        self.byte_order: object = "="

    def __setstate__(self, state: tuple) -> None:
        self.byte_order = state[1]

    def resolve(self, key: str) -> np.dtype:
        if not isinstance(self.spec, str) or self.byte_order not in _BYTE_ORDERS:
            raise _Problem(f"{key} is a corrupt numpy array (bad dtype {self.spec!r})")
        if not _PLAIN_DTYPE.fullmatch(self.spec):
            name = "object" if self.spec.startswith("O") else self.spec
            raise _Problem(f"{key} has dtype '{name}', expected numbers")
        try:
            dtype = np.dtype(self.spec)
        except TypeError as error:
            raise _Problem(f"{key} is a corrupt numpy array (bad dtype {self.spec!r})") from error
        return dtype.newbyteorder(self.byte_order) if self.byte_order in "<>" else dtype


class _PickledArray:
    """Stands in for an ndarray: its shape, dtype, memory order and raw bytes, as the file says."""

    def __init__(
        self, shape: object = None, dtype: object = None, fortran: object = False, raw: object = None
    ) -> None:
        self.shape, self.dtype, self.fortran, self.raw = shape, dtype, fortran, raw

    def __setstate__(self, state: tuple) -> None:
        # (version, shape, dtype, is_fortran, raw), or the same without the version
        self.shape, self.dtype, self.fortran, self.raw = state[-4:]


def _reconstruct(*_class_shape_dtype: object) -> _PickledArray:
    """numpy pickles an array as _reconstruct(ndarray, (0,), b'b') and then BUILDs the real state."""
    return _PickledArray()


def _frombuffer(raw: object, dtype: object, shape: object, order: object) -> _PickledArray:
    """How numpy pickles arrays under protocol 5 (the default from Python 3.14)."""
    return _PickledArray(shape, dtype, order == "F", raw)


def _scalar(dtype: object, raw: object) -> _PickledArray:
    return _PickledArray((), dtype, False, raw)


def _latin1(text: object, encoding: object) -> bytes:
    """Protocols 0 to 2 store bytes as _codecs.encode(text, 'latin1')."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"unexpected _codecs.encode({encoding!r})")
    return text.encode("latin1")


_NDARRAY_TAG = object()  # numpy's pickles pass ndarray only as the first argument of _reconstruct

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): _NDARRAY_TAG,
    ("numpy", "dtype"): _PickledDtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("_codecs", "encode"): _latin1,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def _to_numpy(key: str, value: object) -> object:
    """Turn a stand-in into a real, writable array; anything else is returned for checking."""
    if not isinstance(value, _PickledArray):
        return value
    if not isinstance(value.dtype, _PickledDtype):
        raise _Problem(f"{key} is a corrupt numpy array (no dtype)")
    dtype = value.dtype.resolve(key)
    try:
        flat = np.frombuffer(value.raw, dtype=dtype)
        return flat.reshape(value.shape, order="F" if value.fortran else "C").copy()
    except Exception as error:
        raise _Problem(f"{key} is a corrupt numpy array ({_describe(error)})") from error


# ---- checking --------------------------------------------------------------------------------


def _check_keys(payload: dict) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        noun = "key" if len(missing) == 1 else "keys"
        raise _Problem(f"missing {noun} " + ", ".join(repr(key) for key in missing))


def _split(arrays: dict, split: str) -> Split:
    x = _points(f"x_{split}", arrays[f"x_{split}"])
    y = _integers(f"y_{split}", arrays[f"y_{split}"])
    d = _integers(f"d_{split}", arrays[f"d_{split}"])
    if not len(x) == len(y) == len(d):
        raise _Problem(
            f"{split} split lengths disagree: x_{split} has {len(x)} rows, "
            f"y_{split} {len(y)}, d_{split} {len(d)}"
        )
    if len(x) == 0:
        raise _Problem(f"{split} split is empty (N = 0)")
    labels = np.setdiff1d(y, [0, 1])
    if labels.size:
        raise _Problem(f"y_{split} has labels outside {{0, 1}}: {_values(labels)}")
    return Split(x=x, y=y, d=d)


def _array(key: str, value: object) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise _Problem(f"{key} is a {type(value).__name__}, expected a numpy array")
    return value


def _points(key: str, value: object) -> np.ndarray:
    value = _array(key, value)
    if value.dtype.kind not in "fiu":
        raise _Problem(f"{key} has dtype '{value.dtype}', expected numbers")
    if value.ndim != 2 or value.shape[1] != 2:
        raise _Problem(f"{key} has shape {value.shape}, expected (N, 2)")
    # NaN fails the comparison too; the bound keeps the float32 cast from making new infinities.
    bad_rows = np.flatnonzero(~np.all(np.abs(value) <= _FLOAT32_MAX, axis=1))
    if bad_rows.size:
        raise _Problem(
            f"{key} has NaN, infinite or out-of-range values in {bad_rows.size} rows "
            f"(first at row {bad_rows[0]})"
        )
    return np.ascontiguousarray(value, dtype=np.float32)


def _integers(key: str, value: object) -> np.ndarray:
    """Integer arrays, or float arrays whose values are all exact integers (e.g. 0.0 and 1.0)."""
    value = _array(key, value)
    if value.dtype.kind not in "fiu":
        raise _Problem(f"{key} has dtype '{value.dtype}', expected integers")
    if value.ndim != 1:
        raise _Problem(f"{key} has shape {value.shape}, expected (N,)")
    if value.dtype.kind == "f":
        whole = (np.abs(value) < 2.0**63) & (value == np.trunc(value))
        if not whole.all():
            raise _Problem(f"{key} has non-integer values: {_values(np.unique(value[~whole]))}")
    return np.ascontiguousarray(value, dtype=np.int64)


def _check_domains(train: Split, valid: Split) -> None:
    absent = np.setdiff1d(train.d, valid.d)
    if absent.size:
        noun = "domain" if absent.size == 1 else "domains"
        raise _Problem(
            f"training {noun} {_values(absent)} absent from validation "
            f"(which has {_values(np.unique(valid.d))})"
        )


def _values(values: np.ndarray) -> str:
    shown = ", ".join(str(value) for value in values[:_SHOWN_VALUES].tolist())
    return shown + (", ..." if values.size > _SHOWN_VALUES else "")
