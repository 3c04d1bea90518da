"""The engine against plain single-model PyTorch loops, seed by seed, through each of its two steps: the
native kernel (what the CPU studies run) and the PyTorch step (any other stack, a GPU)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdtrack.distillers import make_distiller
from kdtrack.engine import Batch, OptimConfig, TrainSpec, native, train
from kdtrack.engine.trainer import Selector
from kdtrack.models.mlp import MLP, MLPConfig, StackedMLP, init_mlps

SEEDS = [0, 10, 1234]
EPOCHS = 60


def rings(n, generator):
    x = torch.randn(n, 2, generator=generator) * 1.5
    return x, (x.norm(dim=1) > 1.2).long()


@pytest.fixture(autouse=True, params=["native", "torch"])
def step(request, monkeypatch):
    """Every test runs through both steps; the native one must really be taken (gcc and AVX2 are on the
    project's machines and in CI)."""
    if request.param == "torch":
        monkeypatch.setenv("KDTRACK_ENGINE", "torch")
    else:
        monkeypatch.delenv("KDTRACK_ENGINE", raising=False)
        for batch_norm in (False, True):
            stack = StackedMLP(init_mlps(MLPConfig(batch_norm=batch_norm), [0]))
            assert native.why_not(stack, torch.device("cpu")) is None
    return request.param


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(7)
    (x, y), (xv, yv) = rings(300, generator), rings(100, generator)
    teacher = torch.randn(len(SEEDS), 300, 2, generator=generator) * 3
    teacher_valid = torch.randn(len(SEEDS), 100, 2, generator=generator) * 3
    return x, y, xv, yv, teacher, teacher_valid


def single_run(seed, config, optim, step, x, xv, yv, valid_loss):
    """The reference: one nn.Module, torch.optim, and a loop written out by hand."""
    torch.manual_seed(seed)
    model = MLP(config)
    kind = torch.optim.AdamW if optim.optimizer == "adamw" else torch.optim.Adam
    optimizer = kind(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay, amsgrad=optim.amsgrad)
    scheduler = None
    if optim.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optim.lr, total_steps=EPOCHS)
    val_loss, val_acc = [], []
    for epoch in range(EPOCHS):
        model.train()
        loss = step(model(x), epoch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler:
            scheduler.step()
        model.eval()
        with torch.no_grad():
            logits = model(xv)
            val_loss.append(valid_loss(logits, epoch).item())
            val_acc.append((logits.argmax(1) == yv).float().mean().item())
    return np.array(val_loss), np.array(val_acc)


@pytest.mark.parametrize(
    "optim,batch_norm",
    [
        (OptimConfig(), False),
        (OptimConfig(optimizer="adamw", weight_decay=0.01, amsgrad=True, schedule="onecycle", lr=0.01), False),
        (OptimConfig(lr=0.01), True),
    ],
    ids=["adam", "adamw-amsgrad-onecycle", "batchnorm"],
)
def test_each_seed_of_the_stack_equals_its_single_model_run(data, optim, batch_norm):
    x, y, xv, yv, _, _ = data
    config = MLPConfig(batch_norm=batch_norm)
    stack = StackedMLP(init_mlps(config, SEEDS))
    result = train(stack, make_distiller("ce", EPOCHS), [Batch(x[None], y[None])], Batch(xv[None], yv[None]), TrainSpec(EPOCHS, optim))
    for index, seed in enumerate(SEEDS):
        loss, acc = single_run(seed, config, optim, lambda logits, e: F.cross_entropy(logits, y), x, xv, yv,
                               lambda logits, e: F.cross_entropy(logits, yv))
        np.testing.assert_allclose(result.history["val_loss"][:, index], loss, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(result.history["val_acc"][:, index], acc)


def test_kd_student_stack_equals_single_runs_with_hand_written_loss(data):
    x, y, xv, yv, teacher, teacher_valid = data
    alpha, temperature = 0.7, 4.0

    def kd(logits, labels, target):
        soft = F.kl_div(F.log_softmax(logits / temperature, 1), F.softmax(target / temperature, 1), reduction="batchmean")
        return (1 - alpha) * F.cross_entropy(logits, labels) + alpha * temperature**2 * soft

    stack = StackedMLP(init_mlps(MLPConfig(), SEEDS))
    distiller = make_distiller("kd", EPOCHS, alpha=alpha, temperature=temperature)
    result = train(stack, distiller, [Batch(x[None], y[None], teacher=teacher)],
                   Batch(xv[None], yv[None], teacher=teacher_valid), TrainSpec(EPOCHS, OptimConfig()))
    for index, seed in enumerate(SEEDS):
        loss, acc = single_run(seed, MLPConfig(), OptimConfig(), lambda logits, e: kd(logits, y, teacher[index]),
                               x, xv, yv, lambda logits, e: kd(logits, yv, teacher_valid[index]))
        np.testing.assert_allclose(result.history["val_loss"][:, index], loss, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(result.history["val_acc"][:, index], acc)


def test_masked_models_learn_only_from_their_own_samples(data):
    """Two models on one padded batch equal each alone on its unpadded samples."""
    x, y, xv, yv, _, _ = data
    first, second = slice(0, 120), slice(120, 300)
    padded_x, padded_y, mask = torch.zeros(2, 180, 2), torch.zeros(2, 180, dtype=torch.long), torch.zeros(2, 180)
    for row, part in enumerate((first, second)):
        n = part.stop - part.start
        padded_x[row, :n], padded_y[row, :n], mask[row, :n] = x[part], y[part], 1
    stack = StackedMLP(init_mlps(MLPConfig(), [3, 3]))
    valid = Batch(xv[None], yv[None])
    result = train(stack, make_distiller("ce", EPOCHS), [Batch(padded_x, padded_y, mask)], valid, TrainSpec(EPOCHS, OptimConfig()))
    for row, part in enumerate((first, second)):
        alone = train(StackedMLP(init_mlps(MLPConfig(), [3])), make_distiller("ce", EPOCHS),
                      [Batch(x[part][None], y[part][None])], valid, TrainSpec(EPOCHS, OptimConfig()))
        np.testing.assert_allclose(result.history["val_loss"][:, row], alone.history["val_loss"][:, 0], rtol=1e-5, atol=1e-6)


def test_best_checkpoint_is_the_epoch_of_least_selection_loss(data):
    x, y, xv, yv, _, _ = data
    stack = StackedMLP(init_mlps(MLPConfig(), SEEDS))
    selection = Batch(x[:50][None], y[:50][None])
    result = train(stack, make_distiller("ce", EPOCHS), [Batch(x[None], y[None])], Batch(xv[None], yv[None]),
                   TrainSpec(EPOCHS, OptimConfig(lr=0.05)), selection=selection)
    for index in range(len(SEEDS)):
        losses = result.history["selection_loss"][:, index]
        assert result.best_epoch[index] == np.argmin(losses) + 1
        best = stack.unstack(result.best, index)
        with torch.no_grad():
            reloss = F.cross_entropy(best(x[:50]), y[:50]).item()
        assert reloss == pytest.approx(losses.min(), rel=1e-5)


def test_annealing_selects_among_final_phase_checkpoints_on_their_loss(data):
    """Annealing losses change definition between phases: only phase-2 epochs (here cross-entropy) compete."""
    x, y, xv, yv, teacher, teacher_valid = data
    stack = StackedMLP(init_mlps(MLPConfig(), SEEDS))
    selection = Batch(x[:50][None], y[:50][None], teacher=teacher[:, :50])
    result = train(stack, make_distiller("anneal-jafari", EPOCHS, temperature=4), [Batch(x[None], y[None], teacher=teacher)],
                   Batch(xv[None], yv[None], teacher=teacher_valid), TrainSpec(EPOCHS, OptimConfig(lr=0.05)), selection=selection)
    for index in range(len(SEEDS)):
        losses = result.history["selection_loss"][:, index]
        assert np.isinf(losses[: EPOCHS // 2]).all() and np.isfinite(losses[EPOCHS // 2 :]).all()
        assert result.best_epoch[index] == np.argmin(losses) + 1 > EPOCHS // 2
        with torch.no_grad():
            ce = F.cross_entropy(stack.unstack(result.best, index)(x[:50]), y[:50]).item()
        assert ce == pytest.approx(losses.min(), rel=1e-5)


def test_same_seed_same_numbers(data):
    x, y, xv, yv, _, _ = data

    def once():
        stack = StackedMLP(init_mlps(MLPConfig(), SEEDS))
        return train(stack, make_distiller("ce", 20), [Batch(x[None], y[None])], Batch(xv[None], yv[None]), TrainSpec(20, OptimConfig()))

    np.testing.assert_array_equal(once().history["val_loss"], once().history["val_loss"])


def test_several_steps_per_epoch_equal_a_loop_that_steps_per_batch(data):
    """The report's step order, one optimizer step per domain per epoch, here with AdamW and a one-cycle
    schedule that steps with every batch."""
    x, y, xv, yv, teacher, teacher_valid = data
    parts = [slice(0, 100), slice(100, 220), slice(220, 300)]
    optim = OptimConfig(optimizer="adamw", weight_decay=0.01, schedule="onecycle", lr=0.01)
    alpha, temperature = 0.6, 3.0
    distiller = make_distiller("kd", EPOCHS, alpha=alpha, temperature=temperature)
    stack = StackedMLP(init_mlps(MLPConfig(), SEEDS))
    result = train(stack, distiller, [Batch(x[p][None], y[p][None], teacher=teacher[:, p]) for p in parts],
                   Batch(xv[None], yv[None], teacher=teacher_valid), TrainSpec(EPOCHS, optim))

    def kd(logits, labels, target):
        soft = F.kl_div(F.log_softmax(logits / temperature, 1), F.softmax(target / temperature, 1), reduction="batchmean")
        return (1 - alpha) * F.cross_entropy(logits, labels) + alpha * temperature**2 * soft

    for index, seed in enumerate(SEEDS):
        torch.manual_seed(seed)
        model = MLP(MLPConfig())
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.01)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=EPOCHS * len(parts))
        train_loss, val_loss = [], []
        for _ in range(EPOCHS):
            weighted = 0.0
            for part in parts:
                loss = kd(model(x[part]), y[part], teacher[index, part])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                weighted += loss.item() * (part.stop - part.start)
            train_loss.append(weighted / len(x))
            with torch.no_grad():
                val_loss.append(kd(model(xv), yv, teacher_valid[index]).item())
        np.testing.assert_allclose(result.history["train_loss"][:, index], train_loss, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result.history["val_loss"][:, index], val_loss, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("select_on", ["ce", "accuracy"])
def test_checkpoints_are_selected_on_the_chosen_criterion(data, select_on):
    """A KD student whose objective is mostly the teacher's: on `ce` the kept checkpoint is the one of least
    holdout cross-entropy, on `accuracy` the first of the highest holdout accuracy that has the least
    cross-entropy among those."""
    x, y, xv, yv, teacher, teacher_valid = data
    stack = StackedMLP(init_mlps(MLPConfig(), SEEDS))
    selection = Batch(x[:60][None], y[:60][None], teacher=teacher[:, :60])
    result = train(stack, make_distiller("kd", EPOCHS, alpha=0.9, temperature=8.0),
                   [Batch(x[None], y[None], teacher=teacher)], Batch(xv[None], yv[None], teacher=teacher_valid),
                   TrainSpec(EPOCHS, OptimConfig(lr=0.02), select_on), selection=selection)
    for index in range(len(SEEDS)):
        ce, acc = result.history["selection_loss"][:, index], result.history["selection_acc"][:, index]
        expected = np.argmin(ce) if select_on == "ce" else np.lexsort((ce, -acc))[0]
        assert result.best_epoch[index] == expected + 1
        with torch.no_grad():
            logits = stack.unstack(result.best, index)(x[:60])
        assert F.cross_entropy(logits, y[:60]).item() == pytest.approx(ce[expected], rel=1e-5)
        assert (logits.argmax(1) == y[:60]).float().mean().item() == pytest.approx(acc[expected])


def test_accuracy_within_one_standard_error_keeps_the_latest_epoch_near_the_best():
    """By hand, 100 holdout samples: the best accuracy is 0.80 (standard error 0.04), so 0.77 and 0.765 are
    within it and 0.75 is not; the later of the near ones wins, a fall of more than 0.04 never does."""
    selector = Selector(2, "accuracy-1se", torch.tensor([100.0, 100.0]))
    kept = [int(selector.offer(torch.zeros(2), 1 - torch.tensor(acc), epoch).sum())
            for epoch, acc in enumerate([[0.70, 0.70], [0.80, 0.80], [0.77, 0.75], [0.765, 0.60]])]
    assert kept == [2, 2, 1, 1]
    assert selector.best_at.tolist() == [4, 2]


def test_each_selection_criterion_picks_its_own_epoch_from_one_training(data):
    """Students of teachers that disagree with the labels: the holdout's distillation loss, its cross-entropy,
    its accuracy and its accuracy within one standard error prefer different epochs of the very same
    training, and each picks its own best."""
    x, y, xv, yv, teacher, teacher_valid = data
    selection = Batch(x[:60][None], y[:60][None], teacher=teacher[:, :60])
    results = {}
    for criterion in ("objective", "ce", "accuracy", "accuracy-1se"):
        stack = StackedMLP(init_mlps(MLPConfig(), SEEDS))
        results[criterion] = train(stack, make_distiller("kd", EPOCHS, alpha=0.9, temperature=2.0),
                                   [Batch(x[None], y[None], teacher=teacher)], Batch(xv[None], yv[None], teacher=teacher_valid),
                                   TrainSpec(EPOCHS, OptimConfig(lr=0.05), criterion), selection=selection)
    np.testing.assert_array_equal(results["objective"].history["train_loss"], results["ce"].history["train_loss"])
    for criterion, result in results.items():
        for index in range(len(SEEDS)):
            loss, acc = result.history["selection_loss"][:, index], result.history["selection_acc"][:, index]
            if criterion == "accuracy":  # the best accuracy, ties by the lower cross-entropy
                best = max(range(EPOCHS), key=lambda e: (acc[e], -loss[e]))
            elif criterion == "accuracy-1se":  # the last epoch within sqrt(a (1 - a) / 60) of the best a
                top = acc.max()
                best = max(e for e in range(EPOCHS) if acc[e] >= top - np.sqrt(top * (1 - top) / 60))
            else:
                best = int(np.argmin(loss))
            assert result.best_epoch[index] == best + 1
    assert (results["objective"].best_epoch != results["ce"].best_epoch).any()
    assert (results["accuracy"].best_epoch != results["ce"].best_epoch).any()
    assert (results["accuracy-1se"].best_epoch > results["accuracy"].best_epoch).any()
    assert (results["accuracy-1se"].best_epoch >= results["accuracy"].best_epoch).all()
