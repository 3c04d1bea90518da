"""Hostile and odd data files against the loaders (issue 29): what would crash the process (a tuple nested
200,000 deep), exhaust its memory (a huge memo index, a file of empty sets) or hang it (a FIFO, /dev/zero) is
refused in one line before anything is built; the peak memory of loading a file of N bytes is measured under
a memory limit; a file cannot change the loader's allowed globals; benign files the loader cannot read say
what they are. Every case is a one-line InputError (or PickleProblem) and nothing else."""
from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kdtrack import files, pickle_scan, safe_pickle
from kdtrack.errors import InputError
from cifar_folder import write_cifar100_folder
from kdtrack.images.data import load_cifar100
from kdtrack.multidomain import load_multidomain, make_multidomain, save_multidomain

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def arrays() -> dict:
    """The schema of a small generated dataset."""
    data = make_multidomain(1.0, 0, n_train=60, n_valid=30)
    return {f"{field}_{name}": getattr(split, field) for name, split in (("train", data.train), ("valid", data.valid))
            for field in "xyd"}


def one_line_refusal(path: Path, *phrases: str) -> str:
    with pytest.raises(InputError) as refused:
        load_multidomain(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    for phrase in phrases:
        assert phrase in message, message
    return message


def pickle_of(body: bytes, protocol: int = 2) -> bytes:
    return bytes([0x80, protocol]) + body + b"."


# ---- 1: nesting -----------------------------------------------------------------------------------------


def nested(kind: str, depth: int):
    """None inside `depth` levels of tuples, lists or dicts."""
    value = None
    for _ in range(depth):
        value = (value,) if kind == "tuple" else [value] if kind == "list" else {"k": value}
    return value


@SETTINGS
@given(kind=st.sampled_from(["tuple", "list", "dict"]), depth=st.integers(0, 3 * pickle_scan.MAX_DEPTH),
       as_key=st.booleans())
@example(kind="tuple", depth=pickle_scan.MAX_DEPTH - 1, as_key=True)
@example(kind="tuple", depth=pickle_scan.MAX_DEPTH, as_key=True)
def test_objects_nested_deeper_than_the_limit_are_refused_before_they_are_built(kind, depth, as_key):
    """The dict that holds them is one level more; a tuple can be a key, whose hash recurses in C."""
    inner = nested("tuple" if as_key else kind, depth)
    payload = {inner: 1} if as_key else {"x_train": inner}
    raw = pickle.dumps(payload, protocol=2)
    if depth + 1 > pickle_scan.MAX_DEPTH:
        with pytest.raises(safe_pickle.PickleProblem, match=f"nest more than {pickle_scan.MAX_DEPTH} levels deep"):
            safe_pickle.load(raw)
    else:
        assert safe_pickle.load(raw) == payload


def deep_tuple_key_pickle(depth: int = 200_000) -> bytes:
    """A dict whose key is a tuple nested `depth` deep (200 KB): hashing it overflowed the C stack."""
    return pickle_of(b"}" + b"N" + b"\x85" * depth + b"Ns")


def kdtrack_process(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    return subprocess.run([sys.executable, "-m", "kdtrack", *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def assert_refused_in_one_line(result: subprocess.CompletedProcess, cwd: Path, *phrases: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdtrack: error: ") and "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert not (cwd / "mlflow.db").exists() or _no_runs(cwd), "a run was opened"


def _no_runs(cwd: Path) -> bool:
    from servers import all_runs

    return all_runs(f"sqlite:///{cwd / 'mlflow.db'}") == []


def test_a_tuple_key_nested_200000_deep_is_one_line_not_a_segfault(tmp_path):
    """As `baseline --data` and as a CIFAR `meta` file (both were exit 139, nothing on stderr)."""
    (tmp_path / "deep.pkl").write_bytes(deep_tuple_key_pickle())
    result = kdtrack_process(["baseline", "--data", "deep.pkl", "--seeds", "0", "--epochs", "2"], tmp_path)
    assert_refused_in_one_line(result, tmp_path, "deep.pkl: refused before loading", "nest more than 100 levels")
    folder = write_cifar100_folder(tmp_path / "cifar", n_train=12, n_test=6, n_classes=3)
    (folder / "meta").write_bytes(deep_tuple_key_pickle())
    result = kdtrack_process(["train-teacher", "--dataset", "cifar100", "--data", str(folder), "--seeds", "0",
                              "--epochs", "1"], tmp_path)
    assert_refused_in_one_line(result, tmp_path, f"{folder / 'meta'}: refused before loading")


# ---- 2: memory ---------------------------------------------------------------------------------------------


def budget(size: int) -> int:
    return max(pickle_scan.MIN_BUDGET, pickle_scan.MAX_COST_PER_BYTE * size)


@SETTINGS
@given(index=st.integers(0, 2**32 - 1), opcode=st.sampled_from(["LONG_BINPUT", "PUT"]))
@example(index=2**27, opcode="LONG_BINPUT")
@example(index=2**30, opcode="PUT")
def test_a_memo_index_costs_its_memory_before_the_memo_grows(index, opcode):
    """A 9-byte file with LONG_BINPUT 2**27 made the C unpickler allocate and zero 2 GB before refusing it."""
    put = b"r" + struct.pack("<I", index) if opcode == "LONG_BINPUT" else b"p%d\n" % index
    raw = pickle_of(b"N" + put)
    if 16 * (index + 1) + 8 > budget(len(raw)):
        with pytest.raises(safe_pickle.PickleProblem, match="refused before loading: loading it would take more than"):
            safe_pickle.load(raw)
    else:
        assert safe_pickle.load(raw) is None


N = 2_000_000
CODECS = b"\x8c\x07_codecs\x94\x8c\x06encode\x94\x93\x94"
TEXT = "a" * 100_000


def _latin1_copies() -> bytes:
    """One 100 KB text, then _codecs.encode(text, 'latin1') again and again, 7 bytes a copy of 100 KB."""
    head = b"\x80\x04" + CODECS + b"X" + struct.pack("<I", len(TEXT)) + TEXT.encode() + b"\x94\x8c\x06latin1\x94("
    return head + b"h\x02h\x03h\x04\x86R" * ((N - len(head)) // 8) + b"l."


def _npz(declared_shape: tuple, holds: int) -> bytes:
    """An .npz whose x_train's header declares `declared_shape` of float64 and which holds `holds` bytes of it."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": declared_shape})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("x_train.npy", header.getvalue() + bytes(holds))
    return out.getvalue()


BOMBS = {
    # name: (the file, a phrase of its refusal, or None where it loads as something that is not the schema)
    "memo 2**27": (pickle_of(b"Nr" + struct.pack("<I", 2**27)), "would take more than"),
    "memo 2**30": (pickle_of(b"Nr" + struct.pack("<I", 2**30)), "would take more than"),
    "empty sets": (pickle_of(b"\x8f" * N, protocol=4), "would take more than"),
    "empty dicts": (pickle_of(b"}" * N), "would take more than"),
    "empty lists": (pickle_of(b"]" * N), "would take more than"),
    "marks": (pickle_of(b"(" * N + b"N"), None),
    "nones": (pickle_of(b"N" * N), None),
    "memoized": (pickle_of(b"N" + b"\x94" * N, protocol=4), None),
    "references": (pickle_of(b"N\x940](" + b"h\x00" * (N // 2) + b"e"), None),  # a list of a million Nones
    "latin1 copies": (_latin1_copies(), "would take more than"),
    "deep tuple key": (deep_tuple_key_pickle(), "nest more than"),
    "npz declaring 8 GB": (_npz((2**29, 2), 16), "declares shape (536870912, 2) of float64"),
}


def legit_files(folder: Path) -> dict[str, tuple[Path, int]]:
    """Real-shaped files: a dataset of the assignment's size as a pickle and as an .npz, and a generated CIFAR
    folder's train and meta files; with the bytes of the arrays each declares."""
    save_multidomain(make_multidomain(1.0, 0, n_train=24_000, n_valid=3_000, name="large"), folder / "large.pkl")
    save_multidomain(make_multidomain(1.0, 0, n_train=24_000, n_valid=3_000, name="large"), folder / "large.npz")
    cifar = write_cifar100_folder(folder / "cifar", n_train=2_000, n_test=10, n_classes=100)
    npz_arrays = 27_000 * (16 + 8 + 8)
    return {"data pickle": (folder / "large.pkl", 0), "data npz": (folder / "large.npz", npz_arrays),
            "cifar train": (cifar / "train", 0), "cifar meta": (cifar / "meta", 0)}


MEASURE = textwrap.dedent("""
    import ctypes, gc, json, resource, sys
    from kdtrack.errors import InputError
    from kdtrack.images.data import _read_dict
    from kdtrack.multidomain.data import load_multidomain

    def status(key):
        return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key + ":"))

    out = {}
    for name, path, kind, allowance in json.loads(sys.argv[1]):
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        open("/proc/self/clear_refs", "w").write("5")  # the peak RSS from here
        before = status("VmHWM")
        resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + allowance, resource.RLIM_INFINITY))
        try:
            result = "loaded"
            if kind == "cifar":
                _read_dict(__import__("pathlib").Path(path), ())
            else:
                load_multidomain(path)
        except InputError as error:
            result = str(error)
        except MemoryError:
            result = "MemoryError"
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        out[name] = [status("VmHWM") - before, result]
    print(json.dumps(out))
""")
SLACK = 64 * 2**20
"""Beyond the budget: the interpreter's own growth (modules imported on first use, allocator arenas)."""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures peak memory through Linux's /proc")
def test_loading_a_file_of_n_bytes_takes_at_most_16_n_plus_its_declared_arrays(tmp_path):
    """Each file is loaded in one process under an address-space limit of its budget (MAX_COST_PER_BYTE per
    byte, plus the arrays an .npz header declares, plus SLACK), and its peak resident memory is measured: the
    bombs are refused within it, the real-shaped files load within it."""
    cases = []
    for name, (raw, _) in BOMBS.items():
        path = tmp_path / f"{name.replace(' ', '_')}.{'npz' if name.startswith('npz') else 'pkl'}"
        path.write_bytes(raw)
        cases.append((name, str(path), "data", budget(len(raw)) + SLACK))
    for name, (path, declared) in legit_files(tmp_path).items():
        size = path.stat().st_size
        cases.append((name, str(path), "cifar" if name.startswith("cifar") else "data", budget(size) + declared + SLACK))
    result = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(cases)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout)
    for name, _, _, allowance in cases:
        peak, outcome = measured[name]
        assert peak <= allowance, f"{name}: {peak:,} bytes at peak, more than {allowance:,}"
        assert outcome != "MemoryError", name
        phrase = BOMBS[name][1] if name in BOMBS else None
        if name in BOMBS and phrase:
            assert phrase in outcome, (name, outcome)
        elif name in BOMBS:
            assert "expected a dict of numpy arrays" in outcome, (name, outcome)
        else:
            assert outcome == "loaded" or "missing" in outcome, (name, outcome)  # meta and train: keys of their own


# ---- what is not a regular file -------------------------------------------------------------------------------


def test_dev_zero_a_fifo_a_directory_and_a_file_over_the_limit_are_refused_unread(tmp_path):
    fifo = tmp_path / "fifo.pkl"
    os.mkfifo(fifo)
    one_line_refusal(fifo, "is not a regular file but a FIFO")  # opened without waiting for a writer
    one_line_refusal(Path("/dev/zero"), "is not a regular file but a character device")
    one_line_refusal(tmp_path, "is a directory")
    huge = tmp_path / "huge.pkl"
    with huge.open("wb") as file:
        file.truncate(files.MAX_BYTES + 1)  # sparse: nothing is written, and nothing must be read
    one_line_refusal(huge, f"is {files.MAX_BYTES + 1:,} bytes, more than the {files.MAX_BYTES:,}")


def test_a_fifo_as_data_does_not_hang_the_command(tmp_path):
    os.mkfifo(tmp_path / "fifo.pkl")
    result = kdtrack_process(["baseline", "--data", "fifo.pkl", "--seeds", "0", "--epochs", "2"], tmp_path)
    assert_refused_in_one_line(result, tmp_path, "fifo.pkl: is not a regular file but a FIFO")


def test_a_cifar_part_that_is_dev_zero_is_refused(tmp_path):
    folder = write_cifar100_folder(tmp_path / "cifar", n_train=12, n_test=6, n_classes=3)
    (folder / "meta").unlink()
    (folder / "meta").symlink_to("/dev/zero")
    with pytest.raises(InputError, match="meta: is not a regular file but a character device"):
        load_cifar100(folder)


# ---- 9: the allowed globals ----------------------------------------------------------------------------------


def global_op(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def short_text(text: str) -> bytes:
    return b"X" + struct.pack("<I", len(text.encode())) + text.encode()


@SETTINGS
@given(name=st.sampled_from(sorted(safe_pickle._ALLOWED_GLOBALS)),
       attribute=st.sampled_from(["__defaults__", "__code__", "__call__", "_make", "spec", "__class__", "x"]),
       as_slot=st.booleans())
def test_a_pickle_cannot_set_attributes_of_what_the_loader_allows(name, attribute, as_slot):
    """BUILD sets attributes of the object it is given: here one of the loader's own globals. It is refused,
    and the globals are as they were (the next file is read as before)."""
    before = {key: (value, dir(value)) for key, value in safe_pickle._ALLOWED_GLOBALS.items()}
    state = b"}" + short_text(attribute) + b"K\x01s"
    state = b"N" + state + b"\x86" if as_slot else state
    raw = pickle_of(global_op(*name) + state + b"b")
    with pytest.raises(safe_pickle.PickleProblem):
        safe_pickle.load(raw)
    assert isinstance(safe_pickle._ALLOWED_GLOBALS, MappingProxyType)
    assert {key: (value, dir(value)) for key, value in safe_pickle._ALLOWED_GLOBALS.items()} == before
    assert safe_pickle.load(pickle.dumps({"a": np.arange(3)}, protocol=2))["a"].shape == (3,)


# ---- 5: dtypes and what messages quote ------------------------------------------------------------------------


class Reduces:
    """Pickles as the reduce tuple it is given."""

    def __init__(self, reduced: tuple):
        self.reduced = reduced

    def __reduce__(self):
        return self.reduced


def array_with_dtype(spec: object, state: object = (3, "<", None, None, None, -1, -1, 0)) -> Reduces:
    """A float array of 3 values whose pickled dtype is numpy.dtype(spec) with BUILD `state`."""
    reconstruct = np.empty(0).__reduce__()[0]
    dtype = Reduces((np.dtype, (spec, False, True), state))
    return Reduces((reconstruct, (np.ndarray, (0,), b"b"), (1, (3,), dtype, False, np.arange(3.0).tobytes())))


SPECS = st.recursive(st.one_of(st.text(max_size=6), st.binary(max_size=6), st.integers(), st.none(), st.floats()),
                     lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner)), max_leaves=6)


@SETTINGS
@given(spec=SPECS, state=st.one_of(st.just((3, "<", None, None, None, -1, -1, 0)), SPECS))
@example(spec=nested("list", 2 * pickle_scan.MAX_DEPTH), state=(3, "<"))
@example(spec=[("a", [("b", "f8")])], state=(3, "<"))
def test_any_pickled_dtype_spec_is_a_plain_dtype_or_one_line(tmp_path_factory, spec, state):
    """A deeply nested spec raised RecursionError; any spec and any BUILD state is a float array or one line."""
    path = tmp_path_factory.mktemp("dtype") / "d.pkl"
    payload = arrays()
    payload["x_train"] = array_with_dtype(spec, state)
    try:
        raw = pickle.dumps(payload, protocol=2)
    except RecursionError:  # deeper than pickle itself writes
        return
    path.write_bytes(raw)
    try:
        load_multidomain(path)
    except InputError as error:
        assert "\n" not in str(error) and len(str(error)) < 600, str(error)[:2000]


@pytest.mark.parametrize("made, phrase", [(b")\x81", "NEWOBJ class argument must be a type"),
                                          (b")R", "x_train is a corrupt numpy array (bad dtype None)")])
def test_a_dtype_built_without_its_arguments_is_one_line(tmp_path, made, phrase):
    """NEWOBJ, or a call without arguments (was: '_PickledDtype' object has no attribute 'spec')."""
    reconstruct = global_op("numpy.core.multiarray", "_reconstruct")
    state = b"(K\x01K\x03\x85" + global_op("numpy", "dtype") + made + b"\x89" + short_text("x" * 24) + b"tb"
    array = reconstruct + global_op("numpy", "ndarray") + b"K\x00\x85C\x01b\x87R" + state
    path = tmp_path / "newobj.pkl"
    others = {key: value for key, value in arrays().items() if key != "x_train"}
    path.write_bytes(pickle.dumps(others, protocol=2)[:-1] + short_text("x_train") + array + b"s.")
    one_line_refusal(path, phrase)


CRAFTED_MB = {
    # a 1 MB crafted file whose error quoted it whole (a 6 MB line)
    "a dtype named by 1 MB": lambda: pickle.dumps({**arrays(), "x_train": array_with_dtype("f" * 2**20)}, protocol=2),
    "a global named by 1 MB": lambda: pickle_of(global_op("m" * 2**20, "x") + b")R"),
    "a dtype state of 1 MB": lambda: pickle.dumps({**arrays(), "x_train": array_with_dtype("f8", (3, "<" * 2**20))},
                                                  protocol=2),
}


@pytest.mark.parametrize("kind", CRAFTED_MB)
def test_what_a_message_quotes_of_a_file_is_short(tmp_path, kind):
    path = tmp_path / "crafted.pkl"
    path.write_bytes(CRAFTED_MB[kind]())
    assert len(one_line_refusal(path)) < 600


# ---- 8: benign files say what they are ---------------------------------------------------------------------------


class Py2Pickler(pickle._Pickler):
    """Writes text and bytes as Python 2's str (BINSTRING), as Python 2 wrote the real files of its time."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def python2_pickle(payload: object) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(payload)
    return buffer.getvalue()


def test_a_python2_pickle_of_the_schema_loads(tmp_path):
    """Was 'truncated or corrupt pickle': its arrays' bytes are Python 2 str, read as latin1 as numpy advises."""
    payload = arrays()
    raw = python2_pickle(payload)
    written = {opcode.name for opcode, _, _ in pickletools.genops(raw)}
    assert "BINSTRING" in written and not written & {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES"}
    path = tmp_path / "py2.pkl"
    path.write_bytes(raw)
    data = load_multidomain(path)
    np.testing.assert_array_equal(data.train.x, payload["x_train"])
    np.testing.assert_array_equal(data.valid.d, payload["d_valid"])


def test_an_empty_array_pickled_at_protocol_2_loads():
    """numpy stores its empty data as bytes(), once refused as if it were an attack ('__builtin__.bytes')."""
    loaded = safe_pickle.load(pickle.dumps({"a": np.zeros((0, 2))}, protocol=2))
    assert safe_pickle.to_numpy("a", loaded["a"]).shape == (0, 2)
    with pytest.raises(safe_pickle.PickleProblem, match="bytes\\(\\) with arguments"):
        safe_pickle.load(pickle_of(global_op("__builtin__", "bytes") + b"J\x00\x00\x00\x40\x85R"))  # bytes(2**30)


def test_an_npz_of_object_arrays_says_so(tmp_path):
    """Was 'truncated or corrupt .npz file'."""
    payload = arrays()
    payload["x_train"] = payload["x_train"].astype(object)
    path = tmp_path / "objects.npz"
    np.savez(path, **payload)
    one_line_refusal(path, "x_train holds Python objects (dtype object), which kdtrack does not load from an .npz")


def test_an_npz_whose_header_declares_more_than_it_holds_is_refused_before_allocating(tmp_path):
    path = tmp_path / "lies.npz"
    path.write_bytes(_npz((2**40, 2), 16))
    one_line_refusal(path, "declares shape (1099511627776, 2) of float64", "and holds 16")


def test_a_refused_global_says_why(tmp_path):
    path = tmp_path / "ordered.pkl"
    path.write_bytes(pickle.dumps(__import__("collections").OrderedDict(arrays()), protocol=2))
    one_line_refusal(path, "refused to load 'collections.OrderedDict': a data pickle may hold only numpy arrays "
                     "of numbers and plain containers")
