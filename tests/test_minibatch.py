"""The engine's mini-batch step (the image path) on a tiny network: the checkpoint it selects, its history,
its schedule and its determinism, each checked against what the networks themselves say."""
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from kdtrack.distillers import make_distiller
from kdtrack.engine import minibatch
from kdtrack.engine.minibatch import Loader, MinibatchStep, Samples, train_network
from kdtrack.engine import OptimConfig, TrainSpec
from kdtrack.images.augment import Augment
from kdtrack.models import NetworkConfig, build_network

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


# ---- how the step computes: memory format, precision, compilation, synchronised batch norm -----------------


IMAGE_SGD = OptimConfig(0.01, "sgd", 5e-4, schedule="multistep", momentum=0.9, milestones=(1,), gamma=0.1)
"""The digits recipe's rate: at 0.1 these few steps amplify float rounding 1000-fold."""


def _images(n: int, seed: int) -> Samples:
    """uint8 8x8 one-channel images whose label is whether they are brighter than mid-grey on average."""
    x = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return Samples(x, (x.float().mean(dim=(1, 2, 3)) > 127.5).long())


def _image_step(epochs: int = 2, **options) -> tuple[MinibatchStep, np.ndarray]:
    """A ResNet-8x4 trained `epochs` epochs of two steps each on crops of 64 images, and its history rows."""
    student = build_network(NetworkConfig("resnet8x4", 2, 1), 0)
    fit, held = _images(64, 1), _images(32, 2)
    step = MinibatchStep(student, None, make_distiller("ce", epochs), fit, held, held,
                         TrainSpec(epochs, IMAGE_SGD, "accuracy", **options), Loader(32, Augment(1, False, (0.5,), (0.25,)), 0))
    return step, step.run(0, epochs)


def _weights(step: MinibatchStep) -> torch.Tensor:
    return torch.cat([value.flatten() for value in step.trainee.state_dict().values() if value.is_floating_point()])


def test_channels_last_computes_what_the_default_memory_format_does(monkeypatch):
    fast, fast_history = _image_step()
    assert fast.trainee.student.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(minibatch, "channels_last", lambda module: module)
    monkeypatch.setattr(minibatch, "as_input", lambda x: x)
    default, default_history = _image_step()
    assert default.trainee.student.stem[0].weight.is_contiguous()
    np.testing.assert_allclose(fast_history, default_history, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(_weights(fast), _weights(default), rtol=1e-4, atol=1e-5)


def test_bf16_trains_within_a_percent_of_float32_and_selects_in_float32():
    """Two epochs of two steps: bfloat16 autocast keeps 8 bits of mantissa (a relative error of 2^-9 per
    operation), and the training losses stay within 1% of float32's. The parameters stay float32, and the
    selection pass scores the float32 network: the deployed model's own cross-entropy and accuracy on the
    holdout are the history's at the selected epoch."""
    epochs, held = 2, _images(32, 2)

    def trained(precision):
        student = build_network(NetworkConfig("resnet8x4", 2, 1), 0)
        return train_network(student, None, make_distiller("ce", epochs), _images(64, 1), held, held,
                             TrainSpec(epochs, IMAGE_SGD, "accuracy", precision=precision),
                             Loader(32, Augment(1, False, (0.5,), (0.25,)), 0))

    (full, _), (half, model) = trained("float32"), trained("bf16")
    np.testing.assert_allclose(half.history["train_loss"], full.history["train_loss"], rtol=1e-2)
    assert not np.array_equal(half.history["train_loss"], full.history["train_loss"])  # autocast did run
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}
    best = int(half.best_epoch[0]) - 1
    loss, acc = _scores(model, Samples(Augment(1, False, (0.5,), (0.25,))(held.x, None), held.y))
    assert acc == half.history["selection_acc"][best, 0]
    assert loss == pytest.approx(half.history["selection_loss"][best, 0], rel=1e-5)


@pytest.mark.skipif(not any(shutil.which(name) for name in ("c++", "g++", "clang++")),
                    reason="torch.compile's CPU backend (Inductor) builds C++ kernels, and no C++ compiler is on PATH")
def test_compiled_training_computes_what_eager_training_does():
    """A small convolutional network (Inductor compiles a ResNet's forward and backward for minutes on two
    cores), one epoch of one step."""
    def trained(compile):
        torch.manual_seed(0)
        network = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                nn.Linear(256, 2))
        fit = _images(16, 1)
        return train_network(network, None, make_distiller("ce", 1), fit, fit, None,
                             TrainSpec(1, IMAGE_SGD, compile=compile), Loader(16, Augment(1, False, (0.5,), (0.25,)), 0))

    (eager, eager_model), (compiled, compiled_model) = trained(False), trained(True)
    for name in eager.history:
        np.testing.assert_allclose(compiled.history[name], eager.history[name], rtol=1e-4)
    torch.testing.assert_close(compiled_model.state_dict(), eager_model.state_dict(), rtol=1e-4, atol=1e-5)


def test_batch_norm_synchronises_on_a_gpu_only_and_the_deployed_student_keeps_plain_batch_norm(monkeypatch):
    """torch's SyncBatchNorm refuses CPU tensors, so only a GPU's processes synchronise. A process without a
    group normalises with SyncBatchNorm as with BatchNorm, so the conversion is checked on the CPU here: the
    same numbers, and a deployed student with plain batch norm holding the trained state."""
    assert [minibatch.sync_batchnorm(torch.device(device), world) for device, world in
            (("cpu", 2), ("cuda", 1), ("cuda", 2))] == [False, False, True]
    _, plain = _image_step()
    monkeypatch.setattr(minibatch, "sync_batchnorm", lambda device, world: True)
    step, synchronised = _image_step()
    assert any(isinstance(module, nn.SyncBatchNorm) for module in step.trainee.modules())
    np.testing.assert_array_equal(synchronised, plain)
    student = build_network(NetworkConfig("resnet8x4", 2, 1), 0)
    fit, held = _images(64, 1), _images(32, 2)
    _, model = train_network(student, None, make_distiller("ce", 2), fit, held, held, TrainSpec(2, IMAGE_SGD, "accuracy"),
                             Loader(32, Augment(1, False, (0.5,), (0.25,)), 0))
    assert model is student and not any(isinstance(module, nn.SyncBatchNorm) for module in model.modules())
    best = {key.removeprefix("student."): value for key, value in step.best.items()}
    torch.testing.assert_close(model.state_dict(), best, rtol=0, atol=0)
