"""Reading pickles without running code from them: numpy arrays and plain containers only.

The unpickler's only globals are the few names numpy's own array pickles use, and even those are stand-ins
that merely record what the file says. Admitting the real ``numpy.dtype`` would not be safe: the file's BUILD
state goes to ``dtype.__setstate__``, which trusts flags such as "holds object pointers" and so lets a corrupt
or hostile file crash the process. The stand-ins become real arrays only afterwards (`to_numpy`), and only
for plain number and text dtypes, whose bytes numpy copies without interpreting them.

Both studies read through it: the multi-domain pickles and CIFAR-100's python folder (Python 2 pickles,
read with encoding="bytes").
"""
from __future__ import annotations

import io
import pickle
import re

import numpy as np

PROTOCOL_OPCODE = b"\x80"  # every pickle of protocol 2 or later starts with it
_PLAIN_DTYPE = re.compile(r"[biufcSU][0-9]+")  # as numpy pickles them: 'f8', 'i8', 'U5', ...
_BYTE_ORDERS = ("<", ">", "|", "=")


def load(raw: bytes, encoding: str = "ASCII") -> object:
    """The object a pickle holds, numpy arrays left as stand-ins for `to_numpy`; PickleProblem otherwise."""
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(raw), encoding=encoding).load()
    except _Refused as refused:
        raise PickleProblem(f"refused to load '{refused}' (only numpy arrays and plain containers are allowed)") from None
    # A bad file can make the unpickler or the stand-ins raise almost anything.
    except Exception as error:
        if not raw.startswith(PROTOCOL_OPCODE):
            raise NotAPickle(describe(error)) from error
        raise PickleProblem(f"truncated or corrupt pickle ({describe(error)})") from error


def describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class PickleProblem(Exception):
    """What is wrong with a pickle, in one line."""


class NotAPickle(PickleProblem):
    """The bytes are not a pickle at all (`detail` says what the unpickler met)."""

    def __init__(self, detail: str):
        super().__init__(f"not a pickle ({detail})")
        self.detail = detail


class _Refused(pickle.UnpicklingError):
    pass


class _PickledDtype:
    """Stands in for ``numpy.dtype(spec, align, copy)``; BUILD hands it the dtype's state."""

    def __init__(self, spec: object, *_align_copy: object) -> None:
        self.spec = _text(spec)
        self.byte_order: object = "="

    def __setstate__(self, state: tuple) -> None:
        self.byte_order = _text(state[1])

    def resolve(self, key: str) -> np.dtype:
        if not isinstance(self.spec, str) or self.byte_order not in _BYTE_ORDERS:
            raise PickleProblem(f"{key} is a corrupt numpy array (bad dtype {self.spec!r})")
        if not _PLAIN_DTYPE.fullmatch(self.spec):
            name = "object" if self.spec.startswith("O") else self.spec
            raise PickleProblem(f"{key} has dtype '{name}', expected numbers")
        try:
            dtype = np.dtype(self.spec)
        except TypeError as error:
            raise PickleProblem(f"{key} is a corrupt numpy array (bad dtype {self.spec!r})") from error
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


def _text(value: object) -> object:
    """A Python 2 pickle read with encoding="bytes" gives its strings as bytes: a dtype's spec among them."""
    return value.decode("latin1") if isinstance(value, bytes) else value


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


def to_numpy(key: str, value: object) -> object:
    """Turn a stand-in into a real, writable array; anything else is returned for checking."""
    if not isinstance(value, _PickledArray):
        return value
    if not isinstance(value.dtype, _PickledDtype):
        raise PickleProblem(f"{key} is a corrupt numpy array (no dtype)")
    dtype = value.dtype.resolve(key)
    try:
        flat = np.frombuffer(value.raw, dtype=dtype)
        return flat.reshape(value.shape, order="F" if value.fortran else "C").copy()
    except Exception as error:
        raise PickleProblem(f"{key} is a corrupt numpy array ({describe(error)})") from error
