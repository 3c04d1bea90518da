"""What issue 29's probe found at the command level, each case now one line on stderr with the right exit code
and nothing left in the store (or, for a run that diverges, a FAILED run and no model): training that turns
NaN, another user's dead runs on a server with permissions, tracebacks where one line was promised (bad study
configs, odd data, a full disk, a bogus store, Ctrl-C while workers start), labels that would break MLflow's
search filters, compare trusting a data file replaced since, and what a user could not see (a study whose
results are in another experiment, the same data under two names, a separation no file can hold)."""
from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from kdtrack.cli import main
from kdtrack.distillers import make_distiller
from kdtrack.engine.trainer import run_epochs
from kdtrack.errors import InputError, TrainingDiverged
from cifar_folder import write_cifar100_folder
from kdtrack.multidomain import load_multidomain, make_multidomain, save_multidomain
from kdtrack.multidomain.data import load_if_unchanged
from kdtrack.multidomain.generate import MAX_SEPARATION, _draw, domain_centres
from kdtrack.spine.options import check_label
from kdtrack.spine.study import read_config
from kdtrack.tracking import find_finished
from kdtrack.tracking.connection import quoted, this_host
from servers import MlflowServer
from test_errors import SMALL_RUN, all_runs, assert_one_error_line, invoke, small_arrays, store, write_small  # noqa: F401

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def progress_then_one_error_line(err: str, *phrases: str) -> str:
    """stderr of a command that failed after it began training: progress lines (and MLflow's notes as it
    creates a fresh store), then its one error line."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if " INFO mlflow.store.db.utils: " not in line]
    assert lines and lines[-1].startswith("kdtrack: error: "), err
    assert all(" epochs (" in line for line in lines[:-1]), err
    for phrase in phrases:
        assert phrase in lines[-1], lines[-1]
    return lines[-1]


# ---- 3: NaN ------------------------------------------------------------------------------------------------


@SETTINGS
@given(dtype=st.sampled_from(["float16", "float32", "float64"]),
       value=st.sampled_from([np.inf, -np.inf, np.nan, 6e4, 3e38, 3.5e38, 1e300]), row=st.integers(0, 59))
def test_points_must_be_finite_in_float32(tmp_path_factory, dtype, value, row):
    """float16's infinities passed a check against float32's largest value cast to float16 (itself inf)."""
    arrays = small_arrays()
    x = arrays["x_train"].astype(dtype)
    with np.errstate(over="ignore"):
        x[row, 1] = value
    arrays["x_train"] = x
    path = tmp_path_factory.mktemp("points") / "points.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=3))
    with np.errstate(over="ignore"):
        finite = bool(np.isfinite(x.astype(np.float32)).all())
    if finite:
        np.testing.assert_array_equal(load_multidomain(path).train.x, x.astype(np.float32))
    else:
        with pytest.raises(InputError, match=f"x_train has NaN, infinite or out-of-range values in 1 rows "
                                             f"\\(first at row {row}\\)"):
            load_multidomain(path)


def test_float16_infinities_are_one_line_and_no_run(store, tmp_path, capsys):
    """The probe's case: `baseline` exited 0 with a FINISHED run and a model of NaN weights."""
    arrays = small_arrays()
    arrays["x_train"] = arrays["x_train"].astype(np.float16)
    arrays["x_train"][7, 0] = -np.inf
    path = tmp_path / "half.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=3))
    code, err = invoke(["baseline", "--data", str(path), *SMALL_RUN], capsys)
    assert code == 2
    assert_one_error_line(err, f"{path}: x_train has NaN, infinite or out-of-range values in 1 rows (first at row 7)")
    assert all_runs(store) == []


class Step:
    """A step whose history is all zeros but for one non-finite value at (`bad` epoch, `model`)."""

    def __init__(self, bad: int, model: int, models: int, value: float, weight: float = 0.0):
        self.bad, self.model, self.models, self.value, self.weight = bad, model, models, value, weight
        self.ran: list[tuple[int, int]] = []

    def run(self, first: int, last: int) -> np.ndarray:
        self.ran.append((first, last))
        rows = np.zeros((last - first, 6, self.models), dtype=np.float32)
        if first < self.bad <= last:
            rows[self.bad - 1 - first, 0, self.model] = self.value
        return rows

    def best_epoch(self) -> np.ndarray:
        return np.ones(self.models, dtype=np.int64)

    def snapshot(self, best: bool) -> dict[str, torch.Tensor]:
        return {"layer.weight": torch.full((2, 2), self.weight), "bn.num_batches_tracked": torch.tensor(3)}


@SETTINGS
@given(epochs=st.integers(1, 40), chunk=st.integers(1, 9), data=st.data(), models=st.integers(1, 4),
       value=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_the_loop_stops_at_the_first_non_finite_loss_and_names_its_epoch(epochs, chunk, data, models, value):
    bad = data.draw(st.integers(1, epochs))
    model = data.draw(st.integers(0, models - 1))
    step = Step(bad, model, models, value)
    with pytest.raises(TrainingDiverged, match=f"^training diverged at epoch {bad}: the loss of 1 of {models} model"):
        run_epochs(step, make_distiller("ce", epochs), epochs, chunk, None, True, "torch")
    first, last = step.ran[-1]
    assert first < bad <= last  # nothing after the chunk of the epoch


@pytest.mark.parametrize("weight", [np.nan, np.inf])
def test_a_non_finite_weight_is_divergence_too(weight):
    with pytest.raises(TrainingDiverged, match="the selected checkpoint's layer.weight is not finite"):
        run_epochs(Step(0, 0, 1, 0.0, weight), make_distiller("ce", 3), 3, 2, None, True, "native")


def test_a_run_that_diverges_ends_failed_naming_the_epoch_and_logs_no_model(store, tmp_path, capsys):
    code, err = invoke(["baseline", "--data", write_small(tmp_path), "--seeds", "0,1", "--epochs", "50", "--lr", "1e30"],
                       capsys)
    assert code == 1
    line = progress_then_one_error_line(err, "training diverged at epoch", "so no model is logged")
    assert 1 <= int(re.search(r"at epoch (\d+):", line).group(1)) <= 50
    runs = all_runs(store)
    assert [(run.data.tags["kdtrack.task"], run.info.status) for run in runs] == [("baseline", "FAILED")]
    assert MlflowClient(store).search_logged_models(experiment_ids=[runs[0].info.experiment_id]) == []


# ---- 4: another user's dead runs ----------------------------------------------------------------------------------


@contextmanager
def as_user(monkeypatch, uri: str, user: str, password: str):
    with monkeypatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_TRACKING_USERNAME", user)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        mlflow.set_tracking_uri(uri)
        try:
            yield MlflowClient(uri)
        finally:
            mlflow.set_tracking_uri(None)


ADMIN = ("admin", "kdtrack-test-admin")
BOB = ("bob", "kdtrack-test-bob")


@pytest.fixture(scope="module")
def permissions(tmp_path_factory):
    """`mlflow server --app-name basic-auth` on SQLite: users see each other's runs (READ) and may change only
    their own."""
    folder = tmp_path_factory.mktemp("permissions")
    (folder / "auth.ini").write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{folder / 'users.db'}\n"
                                     "admin_username = admin\nauth_cache_ttl_seconds = 600\nauthorization_function = "
                                     "mlflow.server.auth:authenticate_request_basic_auth\n")
    auth = {"MLFLOW_AUTH_CONFIG_PATH": str(folder / "auth.ini"), "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "kdtrack-test"}
    server = MlflowServer(f"sqlite:///{folder / 'mlflow.db'}", folder, auth).start()
    try:
        yield server.uri
    finally:
        server.stop()


def test_another_users_dead_run_is_left_to_its_owner_said_once(permissions, monkeypatch, capsys, tmp_path):
    """Every command first ends as KILLED the runs that dead processes of its host left RUNNING; bob may not
    end the admin's, so he could no longer write at all (HTTP 403, exit 1). Now it is said once, and his
    command runs."""
    from mlflow.server.auth.client import AuthServiceClient

    ended = subprocess.Popen(["true"])
    ended.wait()
    with as_user(monkeypatch, permissions, *ADMIN) as admin:
        AuthServiceClient(permissions).create_user(*BOB)
        killed = admin.create_run(admin.create_experiment("admin's study"),
                                  tags={"kdtrack.host": this_host(), "kdtrack.pid": str(ended.pid)}).info.run_id
    monkeypatch.chdir(tmp_path)
    with as_user(monkeypatch, permissions, *BOB) as bob:
        bob.create_experiment("bob's")
        code, err = invoke(["compare", "--experiment-name", "bob's"], capsys)
        assert code == 0, err
        left = [line for line in err.splitlines() if "RUNNING" in line]
        assert left == ["kdtrack: left 1 run(s) RUNNING that processes of this host, now gone, had left so: the store "
                        "does not let user 'bob' end them (HTTP 403); their owner's next command ends them"], err
        assert bob.get_run(killed).info.status == "RUNNING"
        compared = bob.search_runs([bob.get_experiment_by_name("bob's").experiment_id])
        assert [run.info.status for run in compared] == ["FINISHED"]
    with as_user(monkeypatch, permissions, *ADMIN) as admin:  # the owner's next command ends it
        code, err = invoke(["compare", "--experiment-name", "admin's study"], capsys)
        assert code == 0 and "ended 1 run(s) as KILLED" in err, err
        assert admin.get_run(killed).info.status == "KILLED"


# ---- 5: one line where a traceback was --------------------------------------------------------------------------------


def one_domain(folder: Path) -> str:
    arrays = small_arrays()
    for split in ("train", "valid"):
        keep = arrays[f"d_{split}"] == 0
        for field in "xyd":
            arrays[f"{field}_{split}"] = arrays[f"{field}_{split}"][keep]
    (folder / "one.pkl").write_bytes(pickle.dumps(arrays, protocol=3))
    return str(folder / "one.pkl")


def cifar(folder: Path, change=None, per_class: int = 4) -> str:
    path = write_cifar100_folder(folder / "cifar", n_train=3 * per_class, n_test=6, n_classes=3)
    if change:
        record = pickle.loads((path / "train").read_bytes())
        change(record)
        (path / "train").write_bytes(pickle.dumps(record, protocol=2))
    return str(path)


def huge_label(record: dict) -> None:
    record[b"fine_labels"][0] = 2**70


CASES = {
    # case: (the command, given a folder with small.pkl, and a phrase of its one line)
    "--epochs 1e19": (lambda f: ["baseline", "--data", "small.pkl", "--seeds", "0", "--epochs", "1e19"],
                      "epochs must lie in [1, 10,000,000], got 10000000000000000000"),
    "kd-mixture on one domain": (lambda f: ["distill", "--method", "kd-mixture", "--data", one_domain(f), *SMALL_RUN],
                                 "method kd-mixture weighs the teachers of at least 2 domains, and the data has 1 (0)"),
    "a CIFAR label of 2**70": (lambda f: ["train-teacher", "--dataset", "cifar100", "--data", cifar(f, huge_label),
                                          "--seeds", "0", "--epochs", "1"],
                               f"fine_labels must lie in 0..2 (meta names 3 classes), got 0..{2**70}"),
    "a CIFAR folder of one image per class": (lambda f: ["train-teacher", "--dataset", "cifar100", "--data",
                                                         cifar(f, per_class=1), "--seeds", "0", "--epochs", "1"],
                                              "holding out 0.1 of each class of 3 images leaves"),
    "compare --out /proc": (lambda f: ["compare", "--out", "/proc"], "/proc: cannot write there"),
    "tune --method kd-mixture on one domain": (lambda f: ["tune", "--method", "kd-mixture", "--data", one_domain(f),
                                                          *SMALL_RUN], "method kd-mixture weighs"),
}


@pytest.mark.parametrize("case", CASES)
def test_what_was_a_traceback_is_one_line_and_no_run(store, tmp_path, capsys, case):
    command, phrase = CASES[case]
    write_small(tmp_path)
    MlflowClient(store).search_experiments()  # a store that exists (MLflow notes creating one on stderr)
    code, err = invoke(command(tmp_path), capsys)
    assert code == 2
    assert_one_error_line(err, phrase)
    assert all_runs(store) == []


def test_an_unknown_tracking_uri_scheme_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://x")
    mlflow.set_tracking_uri("bogus://x")
    try:
        code, err = invoke(["compare"], capsys)
    finally:
        mlflow.set_tracking_uri(None)
    assert code == 2
    assert_one_error_line(err, "tracking store bogus://x: MLflow knows no store of this kind")


@pytest.mark.parametrize("empty, absent", [
    ("train:\nmethods:\n  b: {task: baseline}\n  kd: {}\n", "methods:\n  b: {task: baseline}\n  kd: {}\n"),
    ("methods:\n  kd:\n    distill:\n    train:\n", "methods:\n  kd: {}\n"),
    ("teachers:\n  es:\nmethods:\n  kd: {teachers: es}\n", "teachers: {es: {}}\nmethods:\n  kd: {teachers: es}\n"),
])
def test_a_section_left_empty_is_an_empty_mapping(tmp_path, empty, absent):
    """`train:` or `distill:` left empty raised a TypeError."""
    data = load_multidomain(write_small(tmp_path))
    methods = []
    for text in (empty, absent):
        (tmp_path / "study.yaml").write_text(text)
        methods.append(list(read_config(str(tmp_path / "study.yaml")).method_specs(data.name)))
    assert methods[0] == methods[1]


CONFIGS = {
    # the probe's study configs: (text, a phrase of the one line)
    "epochs: .inf": ("epochs: .inf\nmethods:\n  b: {task: baseline}\n", "epochs must be a whole number, got inf"),
    "selection_seed: .inf": ("train: {selection_seed: .inf}\nmethods:\n  b: {task: baseline}\n",
                             "selection-seed must be a whole number, got inf"),
    "a non-UTF-8 byte": (b"methods:\n  b: {task: baseline}  # \xff\n", "not UTF-8 text (byte 0xff at offset 34)"),
    "hidden: 5": ("train: {hidden: 5}\nmethods:\n  b: {task: baseline}\n", "hidden must be a list of whole numbers, got 5"),
    "hidden: [5, .inf]": ("train: {hidden: [5, .inf]}\nmethods:\n  b: {task: baseline}\n",
                          "hidden must be a whole number, got inf"),
    "batch_norm: maybe": ("train: {batch_norm: maybe}\nmethods:\n  b: {task: baseline}\n",
                          "batch-norm must be true or false, got 'maybe'"),
    "tune.epochs: true": ("tune: {epochs: true}\nmethods:\n  kd: {distill: {alpha: tuned}}\n", "tune.epochs must be"),
    "a label with a quote": ("methods:\n  \"it's\": {task: baseline}\n", "a method's label must be letters"),
    "an int of 5,000 digits": (f"epochs: {'9' * 5000}\nmethods:\n  b: {{task: baseline}}\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", CONFIGS)
def test_a_bad_study_config_is_one_line_and_no_run(store, tmp_path, capsys, case):
    text, phrase = CONFIGS[case]
    write_small(tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, err = invoke(["study", "--config", str(path), "--data", "small.pkl", "--seeds", "0", "--workers", "1"], capsys)
    assert code == 2
    assert_one_error_line(err, f"{path}: ", phrase)
    assert all_runs(store) == []


# ---- 5: a full disk ------------------------------------------------------------------------------------------------------


@contextmanager
def small_disk(folder: Path, size: str):
    """A tmpfs of `size` at `folder` (root only); None where it cannot be mounted."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0 if os.geteuid() == 0 and shutil.which("mount") else False
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> None:
    free = os.statvfs(folder)
    (folder / "filler").write_bytes(bytes(free.f_bavail * free.f_frsize))


def command_process(argv: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdtrack", *argv], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_TRACKING_URI": uri})


def test_a_full_disk_for_artifacts_is_one_line_saying_so(tmp_path):
    """The artifacts of an experiment on a 48 KB disk (88 lines of traceback before). No FINISHED run lacks its
    files. Without a disk to fill (not root), the copy fails as a full disk's does."""
    write_small(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with small_disk(tmp_path / "artifacts", "48k") as disk:
        MlflowClient(uri).create_experiment("full", artifact_location=str(disk or tmp_path / "artifacts"))
        argv = ["baseline", "--data", "small.pkl", "--seeds", "0,1", "--epochs", "3", "--experiment-name", "full"]
        if disk:
            result = command_process(argv, tmp_path, uri)
            code, err = result.returncode, result.stderr
        else:
            code, err = _with_copy_failing(argv, tmp_path, uri)
    assert code == 1
    progress_then_one_error_line(err, f"the disk holding {tmp_path / 'artifacts'}", "is full",
                                 "no run that lacks its files is FINISHED")
    assert {run.info.status for run in all_runs(uri)} == {"FAILED"}


def _with_copy_failing(argv: list[str], cwd: Path, uri: str) -> tuple[int, str]:
    script = ("import errno, shutil, sys\n"
              "def full(source, target, *args, **kwargs):\n"
              "    raise OSError(errno.ENOSPC, 'No space left on device', str(source), None, str(target))\n"
              "shutil.copy2 = shutil.copyfile = full\n"
              "from kdtrack.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", script, *argv], cwd=cwd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    return result.returncode, result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="fills a tmpfs, which only root can mount")
def test_a_full_disk_for_the_sqlite_store_is_one_line_saying_so(tmp_path):
    """149 lines before, MLflow's own log of the failed statement among them."""
    write_small(tmp_path)
    with small_disk(tmp_path / "store", "4m") as disk:
        if disk is None:
            pytest.skip("tmpfs cannot be mounted here")
        uri = f"sqlite:///{disk / 'mlflow.db'}"
        MlflowClient(uri).search_experiments()  # creates the store's tables
        fill(disk)
        result = command_process(["baseline", "--data", "small.pkl", "--seeds", "0", "--epochs", "3"], tmp_path, uri)
        (disk / "filler").unlink()
        runs = all_runs(uri)
    assert result.returncode == 1
    progress_then_one_error_line(result.stderr, f"tracking store {uri}: its disk is full (database or disk is full)")
    assert [run for run in runs if run.info.status == "FINISHED"] == []


# ---- 5: Ctrl-C while workers start ---------------------------------------------------------------------------------------


def test_ctrl_c_while_workers_start_is_one_line(tmp_path):
    """Ctrl-C reaches every process of the terminal's foreground group, the workers too: a worker interrupted
    while it started printed its own traceback beside the study's one line. Now only the study hears it."""
    save_multidomain(make_multidomain(0.75, 2, n_train=240, n_valid=60, name="tiny"), tmp_path / "tiny.pkl")
    (tmp_path / "s.yaml").write_text("epochs: 300\nmethods:\n  b: {task: baseline}\n  kd: {distill: {alpha: 0.5}}\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = subprocess.Popen([sys.executable, "-m", "kdtrack", "study", "--config", "s.yaml", "--data", "tiny.pkl",
                              "--seeds", "0,10", "--workers", "2"], cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = []
    while not lines or ("cell started" not in lines[-1] and lines[-1]):
        lines.append(study.stderr.readline())
    os.killpg(study.pid, signal.SIGINT)  # as a terminal's Ctrl-C does
    _, rest = study.communicate(timeout=300)
    err = "".join(lines) + rest
    assert study.returncode == 130, err
    assert "Traceback" not in err and "Warning" not in err, err
    assert err.rstrip().splitlines()[-1] == "kdtrack: interrupted; any run it had open is marked FAILED", err
    assert [run for run in all_runs(uri) if run.info.status == "RUNNING"] == []


# ---- 6: search filters ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def filter_store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('filters') / 'mlflow.db'}"
    all_runs(uri)
    return uri


SPECIAL = "'\"\\`%_ =()!<>,.;-\n\t*?[]{}&|$#@^~"
"""What MLflow's filter grammar (sqlparse underneath) gives a meaning to, and other punctuation."""


@SETTINGS
@given(value=st.text(alphabet=st.one_of(st.sampled_from(SPECIAL), st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))),
                     min_size=1, max_size=12))
@example(value="it's")
@example(value='say "hi"')
@example(value="both ' and \"")
@example(value="ends with \\")
@example(value="x' or '1'='1")
def test_a_value_in_a_search_filter_finds_exactly_its_runs_or_is_refused(filter_store, monkeypatch, value):
    """`quoted` puts a value in a filter as MLflow reads it (there are no escapes), or refuses it in one line;
    method labels, which go into filters, are names that always quote."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", filter_store)
    mlflow.set_tracking_uri(filter_store)
    try:
        client = MlflowClient(filter_store)
        digest = os.urandom(8).hex()
        tags = {"kdtrack.config_hash": digest, "kdtrack.method": value}
        wanted = client.create_run("0", tags=tags).info.run_id
        client.set_terminated(wanted, "FINISHED")
        decoy = client.create_run("0", tags={**tags, "kdtrack.method": value + "x"}).info.run_id
        client.set_terminated(decoy, "FINISHED")
        try:
            quoted(value)
        except InputError as refused:
            assert "cannot be searched for" in str(refused) and "\n" not in str(refused)
            with pytest.raises(InputError):
                check_label(value)
            return
        assert find_finished(digest, method=value).info.run_id == wanted
    finally:
        mlflow.set_tracking_uri(None)


@SETTINGS
@given(label=st.text(alphabet=SPECIAL + "abcXYZ019", min_size=0, max_size=10))
def test_a_method_label_is_a_name(label):
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._-]*", label):
        check_label(label)
        quoted(label)
    else:
        with pytest.raises(InputError, match="a method's label must be letters, digits"):
            check_label(label)


# ---- 7: compare and the data file a run recorded ---------------------------------------------------------------------


@pytest.fixture()
def baseline_store(store, tmp_path):
    data = write_small(tmp_path)
    code = main(["baseline", "--data", data, "--seeds", "0", "--epochs", "2"])
    assert code == 0
    return store, Path(data)


REPLACEMENTS = {
    # what becomes of the data file the runs recorded: (how, a phrase of compare's note)
    "a crafted pickle": (lambda path: path.write_bytes(b"\x80\x02}N" + b"\x85" * 200_000 + b"Ns."),
                         "its data file cannot be read here"),
    "other valid data": (lambda path: save_multidomain(make_multidomain(1.0, 5, n_train=60, n_valid=30), path),
                         "has changed since the runs"),
    "nothing": (lambda path: path.unlink(), "its data file cannot be read here"),
}


@pytest.mark.parametrize("replacement", REPLACEMENTS)
def test_compare_draws_no_boundaries_from_a_data_file_replaced_since(baseline_store, capsys, replacement):
    uri, data = baseline_store
    replace, phrase = REPLACEMENTS[replacement]
    replace(data)
    capsys.readouterr()
    code = main(["compare", "--out", str(data.parent / "report")])
    err = capsys.readouterr().err
    assert code == 0, err
    notes = [line for line in err.splitlines() if "decision boundaries" in line]
    assert len(notes) == 1 and phrase in notes[0] and len(notes[0]) < 1200, err
    assert not (data.parent / "report" / "boundaries_small.png").exists()
    assert (data.parent / "report" / "table.csv").exists()


def test_the_recorded_data_file_is_used_only_while_it_holds_the_same_data(tmp_path):
    path = Path(write_small(tmp_path))
    data = load_multidomain(path)
    assert load_if_unchanged(str(path), data.fingerprint).fingerprint == data.fingerprint
    assert "recorded no content hash" in load_if_unchanged(str(path), None)
    assert "recorded no data file" in load_if_unchanged(float("nan"), data.fingerprint)
    shutil.copy(path, tmp_path / "renamed.pkl")  # the content, not the name, is the data
    assert load_if_unchanged(str(tmp_path / "renamed.pkl"), data.fingerprint).fingerprint == data.fingerprint


# ---- 8: what a user could not see ---------------------------------------------------------------------------------------


def test_a_study_into_a_new_experiment_shows_its_results_there_and_names_same_data(store, tmp_path, capsys):
    """The second study trains nothing (its cells finished in experiment 'first'); compare of its experiment
    shows them and says where they are. A second file of the same data is said to be the first's."""
    write_small(tmp_path)
    shutil.copy(tmp_path / "small.pkl", tmp_path / "copy.pkl")
    (tmp_path / "s.yaml").write_text("methods:\n  baseline: {task: baseline}\n")
    study = ["study", "--config", "s.yaml", "--data", "small.pkl,copy.pkl", "--seeds", "0,1", "--epochs", "3",
             "--workers", "1"]
    capsys.readouterr()
    assert main([*study, "--experiment-name", "first"]) == 0
    err = capsys.readouterr().err
    assert ("study: copy.pkl holds the same data as small.pkl, so its cells are those of small (a cell is its "
            "content, not its name): the table shows them once, as small") in err
    assert main([*study, "--experiment-name", "second"]) == 0
    capsys.readouterr()
    assert main(["compare", "--experiment-name", "second", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    rows = out.strip().splitlines()
    assert rows[0].startswith("dataset,method,n,") and rows[1].startswith("small,baseline,2,"), out
    assert ("2 run(s) of the cells that the studies of experiment 'second' used finished in other experiments "
            "('first'), where those studies found them: included") in err


def test_make_data_refuses_a_separation_that_no_file_holds(tmp_path, capsys):
    """1e308 wrote a file kdtrack's own loader refused. The bound is half the largest separation float32 holds."""
    assert main(["make-data", "--separation", str(MAX_SEPARATION), "--out", str(tmp_path / "edge.pkl")]) == 0
    assert np.isfinite(load_multidomain(tmp_path / "edge.pkl").train.x).all()
    with np.errstate(over="ignore"):
        beyond = _draw(np.random.default_rng(0), domain_centres(2.01 * MAX_SEPARATION), 10).x
    assert not np.isfinite(beyond).all()  # twice the bound no float32 point holds
    capsys.readouterr()
    code, err = invoke(["make-data", "--separation", "1e308", "--out", str(tmp_path / "far.pkl")], capsys)
    assert code == 2
    assert_one_error_line(err, f"separation must lie in [0, {MAX_SEPARATION:.4g}] (points are float32), got 1e+308")
    assert not (tmp_path / "far.pkl").exists()
