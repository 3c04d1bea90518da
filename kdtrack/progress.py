"""A periodic progress line on stderr for long training runs."""
from __future__ import annotations

import sys
import time
from typing import Callable


class Progress:
    """Prints `label: epoch e/E (p%), <status>, elapsed, ~remaining` at most every `every_s` seconds,
    and once at the end, so a 30,000-epoch run is visibly alive without flooding the terminal."""

    def __init__(self, label: str, total: int, every_s: float = 10.0, stream=None):
        self.label = label
        self.total = total
        self.every_s = every_s
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.last = self.start

    def tick(self, done: int, status: Callable[[], str]) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.start
        remaining = elapsed / done * (self.total - done)
        print(
            f"{self.label}: epoch {done}/{self.total} ({100 * done / self.total:.0f}%), {status()}, "
            f"{elapsed:.0f}s elapsed, ~{remaining:.0f}s left",
            file=self.stream,
            flush=True,
        )
