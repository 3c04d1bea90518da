"""Annealing KD as Jafari et al. (EACL 2021) define it.

Phase 1 (the first `phase1_fraction` of the epochs): MSE between the student's logits and the teacher's
logits times T / tau_max, with T stepping up from 1 to tau_max in equal stages, so the target starts soft
and ends at the teacher itself. Phase 2: cross-entropy on the labels alone.

tau_max may be one value or one per model of the stack (a tuning grid): the phases are the same for every
model, only the stages of phase 1 differ.
"""
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import CROSS_ENTROPY, Distiller, LossMix


class AnnealJafari(Distiller):
    options = ("temperature",)
    tunable = ("temperature",)

    def __init__(self, epochs: int, temperature: float | Sequence[float], phase1_fraction: float = 0.5):
        super().__init__(epochs)
        self.tau_max = torch.as_tensor(temperature, dtype=torch.float64).reshape(-1).floor().clamp(min=1)
        self.phase1_epochs = max(1, round(epochs * phase1_fraction))

    def step_temperature(self, epoch: int) -> Tensor:
        """T of each model for a phase-1 epoch: stage k of tau_max equal stages has T = k + 1."""
        return torch.minimum(self.tau_max, 1 + torch.floor(epoch * self.tau_max / self.phase1_epochs))

    def mix(self, epoch: int) -> LossMix:
        if epoch < self.phase1_epochs:
            return LossMix(mse=1.0, scale=(self.step_temperature(epoch) / self.tau_max).float())
        return CROSS_ENTROPY

    def selectable(self, epoch: int) -> bool:
        """Phase 1 fits a scaled target, not the task: only phase-2 checkpoints are candidates."""
        return epoch >= self.phase1_epochs

    def schedule(self, epoch: int) -> dict[str, float]:
        """The temperature (of the first model: a grid's models are logged as trials, without histories)."""
        if epoch < self.phase1_epochs:
            return {"temperature": float(self.step_temperature(epoch)[0]), "phase": 1.0}
        return {"temperature": float(self.tau_max[0]), "phase": 2.0}
