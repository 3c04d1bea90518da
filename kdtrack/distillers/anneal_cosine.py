"""Annealing KD as the report ran it.

phi(epoch) = max(1, T_max (1 + cos(pi epoch / epochs)) / 2). While phi > 1 the student's logits fit
phi times the teacher's (MSE); once phi reaches 1 the loss is (1 - alpha) CE + alpha MSE(student, teacher).
"""
import math

from torch import Tensor

from .base import Distiller, cross_entropy, logit_mse, never_selected


class AnnealCosine(Distiller):
    def __init__(self, epochs: int, alpha: float, temperature: float):
        super().__init__(epochs)
        self.alpha = alpha
        self.t_max = temperature

    def phi(self, epoch: int) -> float:
        return max(1.0, self.t_max * (1 + math.cos(math.pi * epoch / self.epochs)) / 2)

    def loss_terms(self, student: Tensor, teacher: Tensor | None, labels: Tensor, epoch: int) -> dict[str, Tensor]:
        phi = self.phi(epoch)
        if phi > 1:
            return {"mse": logit_mse(student, phi * teacher)}
        return {
            "ce": (1 - self.alpha) * cross_entropy(student, labels),
            "mse": self.alpha * logit_mse(student, teacher),
        }

    def selection_terms(self, student: Tensor, teacher: Tensor | None, labels: Tensor, epoch: int) -> dict[str, Tensor]:
        """Phase 1 fits a scaled target, not the task, so only final-phase checkpoints are candidates,
        compared on the final-phase loss."""
        if self.phi(epoch) > 1:
            return {"phase 1": never_selected(student)}
        return self.loss_terms(student, teacher, labels, epoch)

    def schedule(self, epoch: int) -> dict[str, float]:
        phi = self.phi(epoch)
        return {"temperature": phi, "phase": 1.0 if phi > 1 else 2.0}
