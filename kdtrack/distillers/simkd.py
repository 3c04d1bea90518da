"""SimKD (Chen et al., CVPR 2022): the student's feature maps are projected into the teacher's feature space,
and the teacher's own classifier, frozen, predicts from the projected penultimate map. Labels are not used.

Variants, each a constructor option:
- `loss`: `l2`, the mean squared error between the projected and the teacher's maps (the paper's), or `kl`,
  T^2 KL(softmax(teacher logits / T) || softmax(classifier(projected) / T)) between the class distributions
  that the reused classifier gives the projected features and the teacher's logits (never on raw maps).
  It applies to the penultimate pair, which the classifier reads; earlier pairs always use l2.
- `projector`: `single` (penultimate maps only); `multi`, a second projector from the previous stage,
  weighted `1 - multi_weight` against the penultimate pair's `multi_weight`; `all-layer`, one projector per
  stage pair, the pairs' losses averaged.
- `use_labels`: samples the teacher misclassifies add no loss, and the loss is the mean over the rest.
Only the penultimate projector is deployed (`deployable`): extra projectors train the backbone only.

Stages pair from the penultimate backwards: the k-th map from the end of the student's `features` meets the
k-th from the end of the teacher's, whatever each network's count of stages (a ResNet has 3, ShuffleNetV2 4,
VGG and MobileNetV2 5); `all-layer` pairs as many as the network with fewer stages has. In every pair the
larger map is pooled to the smaller (kdtrack.models.simkd.match_sizes) before the student's is projected.
"""
from __future__ import annotations

from copy import deepcopy

import torch
from torch import Tensor, nn

from ..models.network import ImageNetwork
from ..models.simkd import Projector, SimKDConfig, SimKDStudent, match_sizes
from .base import Distiller, Objective, soft_kl

LOSSES = ("l2", "kl")
PROJECTORS = ("single", "multi", "all-layer")


class SimKD(Distiller):
    uses_student_classifier = False

    def __init__(self, epochs: int, student: ImageNetwork, teacher: ImageNetwork, image_size: tuple[int, int],
                 factor: int = 2, loss: str = "l2", projector: str = "single", multi_weight: float = 2 / 3,
                 use_labels: bool = False, temperature: float = 4.0):
        super().__init__(epochs)
        if loss not in LOSSES or projector not in PROJECTORS:
            raise ValueError(f"loss must be one of {LOSSES} and projector one of {PROJECTORS}")
        self.loss, self.use_labels, self.temperature, self.factor = loss, use_labels, temperature, factor
        self.stages = stage_pairs(projector, len(student.stage_channels), len(teacher.stage_channels))
        """The stage pairs as indices from the end of both networks' maps, the penultimate (-1) first: its
        projector is the deployed one."""
        self.weights = {"single": [1.0], "multi": [multi_weight, 1 - multi_weight],
                        "all-layer": [1 / len(self.stages)] * len(self.stages)}[projector]
        self.parts = nn.ModuleList(Projector(student.stage_channels[i], teacher.stage_channels[i], factor)
                                   for i in self.stages)
        self.teacher_map_size = teacher.map_sizes(image_size)[-1]
        """The teacher's penultimate map size on the training images: the deployed student pools to it."""

    def objective(self, student: nn.Module, teacher: nn.Module | None, x: Tensor, y: Tensor, epoch: int) -> Objective:
        student_maps = student.features(x)
        with torch.no_grad():
            teacher_maps = teacher.features(x)
            teacher_logits = teacher.classify(teacher_maps[-1])
        per_sample, logits = 0.0, None
        for stage, projector, weight in zip(self.stages, self.parts, self.weights):
            source, target = match_sizes(student_maps[stage], teacher_maps[stage])
            projected = projector(source)
            if logits is None:  # the penultimate pair: the teacher's classifier predicts from it
                logits = teacher.classify(projected)
                if self.loss == "kl":
                    per_sample = per_sample + weight * self.temperature**2 * soft_kl(
                        logits[None], teacher_logits[None], self.temperature)[0]
                    continue
            per_sample = per_sample + weight * ((projected - target) ** 2).flatten(1).mean(dim=1)
        counted = teacher_logits.argmax(dim=1) == y if self.use_labels else None
        return Objective(logits, per_sample, counted)

    def deployable(self, student: nn.Module, teacher: nn.Module | None) -> SimKDStudent:
        """Student backbone, penultimate projector and teacher classifier, copied into one module."""
        config = SimKDConfig(student.config, teacher.stage_channels[-1], self.factor, self.teacher_map_size)
        model = SimKDStudent(config)
        backbone = {key: value for key, value in student.state_dict().items() if not key.startswith("classifier.")}
        model.backbone.load_state_dict(backbone)
        model.projector.load_state_dict(self.parts[0].state_dict())
        model.classifier.load_state_dict(deepcopy(teacher.classifier.state_dict()))
        return model.to(next(student.parameters()).device)


def stage_pairs(projector: str, student_stages: int, teacher_stages: int) -> list[int]:
    """Which stage maps `projector` pairs, as indices from the end of both networks' feature lists."""
    count = {"single": 1, "multi": 2, "all-layer": min(student_stages, teacher_stages)}[projector]
    return [-1 - k for k in range(count)]
