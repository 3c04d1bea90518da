"""The one interface every training objective implements, and the per-sample losses they are made of.

A distiller says, for each epoch, which mix of three per-sample losses the student minimises (a `LossMix`):
cross-entropy on the labels, Hinton's softened KL to the teacher, and the mean squared distance of the
logits to scaled teacher logits. The engine computes that mix itself, in PyTorch or in its native step
alike, so one definition of each method serves both.

Shapes: logits are (M, N, C) for M stacked models and N samples; labels are (M or 1, N); teacher logits
are (M or 1, N, C). Loss terms are per sample, (M, N), already weighted: the engine sums the terms and
averages each model's sum over that model's own samples, so padding never leaks into a loss.

A single network trained on mini-batches (the image path) asks its distiller for an `Objective` instead:
the student's prediction and the loss of each sample, from the networks themselves. Logit methods make it
from their loss mix; a method that needs features (SimKD) reads the networks' feature maps, may add
learnable `parts` of its own (projectors), and says what the deployed model is (`deployable`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

Weight = float | Tensor
"""One value for every model of a stack, or a (M,) tensor with one per model."""


@dataclass(frozen=True)
class LossMix:
    """ce * CE(student, labels) + kd * KL(softmax(teacher / T) || softmax(student / T))
    + mse * mean over classes of (student - scale * teacher)^2, per sample."""

    ce: Weight = 0.0
    kd: Weight = 0.0
    temperature: Weight = 1.0
    mse: Weight = 0.0
    scale: Weight = 1.0

    def terms(self, student: Tensor, teacher: Tensor | None, labels: Tensor) -> dict[str, Tensor]:
        """The weighted per-sample terms, (M, N) each; a term of weight 0 is left out."""
        terms = {}
        if _nonzero(self.ce):
            terms["ce"] = _per_model(self.ce, student) * cross_entropy(student, labels)
        if _nonzero(self.kd):
            temperature = _per_model(self.temperature, student, trailing=2)
            terms["kd"] = _per_model(self.kd, student) * soft_kl(student, teacher, temperature)
        if _nonzero(self.mse):
            scale = _per_model(self.scale, student, trailing=2)
            terms["mse"] = _per_model(self.mse, student) * logit_mse(student, scale * teacher)
        return terms

    def rows(self, n_models: int) -> np.ndarray:
        """(M, 5) float32 rows [ce, kd, 1/T, mse, scale], as the native step reads them."""
        columns = [self.ce, self.kd, 1 / _array(self.temperature), self.mse, self.scale]
        return np.stack([np.broadcast_to(_array(column), (n_models,)) for column in columns], axis=1).astype(np.float32)


CROSS_ENTROPY = LossMix(ce=1.0)


@dataclass
class Objective:
    """A distiller's view of one mini-batch of a single network: the student's logits (N, C), the loss of
    each sample (N,), and which samples the loss counts (None: all)."""

    logits: Tensor
    per_sample: Tensor
    counted: Tensor | None = None

    def sums(self) -> tuple[Tensor, Tensor]:
        """The counted samples' loss sum and their number."""
        if self.counted is None:
            return self.per_sample.sum(), self.per_sample.new_full((), len(self.per_sample))
        weight = self.counted.to(self.per_sample.dtype)
        return (self.per_sample * weight).sum(), weight.sum()

    def loss(self) -> Tensor:
        """The mean over the counted samples (0 when none counts: the batch then teaches nothing)."""
        total, count = self.sums()
        return total / count.clamp(min=1.0)


class Distiller:
    """A training objective over `epochs` epochs: its loss mix at each epoch, at which epochs a checkpoint
    may be selected, and what each sample learns from when there are several teachers."""

    options: tuple[str, ...] = ()
    """The distillation options (alpha, temperature) the method reads."""
    tunable: tuple[str, ...] = ()
    """The options it takes one value of per model of a stack, so that a tuning grid trains as one program."""
    parts: nn.Module | None = None
    """Learnable modules the method adds beside the student (SimKD's projectors); they train with it."""
    uses_student_classifier = True
    """False where the method predicts through something else (SimKD: the teacher's classifier), so the
    student's own classifier is frozen and left out of training."""
    min_domains = 1
    """The training domains the data must have (a mixture of domain teachers needs two to weigh)."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def mix(self, epoch: int) -> LossMix:
        """The loss at `epoch` (0-based)."""
        raise NotImplementedError

    def selectable(self, epoch: int) -> bool:
        """Whether a checkpoint of `epoch` may be selected: yes, unless the loss changes its definition
        during training and this epoch's is not the final one (losses of different phases do not compare)."""
        return True

    def schedule(self, epoch: int) -> dict[str, float]:
        """Method-specific values to log at `epoch` (e.g. an annealed temperature); none by default."""
        return {}

    def loss_terms(self, student: Tensor, teacher: Tensor | None, labels: Tensor, epoch: int) -> dict[str, Tensor]:
        """Per-sample loss terms at `epoch`, each (M, N); the loss is their sum."""
        return self.mix(epoch).terms(student, teacher, labels)

    def objective(self, student: nn.Module, teacher: nn.Module | None, x: Tensor, y: Tensor, epoch: int) -> Objective:
        """One mini-batch `x` (N, ...) with labels `y` (N,) of a single network: the student's logits and,
        from the loss mix, each sample's loss against the labels and the frozen teacher's logits."""
        logits = student(x)
        with torch.no_grad():
            teacher_logits = None if teacher is None else teacher(x)[None]
        terms = self.loss_terms(logits[None], teacher_logits, y[None], epoch)
        return Objective(logits, sum(terms.values())[0])

    def teacher_targets(self, logits: Tensor, domains: Tensor, domain_posterior: Callable[[], Tensor]) -> Tensor:
        """The teacher logits each sample learns from, (M, N, C), given every domain expert's logits on every
        sample (M, D, N, C), each sample's domain (N,) as an index into D, and a function that estimates
        p(domain | x) for each sample (N, D): by default the sample's own domain's teacher alone."""
        index = domains.view(1, 1, -1, 1).expand(logits.shape[0], 1, -1, logits.shape[-1])
        return logits.gather(1, index).squeeze(1)

    def deployable(self, student: nn.Module, teacher: nn.Module | None) -> nn.Module:
        """The model a run logs and serves: the student itself, unless the method predicts through parts
        of its own."""
        return student


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


def accuracy_terms(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample correctness as 0/1 floats, (M, N)."""
    return (logits.argmax(dim=-1) == labels).to(torch.float32)


def _nonzero(weight: Weight) -> bool:
    return bool((torch.as_tensor(weight) != 0).any())


def _per_model(weight: Weight, like: Tensor, trailing: int = 1) -> Tensor | float:
    """A weight shaped to multiply (M, N) terms (or, with trailing=2, (M, N, C) logits): a number as it
    is, per-model values as (M, 1) (or (M, 1, 1))."""
    if isinstance(weight, Tensor):
        return weight.to(like.device).reshape(-1, *[1] * trailing)
    return weight


def _array(weight: Weight) -> np.ndarray:
    return weight.detach().cpu().numpy().astype(np.float64) if isinstance(weight, Tensor) else np.asarray(weight, np.float64)
