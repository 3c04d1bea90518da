"""The loop's step for one network on mini-batches (the image path): shuffled batches, augmentation, the
distiller's objective, SGD with its schedule; after each epoch the validation and selection passes.

It drives the same loop as the MLP steps (trainer.run_epochs: chunks, progress, history, selection, the
checkpoint kept beside the last), one epoch per chunk. Under `torchrun` the network trains with
DistributedDataParallel: each process takes its share of every epoch's shuffled samples (a
DistributedSampler), gradients are averaged across processes, and the passes' sums are added up, so every
process holds the same network and selects the same checkpoint.

Fed from the device: the splits move to the device once, batches are drawn and augmented there (by a
generator on that device), and the passes' sums stay there until the epoch's end, so a GPU is not fed a
batch at a time from the host. Image batches and the networks are channels-last. On a GPU under torchrun,
batch norm normalises over the whole batch of every process (SyncBatchNorm); on a CPU each process keeps
its own share's statistics, because torch's SyncBatchNorm refuses CPU tensors (`sync_batchnorm`).

Precision `bf16` runs the training forward (the networks and the distiller's objective) under bfloat16
autocast; the parameters, their gradients and the optimizer stay float32, the loss is reduced in float32,
and the validation and selection passes run in float32, so the selection and the logged model are the
float32 network's. `compile` runs the training forward through torch.compile.
"""
from __future__ import annotations

from copy import deepcopy
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
from .trainer import PRECISIONS, Selector, TrainResult, TrainSpec, run_epochs
from .native import HISTORY

Transform = Callable[[Tensor, "torch.Generator | None"], Tensor]
"""A batch of stored samples (uint8 images) -> the network's input; with a generator, augmented. It runs on
the device the samples are on, and draws from the generator on that device."""
EVAL_BATCH = 512


@dataclass
class Samples:
    """A split as stored samples and labels, (N, ...) and (N,)."""

    x: Tensor
    y: Tensor

    def to(self, device: torch.device) -> Samples:
        return Samples(self.x.to(device), self.y.to(device))


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
    and the deployable model of the selected checkpoint (in the default memory format)."""
    step = MinibatchStep(student, teacher, distiller, fit, valid, selection, spec, loader)
    result = run_epochs(step, distiller, spec.epochs, 1, progress, selection is not None, "torch")
    step.trainee.load_state_dict(result.best)
    if step.trainee.student is not student:  # a copy with synchronised batch norm trained
        student.load_state_dict(step.trainee.student.state_dict())
    return result, distiller.deployable(student, teacher).to(memory_format=torch.contiguous_format).eval()


class Trainee(nn.Module):
    """What trains: the student and the distiller's parts, under one forward that returns the distiller's
    objective (DistributedDataParallel averages the gradients of what one forward used)."""

    def __init__(self, student: nn.Module, teacher: nn.Module | None, distiller: Distiller, precision: str = "float32"):
        super().__init__()
        self.student, self.parts, self.distiller, self.precision = student, distiller.parts, distiller, precision
        self._teacher = [teacher]  # not a submodule: it neither trains nor belongs to the checkpoint

    def forward(self, x: Tensor, y: Tensor, epoch: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """The objective's logits and per-sample loss, in float32 (computed under bf16 autocast when training
        at that precision)."""
        with torch.autocast(x.device.type, torch.bfloat16, enabled=self.training and self.precision == "bf16"):
            objective = self.distiller.objective(self.student, self._teacher[0], x, y, epoch)
        return objective.logits.float(), objective.per_sample.float(), objective.counted


class MinibatchStep:
    def __init__(self, student, teacher, distiller, fit, valid, selection, spec: TrainSpec, loader: Loader):
        self.device, self.select_on, self.loader = torch.device(spec.device), spec.select_on, loader
        precision = spec.precision
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        if loader.batch_size % self.world:
            raise ValueError(f"batch size {loader.batch_size} does not divide among {self.world} processes")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if teacher is not None:
            channels_last(teacher.to(self.device)).eval().requires_grad_(False)
        if not distiller.uses_student_classifier:
            student.classifier.requires_grad_(False)
        sync = sync_batchnorm(self.device, self.world)
        trainee = Trainee(deepcopy(student) if sync else student, teacher, distiller, precision)
        if sync:  # a copy: the deployed student keeps plain batch norm
            trainee = nn.SyncBatchNorm.convert_sync_batchnorm(trainee)
        self.trainee = channels_last(trainee.to(self.device))
        forward = DistributedDataParallel(self.trainee) if self.world > 1 else self.trainee
        self.forward = torch.compile(forward) if spec.compile else forward
        self.fit, self.valid = fit.to(self.device), valid.to(self.device)
        self.scored = self.valid if selection is None else selection.to(self.device)
        """The split checkpoints are selected on."""
        self.sampler = DistributedSampler(range(len(fit.y)), self.world, self.rank, shuffle=True, seed=loader.seed)
        self.augment = torch.Generator(self.device).manual_seed(loader.seed * 1000 + self.rank)
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
            with torch.inference_mode():
                row[2:4, 0] = self._evaluate(self.valid, epoch, objective=True)
                loss, acc = self._evaluate(self.scored, epoch, objective=self.select_on == "objective")
            if self.selector.offer(torch.tensor([loss]), torch.tensor([1 - acc]), epoch)[0]:
                self.best = self._state()
            row[4:6, 0] = loss, acc
        return rows

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        self.trainee.train()
        self.sampler.set_epoch(epoch)
        order = torch.tensor(list(self.sampler), device=self.device)
        totals = torch.zeros(4, device=self.device)
        for indices in order.split(self.loader.batch_size // self.world):
            x = as_input(self.loader.transform(self.fit.x[indices], self.augment))
            y = self.fit.y[indices]
            objective = Objective(*self.forward(x, y, epoch))
            self.optimizer.zero_grad(set_to_none=True)
            objective.loss().backward()
            self.optimizer.step()
            if self.scheduler:
                self.scheduler.step()
            totals += self._sums(objective, y)
        return self._means(totals)

    def _evaluate(self, split: Samples, epoch: int, objective: bool) -> tuple[float, float]:
        """Mean loss (the objective's, or the cross-entropy) and accuracy over this process's share of `split`."""
        totals = torch.zeros(4, device=self.device)
        for indices in torch.arange(self.rank, len(split.y), self.world, device=self.device).split(EVAL_BATCH):
            x = as_input(self.loader.transform(split.x[indices], None))
            y = split.y[indices]
            result = Objective(*self.trainee(x, y, epoch))
            if not objective:
                result = Objective(result.logits, CROSS_ENTROPY.terms(result.logits[None], None, y[None])["ce"][0])
            totals += self._sums(result, y)
        return self._means(totals)

    @staticmethod
    def _sums(objective: Objective, y: Tensor) -> Tensor:
        """(loss sum, counted samples, correct, samples) of a batch, on its device."""
        loss, count = objective.sums()
        correct = (objective.logits.argmax(dim=1) == y).sum()
        return torch.stack([loss.detach(), count.detach(), correct.float(), torch.full((), float(len(y)), device=y.device)])

    def _means(self, totals: Tensor) -> tuple[float, float]:
        """(loss, accuracy) from (loss sum, counted samples, correct, samples) summed over every process: the
        loss is the mean over the counted samples, the accuracy over all."""
        if self.world > 1:
            dist.all_reduce(totals)
        totals = totals.cpu()
        return float(totals[0] / totals[1].clamp(min=1)), float(totals[2] / totals[3])

    def _state(self) -> dict[str, Tensor]:
        return {key: value.detach().clone() for key, value in self.trainee.state_dict().items()}

    def best_epoch(self) -> np.ndarray:
        return self.selector.best_at.numpy()

    def snapshot(self, best: bool) -> dict[str, Tensor]:
        return self.best if best else self._state()


def sync_batchnorm(device: torch.device, world: int) -> bool:
    """Whether batch norm synchronises across processes: under torchrun on a GPU. Not on a CPU: torch's
    SyncBatchNorm raises for CPU tensors (its forward accepts GPU, XPU and HPU devices only), so there each
    process normalises over its own share of the batch, as DistributedDataParallel does by default."""
    return world > 1 and device.type != "cpu"


def channels_last(module: nn.Module) -> nn.Module:
    """The module's 4-D parameters in channels-last memory format (in place)."""
    return module.to(memory_format=torch.channels_last)


def as_input(x: Tensor) -> Tensor:
    """A batch as the networks take it: an image batch (N, C, H, W) in channels-last memory format."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
