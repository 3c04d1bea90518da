"""Progress of long training runs on stderr: a tqdm bar on a terminal, and a line every so often when stderr
is a log file (where a bar's carriage returns would pile up into one unreadable line)."""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO

from tqdm import tqdm

LOG_INTERVAL_S = 10.0
"""How often a log file gets a progress line."""
LINES_ONLY = False
"""Lines even on a terminal: set in a worker process (`lines_only`), whose bar would fight the others' for the
screen."""


def say(message: str) -> None:
    """One line on stderr, written in one call: Ctrl-C between a `print`'s text and its newline left the
    command's last line ("interrupted") glued to the end of a progress line."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def lines_only() -> None:
    """A worker process's progress: lines, under a lock of its own threads. tqdm's default lock is a named
    semaphore shared with other processes, which a worker ended by a signal can leave to multiprocessing's
    resource tracker, which then warns of it after the study's last line."""
    global LINES_ONLY
    LINES_ONLY = True
    tqdm.set_lock(threading.RLock())


class Progress:
    """`tick(done, status)` after each epoch; `status()` (say, the mean validation accuracy) is asked for
    only when the bar is about to be redrawn, so it may be costly."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None):
        stream = stream or sys.stderr
        terminal = stream.isatty() and not LINES_ONLY
        self.interval = 0.5 if terminal else LOG_INTERVAL_S
        self.bar = tqdm(total=total, desc=label, unit="epoch", file=stream if terminal else _Lines(stream),
                        mininterval=self.interval, dynamic_ncols=terminal, ascii=not terminal,
                        bar_format=None if terminal else "{desc}: {n}/{total} epochs ({percentage:.0f}%), "
                        "{elapsed} elapsed, ~{remaining} left{postfix}")
        self.shown = time.monotonic()

    def tick(self, done: int, status: Callable[[], str]) -> None:
        now = time.monotonic()
        if now - self.shown >= self.interval or done == self.bar.total:
            self.bar.set_postfix_str(status(), refresh=False)
            self.shown = now
        if done == self.bar.total:  # closing draws the final state: once, not also as an update's redraw
            self.bar.n = done
            self.bar.close()
            return
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        """End the bar where training stopped (an error), before the error is told, not when it is collected."""
        self.bar.close()


class Remaining:
    """How long a graph of cells has left to train: the time since it started, times the work left over
    the work done, each cell's work its epochs x models (Cell.work). Cells running side by side count when
    they finish, so the estimate errs long while they run."""

    def __init__(self, total: float):
        self.total, self.done, self.started = total, 0.0, time.monotonic()

    def finished(self, work: float) -> str:
        """A cell of `work` has finished: the share of the work done, and the time it took and is left."""
        self.done += work
        elapsed = time.monotonic() - self.started
        left = elapsed * (self.total - self.done) / self.done if self.done else 0.0
        return (f"{100 * self.done / self.total:.0f}% of the work (epochs x models) done in "
                f"{tqdm.format_interval(elapsed)}, about {tqdm.format_interval(left)} left")


class _Lines:
    """A file for tqdm that writes each redraw as a line of its own."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()
