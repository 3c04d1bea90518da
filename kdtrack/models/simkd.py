"""SimKD's projector and the model a SimKD run deploys (Chen et al., CVPR 2022).

The student's penultimate map passes through a projector into the teacher's feature space, and the
teacher's own classifier, frozen, makes the prediction. What is deployed is the student backbone, the
projector and the teacher's classifier: no teacher backbone.

Maps of different spatial sizes meet at the smaller, in each dimension: the larger map is average-pooled
(adaptively) down to the smaller before the student's goes through the projector, as in the official code.
The deployed student does the same with the size the teacher's penultimate map had in training, so it
predicts exactly what training measured.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .network import NetworkConfig
from .zoo import build_network

Size = tuple[int, int]


class Projector(nn.Sequential):
    """1x1 conv (s -> t/f) + BN + ReLU, 3x3 conv (t/f -> t/f) + BN + ReLU, 1x1 conv (t/f -> t) + BN + ReLU;
    no conv bias. `factor` f narrows the middle."""

    def __init__(self, student_channels: int, teacher_channels: int, factor: int = 2):
        middle = teacher_channels // factor
        super().__init__(
            nn.Conv2d(student_channels, middle, 1, bias=False), nn.BatchNorm2d(middle), nn.ReLU(inplace=True),
            nn.Conv2d(middle, middle, 3, padding=1, bias=False), nn.BatchNorm2d(middle), nn.ReLU(inplace=True),
            nn.Conv2d(middle, teacher_channels, 1, bias=False), nn.BatchNorm2d(teacher_channels), nn.ReLU(inplace=True),
        )


def pool_to(feature_map: Tensor, size: Size) -> Tensor:
    """The map average-pooled down to at most `size` (height, width); a dimension already no larger is kept."""
    height, width = feature_map.shape[-2:]
    target = (min(height, size[0]), min(width, size[1]))
    return feature_map if target == (height, width) else F.adaptive_avg_pool2d(feature_map, target)


def match_sizes(student_map: Tensor, teacher_map: Tensor) -> tuple[Tensor, Tensor]:
    """The two maps at one spatial size: in each dimension the larger is average-pooled to the smaller."""
    return pool_to(student_map, teacher_map.shape[-2:]), pool_to(teacher_map, student_map.shape[-2:])


@dataclass(frozen=True)
class SimKDConfig:
    """What rebuilds a deployed SimKD student: the student's architecture, the teacher's penultimate
    channels, the projector's factor, and the size of the teacher's penultimate map in training, to which
    the student's is pooled (None: never pooled, as runs logged before this was recorded). The classes are
    the student's."""

    student: NetworkConfig
    teacher_channels: int
    factor: int
    teacher_map_size: Size | None

    def to_params(self) -> dict[str, str]:
        params = {**self.student.to_params(), "teacher_channels": str(self.teacher_channels), "factor": str(self.factor)}
        if self.teacher_map_size is not None:
            params["teacher_map_size"] = "x".join(map(str, self.teacher_map_size))
        return params

    @classmethod
    def from_params(cls, params: dict[str, str]) -> SimKDConfig:
        size = params.get("teacher_map_size")
        return cls(NetworkConfig.from_params(params), int(params["teacher_channels"]), int(params["factor"]),
                   None if size is None else tuple(int(side) for side in size.split("x")))


class SimKDStudent(nn.Module):
    """Student backbone -> size matching -> projector -> the teacher's classifier. The backbone's own
    classifier is not part of it (an identity stands in its place)."""

    def __init__(self, config: SimKDConfig):
        super().__init__()
        self.config = config
        self.backbone = build_network(config.student)
        self.backbone.classifier = nn.Identity()
        self.projector = Projector(self.backbone.stage_channels[-1], config.teacher_channels, config.factor)
        self.classifier = nn.Linear(config.teacher_channels, config.student.n_classes)

    def forward(self, x: Tensor) -> Tensor:
        penultimate = self.backbone.features(x)[-1]
        if self.config.teacher_map_size is not None:
            penultimate = pool_to(penultimate, self.config.teacher_map_size)
        return self.classifier(F.adaptive_avg_pool2d(self.projector(penultimate), 1).flatten(1))
