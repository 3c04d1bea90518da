"""The failures a study survives on the default SQLite store: a study killed with SIGKILL and run again
completes with every model once and no run left RUNNING; a command ends as KILLED only the runs of dead
processes of its own host; two studies writing one fresh store at once both finish; two processes running
the same study at once leave compare's counts whole; a study ends with the `mlflow run` that started it, and
only with it."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from kdtrack.lifetime import is_mlflow_run
from kdtrack.multidomain import make_multidomain, save_multidomain
from kdtrack.tracking.connection import end_dead_runs, this_host
from servers import all_runs, compare_counts, duplicated_configurations, finish, start_study, trainings

CONFIG = """
epochs: {epochs}
methods:
  baseline: {{task: baseline}}
  kd: {{distill: {{alpha: 0.5, temperature: 4}}}}
"""
METHODS = ("baseline", "kd")
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEADLINE = 300  # seconds: a limit on waiting for an event, never a measured time


@pytest.fixture()
def folder(tmp_path) -> Path:
    for seed, name in ((2, "tiny"), (3, "other")):
        save_multidomain(make_multidomain(0.75, seed, n_train=240, n_valid=60, name=name), tmp_path / f"{name}.pkl")
    return tmp_path


def config(folder: Path, epochs: int) -> Path:
    path = folder / f"study{epochs}.yaml"
    path.write_text(CONFIG.format(epochs=epochs))
    return path


def store(folder: Path) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}


def gone(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_until(condition, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert process is None or process.poll() is None, f"the study ended before {what}"
        assert time.monotonic() < deadline, f"waited in vain for {what}"
        time.sleep(0.2)


def seed_runs(uri: str, status: str = "FINISHED") -> list:
    return [run for run in all_runs(uri) if "kdtrack.seed" in run.data.tags and run.info.status == status]


def test_a_study_killed_with_sigkill_completes_when_run_again(folder):
    """kill -9 while cells train in two worker processes: the workers die with the study, and the same
    command again ends what they left RUNNING as KILLED, trains what is missing, and logs no model twice."""
    env, uri = store(folder), store(folder)["MLFLOW_TRACKING_URI"]
    study_config = config(folder, 8000)
    all_runs(uri)  # the store exists before the study starts, so that watching it races nothing
    study = start_study(study_config, str(folder / "tiny.pkl"), env, folder, "--workers", "2")
    try:
        wait_until(lambda: seed_runs(uri), "a finished model", study)
        study.kill()
        study.wait(timeout=60)
    finally:
        study.kill()
    left = [run for run in all_runs(uri) if run.info.status == "RUNNING"]
    pids = {int(run.data.tags["kdtrack.pid"]) for run in left}
    assert len(left) >= 2 and study.pid in pids, "the study's run and a cell's, at least"
    assert {run.data.tags["kdtrack.host"] for run in left} == {this_host()}
    wait_until(lambda: all(gone(pid) for pid in pids), "the workers to die with the study")

    code, err = finish(start_study(study_config, str(folder / "tiny.pkl"), env, folder, "--workers", "2"))
    assert code == 0, err
    assert f"kdtrack: ended {len(left)} run(s) as KILLED" in err
    runs = {run.info.run_id: run for run in all_runs(uri)}
    assert {runs[run.info.run_id].info.status for run in left} == {"KILLED"}
    assert [run for run in runs.values() if run.info.status == "RUNNING"] == []
    assert duplicated_configurations(list(runs.values())) == {}
    assert compare_counts(env, folder) == {("tiny", method): 2 for method in METHODS}


def test_a_command_ends_only_the_runs_of_dead_processes_of_its_host(tracking_uri):
    """What every command that writes does first (the killed study above shows a study doing it)."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    alive = subprocess.Popen(["sleep", "600"])
    host = this_host()
    try:
        mlflow.set_tracking_uri(tracking_uri)
        client = MlflowClient(tracking_uri)
        made = {name: client.create_run("0", tags=tags, run_name=name).info.run_id for name, tags in {
            "dead, this host": {"kdtrack.host": host, "kdtrack.pid": str(ended.pid)},
            "alive, this host": {"kdtrack.host": host, "kdtrack.pid": str(alive.pid)},
            "dead, another host": {"kdtrack.host": host + "-elsewhere", "kdtrack.pid": str(ended.pid)},
            "untagged": {},
        }.items()}
        assert end_dead_runs() == 1
        statuses = {name: client.get_run(run_id).info.status for name, run_id in made.items()}
    finally:
        mlflow.set_tracking_uri(None)
        alive.kill()
        alive.wait()
    assert statuses == {"dead, this host": "KILLED", "alive, this host": "RUNNING", "dead, another host": "RUNNING",
                        "untagged": "RUNNING"}


def test_three_studies_on_one_fresh_store_at_once_all_finish(folder):
    """Two studies on different files and the first one again, started together on a store that does not
    exist yet: the processes create its tables together (a collision retried, said on stderr), then write
    side by side. Every run FINISHED and nothing lost, and no cell trained twice: of the two processes
    running the same study, the one that finds a cell claimed waits for the other's runs (kdtrack.spine.claiming)."""
    env, uri = store(folder), store(folder)["MLFLOW_TRACKING_URI"]
    study_config = config(folder, 300)
    studies = [start_study(study_config, str(folder / f"{name}.pkl"), env, folder, "--workers", "1")
               for name in ("tiny", "other", "tiny")]
    results = [finish(study) for study in studies]
    assert [code for code, _ in results] == [0, 0, 0], [err[-6000:] for _, err in results]
    assert all("Traceback" not in err for _, err in results)
    runs = all_runs(uri)
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert duplicated_configurations(runs) == {}
    trained = trainings(*[err for _, err in results])
    assert len(trained) == 2 * 3 and set(trained.values()) == {1}, f"each cell trained by one process: {trained}"
    assert compare_counts(env, folder) == {(name, method): 2 for name in ("tiny", "other") for method in METHODS}


def test_killing_the_mlflow_run_that_started_a_study_ends_it_as_sigterm_does(folder):
    """`kill <pid of mlflow run>` (a user stopping it) left its `python -m kdtrack study` child training,
    re-parented to PID 1. Now the study ends as on SIGTERM: its workers stop and every run, the one `mlflow
    run` made included, ends FAILED."""
    uri = store(folder)["MLFLOW_TRACKING_URI"]
    all_runs(uri)  # the store exists before the study starts, so that watching it races nothing
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=uri, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    command = [str(BIN / "mlflow"), "run", str(REPO), "-e", "study", "--env-manager", "local",
               "-P", f"config={config(folder, 1_000_000)}", "-P", f"data={folder / 'tiny.pkl'}", "-P", "seeds=0",
               "-P", "workers=2"]
    launcher = subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids: set[int] = set()
    try:
        running = lambda: [run for run in all_runs(uri) if run.info.status == "RUNNING"]  # noqa: E731
        wait_until(lambda: len(running()) >= 3, "the study and its first two cells to run", launcher)
        pids = {int(run.data.tags["kdtrack.pid"]) for run in running() if "kdtrack.pid" in run.data.tags}
        assert len(pids) == 3, "the study and a worker for each of its first two cells"
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)
        wait_until(lambda: all(gone(pid) for pid in pids), "the study and its workers to end")
    finally:
        launcher.kill()
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
    runs = all_runs(uri)
    assert len(runs) >= 3 and {run.info.status for run in runs} == {"FAILED"}


def test_a_study_outlives_the_shell_that_started_it_in_the_background(folder):
    """`nohup kdtrack study &` and a closed terminal: the study is no child of `mlflow run`, so it goes on
    to the end when its parent ends."""
    env, uri = store(folder), store(folder)["MLFLOW_TRACKING_URI"]
    all_runs(uri)
    log = folder / "study.log"
    parent = subprocess.run(["sh", "-c", f'"{sys.executable}" -m kdtrack study --config "{config(folder, 300)}" '
                             f'--data "{folder / "tiny.pkl"}" --seeds 0 --workers 1 > "{log}" 2>&1 & echo $!'],
                            env={**os.environ, **env}, cwd=folder, capture_output=True, text=True, check=True)
    study = int(parent.stdout.split()[-1])  # the shell has ended; the study runs on, re-parented
    wait_until(lambda: gone(study), "the study to finish")
    runs = all_runs(uri)
    assert len(runs) == 1 + 2 + 4 + 2 and {run.info.status for run in runs} == {"FINISHED"}, log.read_text()[-3000:]


@pytest.mark.parametrize("argv, expected", [
    (["/venv/bin/python", "/venv/bin/mlflow", "run", ".", "-e", "study"], True),
    (["python", "-m", "mlflow", "run", "."], True),
    (["mlflow", "run", "."], True),
    (["mlflow", "server"], False),
    (["python", "-m", "kdtrack", "study", "--data", "mlflow", "--config", "run"], False),
    (["bash", "-c", "python -m kdtrack study"], False),
])
def test_mlflow_run_is_recognised_by_its_command_line(argv, expected):
    assert is_mlflow_run(argv) == expected
