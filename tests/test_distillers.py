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
    for epoch, stage in ((0, 1), (7, 2), (19, 4)):
        scale = stage / tau_max
        expected = [hand_mse(s, [scale * v for v in t]) for s, t in zip(STUDENT, TEACHER)]
        assert total(distiller, epoch) == pytest.approx(expected, rel=1e-5)
    assert distiller.schedule(20)["phase"] == 2.0
    assert total(distiller, 20) == pytest.approx([hand_ce(s, y) for s, y in zip(STUDENT, LABELS)], rel=1e-6)


def test_anneal_jafari_takes_one_tau_max_per_model():
    """A tuning grid's stack: every model has the same phases and its own stages (tau_max 2 and 4 over
    a 20-epoch phase 1: stages of 10 and of 5 epochs)."""
    student, teacher, labels = (t.repeat(2, 1, *[1] * (t.dim() - 2)) for t in tensors())
    distiller = make_distiller("anneal-jafari", 40, temperature=[2, 4])
    for epoch, stages in ((0, (1, 1)), (7, (1, 2)), (12, (2, 3)), (19, (2, 4))):
        got = sum(distiller.loss_terms(student, teacher, labels, epoch).values())
        for row, (stage, tau_max) in enumerate(zip(stages, (2, 4))):
            expected = [hand_mse(s, [stage / tau_max * v for v in t]) for s, t in zip(STUDENT, TEACHER)]
            assert got[row].tolist() == pytest.approx(expected, rel=1e-5)
    assert not distiller.selectable(19) and distiller.selectable(20)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method 'fitnets'"):
        make_distiller("fitnets", 10)


def test_domain_mixture_teaches_each_sample_the_posterior_weighted_mixture_of_experts():
    """Two samples, two domain experts: the target is log(sum_d w_d softmax(z_d)), and the loss Hinton's on it;
    the default (plain kd) takes each sample's own expert's logits as they are."""
    experts = [[[3.0, -2.0], [-1.0, 1.0]], [[0.0, 2.0], [4.0, 0.5]]]  # expert d's logits on samples 0, 1
    weights = [[0.8, 0.2], [0.3, 0.7]]                                # p(domain | x) of samples 0, 1
    logits = torch.tensor([experts]).transpose(0, 1).reshape(1, 2, 2, 2)  # (M=1, D=2, N=2, C=2)
    domains = torch.tensor([1, 0])
    mixture = make_distiller("kd-mixture", 10, alpha=0.7, temperature=3.0)
    targets = mixture.teacher_targets(logits, domains, lambda: torch.tensor(weights))
    for n in range(2):
        mixed = [sum(weights[n][d] * softmax(experts[d][n])[c] for d in range(2)) for c in range(2)]
        assert targets[0, n].tolist() == pytest.approx([math.log(p) for p in mixed], rel=1e-5)
    student = torch.tensor([STUDENT])
    got = sum(mixture.loss_terms(student, targets, torch.tensor([LABELS]), 0).values())[0].tolist()
    expected = [0.3 * hand_ce(s, y) + 0.7 * 9.0 * hand_kl(s, t, 3.0) for s, t, y in zip(STUDENT, targets[0].tolist(), LABELS)]
    assert got == pytest.approx(expected, rel=1e-5)
    own = make_distiller("kd", 10).teacher_targets(logits, domains, lambda: pytest.fail("kd needs no p(domain | x)"))
    assert own[0].tolist() == [experts[1][0], experts[0][1]]
