"""Annealing KD as the report ran it.

phi(epoch) = max(1, T_max (1 + cos(pi epoch / epochs)) / 2). While phi > 1 the student's logits fit
phi times the teacher's (MSE); once phi reaches 1 the loss is (1 - alpha) CE + alpha MSE(student, teacher).
"""
import math

from .base import Distiller, LossMix


class AnnealCosine(Distiller):
    options = ("alpha", "temperature")
    """Not tunable in one stack: where phase 1 ends depends on T_max, and a stack's phases are common."""

    def __init__(self, epochs: int, alpha: float, temperature: float):
        super().__init__(epochs)
        self.alpha = alpha
        self.t_max = temperature

    def phi(self, epoch: int) -> float:
        return max(1.0, self.t_max * (1 + math.cos(math.pi * epoch / self.epochs)) / 2)

    def mix(self, epoch: int) -> LossMix:
        phi = self.phi(epoch)
        if phi > 1:
            return LossMix(mse=1.0, scale=phi)
        return LossMix(ce=1 - self.alpha, mse=self.alpha)

    def selectable(self, epoch: int) -> bool:
        """Phase 1 fits a scaled target, not the task: only final-phase checkpoints are candidates."""
        return self.phi(epoch) <= 1

    def schedule(self, epoch: int) -> dict[str, float]:
        phi = self.phi(epoch)
        return {"temperature": phi, "phase": 1.0 if phi > 1 else 2.0}
