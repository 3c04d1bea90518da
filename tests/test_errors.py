"""Bad input at the command level: every broken data file, bad option and bad --teachers run id ends in one
line `kdtrack: error: ...` on stderr, exit code 2, no traceback, and no run in the store; an interrupted
command exits 130 and leaves its runs FAILED, not RUNNING (DESIGN.md, "Data contract")."""
import contextlib
import importlib
import io
import os
import pickle
import pkgutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

import kdtrack.engine
import kdtrack.multidomain.cells
from kdtrack.cli import main
from kdtrack.multidomain import make_multidomain, save_multidomain

COMMANDS = ["baseline", "teachers", "distill"]
SMALL_RUN = ["--seeds", "0", "--epochs", "2"]


# ---- the store -------------------------------------------------------------------------------


@contextlib.contextmanager
def current_store(uri: str):
    """Make `uri` MLflow's current tracking URI for a while. Setting the env var alone is not enough once
    another test module has called mlflow.set_tracking_uri, which takes precedence over it."""
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture()
def store(tracking_uri):
    with current_store(tracking_uri):
        yield tracking_uri


def all_runs(uri: str) -> list:
    """Every run of every experiment, deleted ones included. A SQLite store that was never created holds
    none (and opening it here would create it)."""
    if not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    client = MlflowClient(uri)
    experiments = [experiment.experiment_id for experiment in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=10000)


def run_ids(uri: str) -> set[str]:
    return {run.info.run_id for run in all_runs(uri)}


def assert_none_running(uri: str) -> None:
    assert [run.info.run_id for run in all_runs(uri) if run.info.status == "RUNNING"] == []


# ---- invoking commands -----------------------------------------------------------------------


def invoke(argv: list[str], capsys) -> tuple[int, str]:
    """Run a command in-process; its exit code and what it wrote on stderr."""
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


def trained(argv: list[str]) -> str:
    """Run a command that must succeed; the parent run id it prints last."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
    return out.getvalue().split()[-1]


def assert_one_error_line(err: str, *phrases: str) -> None:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("kdtrack: error: "), err
    for phrase in phrases:
        assert phrase in lines[0]


# ---- broken data files -----------------------------------------------------------------------


def small_arrays() -> dict:
    """The pickle schema of a small generated dataset: 20 train and 10 valid points per domain."""
    data = make_multidomain(1.0, 0, n_train=60, n_valid=30)
    return {f"{field}_{name}": getattr(split, field)
            for name, split in (("train", data.train), ("valid", data.valid)) for field in "xyd"}


def write_small(folder: Path, name: str = "small.pkl", **options) -> str:
    path = folder / name
    save_multidomain(make_multidomain(1.0, 0, n_train=60, n_valid=30, **options), path)
    return str(path)


def pickled(change):
    """A writer of the small dataset's arrays, as changed by `change`, pickled like the real files."""
    return lambda path: path.write_bytes(pickle.dumps(change(small_arrays()), protocol=3))


def replaced(key: str, change):
    return lambda arrays: {**arrays, key: change(arrays[key].copy())}


def item_set(index, value):
    def change(array: np.ndarray) -> np.ndarray:
        array[index] = value
        return array

    return change


def without(key: str):
    return lambda arrays: {name: value for name, value in arrays.items() if name != key}


def without_valid_domain(domain: int):
    def change(arrays: dict) -> dict:
        keep = arrays["d_valid"] != domain
        return {**arrays, **{f"{field}_valid": arrays[f"{field}_valid"][keep] for field in "xyd"}}

    return change


def marker(path: Path) -> Path:
    """The file a hostile pickle beside `path` would create."""
    return path.parent / "pwned"


def shell_pickle(path: Path) -> bytes:
    """A protocol-0 pickle that calls os.system("touch <marker>") when loaded by pickle.load."""
    return b"cos\nsystem\n(Vtouch " + str(marker(path)).encode() + b"\ntR."


def truncated(path: Path) -> None:
    whole = pickle.dumps(small_arrays(), protocol=3)
    path.write_bytes(whole[: len(whole) // 2])


BROKEN_FILES = {
    # kind: (writes the file at path, or not at all; a phrase of its error message)
    "missing key": (pickled(without("d_valid")), "missing key 'd_valid'"),
    "wrong shape": (pickled(replaced("x_train", lambda x: x[:, :1])), "x_train has shape (60, 1), expected (N, 2)"),
    "NaN": (pickled(replaced("x_valid", item_set((4, 0), np.nan))), "x_valid has NaN"),
    "labels outside 0,1": (pickled(replaced("y_train", item_set(7, 3))), "y_train has labels outside {0, 1}: 3"),
    "length mismatch": (pickled(replaced("y_valid", lambda y: y[:-1])), "valid split lengths disagree"),
    "domain absent from validation": (pickled(without_valid_domain(1)), "training domain 1 absent from validation"),
    "not a dict": (pickled(lambda arrays: list(arrays.values())), "expected a dict of numpy arrays, got list"),
    "strings": (pickled(replaced("x_train", lambda x: x.astype(str))), "x_train has dtype '<U"),
    "shell command": (lambda path: path.write_bytes(shell_pickle(path)), "refused to load 'os.system'"),
    "truncated": (truncated, "truncated or corrupt pickle"),
    "empty": (lambda path: path.write_bytes(b""), "file is empty"),
    "missing path": (lambda path: None, "no such file"),
}


def test_the_shell_pickle_really_runs_a_command(tmp_path):
    """The hostile file is live: the standard unpickler runs it. So its marker's absence below means
    kdtrack did not."""
    path = tmp_path / "evil.pkl"
    pickle.loads(shell_pickle(path))
    assert marker(path).exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", BROKEN_FILES)
def test_broken_data_file_is_one_error_line_and_no_run(store, tmp_path, capsys, command, kind):
    write, phrase = BROKEN_FILES[kind]
    path = tmp_path / "bad.pkl"
    write(path)
    code, err = invoke([command, "--data", str(path), *SMALL_RUN], capsys)
    assert code == 2
    assert_one_error_line(err, f"kdtrack: error: {path}: ", phrase)
    assert all_runs(store) == []
    assert not marker(path).exists()


def test_distill_refuses_a_validation_domain_without_teachers(store, tmp_path, capsys):
    arrays = small_arrays()
    arrays["d_valid"] = np.where(arrays["d_valid"] == 2, 3, arrays["d_valid"])
    arrays["d_valid"][0] = 2  # keep every training domain in validation, so that the loader accepts it
    path = tmp_path / "extra_domain.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=3))
    code, err = invoke(["distill", "--data", str(path), *SMALL_RUN], capsys)
    assert code == 2
    assert_one_error_line(err, str(path), "validation domain(s) [3] have no training data")
    assert all_runs(store) == []


def test_a_real_process_prints_one_line_and_exits_2(tmp_path):
    missing = tmp_path / "absent.pkl"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    result = subprocess.run([sys.executable, "-m", "kdtrack", "baseline", "--data", str(missing)],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert_one_error_line(result.stderr, f"{missing}: no such file")
    assert all_runs(env["MLFLOW_TRACKING_URI"]) == []


# ---- bad options -----------------------------------------------------------------------------


BAD_OPTIONS = [
    # (command, options, a phrase of the one error line)
    ("distill", ["--alpha", "1.5"], "alpha must lie in [0, 1], got 1.5"),
    ("distill", ["--temperature", "0"], "temperature must be a positive finite number, got 0"),
    ("baseline", ["--seeds", "0,0"], "seeds must not repeat, got '0,0'"),
    ("baseline", ["--seeds", "a,b"], "seeds must be comma-separated integers, got 'a,b'"),
    ("baseline", ["--selection-fraction", "1.5"], "selection-fraction must lie in (0, 1), got 1.5"),
    ("baseline", ["--lr", "-1"], "lr must be a positive finite number, got -1"),
    ("baseline", ["--log-every", "-1"], "log-every must be 0 (auto) or positive, got -1"),
    ("baseline", ["--selection-seed", "-1"], "selection-seed must lie in [0, 2**32), got -1"),
    ("baseline", ["--seeds", str(2**64)], "seeds must lie in [0, 2**32)"),
    ("baseline", ["--lr", "inf"], "lr must be a positive finite number, got inf"),
    ("distill", ["--temperature", "inf"], "temperature must be a positive finite number, got inf"),
    # on 60 points every domain x class group rounds to 0 held out, or is held out whole
    ("baseline", ["--selection-fraction", "0.01"], "leaves the selection split without samples of domain(s) [0, 1, 2]"),
    ("teachers", ["--selection-fraction", "0.99"], "leaves the fit split without samples of domain(s) [0, 1, 2]"),
]

ARGPARSE_ERRORS = [
    # (command, options, the option its usage error names)
    ("baseline", ["--epochs", "0"], "--epochs"),
    ("distill", ["--method", "fitnets"], "--method"),
    ("baseline", ["--hidden", "20,0"], "--hidden"),
    ("teachers", ["--epochs", "2.5"], "--epochs"),
    ("baseline", ["--batch-norm", "maybe"], "--batch-norm"),
    ("baseline", ["--epochs", "inf"], "--epochs"),
]


@pytest.mark.parametrize(("command", "options", "phrase"), BAD_OPTIONS)
def test_bad_option_is_one_error_line_and_no_run(store, tmp_path, capsys, command, options, phrase):
    data = write_small(tmp_path)
    code, err = invoke([command, "--data", data, *SMALL_RUN, *options], capsys)
    assert code == 2
    assert_one_error_line(err, phrase)
    assert all_runs(store) == []


def one_domain2_sample(arrays: dict) -> dict:
    keep = (arrays["d_train"] != 2) | (np.arange(len(arrays["d_train"])) == np.flatnonzero(arrays["d_train"] == 2)[0])
    return {**arrays, **{f"{field}_train": arrays[f"{field}_train"][keep] for field in "xyd"}}


@pytest.mark.parametrize("command", COMMANDS)
def test_batch_norm_needs_two_samples_per_domain(store, tmp_path, capsys, command):
    """One sample has no variance to normalise by; without the check the running variance is inf."""
    path = tmp_path / "lonely.pkl"
    pickled(one_domain2_sample)(path)
    options = ["--selection", "validation", "--batch-norm"]
    code, err = invoke([command, "--data", str(path), *SMALL_RUN, *options], capsys)
    assert code == 2
    assert_one_error_line(err, "batch norm needs 2 fit samples per domain, and the fit split has fewer of "
                          "domain(s) [2] in 'lonely'")
    assert all_runs(store) == []
    code, _ = invoke([command, "--data", str(path), *SMALL_RUN, "--selection", "validation"], capsys)
    assert code == 0


@pytest.mark.parametrize("hidden", ["20,0", "20,x", ""])
def test_bad_hidden_sizes_keep_their_own_message(store, tmp_path, capsys, hidden):
    with pytest.raises(SystemExit):
        main(["baseline", "--data", write_small(tmp_path), *SMALL_RUN, "--hidden", hidden])
    assert f"argument --hidden: hidden sizes must be positive integers, got {hidden!r}" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "options", "option"), ARGPARSE_ERRORS)
def test_option_refused_by_argparse_exits_2_naming_it(store, tmp_path, capsys, command, options, option):
    data = write_small(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main([command, "--data", data, *SMALL_RUN, *options])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}" in err and "Traceback" not in err
    assert all_runs(store) == []


def test_deleted_experiment_is_one_error_line_and_no_run(store, tmp_path, capsys):
    client = MlflowClient(store)
    client.delete_experiment(client.create_experiment("gone"))
    data = write_small(tmp_path)
    code, err = invoke(["baseline", "--data", data, *SMALL_RUN, "--experiment-name", "gone"], capsys)
    assert code == 2
    assert_one_error_line(err, "'gone'")
    assert all_runs(store) == []


# ---- bad --teachers run ids --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory):
    """A store with a baseline and a teachers run, seed 0 only, on the small dataset."""
    folder = tmp_path_factory.mktemp("trained")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    data = write_small(folder)
    with pytest.MonkeyPatch.context() as patch, current_store(uri):
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        ids = {command: trained([command, "--data", data, *SMALL_RUN]) for command in ("baseline", "teachers")}
    return {"uri": uri, "folder": folder, "data": data, **ids}


@pytest.fixture()
def in_trained_store(trained_store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_store["uri"])
    monkeypatch.chdir(trained_store["folder"])
    with current_store(trained_store["uri"]):
        yield trained_store


def other_data(folder: Path) -> str:
    """The small dataset drawn with another seed."""
    path = folder / "other.pkl"
    save_multidomain(make_multidomain(1.0, 1, n_train=60, n_valid=30), path)
    return str(path)


BAD_TEACHERS = {
    # case: (the --teachers run id, --seeds, --data other than the teachers', phrases of the error)
    "no such run": (lambda runs: "0123456789abcdef0123456789abcdef", "0", False, ["not found in the tracking store"]),
    "a baseline run": (lambda runs: runs["baseline"], "0", False, ["names no teacher", "kdtrack.task 'baseline'"]),
    "a seed missing": (lambda runs: runs["teachers"], "0,10", False,
                       ["has no finished teacher of", "seed 10 domain 0", "seed 10 domain 2"]),
    "other data": (lambda runs: runs["teachers"], "0", True, ["trained on other data"]),
}


@pytest.mark.parametrize("case", BAD_TEACHERS)
def test_bad_teachers_run_is_one_error_line_and_no_new_run(in_trained_store, capsys, case):
    teachers_of, seeds, other, phrases = BAD_TEACHERS[case]
    runs = in_trained_store
    teachers = teachers_of(runs)
    data = other_data(runs["folder"]) if other else runs["data"]
    before = run_ids(runs["uri"])
    code, err = invoke(["distill", "--data", data, "--seeds", seeds, "--epochs", "2", "--teachers", teachers], capsys)
    assert code == 2
    assert_one_error_line(err, f"run {teachers}: ", *phrases)
    assert run_ids(runs["uri"]) == before
    assert_none_running(runs["uri"])


# ---- interruption ----------------------------------------------------------------------------


def interrupt_training(monkeypatch) -> None:
    """Make the training engine raise KeyboardInterrupt, as Ctrl-C would, in every task that calls it."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    patched = []
    for info in pkgutil.iter_modules(kdtrack.multidomain.cells.__path__):
        module = importlib.import_module(f"kdtrack.multidomain.cells.{info.name}")
        if getattr(module, "train", None) is kdtrack.engine.train:
            monkeypatch.setattr(module, "train", interrupted)
            patched.append(module.__name__)
    assert patched, "no cell module calls kdtrack.engine.train"


@pytest.mark.parametrize(("command", "tasks"), [
    ("baseline", ["baseline"]),
    ("teachers", ["teachers"]),
    ("distill", ["teachers"]),  # the teachers a student needs train first, in a run of their own
])
def test_interrupted_command_exits_130_and_its_runs_end_failed(store, tmp_path, capsys, monkeypatch, command, tasks):
    data = write_small(tmp_path)
    interrupt_training(monkeypatch)
    code, err = invoke([command, "--data", data, *SMALL_RUN], capsys)
    assert code == 130
    assert "interrupted" in err and "Traceback" not in err
    runs = all_runs(store)
    assert sorted(run.data.tags["kdtrack.task"] for run in runs) == sorted(tasks)
    assert {run.info.status for run in runs} == {"FAILED"}
    assert mlflow.active_run() is None
