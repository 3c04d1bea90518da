"""Timing the engine's share of a cell: what a cell's run logs as train_seconds and train_cpu_seconds."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Stopwatch:
    """The wall and CPU seconds (of the timing thread) spent in what it times, summed."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def add(self, other: Stopwatch) -> None:
        self.seconds += other.seconds
        self.cpu_seconds += other.cpu_seconds

    @contextmanager
    def timing(self) -> Iterator[None]:
        started, started_cpu = time.monotonic(), time.thread_time()
        try:
            yield
        finally:
            self.seconds += time.monotonic() - started
            self.cpu_seconds += time.thread_time() - started_cpu
