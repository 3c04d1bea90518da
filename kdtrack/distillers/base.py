"""The one interface every training objective implements, and the per-sample losses they share.

Shapes: logits are (M, N, C) for M stacked models and N samples; labels are (M or 1, N); teacher logits
are (M or 1, N, C). Loss terms are per sample, (M, N), already weighted: the engine sums the terms and
averages each model's sum over that model's own samples, so padding never leaks into a loss.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor


class Distiller(ABC):
    """Given student logits, teacher logits and labels at an epoch, return the weighted loss terms."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    @abstractmethod
    def loss_terms(self, student: Tensor, teacher: Tensor | None, labels: Tensor, epoch: int) -> dict[str, Tensor]:
        """Per-sample loss terms at `epoch` (0-based), each (M, N); the loss is their sum."""

    def selection_terms(self, student: Tensor, teacher: Tensor | None, labels: Tensor, epoch: int) -> dict[str, Tensor]:
        """What checkpoints are selected on: the training loss itself, unless its definition changes
        during training (losses of different phases are not comparable)."""
        return self.loss_terms(student, teacher, labels, epoch)

    def schedule(self, epoch: int) -> dict[str, float]:
        """Method-specific values to log at `epoch` (e.g. an annealed temperature); none by default."""
        return {}


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample cross-entropy, (M, N)."""
    labels = labels.expand(logits.shape[:-1])
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(labels.shape)


def soft_kl(student: Tensor, teacher: Tensor, temperature: float | Tensor) -> Tensor:
    """Per-sample KL(softmax(teacher/T) || softmax(student/T)), (M, N); T is a number or (M or 1, 1, 1)."""
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=-1).expand_as(log_p_student)
    return F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(dim=-1)


def logit_mse(student: Tensor, target: Tensor) -> Tensor:
    """Per-sample mean squared error over the classes, (M, N); its mean over samples is F.mse_loss."""
    return ((student - target) ** 2).mean(dim=-1)


def never_selected(student: Tensor) -> Tensor:
    """Per-sample infinite selection loss, (M, N): no checkpoint of such an epoch can be selected."""
    return torch.full(student.shape[:-1], float("inf"))


def accuracy_terms(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample correctness as 0/1 floats, (M, N)."""
    return (logits.argmax(dim=-1) == labels).to(torch.float32)
