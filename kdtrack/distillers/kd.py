"""Hinton et al. (2015): (1 - alpha) CE(y, student) + alpha T^2 KL(teacher_T || student_T).

The T^2 factor keeps the soft term's gradient on the scale of the hard term's as T grows. alpha and T may
be one value or one per model of the stack, so that a tuning grid trains as one program. `weighted` gives
the two terms weights of their own instead (the image study's convention, CE + T^2 KL).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import Distiller, LossMix


class HintonKD(Distiller):
    options = ("alpha", "temperature")
    tunable = ("alpha", "temperature")

    def __init__(self, epochs: int, alpha: float | Sequence[float], temperature: float | Sequence[float]):
        super().__init__(epochs)
        alpha = torch.as_tensor(alpha, dtype=torch.float32).reshape(-1)
        temperature = torch.as_tensor(temperature, dtype=torch.float32).reshape(-1)
        self._mix = LossMix(ce=1 - alpha, kd=alpha * temperature**2, temperature=temperature)

    @classmethod
    def weighted(cls, epochs: int, ce_weight: float, kd_weight: float, temperature: float) -> HintonKD:
        """ce_weight CE(y, student) + kd_weight T^2 KL(teacher_T || student_T)."""
        distiller = cls(epochs, 0.0, temperature)
        distiller._mix = LossMix(ce=ce_weight, kd=kd_weight * temperature**2, temperature=temperature)
        return distiller

    def mix(self, epoch: int) -> LossMix:
        return self._mix
