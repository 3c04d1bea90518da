"""Hinton et al. (2015): (1 - alpha) CE(y, student) + alpha T^2 KL(teacher_T || student_T).

The T^2 factor keeps the soft term's gradient on the scale of the hard term's as T grows. alpha and T may
be one value or one per model of the stack, so that a tuning grid trains as one program.
"""
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Distiller, cross_entropy, soft_kl


class HintonKD(Distiller):
    def __init__(self, epochs: int, alpha: float | Sequence[float], temperature: float | Sequence[float]):
        super().__init__(epochs)
        self.alpha = torch.as_tensor(alpha, dtype=torch.float32).reshape(-1, 1)
        self.temperature = torch.as_tensor(temperature, dtype=torch.float32).reshape(-1, 1)

    def loss_terms(self, student: Tensor, teacher: Tensor | None, labels: Tensor, epoch: int) -> dict[str, Tensor]:
        return {
            "ce": (1 - self.alpha) * cross_entropy(student, labels),
            "kd": self.alpha * self.temperature**2 * soft_kl(student, teacher, self.temperature.unsqueeze(-1)),
        }
