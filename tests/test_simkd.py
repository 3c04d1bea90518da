"""SimKD and its variants against hand computations: the projector, each loss, the weights of several
projectors, using labels, the frozen teacher, and the deployed model (student backbone + projector +
teacher classifier, no teacher backbone)."""
import pytest
import torch
import torch.nn.functional as F

from kdtrack.distillers.simkd import SimKD
from kdtrack.engine.minibatch import Trainee
from kdtrack.models.resnet import ResNetConfig, build_resnet
from kdtrack.models.simkd import Projector, SimKDStudent, match_sizes


@pytest.fixture(scope="module")
def pair():
    """A small teacher/student pair on 8x8 single-channel inputs, and a batch."""
    teacher = build_resnet(ResNetConfig("resnet32x4", 10, 1), seed=0).eval().requires_grad_(False)
    student = build_resnet(ResNetConfig("resnet8x4", 10, 1), seed=1)
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    return teacher, student, x, y


def test_projector_has_the_papers_size():
    assert sum(p.numel() for p in Projector(256, 256, factor=2).parameters()) == 214_016
    assert all(conv.bias is None for conv in Projector(256, 256).modules() if isinstance(conv, torch.nn.Conv2d))


def test_l2_is_the_mean_squared_error_of_the_projected_penultimate_map(pair):
    teacher, student, x, y = pair
    simkd = SimKD(1, student, teacher)
    objective = simkd.objective(student, teacher, x, y, 0)
    projected = simkd.parts[0](student.features(x)[-1])
    target = teacher.features(x)[-1]
    assert torch.allclose(objective.per_sample, ((projected - target) ** 2).mean(dim=(1, 2, 3)), atol=1e-6)
    assert torch.allclose(objective.logits, teacher.classify(projected), atol=1e-6)
    assert torch.allclose(objective.loss(), F.mse_loss(projected, target), atol=1e-6)
    assert objective.counted is None


def test_kl_compares_class_distributions_and_is_never_negative(pair):
    teacher, student, x, y = pair
    simkd = SimKD(1, student, teacher, loss="kl", temperature=4.0)
    objective = simkd.objective(student, teacher, x, y, 0)
    logits = teacher.classify(simkd.parts[0](student.features(x)[-1]))
    p_teacher = F.softmax(teacher(x) / 4, dim=1)
    expected = 16 * (p_teacher * (p_teacher.log() - F.log_softmax(logits / 4, dim=1))).sum(dim=1)
    assert torch.allclose(objective.per_sample, expected, atol=1e-5)
    assert (objective.per_sample >= 0).all()


def test_multi_weights_the_previous_stage_by_the_rest(pair):
    teacher, student, x, y = pair
    simkd = SimKD(1, student, teacher, projector="multi", multi_weight=0.75)
    assert len(simkd.parts) == 2
    objective = simkd.objective(student, teacher, x, y, 0)
    student_maps, teacher_maps = student.features(x), teacher.features(x)
    last = ((simkd.parts[0](student_maps[2]) - teacher_maps[2]) ** 2).mean(dim=(1, 2, 3))
    previous = ((simkd.parts[1](student_maps[1]) - teacher_maps[1]) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(objective.per_sample, 0.75 * last + 0.25 * previous, atol=1e-6)


def test_all_layer_averages_a_projector_per_stage(pair):
    teacher, student, x, y = pair
    simkd = SimKD(1, student, teacher, projector="all-layer")
    assert [projector[0].in_channels for projector in simkd.parts] == [256, 128, 64]
    objective = simkd.objective(student, teacher, x, y, 0)
    student_maps, teacher_maps = student.features(x), teacher.features(x)
    pairs = [((p(student_maps[s]) - teacher_maps[s]) ** 2).mean(dim=(1, 2, 3)) for p, s in zip(simkd.parts, (2, 1, 0))]
    assert torch.allclose(objective.per_sample, sum(pairs) / 3, atol=1e-6)


def test_use_labels_counts_only_what_the_teacher_gets_right(pair):
    teacher, student, x, _ = pair
    right = teacher(x).argmax(dim=1)
    y = right.clone()
    y[::2] = (right[::2] + 1) % 10  # the teacher misclassifies every other sample
    objective = SimKD(1, student, teacher, use_labels=True).objective(student, teacher, x, y, 0)
    assert objective.counted.tolist() == [False, True] * 3
    assert torch.allclose(objective.loss(), objective.per_sample[1::2].mean())


def test_a_training_step_moves_student_and_projector_never_the_teacher(pair):
    teacher, student, x, y = pair
    student = build_resnet(ResNetConfig("resnet8x4", 10, 1), seed=1)
    simkd = SimKD(1, student, teacher)
    student.classifier.requires_grad_(False)
    trainee = Trainee(student, teacher, simkd)
    before = {name: value.clone() for name, value in teacher.state_dict().items()}
    projector_before = simkd.parts[0][0].weight.clone()
    trainee.train()
    logits, per_sample, counted = trainee(x, y, 0)
    per_sample.mean().backward()
    torch.optim.SGD([p for p in trainee.parameters() if p.requires_grad], lr=0.1).step()
    assert all(torch.equal(before[name], value) for name, value in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    assert student.classifier.weight.grad is None
    assert not torch.equal(projector_before, simkd.parts[0][0].weight)
    assert not any(name.startswith("_teacher") for name in trainee.state_dict())


def test_the_deployed_student_is_backbone_projector_and_teacher_classifier(pair):
    teacher, student, x, y = pair
    simkd = SimKD(1, student, teacher, projector="multi")
    student.eval(), simkd.parts.eval()
    deployed = simkd.deployable(student, teacher).eval()
    assert isinstance(deployed, SimKDStudent)
    with torch.no_grad():
        expected = teacher.classify(simkd.parts[0](student.features(x)[-1]))
        assert torch.allclose(deployed(x), expected, atol=1e-5)
    counted = sum(p.numel() for p in deployed.parameters())
    student_without_classifier = sum(p.numel() for p in student.parameters()) - 256 * 10 - 10
    assert counted == student_without_classifier + sum(p.numel() for p in simkd.parts[0].parameters()) + 256 * 10 + 10
    rebuilt = SimKDStudent(type(deployed.config).from_params(deployed.config.to_params()))
    rebuilt.load_state_dict(deployed.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), deployed(x))


def test_maps_of_different_sizes_meet_at_the_smaller():
    small, large = torch.ones(1, 2, 4, 4), torch.arange(64.0).view(1, 1, 8, 8).repeat(1, 2, 1, 1)
    pooled_student, teacher = match_sizes(large, small)
    assert pooled_student.shape == (1, 2, 4, 4) and teacher is small
    assert pooled_student[0, 0, 0, 0] == (0 + 1 + 8 + 9) / 4
    student, pooled_teacher = match_sizes(small, large)
    assert student is small and pooled_teacher.shape == (1, 2, 4, 4)
