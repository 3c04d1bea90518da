"""The one training loop: full-batch steps for a stack of models, validation every epoch, and the
checkpoint that the selection criterion prefers kept beside the last.

Epochs are numbered from 1 in everything the loop returns: row e-1 of the history is epoch e, whose
training loss and accuracy come from the forward pass of its update(s) and whose validation and
selection metrics are measured after them.

The loop runs in chunks of epochs; a step trains one chunk, and there are three. The native step (native.py,
a compiled kernel) trains the multi-domain study's MLP stacks on a CPU; the PyTorch step trains any stack,
on any device (a GPU included); the mini-batch step (minibatch.py) trains one image network on shuffled
mini-batches, under DDP when torchrun starts it. The two full-batch steps compute the same losses (the
distiller's LossMix), the same Adam, the same selection, and tests/test_engine.py holds each to a plain
single-model PyTorch loop (tests/test_minibatch.py covers the mini-batch step: selection, schedule, seeds).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from ..distillers import Distiller
from ..errors import InputError, TrainingDiverged
from ..distillers.base import CROSS_ENTROPY, LossMix, accuracy_terms
from ..models.mlp import StackedMLP
from ..progress import Progress
from . import native
from .native import HISTORY
from .optim import ADAM_BETAS, ADAM_EPS, OptimConfig, make_optimizer, make_scheduler, step_schedule

SELECT_ON = ("objective", "ce", "accuracy", "accuracy-1se")
"""What checkpoints are selected on, over the selection split: the training objective (the distiller's
loss), the cross-entropy against the labels, the accuracy (ties broken by the cross-entropy), or the
latest epoch whose accuracy is within one standard error of the best (sqrt(a (1 - a) / n) at the best
accuracy a on n samples): a holdout's accuracy moves by chance, and this stops early only where it has
fallen by more than its noise."""
_CRITERION = {"accuracy": native.SELECT_ACCURACY, "accuracy-1se": native.SELECT_ACCURACY_1SE}
"""The kernel's number for each criterion that is not a loss."""
DEVICES = ("auto", "cpu", "cuda")
CHUNK = 1000
"""Epochs per call of a step: progress is reported (and the history read) once per chunk."""
_noted: set[str] = set()


@dataclass
class Batch:
    """Full-batch data for a stack of M models: model m trains on row m (or all on the single row 0).

    `mask` marks each model's real samples where models see different data padded to one length
    (the domain teachers); `teacher` holds each sample's teacher logits for a student.
    """

    x: Tensor
    y: Tensor
    mask: Tensor | None = None
    teacher: Tensor | None = None

    def mean(self, per_sample: Tensor) -> Tensor:
        """Each model's mean over its own samples, (M, N) -> (M,)."""
        if self.mask is None:
            return per_sample.mean(dim=1)
        return (per_sample * self.mask).sum(dim=1) / self.mask.sum(dim=1)

    def count(self) -> Tensor | float:
        return float(self.x.shape[1]) if self.mask is None else self.mask.sum(dim=1)

    def to(self, device: torch.device) -> Batch:
        return Batch(*(None if value is None else value.to(device) for value in (self.x, self.y, self.mask, self.teacher)))


PRECISIONS = ("float32", "bf16")
"""The mini-batch step's arithmetic: float32, or bfloat16 autocast of the training forward (the parameters, the
loss, the passes and the selection stay float32)."""


@dataclass(frozen=True)
class TrainSpec:
    """How a training runs, as it travels from the options to the engine: epochs, the optimiser and its
    schedule, what selects the checkpoint (SELECT_ON), the device, and for the mini-batch step its precision
    (PRECISIONS) and whether torch.compile runs its training forward."""

    epochs: int
    optim: OptimConfig
    select_on: str = "objective"
    device: str = "cpu"
    precision: str = "float32"
    compile: bool = False


@dataclass
class TrainResult:
    history: dict[str, np.ndarray]
    """Per-epoch metrics: train_loss, val_loss, train_acc, val_acc (and selection_loss, selection_acc) as
    (epochs, M); the method's scheduled values (e.g. temperature) as (epochs,)."""
    best_epoch: np.ndarray
    """(M,) the epoch (from 1) of the selected checkpoint."""
    best: dict[str, Tensor]
    last: dict[str, Tensor]
    engine: str
    """Which step trained the stack: `native` or `torch`."""


def train(
    model: StackedMLP,
    distiller: Distiller,
    train_batches: list[Batch],
    valid: Batch,
    spec: TrainSpec,
    selection: Batch | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train every model of the stack; one optimizer step per training batch per epoch.

    Checkpoints are selected by `spec.select_on` (SELECT_ON) over `selection` when given (a split held out
    from training), else over `valid`; selection metrics are logged only in the first case. Only epochs the
    distiller calls selectable compete.
    """
    device, epochs, optim, select_on = torch.device(spec.device), spec.epochs, spec.optim, spec.select_on
    reason = native.why_not(model, device)
    if reason is None:
        step = NativeStep(model, distiller, train_batches, valid, epochs, optim, selection, select_on)
    else:
        if reason not in _noted:
            _noted.add(reason)
            print(f"engine: the PyTorch step trains this stack: the native step cannot, {reason}", flush=True,
                  file=sys.stderr)
        step = TorchStep(model.to(device), distiller, train_batches, valid, epochs, optim, selection, select_on, device)
    engine = "native" if reason is None else "torch"
    return run_epochs(step, distiller, epochs, CHUNK, progress, selection is not None, engine)


class Step(Protocol):
    """What the loop drives: `run(first, last)` trains epochs [first, last) and returns their history rows,
    (last - first, len(HISTORY), M); then the selected epoch of each model and its tensors, or the last."""

    def run(self, first: int, last: int) -> np.ndarray: ...

    def best_epoch(self) -> np.ndarray: ...

    def snapshot(self, best: bool) -> dict[str, Tensor]: ...


def run_epochs(step: Step, distiller: Distiller, epochs: int, chunk: int, progress: Progress | None,
               with_selection: bool, engine: str) -> TrainResult:
    """Every step's loop: epochs in chunks, progress after each, the history read once at the end; a loss or
    weight that is not finite is a TrainingDiverged naming the epoch."""
    chunks = []
    try:
        for first in range(0, epochs, chunk):
            chunks.append(step.run(first, min(first + chunk, epochs)))
            check_finite_losses(chunks[-1][:, HISTORY.index("train_loss")], first)
            if progress:
                progress.tick(min(first + chunk, epochs), lambda: f"mean val_acc {np.nanmean(chunks[-1][-1, 3]):.4f}")
    finally:
        if progress:
            progress.close()
    rows = np.concatenate(chunks)
    names = list(HISTORY) if with_selection else list(HISTORY[:4])
    history = {name: rows[:, HISTORY.index(name)] for name in names}
    for name in distiller.schedule(0):
        history[name] = np.array([distiller.schedule(e)[name] for e in range(epochs)])
    best, last = step.snapshot(best=True), step.snapshot(best=False)
    check_finite_weights(best, last, epochs)
    return TrainResult(history, step.best_epoch(), best, last, engine)


def check_finite_losses(losses: np.ndarray, first: int) -> None:
    """Stop at the first epoch (of epochs `first` + 1 on, rows of `losses`, a column per model) whose training
    loss is NaN or infinite: no model is worth logging from a stack that diverged."""
    bad = ~np.isfinite(losses)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        raise TrainingDiverged(f"training diverged at epoch {first + row + 1}: the loss of {int(bad[row].sum())} of "
                               f"{bad.shape[1]} model(s) is not finite (NaN or inf), so no model is logged; a lower "
                               "learning rate, or inputs of a smaller scale, may help")


def check_finite_weights(best: dict[str, Tensor], last: dict[str, Tensor], epochs: int) -> None:
    """A weight that is NaN or infinite, in the selected checkpoint or the last, is an error as a loss is."""
    for which, tensors in (("selected", best), ("last", last)):
        bad = [name for name, value in tensors.items() if value.is_floating_point() and not torch.isfinite(value).all()]
        if bad:
            raise TrainingDiverged(f"training diverged by epoch {epochs}: the {which} checkpoint's {bad[0]} is not "
                                   "finite (NaN or inf), so no model is logged; a lower learning rate may help")


def resolve_device(name: str) -> str:
    """`auto` as the device it means here; an InputError for a device this machine lacks."""
    if name not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")
    return name


def selection_mix(distiller: Distiller, select_on: str, epoch: int) -> LossMix:
    if select_on not in SELECT_ON:
        raise ValueError(f"select_on must be one of {', '.join(SELECT_ON)}, got {select_on!r}")
    return distiller.mix(epoch) if select_on == "objective" else CROSS_ENTROPY


class NativeStep:
    """Chunks of epochs through the compiled kernel (native.py)."""

    def __init__(self, model, distiller, train_batches, valid, epochs, optim, selection, select_on):
        self.stack = native.NativeStack(model, train_batches, valid, selection, optim, ADAM_BETAS[1], ADAM_EPS)
        self.model, self.distiller, self.select_on, self.m = model, distiller, select_on, model.n_models
        self.lr, self.beta1 = step_schedule(optim, epochs * len(train_batches))
        self.steps = len(train_batches)
        self._last: tuple[LossMix, np.ndarray] | None = None

    def run(self, first: int, last: int) -> np.ndarray:
        epochs = range(first, last)
        mix = np.stack([self._rows_of(self.distiller.mix(e)) for e in epochs])
        select = np.stack([self._rows_of(selection_mix(self.distiller, self.select_on, e)) for e in epochs])
        selectable = np.array([self.distiller.selectable(e) for e in epochs])
        lr, beta1 = (values[first * self.steps : last * self.steps] for values in (self.lr, self.beta1))
        criterion = _CRITERION.get(self.select_on, native.SELECT_LOSS)
        return self.stack.run(first, mix, select, selectable, criterion, lr, beta1)

    def _rows_of(self, mix: LossMix) -> np.ndarray:
        """The mix as (M, 5) rows; a distiller that returns one mix object epoch after epoch converts once."""
        if self._last is None or self._last[0] is not mix:
            self._last = (mix, mix.rows(self.m))
        return self._last[1]

    def best_epoch(self) -> np.ndarray:
        return self.stack.best_epoch.numpy().copy()

    def snapshot(self, best: bool) -> dict[str, Tensor]:
        return self.stack.snapshot(best)


class TorchStep:
    """Epochs one by one with autograd and torch.optim: for any stack, on any device."""

    def __init__(self, model, distiller, train_batches, valid, epochs, optim, selection, select_on, device):
        self.model, self.distiller, self.select_on = model, distiller, select_on
        self.batches = [batch.to(device) for batch in train_batches]
        self.valid = valid.to(device)
        self.optimizer = make_optimizer(model.parameters(), optim)
        self.scheduler = make_scheduler(self.optimizer, optim, epochs * len(train_batches))
        self.scored = self.valid if selection is None else selection.to(device)
        """The split checkpoints are selected on."""
        self.selector = Selector(model.n_models, select_on, self.scored.count(), device)
        self.best = model.snapshot()

    def run(self, first: int, last: int) -> np.ndarray:
        rows = torch.empty(last - first, len(HISTORY), self.model.n_models, device=self.selector.best_at.device)
        for row, epoch in zip(rows, range(first, last)):
            self.model.train()
            row[0], row[1] = self._train_epoch(epoch)
            self.model.eval()
            with torch.no_grad():
                row[2], row[3] = self._evaluate(self.valid, self.distiller.mix(epoch))
                if self.distiller.selectable(epoch):
                    loss, acc = self._evaluate(self.scored, selection_mix(self.distiller, self.select_on, epoch))
                    self._keep_if_better(loss, 1 - acc, epoch)
                    row[4], row[5] = loss, acc
                else:
                    row[4], row[5] = float("inf"), float("nan")
        return rows.cpu().numpy()

    def _train_epoch(self, epoch: int) -> tuple[Tensor, Tensor]:
        loss_sum = acc_sum = count = 0.0
        mix = self.distiller.mix(epoch)
        for batch in self.batches:
            logits = self.model(batch.x, batch.mask)
            loss = batch.mean(sum(mix.terms(logits, batch.teacher, batch.y).values()))
            self.optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            self.optimizer.step()
            if self.scheduler:
                self.scheduler.step()
            weight = batch.count()
            loss_sum = loss_sum + loss.detach() * weight
            acc_sum = acc_sum + batch.mean(accuracy_terms(logits.detach(), batch.y)) * weight
            count = count + weight
        return loss_sum / count, acc_sum / count

    def _evaluate(self, batch: Batch, mix: LossMix) -> tuple[Tensor, Tensor]:
        """Each model's mean loss under `mix` and accuracy over `batch`, (M,) each."""
        logits = self.model(batch.x, batch.mask)
        return batch.mean(sum(mix.terms(logits, batch.teacher, batch.y).values())), batch.mean(accuracy_terms(logits, batch.y))

    def _keep_if_better(self, loss: Tensor, error: Tensor, epoch: int) -> None:
        improved = self.selector.offer(loss, error, epoch)
        self.best = _keep_where(improved, self.model.tensors(), self.best)

    def best_epoch(self) -> np.ndarray:
        return self.selector.best_at.cpu().numpy()

    def snapshot(self, best: bool) -> dict[str, Tensor]:
        tensors = self.best if best else self.model.snapshot()
        return {key: value.cpu() for key, value in tensors.items()}


class Selector:
    """The selection criterion (SELECT_ON), per model of a stack over `sizes` (M,) selection samples each.
    `offer` records an epoch's scores and says which models' checkpoint it now is."""

    def __init__(self, n_models: int, select_on: str, sizes: Tensor, device: torch.device | str = "cpu"):
        self.select_on, self.sizes = select_on, torch.as_tensor(sizes, dtype=torch.float32, device=device)
        self.best_loss, self.best_error, self.least_error = (
            torch.full((n_models,), float("inf"), device=device) for _ in range(3))
        self.best_at = torch.zeros(n_models, dtype=torch.long, device=device)

    def offer(self, loss: Tensor, error: Tensor, epoch: int) -> Tensor:
        """Scores (M,) of 0-based `epoch`; the (M,) mask of the models whose checkpoint it now is."""
        if self.select_on == "accuracy-1se":
            self.least_error = torch.minimum(self.least_error, error)
            improved = error <= self.least_error + standard_error(self.least_error, self.sizes)
        elif self.select_on == "accuracy":
            improved = (error < self.best_error) | ((error == self.best_error) & (loss < self.best_loss))
        else:
            improved = loss < self.best_loss
        self.best_loss = torch.where(improved, loss, self.best_loss)
        self.best_error = torch.where(improved, error, self.best_error)
        self.best_at = torch.where(improved, epoch + 1, self.best_at)
        return improved


def standard_error(error: Tensor, n: Tensor) -> Tensor:
    """The standard error of an accuracy measured on `n` samples at error rate `error`."""
    return torch.sqrt(error * (1 - error) / n)


def _keep_where(improved: Tensor, current: dict[str, Tensor], best: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per model, the current tensors where it improved, else the kept ones."""
    out = {}
    for key, value in current.items():
        where = improved.view(-1, *([1] * (value.dim() - 1)))
        out[key] = torch.where(where, value, best[key])
    return out
