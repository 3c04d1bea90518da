"""Each objective against a hand computation on small numbers."""
import math

import pytest
import torch

from kdtrack.distillers import make_distiller


def softmax(values, temperature=1.0):
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


STUDENT = [[2.0, -1.0], [0.5, 0.25]]
TEACHER = [[3.0, -2.0], [-1.0, 1.0]]
LABELS = [0, 1]


def tensors():
    return torch.tensor([STUDENT]), torch.tensor([TEACHER]), torch.tensor([LABELS])


def hand_ce(logits, label):
    return -math.log(softmax(logits)[label])


def hand_kl(student, teacher, temperature):
    p, q = softmax(teacher, temperature), softmax(student, temperature)
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def hand_mse(student, target):
    return sum((s - t) ** 2 for s, t in zip(student, target)) / len(student)


def total(distiller, epoch=0):
    student, teacher, labels = tensors()
    terms = distiller.loss_terms(student, teacher, labels, epoch)
    return sum(terms.values())[0].tolist()


def test_cross_entropy_matches_hand_computation():
    got = total(make_distiller("ce", epochs=10))
    assert got == pytest.approx([hand_ce(s, y) for s, y in zip(STUDENT, LABELS)], rel=1e-6)


@pytest.mark.parametrize("alpha,temperature", [(0.5, 9.0), (0.81, 9.0), (0.3, 2.0), (1.0, 1.0)])
def test_hinton_kd_matches_hand_computation(alpha, temperature):
    got = total(make_distiller("kd", epochs=10, alpha=alpha, temperature=temperature))
    expected = [
        (1 - alpha) * hand_ce(s, y) + alpha * temperature**2 * hand_kl(s, t, temperature)
        for s, t, y in zip(STUDENT, TEACHER, LABELS)
    ]
    assert got == pytest.approx(expected, rel=1e-5)


def test_kd_takes_one_alpha_and_temperature_per_model():
    student, teacher, labels = tensors()
    grid = [(0.5, 9.0), (0.3, 2.0)]
    stacked = make_distiller("kd", 10, alpha=[a for a, _ in grid], temperature=[t for _, t in grid])
    terms = stacked.loss_terms(student.repeat(2, 1, 1), teacher, labels, 0)
    for row, (alpha, temperature) in enumerate(grid):
        alone = make_distiller("kd", 10, alpha=alpha, temperature=temperature).loss_terms(student, teacher, labels, 0)
        assert torch.allclose(sum(terms.values())[row], sum(alone.values())[0])


def test_kd_with_the_teacher_as_student_leaves_only_cross_entropy():
    teacher = torch.tensor([TEACHER])
    terms = make_distiller("kd", 10, alpha=0.5, temperature=4.0).loss_terms(teacher, teacher, torch.tensor([LABELS]), 0)
    assert terms["kd"].abs().max() < 1e-6


def test_anneal_cosine_follows_the_reports_schedule():
    epochs, t_max, alpha = 100, 9.0, 0.81
    distiller = make_distiller("anneal-cosine", epochs, alpha=alpha, temperature=t_max)
    for epoch in (0, 30, 60):
        phi = max(1.0, t_max * (1 + math.cos(math.pi * epoch / epochs)) / 2)
        assert phi > 1
        expected = [hand_mse(s, [phi * v for v in t]) for s, t in zip(STUDENT, TEACHER)]
        assert total(distiller, epoch) == pytest.approx(expected, rel=1e-5)
        assert distiller.schedule(epoch) == {"temperature": pytest.approx(phi), "phase": 1.0}
    late = 95  # phi has reached 1: (1 - alpha) CE + alpha MSE against the plain teacher
    expected = [(1 - alpha) * hand_ce(s, y) + alpha * hand_mse(s, t) for s, t, y in zip(STUDENT, TEACHER, LABELS)]
    assert total(distiller, late) == pytest.approx(expected, rel=1e-5)
    assert distiller.schedule(late) == {"temperature": 1.0, "phase": 2.0}


def test_anneal_jafari_steps_temperature_up_then_trains_on_labels():
    epochs, tau_max = 40, 4
    distiller = make_distiller("anneal-jafari", epochs, temperature=tau_max)
    temperatures = [distiller.schedule(epoch)["temperature"] for epoch in range(20)]
    assert temperatures == [1.0] * 5 + [2.0] * 5 + [3.0] * 5 + [4.0] * 5
    for epoch in (0, 7, 19):
        scale = distiller.step_temperature(epoch) / tau_max
        expected = [hand_mse(s, [scale * v for v in t]) for s, t in zip(STUDENT, TEACHER)]
        assert total(distiller, epoch) == pytest.approx(expected, rel=1e-5)
    assert distiller.schedule(20)["phase"] == 2.0
    assert total(distiller, 20) == pytest.approx([hand_ce(s, y) for s, y in zip(STUDENT, LABELS)], rel=1e-6)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method 'fitnets'"):
        make_distiller("fitnets", 10)
