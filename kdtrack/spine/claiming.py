"""No cell trains twice: a resuming cell claims itself in the tracking store before it trains (a claim:
kdtrack.tracking.claims), whichever process, machine or executor runs it. A process that finds the cell
claimed waits for the holder's runs instead of training, then logs only what the store still lacks (nothing,
when the holder finished). A holder that is gone is taken over: one of this host whose pid has ended at once,
one of another host once its beat has stood still for STALE_SECONDS."""
from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from .. import progress, tracking
from ..tracking import claims
from ..tracking.connection import gone, this_host
from .cells import Cell, config_hash

HEARTBEAT_SECONDS = 15.0
STALE_SECONDS = 120.0
"""A holder of another host whose beat has not changed for this long is taken for gone: eight missed beats,
so that a store slow to answer for a minute does not make two holders."""
POLL_SECONDS = 2.0


def run_claimed(cell: Cell, task: str = "") -> str | None:
    """Run a resuming cell under its claim (a command's own cell, trained anew on request, claims nothing);
    its parent run id, or None when another process trained it. `task` names the executor's task (a Ray task
    id) in the claim."""
    if not cell.resume:
        return cell.run()
    name = claim_name(cell)
    watch = Watch()
    while True:
        owner = {"host": this_host(), "pid": str(os.getpid()), "task": task, "study": tracking.process_context()[2] or "",
                 "cell": cell.name, "nonce": uuid.uuid4().hex}
        if claims.claim(name, owner):
            try:
                with _beating(name):
                    left = cell.pending()  # what the store lacks now that nobody else trains it
                    return left.run() if left else None
            finally:
                claims.release(name, owner["nonce"])
        holder = claims.read(name)
        if holder is None:  # released between the two calls: claim again
            continue
        first = watch.first_sight(holder)
        if watch.gone(holder):
            if claims.take_over(holder):
                progress.say(f"{cell.name}: took over the claim of {holder.describe()}, which is gone; its RUNNING runs "
                     "ended KILLED")
            continue
        if first:
            progress.say(f"{cell.name}: trained by {holder.describe()}; waiting for its runs instead of training it")
        time.sleep(POLL_SECONDS)


def claim_name(cell: Cell) -> str:
    """The claim of a cell's key: one for every cell that a graph would run once."""
    return claims.PREFIX + config_hash({"cell": cell.hash, "label": cell.key[1]})


class Watch:
    """What a waiting process has seen of the holders of one claim: each holding's last beat and since when
    (by this process's clock, so that no two machines' clocks are compared)."""

    def __init__(self):
        self.beats: dict[str, tuple[str, float]] = {}

    def first_sight(self, holder: claims.Claim) -> bool:
        return holder.nonce not in self.beats

    def gone(self, holder: claims.Claim) -> bool:
        """A holder of this host by its pid alone (a live one may beat late, under a slow store); one of
        another host once its beat has stood still for STALE_SECONDS."""
        if holder.owner.get("host") == this_host():
            return gone(holder.owner["host"], holder.owner.get("pid", ""))
        beat, now = holder.owner.get("beat", ""), time.monotonic()
        seen = self.beats.get(holder.nonce)
        if seen is None or seen[0] != beat:
            self.beats[holder.nonce] = (beat, now)
            return False
        return now - seen[1] > STALE_SECONDS


@contextmanager
def _beating(name: str) -> Iterator[None]:
    """Count the claim's beat up every HEARTBEAT_SECONDS in a thread while the body runs. A beat the store
    refuses is skipped: the next may pass, and eight missed ones in a row make the claim stale."""
    stop = threading.Event()

    def beat() -> None:
        count = 0
        while not stop.wait(HEARTBEAT_SECONDS):
            count += 1
            try:
                claims.beat(name, count)
            except claims.STORE_FAILURES as error:
                progress.say(f"the beat of claim {name} failed ({str(error).splitlines()[0]})")

    thread = threading.Thread(target=beat, name="claim beat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
