"""Claims: a record in the tracking store that one process trains a cell, so that no other process does
meanwhile, whichever machine or engine runs it.

A claim is a registered model named for the cell (`kdtrack-claim-...`). A registered model's name is the key
of its table in every store MLflow has (SQLite, PostgreSQL, and either behind `mlflow server`), so of the
processes that create one name at once exactly one succeeds: a compare-and-set every client sees. Its tags
say who holds it (host, pid, the executor's task, the study run, the cell), carry a `nonce` that tells one
holding from the next, and a `beat` that its holder counts up while it lives. The holder deletes it when the
cell ends, so the registry lists a claim only while its cell trains (and after a crash, until the next
command that meets it).

A claim whose holder is gone is taken over under a second record, named for that holding's nonce: only the
process that creates it may end the dead holder's RUNNING runs (KILLED) and delete the claim, after checking
that the claim is still that holding.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from mlflow.exceptions import MlflowException

from . import connection
from .connection import TAG

PREFIX = "kdtrack-claim-"
TAKEOVER = "-takeover-"
LOST = ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST")
"""What creating a name that another process holds answers: it exists; or, in SQLite, it existed when the
insert failed and was deleted before MLflow looked it up to say so."""
STORE_FAILURES = (MlflowException, OSError)
"""What a call to the store raises when the store, not the claim, failed (a beat may miss one and try again)."""
DESCRIPTION = ("kdtrack: while this exists, the process its tags name trains the cell it names, and no other "
               "kdtrack process does; it is deleted when the cell ends.")


@dataclass(frozen=True)
class Claim:
    name: str
    owner: dict[str, str]
    """host, pid, task, study, cell, nonce and beat (kdtrack.* tags, without the prefix)."""

    @property
    def nonce(self) -> str:
        return self.owner.get("nonce", "")

    def describe(self) -> str:
        return (f"pid {self.owner.get('pid')} on {self.owner.get('host', '?').split()[0]} "
                f"({self.owner.get('task') or 'local'}, study run {self.owner.get('study') or 'none'})")


def claim(name: str, owner: dict[str, str]) -> bool:
    """Create the claim `name` held by `owner`; whether this process won it."""
    return _create(name, {**owner, "beat": "0"})


def read(name: str) -> Claim | None:
    """The claim `name`, or None when nobody holds it."""
    try:
        model = connection.client().get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return Claim(name, {key[len(TAG):]: value for key, value in model.tags.items() if key.startswith(TAG)})


def beat(name: str, count: int) -> None:
    """Say that the holder of `name` still lives."""
    connection.client().set_registered_model_tag(name, TAG + "beat", str(count))


def release(name: str, nonce: str) -> None:
    """Delete the claim `name` if it is still the holding `nonce` (one taken over from a holder wrongly
    thought dead is the taker's now)."""
    held = read(name)
    if held is not None and held.nonce == nonce:
        _delete(name)


def take_over(dead: Claim) -> bool:
    """End the holding `dead` (its holder is gone): its holder's RUNNING runs end KILLED and the claim is
    deleted, by the one process that wins the takeover record of that holding; whether this one did."""
    lock = f"{dead.name}{TAKEOVER}{dead.nonce}"
    if not _create(lock, {"cell": dead.owner.get("cell", "")}):
        return False
    try:
        held = read(dead.name)
        if held is None or held.nonce != dead.nonce:  # another taker finished first, and it was claimed anew
            return False
        connection.end_runs_of(dead.owner.get("host", ""), dead.owner.get("pid", ""))
        _delete(dead.name)
        return True
    finally:
        _delete(lock)


def claims() -> list[Claim]:
    """Every claim in the store."""
    models = connection.client().search_registered_models(f"name LIKE '{PREFIX}%'", max_results=1000)
    return [read(model.name) for model in models if TAKEOVER not in model.name]


def clear_dead() -> None:
    """Take over the claims whose holders, processes of this host, have ended: a study killed with kill -9
    leaves its cells' claims, and the next command of its host clears them (other hosts' claims are cleared
    by whoever waits on them, once their beat has stopped)."""
    dead = [held for held in claims() if held is not None and connection.gone(held.owner.get("host", ""),
                                                                               held.owner.get("pid", ""))]
    taken = sum(take_over(held) for held in dead)
    if taken:
        print(f"kdtrack: cleared {taken} claim(s) that processes of this host, now gone, held", file=sys.stderr, flush=True)


def _create(name: str, tags: dict[str, str]) -> bool:
    store = connection.client()
    try:
        connection.retried(lambda: store.create_registered_model(
            name, {TAG + key: value for key, value in tags.items()}, DESCRIPTION), "claiming a cell")
    except MlflowException as error:
        if error.error_code in LOST:
            return False
        raise
    return True


def _delete(name: str) -> None:
    try:
        connection.client().delete_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
