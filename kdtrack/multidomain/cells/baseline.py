"""The baseline: one MLP on the mixed domains per seed."""
from __future__ import annotations

from dataclasses import dataclass

from ...distillers import make_distiller
from ..batches import shared_batch
from .base import MLPCell, Stack


@dataclass(frozen=True, kw_only=True)
class BaselineCell(MLPCell):
    task = "baseline"
    member_task = "baseline"
    label: str = "baseline"

    def stack(self) -> Stack:
        splits = self.splits
        selection = None if splits.selection is None else shared_batch(splits.selection)
        return Stack([self.member(seed) for seed in self.seeds], make_distiller("ce", self.epochs),
                     [shared_batch(splits.fit)], shared_batch(splits.valid), selection)
