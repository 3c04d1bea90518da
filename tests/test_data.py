import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from kdtrack.multidomain import (
    REQUIRED_KEYS,
    MultiDomainData,
    load_multidomain,
    make_multidomain,
    save_multidomain,
)
from kdtrack.multidomain.generate import DISK_RADIUS, domain_centres
from kdtrack.errors import InputError

REAL_FILES = ["data.pkl", "data_d0.75.pkl", "data_d0.5.pkl", "data_d0.25.pkl"]


def small_arrays() -> dict:
    """The pickle schema of a small generated dataset: 10 train and 5 valid points per domain."""
    data = make_multidomain(1.0, seed=0, n_train=30, n_valid=15)
    arrays = {}
    for name, split in (("train", data.train), ("valid", data.valid)):
        arrays.update({f"x_{name}": split.x.astype(np.float64), f"y_{name}": split.y, f"d_{name}": split.d})
    return arrays


def write_pickle(path: Path, payload: object) -> Path:
    path.write_bytes(pickle.dumps(payload, protocol=3))
    return path


def assert_refused(path: Path, phrase: str) -> None:
    with pytest.raises(InputError) as caught:
        load_multidomain(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert phrase in message
    assert "\n" not in message


def assert_same(a: MultiDomainData, b: MultiDomainData) -> None:
    for split_a, split_b in ((a.train, b.train), (a.valid, b.valid)):
        for field in ("x", "y", "d"):
            np.testing.assert_array_equal(getattr(split_a, field), getattr(split_b, field))


@pytest.mark.parametrize("filename", REAL_FILES)
def test_real_file_loads(real_data_dir, filename):
    data = load_multidomain(real_data_dir / filename)
    assert data.name == Path(filename).stem
    assert data.domains == [0, 1, 2]
    for split, n in ((data.train, 2400), (data.valid, 300)):
        assert split.x.shape == (n, 2) and split.y.shape == (n,) and split.d.shape == (n,)
        assert (split.x.dtype, split.y.dtype, split.d.dtype) == (np.float32, np.int64, np.int64)


@pytest.mark.parametrize("suffix", [".pkl", ".npz"])
def test_save_and_load_round_trip(tmp_path, suffix):
    data = make_multidomain(0.5, seed=3, n_train=60, n_valid=30, name="gen")
    path = tmp_path / f"gen{suffix}"
    save_multidomain(data, path)
    loaded = load_multidomain(path)
    assert loaded.name == "gen"
    assert_same(loaded, data)


def test_save_into_a_missing_folder_is_an_input_error(tmp_path):
    data = make_multidomain(1.0, seed=0, n_train=30, n_valid=15)
    with pytest.raises(InputError, match="cannot write the file"):
        save_multidomain(data, tmp_path / "absent" / "gen.pkl")


def test_saved_pickle_has_the_real_schema(tmp_path):
    path = tmp_path / "gen.pkl"
    save_multidomain(make_multidomain(1.0, seed=0, n_train=30, n_valid=15), path)
    with path.open("rb") as file:
        payload = pickle.load(file)
    assert set(payload) == set(REQUIRED_KEYS)
    assert payload["x_train"].dtype == np.float64
    assert payload["y_valid"].dtype == payload["d_valid"].dtype == np.int64


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_other_pickle_protocols_and_memory_layouts_load(tmp_path, protocol):
    arrays = small_arrays()
    arrays["x_train"] = np.asfortranarray(arrays["x_train"].astype(">f8"))
    arrays["seed"] = np.int64(0)
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=protocol))
    data = load_multidomain(path)
    np.testing.assert_array_equal(data.train.x, arrays["x_train"].astype(np.float32))
    np.testing.assert_array_equal(data.valid.d, arrays["d_valid"])


class Reduces:
    """Pickles as whatever reduce tuple it is given, to hand-craft a pickle."""

    def __init__(self, reduced: tuple):
        self.reduced = reduced

    def __reduce__(self):
        return self.reduced


def test_dtype_state_from_the_file_is_not_trusted(tmp_path):
    # Flags 63 claim that int64 items are object pointers; numpy's own dtype.__setstate__
    # believes it, after which freeing the array dereferences the domain numbers.
    claims_pointers = Reduces((np.dtype, ("i8", False, True), (3, "<", None, None, None, -1, -1, 63)))
    arrays = small_arrays()
    d_train = arrays["d_train"]
    reconstruct = np.empty(0).__reduce__()[0]
    state = (1, d_train.shape, claims_pointers, False, d_train.tobytes())
    arrays["d_train"] = Reduces((reconstruct, (np.ndarray, (0,), b"b"), state))
    data = load_multidomain(write_pickle(tmp_path / "pointers.pkl", arrays))
    np.testing.assert_array_equal(data.train.d, d_train)


def test_same_seed_same_data_other_seed_other_data():
    first = make_multidomain(1.0, seed=7, n_train=60, n_valid=30)
    assert_same(first, make_multidomain(1.0, seed=7, n_train=60, n_valid=30))
    other = make_multidomain(1.0, seed=8, n_train=60, n_valid=30)
    assert not np.array_equal(first.train.x, other.train.x)
    assert not np.array_equal(first.valid.x, other.valid.x)


def test_validation_is_drawn_apart_from_training():
    small = make_multidomain(1.0, seed=7, n_train=30, n_valid=30)
    large = make_multidomain(1.0, seed=7, n_train=300, n_valid=30)
    np.testing.assert_array_equal(small.valid.x, large.valid.x)


@pytest.mark.parametrize("separation", [1.0, 0.25])
def test_generated_geometry_matches_the_design(separation):
    data = make_multidomain(separation, seed=0)
    centres = domain_centres(separation)
    np.testing.assert_allclose(centres[1], [-2 * separation, 3.4641 * separation], atol=1e-3)
    assert data.domains == [0, 1, 2]
    for split, per_domain in ((data.train, 800), (data.valid, 100)):
        np.testing.assert_array_equal(split.d, np.repeat([0, 1, 2], per_domain))
        for domain, centre in enumerate(centres):
            in_domain = split.d == domain
            radius = np.linalg.norm(split.x[in_domain] - centre, axis=1)
            labels = split.y[in_domain]
            assert radius[labels == 0].max() < DISK_RADIUS + 1e-5
            assert DISK_RADIUS - 1e-5 < radius[labels == 1].min()
            assert radius[labels == 1].max() < 6
            assert 0.35 < labels.mean() < 0.65
    for domain, centre in enumerate(centres):
        np.testing.assert_allclose(data.train.x[data.train.d == domain].mean(axis=0), centre, atol=0.15)


def test_make_multidomain_refuses_unequal_domain_shares():
    with pytest.raises(InputError, match="n-train must be a positive multiple of 3"):
        make_multidomain(1.0, seed=0, n_train=10)


def _drop_domain_2_from_valid(arrays: dict) -> None:
    keep = arrays["d_valid"] != 2
    for key in ("x_valid", "y_valid", "d_valid"):
        arrays[key] = arrays[key][keep]


def _set(key: str, make_value):
    def mutate(arrays: dict) -> None:
        arrays[key] = make_value(arrays[key])

    return mutate


def _with_nan(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[3, 1] = np.nan
    return x


def _with_label_2(y: np.ndarray) -> np.ndarray:
    y = y.copy()
    y[0] = 2
    return y


BROKEN_ARRAYS = {
    "missing key": (lambda arrays: arrays.pop("y_valid"), "missing key 'y_valid'"),
    "wrong shape": (_set("x_train", lambda x: x[:, [0, 1, 1]]), "x_train has shape (30, 3), expected (N, 2)"),
    "nan": (_set("x_valid", _with_nan), "x_valid has NaN"),
    "labels": (_set("y_train", _with_label_2), "y_train has labels outside {0, 1}: 2"),
    "length mismatch": (_set("d_train", lambda d: d[:-1]), "train split lengths disagree"),
    "domain absent": (_drop_domain_2_from_valid, "training domain 2 absent from validation"),
    "strings": (_set("x_train", lambda x: x.astype(str)), "x_train has dtype '<U"),
    "objects": (_set("x_train", lambda x: x.astype(object)), "x_train has dtype 'object', expected numbers"),
    "list value": (_set("y_train", lambda y: y.tolist()), "y_train is a list, expected a numpy array"),
    "fractional labels": (_set("y_valid", lambda y: y + 0.5), "y_valid has non-integer values"),
}


@pytest.mark.parametrize("kind", BROKEN_ARRAYS)
def test_broken_pickle_is_refused(tmp_path, kind):
    mutate, phrase = BROKEN_ARRAYS[kind]
    arrays = small_arrays()
    mutate(arrays)
    assert_refused(write_pickle(tmp_path / "bad.pkl", arrays), phrase)


@pytest.mark.parametrize("kind", ["missing key", "nan", "strings"])
def test_broken_npz_is_refused(tmp_path, kind):
    mutate, phrase = BROKEN_ARRAYS[kind]
    arrays = small_arrays()
    mutate(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    assert_refused(path, phrase)


def test_integral_float_labels_are_accepted(tmp_path):
    arrays = small_arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.float64)
    data = load_multidomain(write_pickle(tmp_path / "floats.pkl", arrays))
    assert data.train.y.dtype == np.int64
    np.testing.assert_array_equal(data.train.y, small_arrays()["y_train"])


def test_payload_that_is_not_a_dict_is_refused(tmp_path):
    path = write_pickle(tmp_path / "list.pkl", list(small_arrays().values()))
    assert_refused(path, "expected a dict of numpy arrays, got list")


class RunsAShellCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + str(self.marker),))


def test_pickle_that_runs_a_command_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(RunsAShellCommand(marker)))
    assert_refused(path, f"refused to load '{os.system.__module__}.system'")
    assert not marker.exists()


def test_command_hidden_inside_the_dict_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    arrays = small_arrays()
    arrays["x_train"] = RunsAShellCommand(marker)
    assert_refused(write_pickle(tmp_path / "evil.pkl", arrays), "refused to load")
    assert not marker.exists()


def test_truncated_pickle_is_refused(tmp_path):
    whole = pickle.dumps(small_arrays(), protocol=3)
    path = tmp_path / "half.pkl"
    path.write_bytes(whole[: len(whole) // 2])
    assert_refused(path, "truncated or corrupt pickle")


def test_truncated_npz_is_refused(tmp_path):
    path = tmp_path / "half.npz"
    np.savez(path, **small_arrays())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_refused(path, "truncated or corrupt .npz file")


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.pkl"
    path.write_text("x_train,y_train\n1,2\n")
    assert_refused(path, "not a pickle or .npz file")


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.pkl"
    path.touch()
    assert_refused(path, "file is empty")


def test_missing_path_is_refused(tmp_path):
    assert_refused(tmp_path / "absent.pkl", "no such file")


def test_directory_is_refused(tmp_path):
    assert_refused(tmp_path, "is a directory")
