"""The image cells: a network per seed (a teacher, a KD student or a SimKD student), trained one seed after
another by the one engine's mini-batch step, each logged as a child run of the cell's run.

Under torchrun every process trains every seed together (DistributedDataParallel) and only the first
process talks to MLflow, so one command leaves one run per seed.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import tracking
from ..cells import Cell, mean_std
from ..compare import figures
from ..distillers import make_distiller
from ..distillers.base import Distiller
from ..distillers.simkd import SimKD
from ..engine import TrainResult
from ..engine.distributed import is_main_process, world_size
from ..engine.minibatch import Loader, Samples, train_network
from ..errors import InputError
from ..models import ImageNetwork, NetworkConfig, build_network
from ..progress import Progress
from . import augment
from .data import ImageData, ImageSplit, holdout
from .options import ImageKDOptions, ImageTrainOptions, SimKDOptions

LATENCY_REPEATS = 20


@dataclass(frozen=True, kw_only=True)
class NetworkCell(Cell):
    """Networks of `train.arch` on `data`, one per seed."""

    data: ImageData
    train: ImageTrainOptions

    @property
    def name(self) -> str:
        return f"{self.label} {self.train.arch} · {self.data.name}"

    @cached_property
    def splits(self) -> tuple[ImageSplit, ImageSplit]:
        """(fit, selection): the selection holdout carved from train, stratified by class."""
        try:
            return holdout(self.data.train, self.train.selection_fraction, self.train.selection_seed)
        except ValueError as error:
            raise InputError(f"{self.data.name}: {error}") from None

    def distiller(self, student: ImageNetwork, teacher: ImageNetwork | None) -> Distiller:
        return make_distiller("ce", self.epochs)

    def teacher_network(self) -> ImageNetwork | None:
        return None

    def run(self) -> str | None:
        """Train and log every seed; the parent run's id (None in a process other than the first)."""
        main = is_main_process()
        with tracking.parent_run(self.name, self.tags(), self.parent_params()) if main else nullcontext() as parent_id:
            accuracies, histories = [], []
            for seed in self.seeds:
                result, model = self.train_seed(seed)
                if main:
                    seed_run = self._seed_run(seed, result, model)
                    tracking.log_seed_run(seed_run, self.metric_every)
                    accuracies.append(seed_run.summary["model_val_acc"])
                    histories.append(seed_run.history)
            if main:
                tracking.log_summary(mean_std("val_acc", accuracies))
                title = f"{self.name}: mean ± std over seeds"
                tracking.log_figure(figures.curves({self.data.name: {self.label: histories}}, title), "curves.png")
        return parent_id

    def train_seed(self, seed: int) -> tuple[TrainResult, nn.Module]:
        student = build_network(NetworkConfig(self.train.arch, self.data.n_classes, self.data.channels), seed)
        teacher = self.teacher_network()
        distiller = self.distiller(student, teacher)  # after the student: its parts draw from the seeded stream
        fit, selection = self.splits
        loader = Loader(self.train.batch_size, self._transform, seed)
        progress = Progress(f"{self.model_name(seed=seed)}", self.epochs) if is_main_process() else None
        return train_network(student, teacher, distiller, _samples(fit), _samples(self.data.test), _samples(selection),
                             self.epochs, self.train.optim, loader, self.train.select_on, self.device, progress)

    def _transform(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """uint8 images -> the network's normalised input; random crops (and flips) under a generator."""
        if generator is not None:
            images = augment.random_crop(images, self.train.padding, generator)
            if self.train.flip:
                images = augment.random_flip(images, generator)
        return augment.to_float(images, self.data.mean, self.data.std)

    def _seed_run(self, seed: int, result: TrainResult, model: nn.Module) -> tracking.SeedRun:
        """A seed's record; its accuracy and latency are the deployed model's, scored on the CPU."""
        model = model.cpu()
        history = pd.DataFrame({"epoch": np.arange(1, self.epochs + 1)})
        for name, values in result.history.items():
            history[name] = values[:, 0] if values.ndim == 2 else values
        best_epoch = int(result.best_epoch[0])
        test = self._transform(augment.nchw(self.data.test.x), None)
        summary = {
            "best_epoch": best_epoch,
            "best_val_loss": float(history["val_loss"].iloc[best_epoch - 1]),
            "best_val_acc": float(history["val_acc"].iloc[best_epoch - 1]),
            "final_val_acc": float(history["val_acc"].iloc[-1]),
            "model_epoch": best_epoch,
            "model_val_acc": accuracy(model, test, torch.from_numpy(self.data.test.y)),
            "model_parameters": sum(parameter.numel() for parameter in model.parameters()),
            "latency_ms_per_image": latency_ms(model, test[:1]),
        }
        tags = {**self.model_tags(seed=seed), "engine": result.engine, "device": self.device}
        params = {**self.params(), **model.config.to_params(), "seed": str(seed), "world_size": str(world_size())}
        fit, selection = self.splits
        inputs = {context: tracking.DataInput(split.x, split.y, self.data.source, self.data.name, digest)
                  for context, split, digest in (("training", fit, self.data.fingerprint),
                                                 ("selection", selection, self.data.fingerprint),
                                                 ("validation", self.data.test, self.data.fingerprint))}
        return tracking.SeedRun(self.model_name(seed=seed), tags, params, history, summary, model,
                                test[:5].numpy(), inputs)


@dataclass(frozen=True, kw_only=True)
class TeacherCell(NetworkCell):
    """A network trained on the labels alone (method `ce`): a teacher for the students."""

    task = "teacher"
    member_task = "teacher"
    label: str = "ce"

    @property
    def name(self) -> str:
        return f"teacher {self.train.arch} · {self.data.name}"


@dataclass(frozen=True, kw_only=True)
class StudentCell(NetworkCell):
    """A student taught by the network logged as `teacher` (a model URI)."""

    task = "student"
    member_task = "student"
    teacher: str

    def __post_init__(self):
        run = tracking.get_run(tracking.run_of_model(self.teacher))
        if tracking.tag(run, "data_hash") != self.data.fingerprint:
            raise InputError(f"teacher {self.teacher}: was trained on other data than {self.data.name!r}")
        if not isinstance(self.teacher_network(), ImageNetwork):
            raise InputError(f"teacher {self.teacher}: is not an image network teacher (a teacher is logged by train-teacher)")

    def identity(self) -> dict:
        return {"teacher": tracking.run_of_model(self.teacher), "distill": self.method_options().params()}

    def params(self) -> dict[str, str]:
        return {**super().params(), **self.method_options().params(), "teacher": self.teacher}

    def teacher_network(self) -> ImageNetwork:
        return tracking.load_model(self.teacher)

    def method_options(self) -> ImageKDOptions | SimKDOptions:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class KDCell(StudentCell):
    label: str = "kd"
    distill: ImageKDOptions

    def method_options(self) -> ImageKDOptions:
        return self.distill

    def distiller(self, student: ImageNetwork, teacher: ImageNetwork | None) -> Distiller:
        return make_distiller("kd", self.epochs, self.distill.alpha, self.distill.temperature)


@dataclass(frozen=True, kw_only=True)
class SimKDCell(StudentCell):
    label: str = "simkd"
    distill: SimKDOptions

    def method_options(self) -> SimKDOptions:
        return self.distill

    def distiller(self, student: ImageNetwork, teacher: ImageNetwork | None) -> Distiller:
        options = self.distill
        return SimKD(self.epochs, student, teacher, self.data.image_size, options.factor, options.loss,
                     options.projector, options.multi_weight, options.use_labels, options.temperature)


def _samples(split: ImageSplit) -> Samples:
    return Samples(augment.nchw(split.x), torch.from_numpy(split.y))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        predicted = torch.cat([model(batch).argmax(dim=1) for batch in x.split(512)])
    return float((predicted == y).float().mean())


def latency_ms(model: nn.Module, image: torch.Tensor) -> float:
    """The median time of one forward pass of one image (on the model's device), in milliseconds."""
    times = []
    with torch.no_grad():
        for _ in range(LATENCY_REPEATS + 1):
            start = time.perf_counter()
            model(image)
            times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[1:]))
