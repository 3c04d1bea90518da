"""The engine's mini-batch step (the image path) on a tiny network: the checkpoint it selects, its history,
its schedule and its determinism, each checked against what the networks themselves say."""
import numpy as np
import pytest
import torch
from torch import nn

from kdtrack.distillers import make_distiller
from kdtrack.engine.minibatch import Loader, MinibatchStep, Samples, train_network
from kdtrack.engine import OptimConfig, TrainSpec

SGD = OptimConfig(0.1, "sgd", 5e-4, schedule="multistep", momentum=0.9, milestones=(3,), gamma=0.1)


def _samples(n: int, seed: int) -> Samples:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return Samples(x, (x[:, 0] + 0.5 * x[:, 1] > 0).long())


def _network(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


def _identity(x: torch.Tensor, generator) -> torch.Tensor:
    return x


def _train(seed: int = 0, epochs: int = 6, select_on: str = "accuracy"):
    fit, valid, selection = _samples(96, 1), _samples(40, 2), _samples(40, 3)
    student = _network(seed)
    result, model = train_network(student, None, make_distiller("ce", epochs), fit, valid, selection,
                                  TrainSpec(epochs, SGD, select_on), Loader(16, _identity, seed))
    return result, model, valid, selection


def _scores(model: nn.Module, split: Samples) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(split.x)
    return float(nn.functional.cross_entropy(logits, split.y)), float((logits.argmax(1) == split.y).float().mean())


def test_the_selected_checkpoint_is_the_best_epoch_on_the_selection_split():
    result, model, valid, selection = _train()
    history = result.history
    accuracies, losses = history["selection_acc"][:, 0], history["selection_loss"][:, 0]
    best = int(result.best_epoch[0])
    assert accuracies[best - 1] == accuracies.max()
    assert losses[best - 1] == losses[accuracies == accuracies.max()].min()
    loss, acc = _scores(model, selection)
    assert acc == pytest.approx(accuracies[best - 1]) and loss == pytest.approx(losses[best - 1], rel=1e-5)
    assert _scores(model, valid)[1] == pytest.approx(history["val_acc"][best - 1, 0])


def test_the_history_has_a_row_per_epoch_and_the_loss_falls():
    result, *_ = _train(epochs=6)
    assert {name: values.shape for name, values in result.history.items()} == {
        name: (6, 1) for name in ("train_loss", "train_acc", "val_loss", "val_acc", "selection_loss", "selection_acc")}
    assert result.history["train_loss"][-1, 0] < result.history["train_loss"][0, 0]


def test_the_same_seed_gives_the_same_numbers_and_another_seed_others():
    first, second, other = _train(0)[0], _train(0)[0], _train(1)[0]
    assert all(np.array_equal(first.history[name], second.history[name]) for name in first.history)
    assert not np.array_equal(first.history["train_loss"], other.history["train_loss"])


def test_the_rate_drops_by_gamma_after_each_milestone_epoch():
    fit = _samples(96, 1)
    step = MinibatchStep(_network(0), None, make_distiller("ce", 5), fit, fit, None, TrainSpec(5, SGD),
                         Loader(32, _identity, 0))
    rates = []
    for epoch in range(5):
        step.run(epoch, epoch + 1)
        rates.append(step.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.01])


def test_a_batch_size_that_does_not_divide_among_processes_is_refused(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 0)
    fit = _samples(8, 1)
    with pytest.raises(ValueError, match="does not divide among 3 processes"):
        MinibatchStep(_network(0), None, make_distiller("ce", 1), fit, fit, None, TrainSpec(1, SGD),
                      Loader(64, _identity, 0))
