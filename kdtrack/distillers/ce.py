"""Plain supervised training: the baseline and the domain teachers."""
from torch import Tensor

from .base import Distiller, cross_entropy


class CrossEntropy(Distiller):
    def loss_terms(self, student: Tensor, teacher: Tensor | None, labels: Tensor, epoch: int) -> dict[str, Tensor]:
        return {"ce": cross_entropy(student, labels)}
