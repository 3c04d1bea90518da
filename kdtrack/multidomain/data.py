"""Load, validate and save the multi-domain assignment data.

The schema is a dict of numpy arrays (``REQUIRED_KEYS``), stored as a pickle like the real
files or as an ``.npz``.

Pickles are read without running code from them (kdtrack.safe_pickle: numpy arrays and plain
containers only).
"""
from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import files, safe_pickle
from ..errors import InputError
from ..spine.data import fingerprint_of

REQUIRED_KEYS = ("x_train", "y_train", "d_train", "x_valid", "y_valid", "d_valid")
DEFAULT_DATASETS = ("data/sep1.00.pkl", "data/sep0.75.pkl", "data/sep0.50.pkl", "data/sep0.25.pkl")
"""The embedded datasets (kdtrack make-data, committed in data/): what the main job runs on."""

_ZIP_MAGIC = b"PK\x03\x04"
_SHOWN_VALUES = 5


@dataclass(frozen=True, eq=False)
class Split:
    x: np.ndarray  # (N, 2) float32
    y: np.ndarray  # (N,) int64
    d: np.ndarray  # (N,) int64

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.x, self.y, self.d

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(*self.arrays)


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
        return fingerprint_of(*self.train.arrays, *self.valid.arrays)


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


def load_if_unchanged(path: object, expected_hash: object) -> MultiDomainData | str:
    """The data file that runs recorded (`path`), if it still holds the data they saw: its content hash is
    their `data_hash`. Otherwise why not, in a few words (a file replaced since, even by a valid one, would
    show other points than the runs saw)."""
    if not isinstance(path, str) or not path:
        return "the runs recorded no data file"
    try:
        data = load_multidomain(path)
    except InputError as error:
        return f"its data file cannot be read here ({error})"
    if not isinstance(expected_hash, str):
        return f"the runs recorded no content hash to check {path} against"
    if data.fingerprint != expected_hash:
        return (f"its data file {path} has changed since the runs (content hash {data.fingerprint}, the runs saw "
                f"{expected_hash})")
    return data


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
    try:
        raw = files.read_regular_file(path)
    except files.FileProblem as problem:
        raise _Problem(str(problem)) from None
    if not raw:
        raise _Problem("file is empty")
    payload = _read_npz(raw) if raw.startswith(_ZIP_MAGIC) else _unpickle(raw)
    if not isinstance(payload, dict):
        raise _Problem(f"expected a dict of numpy arrays, got {type(payload).__name__}")
    return payload


def _read_npz(raw: bytes) -> dict:
    """The schema's arrays of an .npz, each header checked against the archive before its array is read:
    numpy allocates the whole array a header declares before reading a byte of it."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            wanted = [members[key] for key in REQUIRED_KEYS if key in members]
            declared = sum(_npy_size(archive, info) for info in wanted)
            if declared > files.MAX_BYTES:
                raise _Problem(f"its arrays declare {declared:,} bytes, more than the {files.MAX_BYTES:,} kdtrack reads")
            return {info.filename.removesuffix(".npy"): np.lib.format.read_array(archive.open(info), allow_pickle=False)
                    for info in wanted}
    except _Problem:
        raise
    except Exception as error:
        raise _Problem(f"truncated or corrupt .npz file ({safe_pickle.describe(error)})") from error


def _npy_size(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The bytes the array `info` declares, once its header is found to describe numbers that fill the member."""
    key = info.filename.removesuffix(".npy")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise _Problem(f"{key} is an .npy array of format {version[0]}.{version[1]}, which only structured arrays "
                           "need: expected numbers")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
        header = member.tell()
    if dtype.hasobject:
        raise _Problem(f"{key} holds Python objects (dtype object), which kdtrack does not load from an .npz: "
                       "reading them would unpickle them, and unpickling can run code; expected numbers")
    declared = math.prod(shape) * dtype.itemsize
    if declared != info.file_size - header:
        raise _Problem(f"truncated or corrupt .npz file ({key} declares shape {shape} of {dtype}, {declared:,} bytes, "
                       f"and holds {info.file_size - header:,})")
    return declared


def _unpickle(raw: bytes) -> object:
    """Python 2's pickles hold text as bytes: read as latin1, numpy's arrays come back byte for byte."""
    try:
        return safe_pickle.load(raw, encoding="latin1")
    except safe_pickle.NotAPickle as problem:
        raise _Problem(f"not a pickle or .npz file ({problem.detail})") from problem.__cause__
    except safe_pickle.PickleProblem as problem:
        raise _Problem(str(problem)) from problem.__cause__


def _to_numpy(key: str, value: object) -> object:
    try:
        return safe_pickle.to_numpy(key, value)
    except safe_pickle.PickleProblem as problem:
        raise _Problem(str(problem)) from problem.__cause__


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
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range becomes inf, refused below
        points = np.ascontiguousarray(value, dtype=np.float32)
    bad_rows = np.flatnonzero(~np.isfinite(points).all(axis=1))  # in the dtype the engine trains in
    if bad_rows.size:
        raise _Problem(
            f"{key} has NaN, infinite or out-of-range values in {bad_rows.size} rows "
            f"(first at row {bad_rows[0]}): every value must be a finite float32"
        )
    return points


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
