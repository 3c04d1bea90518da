"""SimKD's projector and the model a SimKD run deploys (Chen et al., CVPR 2022).

The student's penultimate map passes through a projector into the teacher's feature space, and the
teacher's own classifier, frozen, makes the prediction. What is deployed is the student backbone, the
projector and the teacher's classifier: no teacher backbone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .resnet import CifarResNet, ResNetConfig


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


def match_sizes(student_map: Tensor, teacher_map: Tensor) -> tuple[Tensor, Tensor]:
    """The two maps at one spatial size: the larger is average-pooled to the smaller."""
    s, t = student_map.shape[-1], teacher_map.shape[-1]
    if s > t:
        return F.adaptive_avg_pool2d(student_map, t), teacher_map
    if t > s:
        return student_map, F.adaptive_avg_pool2d(teacher_map, s)
    return student_map, teacher_map


@dataclass(frozen=True)
class SimKDConfig:
    """What rebuilds a deployed SimKD student: the student's architecture, the teacher's penultimate
    channels and the projector's factor (the classes are the student's)."""

    student: ResNetConfig
    teacher_channels: int
    factor: int

    def to_params(self) -> dict[str, str]:
        return {**self.student.to_params(), "teacher_channels": str(self.teacher_channels), "factor": str(self.factor)}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> SimKDConfig:
        return cls(ResNetConfig.from_params(params), int(params["teacher_channels"]), int(params["factor"]))


class SimKDStudent(nn.Module):
    """Student backbone -> projector -> the teacher's classifier. The backbone's own classifier is not part
    of it (an identity stands in its place)."""

    def __init__(self, config: SimKDConfig):
        super().__init__()
        self.config = config
        self.backbone = CifarResNet(config.student)
        self.backbone.classifier = nn.Identity()
        self.projector = Projector(self.backbone.stage_channels[-1], config.teacher_channels, config.factor)
        self.classifier = nn.Linear(config.teacher_channels, config.student.n_classes)

    def forward(self, x: Tensor) -> Tensor:
        penultimate = self.backbone.features(x)[-1]
        return self.classifier(F.adaptive_avg_pool2d(self.projector(penultimate), 1).flatten(1))
