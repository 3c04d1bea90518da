"""Hinton et al. (2015): (1 - alpha) CE(y, student) + alpha T^2 KL(teacher_T || student_T).

The T^2 factor keeps the soft term's gradient on the scale of the hard term's as T grows.
"""
from torch import Tensor

from .base import Distiller, cross_entropy, soft_kl


class HintonKD(Distiller):
    def __init__(self, epochs: int, alpha: float, temperature: float):
        super().__init__(epochs)
        self.alpha = alpha
        self.temperature = temperature

    def loss_terms(self, student: Tensor, teacher: Tensor | None, labels: Tensor, epoch: int) -> dict[str, Tensor]:
        return {
            "ce": (1 - self.alpha) * cross_entropy(student, labels),
            "kd": self.alpha * self.temperature**2 * soft_kl(student, teacher, self.temperature),
        }
