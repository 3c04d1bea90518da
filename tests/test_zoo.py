"""The CIFAR model zoo against the official code: parameter counts, stage maps on CIFAR's 32 x 32 x 3 and
digits' 8 x 8 x 1 inputs, the one interface (features, classify, classifier), rebuilding from run params,
the ResNets' block structure and initialisation, and export in MLflow's pt2 format."""
import math

import pytest
import torch
from torch import nn

from kdtrack.models import ARCHS, ImageNetwork, NetworkConfig, build_network, from_params

PARAMETERS = {
    # Counted at 100 classes by running the official definitions: DefangChen/SimKD (2b389c3) models/resnet.py
    # resnet20 / resnet32 / resnet56 / resnet110 / resnet8x4 / resnet32x4, identical in HobbitLong/RepDistiller
    # (b84f547) models/resnet.py.
    "resnet20": 278_324, "resnet32": 472_756, "resnet56": 861_620, "resnet110": 1_736_564,
    "resnet8x4": 1_233_540, "resnet32x4": 7_433_860,
    # RepDistiller models/wrn.py wrn_16_2 / wrn_40_1 / wrn_40_2 (SimKD's stand-ins resnet14x2 / resnet38 /
    # resnet38x2 have 703_732 / 569_972 / 2_255_604: a BN on each projected shortcut).
    "wrn_16_2": 703_284, "wrn_40_1": 569_780, "wrn_40_2": 2_255_156,
    # SimKD (and RepDistiller) models/vgg.py vgg8_bn / vgg13_bn.
    "vgg8": 3_965_028, "vgg13": 9_462_180,
    # SimKD (and RepDistiller) models/mobilenetv2.py mobile_half (expansion 6, width 0.5).
    "MobileNetV2": 812_836,
    # SimKD (and RepDistiller) models/ShuffleNetv1.py ShuffleV1; models/ShuffleNetv2.py ShuffleV2, and
    # SimKD's ShuffleV2_1_5.
    "ShuffleV1": 949_258, "ShuffleV2": 1_355_528, "ShuffleV2_1_5": 2_580_548,
}

SIZES = {  # the stage maps' widths for 32 x 32 and for 8 x 8 input
    "resnet": ((32, 16, 8), (8, 4, 2)),
    "wrn": ((32, 16, 8), (8, 4, 2)),
    "vgg": ((32, 16, 8, 4, 4), (8, 4, 2, 1, 1)),
    "MobileNetV2": ((16, 8, 4, 2, 2), (4, 2, 1, 1, 1)),
    "ShuffleV1": ((16, 8, 4), (4, 2, 1)),
    "ShuffleV2": ((16, 8, 4, 4), (4, 2, 1, 1)),
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _sizes(arch: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return next(sizes for prefix, sizes in SIZES.items() if arch.startswith(prefix))


def test_every_arch_has_an_official_count():
    assert set(PARAMETERS) == set(ARCHS)


@pytest.mark.parametrize("arch", list(PARAMETERS))
def test_parameter_counts_are_the_official_codes(arch):
    model = build_network(NetworkConfig(arch, 100))
    assert _count(model) == PARAMETERS[arch]
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == model.stage_channels[-1]
    width = model.stage_channels[-1]
    assert _count(build_network(NetworkConfig(arch, 10))) == PARAMETERS[arch] - 90 * (width + 1)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_stage_maps_have_the_stage_channels_on_cifar_and_digits(arch):
    cifar, digits = _sizes(arch)
    for image, channels, classes, widths in ((32, 3, 100, cifar), (8, 1, 10, digits)):
        model = build_network(NetworkConfig(arch, classes, channels), seed=0).eval()
        x = torch.randn(2, channels, image, image)
        with torch.no_grad():
            maps, logits = model.features(x), model(x)
        assert [tuple(m.shape) for m in maps] == [(2, c, w, w) for c, w in zip(model.stage_channels, widths)]
        assert logits.shape == (2, classes) and torch.equal(logits, model.classify(maps[-1]))
    model.train()
    assert model.map_sizes((8, 8)) == [(w, w) for w in digits]
    assert model.training  # measuring map sizes leaves the mode as it was


def test_the_x4_pair_keeps_the_readme_counts_and_its_state_dict_keys():
    """resnet8x4 / resnet32x4 logged before the zoo existed still load: their keys are the same."""
    assert _count(build_network(NetworkConfig("resnet8x4", 100))) == 1_233_540
    assert _count(build_network(NetworkConfig("resnet32x4", 100))) == 7_433_860
    keys = build_network(NetworkConfig("resnet8x4", 10)).state_dict().keys()
    assert {"stem.0.weight", "stem.1.running_mean", "stages.0.0.shortcut.0.weight", "stages.2.0.bn2.bias",
            "classifier.weight"} <= keys
    assert len(keys) == 62


def test_blocks_and_shortcuts():
    model = build_network(NetworkConfig("resnet32x4", 100))
    assert [len(stage) for stage in model.stages] == [5, 5, 5]
    for stage in model.stages:
        shortcuts = [not isinstance(block.shortcut, nn.Identity) for block in stage]
        assert shortcuts == [True, False, False, False, False]
    assert [stage[0].conv1.stride for stage in model.stages] == [(1, 1), (2, 2), (2, 2)]
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    # ResNet-20's first stage keeps the stem's 16 channels and stride: no projection there
    thin = build_network(NetworkConfig("resnet20", 100))
    assert [isinstance(stage[0].shortcut, nn.Identity) for stage in thin.stages] == [True, False, False]


def test_kaiming_fan_out_initialisation():
    model = build_network(NetworkConfig("resnet32x4", 100), seed=0)
    conv = model.stages[2][1].conv1  # 256 -> 256, 3x3
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.05)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_seeds_and_params_rebuild_the_network(arch):
    config = NetworkConfig(arch, 10, 1)
    same = [build_network(config, seed=3).state_dict() for _ in range(2)]
    assert all(torch.equal(same[0][key], same[1][key]) for key in same[0])
    other = build_network(config, seed=4).state_dict()
    assert not torch.equal(same[0]["classifier.weight"], other["classifier.weight"])
    assert NetworkConfig.from_params(config.to_params()) == config
    rebuilt = from_params(config.to_params())
    assert isinstance(rebuilt, ImageNetwork) and type(rebuilt) is ARCHS[arch]
    assert rebuilt.state_dict().keys() == same[0].keys()


def test_an_unknown_arch_names_the_known_ones():
    with pytest.raises(ValueError, match="resnet8x4, resnet32x4, wrn_16_2"):
        build_network(NetworkConfig("resnet18", 10))


def test_exports_as_mlflow_logs_it():
    model = build_network(NetworkConfig("resnet8x4", 10), seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(exported.module()(x), model(x), atol=1e-5)
