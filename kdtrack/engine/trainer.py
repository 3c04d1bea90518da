"""The one training loop: full-batch steps for a stack of models, validation every epoch, and the
checkpoint of least selection loss kept beside the last.

Epochs are numbered from 1 in everything the loop returns: row e-1 of the history is epoch e, whose
training loss and accuracy come from the forward pass of its update(s) and whose validation and
selection metrics are measured after them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..distillers import Distiller
from ..distillers.base import accuracy_terms
from ..models.mlp import StackedMLP
from ..progress import Progress
from .optim import OptimConfig, make_optimizer, make_scheduler


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


@dataclass
class TrainResult:
    history: dict[str, np.ndarray]
    """Per-epoch metrics: train_loss, val_loss, train_acc, val_acc (and selection_loss) as (epochs, M);
    the method's scheduled values (e.g. temperature) as (epochs,)."""
    best_epoch: np.ndarray
    """(M,) the epoch (from 1) of least selection loss."""
    best: dict[str, Tensor]
    last: dict[str, Tensor]


def train(
    model: StackedMLP,
    distiller: Distiller,
    train_batches: list[Batch],
    valid: Batch,
    epochs: int,
    optim: OptimConfig,
    selection: Batch | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train every model of the stack; one optimizer step per training batch per epoch.

    Checkpoints are selected on the distiller's selection loss over `selection` when given (a split held
    out from training), else over `valid`; it is logged as `selection_loss` only in the first case.
    """
    optimizer = make_optimizer(model.parameters(), optim)
    scheduler = make_scheduler(optimizer, optim, epochs * len(train_batches))
    names = ["train_loss", "val_loss", "train_acc", "val_acc"] + (["selection_loss"] if selection else [])
    history = {name: torch.empty(epochs, model.n_models) for name in names}
    best_loss = torch.full((model.n_models,), float("inf"))
    best_epoch = torch.zeros(model.n_models, dtype=torch.long)
    best = model.snapshot()

    for epoch in range(epochs):
        model.train()
        history["train_loss"][epoch], history["train_acc"][epoch] = _train_epoch(
            model, distiller, train_batches, epoch, optimizer, scheduler
        )
        model.eval()
        with torch.no_grad():
            logits = model(valid.x, valid.mask)
            history["val_loss"][epoch] = _mean_loss(distiller.loss_terms, logits, valid, epoch)
            history["val_acc"][epoch] = valid.mean(accuracy_terms(logits, valid.y))
            if selection is None:
                loss = _mean_loss(distiller.selection_terms, logits, valid, epoch)
            else:
                logits = model(selection.x, selection.mask)
                loss = history["selection_loss"][epoch] = _mean_loss(distiller.selection_terms, logits, selection, epoch)
            improved = loss < best_loss
            if improved.any():
                best_loss = torch.where(improved, loss, best_loss)
                best_epoch = torch.where(improved, epoch + 1, best_epoch)
                best = _keep_where(improved, model.tensors(), best)
        if progress:
            progress.tick(epoch + 1, lambda: f"mean val_acc {history['val_acc'][epoch].mean():.4f}")

    result = {name: values.numpy() for name, values in history.items()}
    for name in distiller.schedule(0):
        result[name] = np.array([distiller.schedule(e)[name] for e in range(epochs)])
    return TrainResult(result, best_epoch.numpy(), best, model.snapshot())


def _train_epoch(model, distiller, batches, epoch, optimizer, scheduler) -> tuple[Tensor, Tensor]:
    loss_sum = acc_sum = count = 0.0
    for batch in batches:
        logits = model(batch.x, batch.mask)
        loss = _mean_loss(distiller.loss_terms, logits, batch, epoch)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        if scheduler:
            scheduler.step()
        weight = batch.count()
        loss_sum = loss_sum + loss.detach() * weight
        acc_sum = acc_sum + batch.mean(accuracy_terms(logits.detach(), batch.y)) * weight
        count = count + weight
    return loss_sum / count, acc_sum / count


def _mean_loss(terms, logits: Tensor, batch: Batch, epoch: int) -> Tensor:
    """Each model's mean over its samples of the summed per-sample `terms`, (M,)."""
    return batch.mean(sum(terms(logits, batch.teacher, batch.y, epoch).values()))


def _keep_where(improved: Tensor, current: dict[str, Tensor], best: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per model, the current tensors where it improved, else the kept ones."""
    out = {}
    for key, value in current.items():
        where = improved.view(-1, *([1] * (value.dim() - 1)))
        out[key] = torch.where(where, value, best[key])
    return out
