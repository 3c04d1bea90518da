"""The loop's step for one network on mini-batches (the image path): shuffled batches, augmentation, the
distiller's objective, SGD with its schedule; after each epoch the validation and selection passes.

It drives the same loop as the MLP steps (trainer.run_epochs: chunks, progress, history, selection, the
checkpoint kept beside the last), one epoch per chunk. Under `torchrun` the network trains with
DistributedDataParallel: each process takes its share of every epoch's shuffled samples (a
DistributedSampler), gradients are averaged across processes, and the passes' sums are added up, so every
process holds the same network and selects the same checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from ..distillers.base import CROSS_ENTROPY, Distiller, Objective
from ..progress import Progress
from .optim import make_optimizer, make_scheduler
from .trainer import Selector, TrainResult, TrainSpec, run_epochs
from .native import HISTORY

Transform = Callable[[Tensor, "torch.Generator | None"], Tensor]
"""A batch of stored samples (uint8 images) -> the network's input; with a generator, augmented."""
EVAL_BATCH = 512


@dataclass
class Samples:
    """A split as stored samples and labels, (N, ...) and (N,)."""

    x: Tensor
    y: Tensor


@dataclass(frozen=True)
class Loader:
    """How samples become batches: the batch size over all processes, and the transform."""

    batch_size: int
    transform: Transform
    seed: int


def train_network(student: nn.Module, teacher: nn.Module | None, distiller: Distiller, fit: Samples, valid: Samples,
                  selection: Samples | None, spec: TrainSpec, loader: Loader,
                  progress: Progress | None = None) -> tuple[TrainResult, nn.Module]:
    """Train `student` (and the distiller's parts) against a frozen `teacher`; the result (a stack of one)
    and the deployable model of the selected checkpoint."""
    step = MinibatchStep(student, teacher, distiller, fit, valid, selection, spec, loader)
    result = run_epochs(step, distiller, spec.epochs, 1, progress, selection is not None, "torch")
    step.trainee.load_state_dict(result.best)
    return result, distiller.deployable(student, teacher).eval()


class Trainee(nn.Module):
    """What trains: the student and the distiller's parts, under one forward that returns the distiller's
    objective (DistributedDataParallel averages the gradients of what one forward used)."""

    def __init__(self, student: nn.Module, teacher: nn.Module | None, distiller: Distiller):
        super().__init__()
        self.student, self.parts, self.distiller = student, distiller.parts, distiller
        self._teacher = [teacher]  # not a submodule: it neither trains nor belongs to the checkpoint

    def forward(self, x: Tensor, y: Tensor, epoch: int) -> tuple[Tensor, Tensor, Tensor | None]:
        objective = self.distiller.objective(self.student, self._teacher[0], x, y, epoch)
        return objective.logits, objective.per_sample, objective.counted


class MinibatchStep:
    def __init__(self, student, teacher, distiller, fit, valid, selection, spec: TrainSpec, loader: Loader):
        self.device, self.select_on, self.loader = torch.device(spec.device), spec.select_on, loader
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        if loader.batch_size % self.world:
            raise ValueError(f"batch size {loader.batch_size} does not divide among {self.world} processes")
        if teacher is not None:
            teacher.to(self.device).eval().requires_grad_(False)
        if not distiller.uses_student_classifier:
            student.classifier.requires_grad_(False)
        self.trainee = Trainee(student, teacher, distiller).to(self.device)
        self.forward = DistributedDataParallel(self.trainee) if self.world > 1 else self.trainee
        self.fit, self.valid = fit, valid
        self.scored = valid if selection is None else selection
        """The split checkpoints are selected on."""
        self.sampler = DistributedSampler(range(len(fit.y)), self.world, self.rank, shuffle=True, seed=loader.seed)
        self.augment = torch.Generator().manual_seed(loader.seed * 1000 + self.rank)
        steps = len(self.sampler) // (loader.batch_size // self.world) + bool(len(self.sampler) % (loader.batch_size // self.world))
        trained = [p for p in self.trainee.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(trained, spec.optim)
        self.scheduler = make_scheduler(self.optimizer, spec.optim, spec.epochs * steps, steps_per_epoch=steps)
        self.selector = Selector(1, spec.select_on, len(self.scored.y))
        self.best = self._state()

    def run(self, first: int, last: int) -> np.ndarray:
        rows = np.empty((last - first, len(HISTORY), 1), dtype=np.float32)
        for row, epoch in zip(rows, range(first, last)):
            row[0:2, 0] = self._train_epoch(epoch)
            self.trainee.eval()
            with torch.no_grad():
                row[2:4, 0] = self._evaluate(self.valid, epoch, objective=True)
                loss, acc = self._evaluate(self.scored, epoch, objective=self.select_on == "objective")
                if self.selector.offer(torch.tensor([loss]), torch.tensor([1 - acc]), epoch)[0]:
                    self.best = self._state()
                row[4:6, 0] = loss, acc
        return rows

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        self.trainee.train()
        self.sampler.set_epoch(epoch)
        order = torch.tensor(list(self.sampler))
        totals = torch.zeros(4)
        for indices in order.split(self.loader.batch_size // self.world):
            x = self.loader.transform(self.fit.x[indices], self.augment).to(self.device)
            y = self.fit.y[indices].to(self.device)
            logits, per_sample, counted = self.forward(x, y, epoch)
            objective = Objective(logits, per_sample, counted)
            self.optimizer.zero_grad(set_to_none=True)
            objective.loss().backward()
            self.optimizer.step()
            if self.scheduler:
                self.scheduler.step()
            totals += self._sums(objective, y)
        return self._means(totals)

    def _evaluate(self, split: Samples, epoch: int, objective: bool) -> tuple[float, float]:
        """Mean loss (the objective's, or the cross-entropy) and accuracy over this process's share of `split`."""
        totals = torch.zeros(4)
        for indices in torch.arange(self.rank, len(split.y), self.world).split(EVAL_BATCH):
            x = self.loader.transform(split.x[indices], None).to(self.device)
            y = split.y[indices].to(self.device)
            result = Objective(*self.trainee(x, y, epoch))
            if not objective:
                result = Objective(result.logits, CROSS_ENTROPY.terms(result.logits[None], None, y[None])["ce"][0])
            totals += self._sums(result, y)
        return self._means(totals)

    @staticmethod
    def _sums(objective: Objective, y: Tensor) -> Tensor:
        loss, count = objective.sums()
        correct = (objective.logits.argmax(dim=1) == y).sum()
        return torch.stack([loss.detach().cpu(), count.detach().cpu(), correct.cpu().float(),
                            torch.tensor(float(len(y)))]).to(torch.float32)

    def _means(self, totals: Tensor) -> tuple[float, float]:
        """(loss, accuracy) from (loss sum, counted samples, correct, samples) summed over every process: the
        loss is the mean over the counted samples, the accuracy over all."""
        if self.world > 1:
            dist.all_reduce(totals)
        return float(totals[0] / totals[1].clamp(min=1)), float(totals[2] / totals[3])

    def _state(self) -> dict[str, Tensor]:
        return {key: value.detach().clone() for key, value in self.trainee.state_dict().items()}

    def best_epoch(self) -> np.ndarray:
        return self.selector.best_at.numpy()

    def snapshot(self, best: bool) -> dict[str, Tensor]:
        return self.best if best else self._state()
