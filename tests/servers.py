"""What the tests that need a tracking server share: `mlflow server` and a private PostgreSQL, each on
127.0.0.1 at a free port, stopped by whoever started them (a fixture's finalizer), and studies run as
real processes against a store."""
from __future__ import annotations

import collections
import contextlib
import glob
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

BIN = Path(sys.executable).parent
STARTUP_SECONDS = 180  # a deadline for a server to answer, not a measured time
FAST_FAILING_HTTP = {  # MLflow's own HTTP retries, shortened: a stopped server is found out in seconds
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        assert process.poll() is None, f"{what} exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{what} did not answer on port {port}"
        time.sleep(0.3)


class MlflowServer:
    """`mlflow server` on 127.0.0.1; `start` again after `stop` serves the same store at the same URI."""

    def __init__(self, backend: str, folder: Path, auth_env: dict[str, str] | None = None):
        self.backend, self.folder, self.auth_env = backend, folder, auth_env
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--backend-store-uri", self.backend, "--artifacts-destination", str(self.folder / "artifacts"),
                   "--workers", "1"]
        if self.auth_env is not None:
            command += ["--app-name", "basic-auth"]
        log = open(self.folder / "server.log", "a")
        self.process = subprocess.Popen(command, env={**os.environ, **(self.auth_env or {})}, cwd=self.folder,
                                        stdout=log, stderr=log, start_new_session=True)
        try:
            wait_for_port(self.port, self.process, "mlflow server")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and its workers (a process group of their own)."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)


def postgres_bin() -> Path | None:
    """The folder of the newest PostgreSQL binaries of Debian's postgresql package, if installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda path: int(Path(path).parts[-3]))
    return Path(found[-1]).parent if found else None


class Postgres:
    """A private PostgreSQL server on 127.0.0.1 in a temporary folder, trusting local connections. It
    refuses to run as root, so under root its commands run as the `postgres` user (runuser)."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="kdtrack-pg-"))
        self.port = free_port()

    def _run(self, tool: str, *arguments: str) -> None:
        command = [str(self.bin / tool), *arguments]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> Postgres:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        data = str(self.folder / "data")
        self._run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run("pg_ctl", "start", "-w", "-D", data, "-l", str(self.folder / "log"),
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.folder}")
        return self

    def create_database(self, name: str) -> str:
        """A fresh database; its SQLAlchemy URI (postgresql://, which SQLAlchemy 2.1 reads with psycopg 3)."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.folder / "data"))
        shutil.rmtree(self.folder, ignore_errors=True)


# ---- studies against a store ------------------------------------------------------------------


def start_study(config: Path, data: str, env: dict[str, str], cwd: Path, *options: str) -> subprocess.Popen:
    """`kdtrack study` as a process of its own (seeds 0,10), stderr captured."""
    return subprocess.Popen([sys.executable, "-m", "kdtrack", "study", "--config", str(config), "--data", data,
                             "--seeds", "0,10", *options], env={**os.environ, **env}, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(study: subprocess.Popen, timeout: int = 600) -> tuple[int, str]:
    """Wait for a study process; its exit code and stderr."""
    _, err = study.communicate(timeout=timeout)
    return study.returncode, err


def kdtrack(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdtrack", *argv], env={**os.environ, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def all_runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiments = [experiment.experiment_id for experiment in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=50000)


def compare_counts(env: dict[str, str], cwd: Path) -> dict[tuple[str, str], int]:
    """What `kdtrack compare` counts: n per (dataset, method)."""
    result = kdtrack(["compare", "--format", "csv"], env, cwd)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("dataset,method,n,")
    return {(row.split(",")[0], row.split(",")[1]): int(row.split(",")[2]) for row in lines[1:]}


def trainings(*stderrs: str) -> collections.Counter:
    """How many times each cell trained, by its progress's last line ("NAME (k models): n/n epochs (100%)")
    in the stderr of the studies that ran it."""
    ends = (re.search(r"([^()]+ \(\d+ models?\)): \d+/\d+ epochs \(100%\)", re.sub(r"\x1b\[[0-9;]*m", "", line))
            for err in stderrs for line in err.splitlines())
    return collections.Counter(end.group(1).strip() for end in ends if end)


def duplicated_configurations(runs: list) -> dict:
    """FINISHED runs that share their task, method and configuration hash (a model, a cell or a trial
    logged twice), with their counts."""
    counts = collections.Counter(
        (run.data.tags["kdtrack.task"], run.data.tags["kdtrack.method"], run.data.tags["kdtrack.config_hash"])
        for run in runs if run.info.status == "FINISHED" and "kdtrack.config_hash" in run.data.tags)
    return {key: count for key, count in counts.items() if count > 1}


# ---- a Ray cluster on this machine -------------------------------------------------------------


class LocalRay:
    """A Ray cluster of one `ray start --head` and `ray start --address` per further node, every process
    bound to 127.0.0.1, with usage statistics off and token authentication on (its token in `folder`, and
    HOME there: nothing reads or writes the user's ~/.ray). Each node runs in a process group of its own,
    which `stop` ends.

    Ray on Linux replaces 127.0.0.1 by the address it finds by probing an outside one (ray issue 59110):
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes the head and a driver use 127.0.0.1 as it is, and a further
    node joins by the name LOCALHOST, which Ray does not replace (and which resolves to 127.0.0.1)."""

    def __init__(self, folder: Path, gpus: tuple[int, ...] = (0, 0), env: dict[str, str] | None = None):
        self.folder, self.gpus, self.extra = folder, gpus, env or {}
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []
        self.temp = Path(tempfile.mkdtemp(prefix="kdray-"))  # short: Ray's socket paths must stay under 107 characters

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach the cluster (a driver's, with --address `address`)."""
        return {"HOME": str(self.folder / "home"), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(self.folder / "ray-token"), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

    def start(self) -> LocalRay:
        (self.folder / "home").mkdir(parents=True, exist_ok=True)
        (self.folder / "ray-token").write_text(secrets.token_hex(32))
        try:
            for index, gpus in enumerate(self.gpus):
                where = (["--head", "--port", str(self.port), "--include-dashboard", "false"] if index == 0
                         else ["--address", f"LOCALHOST:{self.port}"])
                env = {**self.env, **self.extra}
                if index:
                    del env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"]  # a node that joins needs Ray's multi-node switch on
                self._start(index, [*where, "--num-cpus", "1", "--num-gpus", str(gpus),
                                    "--disable-usage-stats", "--object-store-memory", str(100 * 2**20),
                                    "--temp-dir", str(self.temp / str(index))], env)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, index: int, options: list[str], env: dict[str, str]) -> None:
        log = self.folder / f"ray{index}.log"
        process = subprocess.Popen([str(BIN / "ray"), "start", "--block", *options], env={**os.environ, **env},
                                   cwd=self.folder, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes.append(process)
        deadline = time.monotonic() + STARTUP_SECONDS
        while "Ray runtime started" not in log.read_text():
            assert process.poll() is None, f"ray node {index} exited with {process.returncode}: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"ray node {index} did not start"
            time.sleep(0.5)

    def stop(self) -> None:
        """End every process of every node (its group), the workers included."""
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        self.processes.clear()
        shutil.rmtree(self.temp, ignore_errors=True)
