"""Q1: one MLP on the mixed domains per seed."""
from __future__ import annotations

from dataclasses import dataclass

from ...distillers import make_distiller
from ..batches import shared_batch
from .base import MLPCell, fit_and_log


@dataclass(frozen=True, kw_only=True)
class BaselineCell(MLPCell):
    task = "baseline"
    member_task = "baseline"
    label: str = "baseline"

    def train_and_log(self) -> None:
        splits = self.splits
        members = [self.member(seed) for seed in self.seeds]
        selection = None if splits.selection is None else shared_batch(splits.selection)
        fit_and_log(self, members, make_distiller("ce", self.epochs), [shared_batch(splits.fit)],
                    shared_batch(splits.valid), selection)
