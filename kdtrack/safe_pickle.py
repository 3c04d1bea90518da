"""Reading pickles without running code from them: numpy arrays and plain containers only.

The unpickler's only globals are the few names numpy's own array pickles use, and even those are stand-ins
that merely record what the file says. Admitting the real ``numpy.dtype`` would not be safe: the file's BUILD
state goes to ``dtype.__setstate__``, which trusts flags such as "holds object pointers" and so lets a corrupt
or hostile file crash the process. The stand-ins become real arrays only afterwards (`to_numpy`), and only
for plain number and text dtypes, whose bytes numpy copies without interpreting them. What the unpickler
hands out cannot be changed from inside a file: no attribute of it can be set.

Before the unpickler runs, kdtrack.pickle_scan walks the file's opcodes and refuses, without building
anything, what would crash the process or exhaust its memory; the C unpickler then builds what it measured.

Both studies read through it: the multi-domain pickles (Python 2 ones too, read with encoding="latin1" as
numpy advises) and CIFAR-100's python folder (Python 2 pickles, read with encoding="bytes").
"""
from __future__ import annotations

import io
import pickle
import re
import reprlib
from types import MappingProxyType

import numpy as np

from . import pickle_scan

PROTOCOL_OPCODE = b"\x80"  # every pickle of protocol 2 or later starts with it
_PLAIN_DTYPE = re.compile(r"[biufcSU][0-9]+")  # as numpy pickles them: 'f8', 'i8', 'U5', ...
_BYTE_ORDERS = ("<", ">", "|", "=")
_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = 60


def load(raw: bytes, encoding: str = "ASCII") -> object:
    """The object a pickle holds, numpy arrays left as stand-ins for `to_numpy`; PickleProblem otherwise."""
    try:
        pickle_scan.scan(raw)
        return _NumpyOnlyUnpickler(io.BytesIO(raw), encoding=encoding).load()
    except pickle_scan.TooCostly as error:
        raise PickleProblem(f"refused before loading: {error}") from None
    except PickleProblem:
        raise
    # A bad file can make the unpickler or the stand-ins raise almost anything.
    except Exception as error:
        if not raw.startswith(PROTOCOL_OPCODE):
            raise NotAPickle(describe(error)) from error
        raise PickleProblem(f"truncated or corrupt pickle ({describe(error)})") from error


def describe(error: BaseException) -> str:
    """An error in a few words: its type and the start of its message (which may quote the file)."""
    text = shorten(" ".join(str(error).split()), 200)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def quote(value: object) -> str:
    """`value` as a message may show it: shortened, and never deeper than a few levels."""
    return _QUOTE.repr(value)


def shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class PickleProblem(Exception):
    """What is wrong with a pickle, in one line."""


class NotAPickle(PickleProblem):
    """The bytes are not a pickle at all (`detail` says what the unpickler met)."""

    def __init__(self, detail: str):
        super().__init__(f"not a pickle ({detail})")
        self.detail = detail


class _Refused(PickleProblem):
    """A global the file asks for that is not a numpy array's part."""

    def __init__(self, name: str):
        super().__init__(f"refused to load '{name}': a data pickle may hold only numpy arrays of numbers and plain "
                         "containers (dict, list, tuple, numbers, text), and loading any other object could run code "
                         "from the file")


# ---- the stand-ins --------------------------------------------------------------------------------


class _PickledDtype:
    """Stands in for ``numpy.dtype(spec, align, copy)``; BUILD hands it the dtype's state."""

    __slots__ = ("spec", "byte_order")

    def __init__(self, spec: object = None, *_align_copy: object) -> None:
        self.spec = _text(spec)
        self.byte_order: object = "="

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) < 2:
            raise pickle.UnpicklingError(f"a numpy dtype's state must be a tuple, got {quote(state)}")
        self.byte_order = _text(state[1])

    def resolve(self, key: str) -> np.dtype:
        spec = getattr(self, "spec", None)
        if not isinstance(spec, str) or getattr(self, "byte_order", None) not in _BYTE_ORDERS:
            raise PickleProblem(f"{key} is a corrupt numpy array (bad dtype {quote(spec)})")
        if not _PLAIN_DTYPE.fullmatch(spec):
            name = "object" if spec.startswith("O") else shorten(spec)
            raise PickleProblem(f"{key} has dtype '{name}', expected numbers")
        try:
            dtype = np.dtype(spec)
        except TypeError as error:
            raise PickleProblem(f"{key} is a corrupt numpy array (bad dtype {quote(spec)})") from error
        return dtype.newbyteorder(self.byte_order) if self.byte_order in "<>" else dtype


class _PickledArray:
    """Stands in for an ndarray: its shape, dtype, memory order and raw bytes, as the file says."""

    __slots__ = ("shape", "dtype", "fortran", "raw")

    def __init__(self, shape: object = None, dtype: object = None, fortran: object = False, raw: object = None) -> None:
        self.shape, self.dtype, self.fortran, self.raw = shape, dtype, fortran, raw

    def __setstate__(self, state: object) -> None:
        # (version, shape, dtype, is_fortran, raw), or the same without the version
        if not isinstance(state, tuple) or len(state) < 4:
            raise pickle.UnpicklingError(f"a numpy array's state must be a tuple of 4 or 5, got {quote(state)}")
        self.shape, self.dtype, self.fortran, self.raw = state[-4:]


def _reconstruct(*_class_shape_dtype: object) -> _PickledArray:
    """numpy pickles an array as _reconstruct(ndarray, (0,), b'b') and then BUILDs the real state."""
    return _PickledArray()


def _frombuffer(raw: object, dtype: object, shape: object, order: object) -> _PickledArray:
    """How numpy pickles arrays under protocol 5 (the default from Python 3.14)."""
    return _PickledArray(shape, dtype, order == "F", raw)


def _scalar(dtype: object, raw: object) -> _PickledArray:
    return _PickledArray((), dtype, False, raw)


def _empty_bytes(*args: object) -> bytes:
    """Protocols 0 to 2 store empty bytes (an empty array's data) as bytes()."""
    if args:
        raise pickle.UnpicklingError("bytes() with arguments, where numpy writes only bytes() for empty data")
    return b""


def _text(value: object) -> object:
    """A Python 2 pickle read with encoding="bytes" gives its strings as bytes: a dtype's spec among them."""
    return value.decode("latin1") if isinstance(value, bytes) else value


def _latin1(text: object, encoding: object) -> bytes:
    """Protocols 0 to 2 store bytes as _codecs.encode(text, 'latin1')."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"unexpected _codecs.encode(..., {quote(encoding)})")
    return text.encode("latin1")


class _Allowed:
    """A global a pickle may name: calling it calls `make`. It has no attribute a file could set (BUILD
    sets attributes of what it is given), so what one file does to it cannot change how the next is read."""

    __slots__ = ("_make",)

    def __init__(self, make) -> None:
        object.__setattr__(self, "_make", make)

    def __call__(self, *args: object) -> object:
        return self._make(*args)

    def __setattr__(self, name: str, value: object) -> None:
        raise pickle.UnpicklingError(f"a pickle may not set {quote(name)} on what it loads from numpy")

    def __repr__(self) -> str:
        return f"allowed({self._make.__name__})"


_NDARRAY_TAG = object()  # numpy's pickles pass ndarray only as the first argument of _reconstruct

_ALLOWED_GLOBALS = MappingProxyType({
    ("numpy", "ndarray"): _NDARRAY_TAG,
    ("numpy", "dtype"): _Allowed(_PickledDtype),
    ("numpy.core.multiarray", "_reconstruct"): _Allowed(_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _Allowed(_reconstruct),
    ("numpy.core.numeric", "_frombuffer"): _Allowed(_frombuffer),
    ("numpy._core.numeric", "_frombuffer"): _Allowed(_frombuffer),
    ("numpy.core.multiarray", "scalar"): _Allowed(_scalar),
    ("numpy._core.multiarray", "scalar"): _Allowed(_scalar),
    ("_codecs", "encode"): _Allowed(_latin1),
    ("builtins", "bytes"): _Allowed(_empty_bytes),
    ("__builtin__", "bytes"): _Allowed(_empty_bytes),
})


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(shorten(f"{module}.{name}")) from None


def to_numpy(key: str, value: object) -> object:
    """Turn a stand-in into a real, writable array; anything else is returned for checking."""
    if not isinstance(value, _PickledArray):
        return value
    if not isinstance(value.dtype, _PickledDtype):
        raise PickleProblem(f"{key} is a corrupt numpy array (no dtype)")
    dtype = value.dtype.resolve(key)
    raw = value.raw.encode("latin1") if isinstance(value.raw, str) else value.raw  # a Python 2 pickle's str
    try:
        flat = np.frombuffer(raw, dtype=dtype)
        return flat.reshape(value.shape, order="F" if value.fortran else "C").copy()
    except Exception as error:
        raise PickleProblem(f"{key} is a corrupt numpy array ({describe(error)})") from error
