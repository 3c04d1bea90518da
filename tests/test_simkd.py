"""SimKD and its variants against hand computations: the projector, each loss, the weights of several
projectors, using labels, the frozen teacher, and the deployed model (student backbone + projector +
teacher classifier, no teacher backbone)."""
import pytest
import torch
import torch.nn.functional as F

from kdtrack.distillers.simkd import SimKD, stage_pairs
from kdtrack.engine.minibatch import Trainee
from kdtrack.models import NetworkConfig, build_network, from_params
from kdtrack.models.simkd import Projector, SimKDConfig, SimKDStudent, match_sizes, pool_to

DIGITS = (8, 8)


@pytest.fixture(scope="module")
def pair():
    """A small teacher/student pair on 8x8 single-channel inputs, and a batch."""
    teacher = build_network(NetworkConfig("resnet32x4", 10, 1), seed=0).eval().requires_grad_(False)
    student = build_network(NetworkConfig("resnet8x4", 10, 1), seed=1)
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    return teacher, student, x, y


def test_projector_has_the_papers_size():
    assert sum(p.numel() for p in Projector(256, 256, factor=2).parameters()) == 214_016
    assert all(conv.bias is None for conv in Projector(256, 256).modules() if isinstance(conv, torch.nn.Conv2d))


def test_l2_is_the_mean_squared_error_of_the_projected_penultimate_map(pair):
    teacher, student, x, y = pair
    simkd = SimKD(1, student, teacher, DIGITS)
    objective = simkd.objective(student, teacher, x, y, 0)
    projected = simkd.parts[0](student.features(x)[-1])
    target = teacher.features(x)[-1]
    assert torch.allclose(objective.per_sample, ((projected - target) ** 2).mean(dim=(1, 2, 3)), atol=1e-6)
    assert torch.allclose(objective.logits, teacher.classify(projected), atol=1e-6)
    assert torch.allclose(objective.loss(), F.mse_loss(projected, target), atol=1e-6)
    assert objective.counted is None


def test_kl_compares_class_distributions_and_is_never_negative(pair):
    teacher, student, x, y = pair
    simkd = SimKD(1, student, teacher, DIGITS, loss="kl", temperature=4.0)
    objective = simkd.objective(student, teacher, x, y, 0)
    logits = teacher.classify(simkd.parts[0](student.features(x)[-1]))
    p_teacher = F.softmax(teacher(x) / 4, dim=1)
    expected = 16 * (p_teacher * (p_teacher.log() - F.log_softmax(logits / 4, dim=1))).sum(dim=1)
    assert torch.allclose(objective.per_sample, expected, atol=1e-5)
    assert (objective.per_sample >= 0).all()


def test_multi_weights_the_previous_stage_by_the_rest(pair):
    teacher, student, x, y = pair
    simkd = SimKD(1, student, teacher, DIGITS, projector="multi", multi_weight=0.75)
    assert len(simkd.parts) == 2
    objective = simkd.objective(student, teacher, x, y, 0)
    student_maps, teacher_maps = student.features(x), teacher.features(x)
    last = ((simkd.parts[0](student_maps[2]) - teacher_maps[2]) ** 2).mean(dim=(1, 2, 3))
    previous = ((simkd.parts[1](student_maps[1]) - teacher_maps[1]) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(objective.per_sample, 0.75 * last + 0.25 * previous, atol=1e-6)


def test_all_layer_averages_a_projector_per_stage(pair):
    teacher, student, x, y = pair
    simkd = SimKD(1, student, teacher, DIGITS, projector="all-layer")
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
    objective = SimKD(1, student, teacher, DIGITS, use_labels=True).objective(student, teacher, x, y, 0)
    assert objective.counted.tolist() == [False, True] * 3
    assert torch.allclose(objective.loss(), objective.per_sample[1::2].mean())


def test_a_training_step_moves_student_and_projector_never_the_teacher(pair):
    teacher, student, x, y = pair
    student = build_network(NetworkConfig("resnet8x4", 10, 1), seed=1)
    simkd = SimKD(1, student, teacher, DIGITS)
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
    simkd = SimKD(1, student, teacher, DIGITS, projector="multi")
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


def test_pooling_never_enlarges_and_works_per_dimension():
    feature_map = torch.arange(24.0).view(1, 1, 4, 6)
    assert pool_to(feature_map, (8, 8)) is feature_map
    assert torch.equal(pool_to(feature_map, (4, 3)), F.avg_pool2d(feature_map, (1, 2)))
    student, teacher = match_sizes(feature_map, torch.zeros(1, 3, 2, 9))
    assert student.shape == (1, 1, 2, 6) and teacher.shape == (1, 3, 2, 6)


def _cross_family(teacher_arch: str, student_arch: str):
    teacher = build_network(NetworkConfig(teacher_arch, 10, 1), seed=0).eval().requires_grad_(False)
    student = build_network(NetworkConfig(student_arch, 10, 1), seed=1)
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    return teacher, student, x


@pytest.mark.parametrize("teacher_arch, student_arch, sizes", [
    ("vgg8", "resnet8x4", ((1, 1), (2, 2))),  # the student's map is the larger: it is pooled
    ("wrn_16_2", "ShuffleV2", ((2, 2), (1, 1))),  # the teacher's map is the larger: it is pooled
])
def test_a_cross_family_pair_meets_at_the_smaller_map_in_training_and_deployed(teacher_arch, student_arch, sizes):
    teacher, student, x = _cross_family(teacher_arch, student_arch)
    teacher_size, student_size = sizes
    simkd = SimKD(1, student, teacher, DIGITS)
    assert simkd.teacher_map_size == teacher_size
    projector = simkd.parts[0]
    assert (projector[0].in_channels, projector[-3].out_channels) == (student.stage_channels[-1], teacher.stage_channels[-1])
    student.eval(), simkd.parts.eval()
    with torch.no_grad():
        objective = simkd.objective(student, teacher, x, torch.zeros(6, dtype=torch.long), 0)
        student_map, teacher_map = student.features(x)[-1], teacher.features(x)[-1]
        assert tuple(student_map.shape[-2:]) == student_size and tuple(teacher_map.shape[-2:]) == teacher_size
        common = min(teacher_size, student_size)
        source = F.adaptive_avg_pool2d(student_map, common)
        projected = projector(source)
        target = F.adaptive_avg_pool2d(teacher_map, common)
        assert torch.allclose(objective.per_sample, ((projected - target) ** 2).mean(dim=(1, 2, 3)), atol=1e-6)
        assert torch.allclose(objective.logits, teacher.classify(projected), atol=1e-6)
        deployed = simkd.deployable(student, teacher).eval()
        assert deployed.config.teacher_map_size == teacher_size
        assert torch.allclose(deployed(x), objective.logits, atol=1e-5)
        rebuilt = from_params(deployed.config.to_params())
        rebuilt.load_state_dict(deployed.state_dict())
        assert torch.equal(rebuilt.eval()(x), deployed(x))
        if student_size > teacher_size:  # without the size matching the deployed model would predict otherwise
            unmatched = teacher.classify(projector(student_map))
            assert not torch.allclose(unmatched, objective.logits, atol=1e-3)


def test_a_deployed_student_logged_before_the_map_size_was_recorded_is_never_pooled():
    config = SimKDConfig(NetworkConfig("resnet8x4", 10, 1), 256, 2, None)
    params = config.to_params()
    assert "teacher_map_size" not in params and SimKDConfig.from_params(params) == config
    assert SimKDConfig.from_params({**params, "teacher_map_size": "4x2"}).teacher_map_size == (4, 2)


def test_stages_pair_from_the_penultimate_backwards():
    assert stage_pairs("single", 3, 5) == [-1]
    assert stage_pairs("multi", 5, 3) == [-1, -2]
    assert stage_pairs("all-layer", 3, 5) == stage_pairs("all-layer", 5, 3) == [-1, -2, -3]
    assert stage_pairs("all-layer", 4, 5) == [-1, -2, -3, -4]


def test_all_layer_pairs_as_many_stages_as_the_shallower_network_has():
    """VGG-13 (five stages) teaching ResNet-8x4 (three): the last three of each meet, each pair at its
    smaller map, the three losses averaged."""
    teacher, student, x = _cross_family("vgg13", "resnet8x4")
    simkd = SimKD(1, student, teacher, DIGITS, projector="all-layer")
    assert [(p[0].in_channels, p[-3].out_channels) for p in simkd.parts] == [(256, 512), (128, 512), (64, 256)]
    objective = simkd.objective(student, teacher, x, torch.zeros(6, dtype=torch.long), 0)
    student_maps, teacher_maps = student.features(x), teacher.features(x)
    pairs = []
    for projector, s, t in zip(simkd.parts, student_maps[::-1], teacher_maps[::-1]):
        size = min(s.shape[-1], t.shape[-1])
        projected = projector(F.adaptive_avg_pool2d(s, size))
        pairs.append(((projected - F.adaptive_avg_pool2d(t, size)) ** 2).mean(dim=(1, 2, 3)))
    assert [tuple(m.shape[-2:]) for m in teacher_maps[-3:]] == [(2, 2), (1, 1), (1, 1)]
    assert torch.allclose(objective.per_sample, sum(pairs) / 3, atol=1e-6)


def test_multi_pairs_a_deeper_student_with_the_teachers_last_two_stages():
    teacher, student, x = _cross_family("resnet8x4", "MobileNetV2")
    simkd = SimKD(1, student, teacher, DIGITS, projector="multi")
    assert [(p[0].in_channels, p[-3].out_channels) for p in simkd.parts] == [(1280, 256), (160, 128)]
    objective = simkd.objective(student, teacher, x, torch.zeros(6, dtype=torch.long), 0)
    student_maps, teacher_maps = student.features(x), teacher.features(x)
    last = ((simkd.parts[0](student_maps[-1]) - F.adaptive_avg_pool2d(teacher_maps[-1], 1)) ** 2).mean(dim=(1, 2, 3))
    previous = ((simkd.parts[1](student_maps[-2]) - F.adaptive_avg_pool2d(teacher_maps[-2], 1)) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(objective.per_sample, 2 / 3 * last + 1 / 3 * previous, atol=1e-6)
