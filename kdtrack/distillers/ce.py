"""Plain supervised training: the baseline and the domain teachers."""
from .base import CROSS_ENTROPY, Distiller, LossMix


class CrossEntropy(Distiller):
    def mix(self, epoch: int) -> LossMix:
        return CROSS_ENTROPY
