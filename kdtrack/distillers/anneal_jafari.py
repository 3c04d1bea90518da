"""Annealing KD as Jafari et al. (EACL 2021) define it.

Phase 1 (the first `phase1_fraction` of the epochs): MSE between the student's logits and the teacher's
logits times T / tau_max, with T stepping up from 1 to tau_max in equal stages, so the target starts soft
and ends at the teacher itself. Phase 2: cross-entropy on the labels alone.
"""
from .base import CROSS_ENTROPY, Distiller, LossMix


class AnnealJafari(Distiller):
    def __init__(self, epochs: int, temperature: float, phase1_fraction: float = 0.5):
        super().__init__(epochs)
        self.tau_max = max(1, int(temperature))
        self.phase1_epochs = max(1, round(epochs * phase1_fraction))

    def step_temperature(self, epoch: int) -> int:
        """T for a phase-1 epoch: stage k of tau_max equal stages has T = k + 1."""
        return min(self.tau_max, 1 + epoch * self.tau_max // self.phase1_epochs)

    def mix(self, epoch: int) -> LossMix:
        if epoch < self.phase1_epochs:
            return LossMix(mse=1.0, scale=self.step_temperature(epoch) / self.tau_max)
        return CROSS_ENTROPY

    def selectable(self, epoch: int) -> bool:
        """Phase 1 fits a scaled target, not the task: only phase-2 checkpoints are candidates."""
        return epoch >= self.phase1_epochs

    def schedule(self, epoch: int) -> dict[str, float]:
        if epoch < self.phase1_epochs:
            return {"temperature": float(self.step_temperature(epoch)), "phase": 1.0}
        return {"temperature": float(self.tau_max), "phase": 2.0}
