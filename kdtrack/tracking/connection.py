"""Reaching the tracking store, and surviving what happens to it and to the processes writing it.

- Opening: a fresh SQLite store is created by the first process that opens it, and two processes creating
  one at once collide (MLflow 3.17 runs its schema migrations without a lock), so they open it one at a
  time. Writing: a write that collides with another process's is retried, each retry said on stderr.
- Which process writes a run: every run carries `kdtrack.host` and `kdtrack.pid`, so that a command that
  writes can end as KILLED the runs that a process of this host, now gone (kill -9, a crash), left RUNNING,
  and leave alone the runs of live processes and of other hosts.
- Failures of the store itself (unreachable, or refusing kdtrack's credentials) become one StoreError line.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import itertools
import logging
import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import mlflow
import requests
from filelock import FileLock
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ..errors import InputError, StoreError

TAG = "kdtrack."
T = TypeVar("T")


def process_tags() -> dict[str, str]:
    """The tags that say which process writes a run."""
    return {TAG + "host": this_host(), TAG + "pid": str(os.getpid())}


@functools.cache
def this_host() -> str:
    """This host as far as process ids go: its name, and its pid namespace where Linux names one
    (containers that share a host's name, as under docker --network host, do not see each other's
    processes, so neither may end the other's runs)."""
    try:
        return f"{socket.gethostname()} {os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return socket.gethostname()


def client() -> MlflowClient:
    """A client of the current store, opened first if this process has not yet opened it."""
    open_store()
    return MlflowClient()


def open_store() -> None:
    """Reach the current store once per process: create a fresh SQLite store's tables (one process at a
    time), and check that a server answers and accepts kdtrack's credentials."""
    _open(mlflow.get_tracking_uri())


@functools.cache
def _open(uri: str) -> None:
    with FileLock(_creation_lock(uri)) if uri.startswith("sqlite:") else nullcontext():
        MlflowClient(uri).search_experiments(max_results=1)


def _creation_lock(uri: str) -> Path:
    """The lock file under which processes of this host open a SQLite store (MLflow 3.17 creates a fresh
    one's tables without a lock: two processes creating one at once interleave its migrations and can leave
    it broken for good, "table ... already exists" at every later open)."""
    path = Path(uri.removeprefix("sqlite:///")).resolve()
    return Path(tempfile.gettempdir()) / f"kdtrack-store-{hashlib.sha256(str(path).encode()).hexdigest()[:16]}.lock"


LOCAL_SCHEMES = ("", "file", "sqlite")
"""A store or artifact location given as a path, a file: URI or a SQLite file: only one machine sees it."""


def absolute_uri(uri: str) -> str:
    """`uri` with a relative path made absolute (`sqlite:///mlflow.db` names a file of the current directory,
    which a process elsewhere does not share)."""
    scheme, _, rest = uri.partition(":") if ":" in uri else ("", "", uri)
    if scheme == "sqlite" and rest.startswith("///") and not rest.startswith("////") and rest != "///:memory:":
        return f"sqlite:///{Path(rest[3:]).resolve()}"
    if scheme == "file" and not rest.startswith("//"):
        return Path(rest).resolve().as_uri()
    if scheme == "" or len(scheme) == 1:  # a path (or a Windows drive letter)
        return str(Path(uri).resolve())
    return uri


def machine_local(uri: str) -> bool:
    """Whether only this machine can see the store or artifact location `uri`."""
    scheme = uri.partition(":")[0] if ":" in uri else ""
    return len(scheme) <= 1 or scheme in LOCAL_SCHEMES


WRITE_ATTEMPTS = 5
LOST_RACE = ("UNIQUE constraint failed", "duplicate key value violates unique constraint", "database is locked")
"""What a write that collided with another process's says (SQLite's and PostgreSQL's words, directly or
through a server)."""


def retried(write: Callable[[], T], what: str) -> T:
    """`write`, retried while it collides with another process's: MLflow checks for a row and then inserts
    it, so two processes logging one dataset at once (the same study twice, or two cells of one study on
    one data file) can both insert it, and the second fails on its unique key; it rolls back whole, and
    retried it finds the row. Each retry is said on stderr."""
    for attempt in itertools.count(1):
        try:
            return write()
        except MlflowException as error:
            if attempt == WRITE_ATTEMPTS or not any(phrase in str(error) for phrase in LOST_RACE):
                raise
            print(f"kdtrack: {what} collided with another process's write ({_first_line(error)}); "
                  f"retry {attempt} of {WRITE_ATTEMPTS - 1}", file=sys.stderr, flush=True)
            time.sleep(0.2 * attempt)


def end_dead_runs() -> int:
    """End as KILLED the runs of every experiment that processes of this host left RUNNING
    and that no longer run; how many. Runs of live processes, of other hosts, or without the tags (older
    than them) are left alone. Best effort: a run the store does not let this user end (another user's, on a
    server with permissions) is left to its owner, said once on stderr."""
    dead = [run for run in _running(f"tags.`{TAG}host` = {quoted(this_host())}")
            if not alive(run.data.tags.get(TAG + "pid", ""))]
    ended = _end_killed(dead)
    if ended:
        print(f"kdtrack: ended {ended} run(s) as KILLED that processes of this host, now gone, had left RUNNING",
              file=sys.stderr, flush=True)
    if ended < len(dead):
        print(f"kdtrack: left {len(dead) - ended} run(s) RUNNING that processes of this host, now gone, had left so: "
              f"the store does not let user {os.environ.get('MLFLOW_TRACKING_USERNAME')!r} end them (HTTP 403); their "
              "owner's next command ends them", file=sys.stderr, flush=True)
    return ended


def end_runs_of(host: str, pid: str) -> int:
    """End as KILLED the runs that process `pid` of `host` (gone: a lost worker or node) left RUNNING; how many."""
    return _end_killed(_running(f"tags.`{TAG}host` = {quoted(host)} and tags.`{TAG}pid` = {quoted(pid)}"))


def _running(condition: str) -> list:
    store = client()
    experiments = [experiment.experiment_id for experiment in store.search_experiments()]
    return store.search_runs(experiments, f"attributes.status = 'RUNNING' and {condition}", max_results=50000)


def _end_killed(runs: list) -> int:
    """End `runs` as KILLED, but those the store does not let this user end; how many it ended."""
    ended = 0
    for run in runs:
        try:
            client().set_terminated(run.info.run_id, "KILLED")
            ended += 1
        except MlflowException as error:
            if not _forbidden(error):
                raise
    return ended


def _forbidden(error: MlflowException) -> bool:
    """Whether the store refused this user the permission (a server with MLflow's basic-auth)."""
    return error.error_code == "PERMISSION_DENIED" or "error code 403" in str(error)


def quoted(value: str) -> str:
    """`value` as a string of MLflow's search filters, which have no escapes: in single quotes, or in double
    quotes where it holds a single one. A value holding both, or a backslash (which the filter's SQL tokenizer
    reads as an escape), cannot be searched for: an InputError (method labels are checked to be names)."""
    if "\\" in value or ("'" in value and '"' in value):
        raise InputError(f"{value[:80]!r} cannot be searched for in the tracking store (it holds a backslash or "
                         "both kinds of quote)")
    return f'"{value}"' if "'" in value else f"'{value}'"


def gone(host: str, pid: str) -> bool:
    """Whether process `pid` of `host` is known to have ended: only a process of this host can be known to."""
    return host == this_host() and not alive(pid)


def alive(pid: str) -> bool:
    """Whether process `pid` of this host still runs. A zombie (killed, not yet waited for) does not."""
    if not pid.isdigit():
        return False
    if Path("/proc/self/stat").exists():
        try:
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in (b"Z", b"X")  # bytes: a name may be cut inside a character (a Ray task's)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def store_errors() -> Iterator[None]:
    """Turn the errors that say the store cannot be used into one line: a store of a kind MLflow does not
    know (an InputError), or one unreachable, refusing kdtrack's credentials, or on a full disk, or a full
    disk for the artifacts (a StoreError); any other error propagates as it is."""
    try:
        yield
    except (MlflowException, requests.RequestException) as error:
        if "unsupported URI" in str(error) or "Could not find a registered" in str(error):
            raise InputError(f"tracking store {mlflow.get_tracking_uri()}: MLflow knows no store of this kind; "
                             "MLFLOW_TRACKING_URI takes sqlite:///FILE, a folder, http(s)://SERVER or a database URI") from None
        problem = _store_problem(error)
        if problem is None:
            raise
        raise StoreError(f"tracking store {mlflow.get_tracking_uri()}: {problem}") from None
    except Exception as error:  # a full disk: the OS's error for files, SQLAlchemy's as SQLite creates its tables
        if not _disk_full(error):
            raise
        if not isinstance(error, OSError):
            raise StoreError(f"tracking store {mlflow.get_tracking_uri()}: {_store_problem(error)}") from None
        written = error.filename2 or error.filename  # shutil names the file it copies first, then where to
        where = f"the disk holding {written}" if written else "a disk kdtrack writes to"
        raise StoreError(f"{where} is full ({error.strerror or 'no space left on device'}): no run that lacks its "
                         "files is FINISHED; free space and run the same command again (a study resumes)") from None


DISK_FULL = ("database or disk is full", "No space left on device")
"""What SQLite and the OS say of a full disk."""


def _disk_full(error: BaseException) -> bool:
    return getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(phrase in str(error) for phrase in DISK_FULL)


class _SaidInOneLine(logging.Filter):
    """MLflow logs a failed SQL statement with its traceback (a hundred lines) before it raises the error;
    a full disk, which store_errors states in one line, is not logged beside it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _disk_full(record.exc_info[1]))


logging.getLogger("mlflow.store.db.utils").addFilter(_SaidInOneLine())


UNREACHABLE = ("Connection refused", "Connection aborted", "RemoteDisconnected", "Read timed out",
               "Failed to establish a new connection", "Max retries exceeded", "unable to open database file")
"""Phrases of the errors of a store that cannot be reached, the most telling first."""


def _store_problem(error: BaseException) -> str | None:
    """What an error says about the store, in a sentence; None when it is not about the store. An error
    from a worker process arrives without its cause, so this reads its text."""
    text, user = str(error), os.environ.get("MLFLOW_TRACKING_USERNAME")
    if "error code 401" in text:
        if user:
            return f"it refused the credentials of user {user!r} (HTTP 401): check MLFLOW_TRACKING_PASSWORD"
        return "it asks who you are (HTTP 401): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    if "error code 403" in text:
        return f"user {user!r} may not do this there (HTTP 403): ask the server's admin for the permission"
    if _disk_full(error):
        return ("its disk is full (database or disk is full): no run that lacks its data is FINISHED; free space "
                "and run the same command again (a study resumes)")
    cause = next((phrase for phrase in UNREACHABLE if phrase in text), None)
    if isinstance(error, requests.ConnectionError) or cause:
        return (f"unreachable ({cause or type(error).__name__}, after MLflow's retries); run the same command "
                "again once it is back: a study resumes, and the runs this one had open are then ended KILLED")
    return None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
