"""One image network trained at one seed, from what its cell resolved beforehand (the chosen options, the
teacher's checkpoint): the task a seed worker gets (kdtrack.images.cells). It touches no store and imports
none, so a worker forked for it imports torch and the engine (1.1-1.2 s of CPU), not MLflow and the compare package
(~2 s more on a core the command's own imports need)."""
from __future__ import annotations

import pickle
from dataclasses import dataclass

import torch
from torch import nn

from ..distillers import make_distiller
from ..distillers.base import Distiller
from ..engine import Stopwatch, TrainResult
from ..engine.distributed import is_main_process
from ..engine.minibatch import Loader, Samples, train_network
from ..models import ImageNetwork, NetworkConfig, build_network, from_checkpoint
from ..progress import Progress
from ..spine.workers import interruptible
from . import augment
from .data import ImageData, ImageSplit, holdout
from .options import ImageKDOptions, ImageTrainOptions, SimKDOptions

Checkpoint = tuple[dict[str, str], dict[str, torch.Tensor]]
"""A logged network as its run's params and state_dict (what kdtrack.models.from_checkpoint rebuilds)."""

SeedTrained = tuple[TrainResult, nn.Module, Stopwatch]
"""A seed's training result, the model it deploys, and the engine's time on it."""


@dataclass(frozen=True, kw_only=True)
class SeedTraining:
    """A network of `options.arch` on `data` at `seed`, trained with the cross-entropy alone or, with a
    `teacher`, distilled by `distill`'s objective. `label` names its progress lines."""

    seed: int
    label: str
    data: ImageData
    options: ImageTrainOptions
    device: str
    teacher: Checkpoint | None = None
    distill: ImageKDOptions | SimKDOptions | None = None

    def run(self) -> tuple[TrainResult, nn.Module]:
        """The result and the model it deploys."""
        student = build_network(NetworkConfig(self.options.arch, self.data.n_classes, self.data.channels), self.seed)
        teacher = from_checkpoint(*self.teacher) if self.teacher else None  # building it draws from the seeded
        distiller = self._distiller(student, teacher)  # stream, and then the distiller's parts do
        fit, selection = selection_split(self.data, self.options)
        loader = Loader(self.options.batch_size, network_input(self.data, self.options), self.seed)
        progress = Progress(self.label, self.options.epochs) if is_main_process() else None
        return train_network(student, teacher, distiller, samples(fit), samples(self.data.test), samples(selection),
                             self.options.spec(self.device), loader, progress)

    def timed(self) -> SeedTrained:
        stopwatch = Stopwatch()
        with stopwatch.timing():
            result, model = self.run()
        return result, model, stopwatch

    def _distiller(self, student: ImageNetwork, teacher: nn.Module | None) -> Distiller:
        if self.distill is None:
            return make_distiller("ce", self.options.epochs)
        return self.distill.distiller(self.options.epochs, student, teacher, self.data.image_size)


def selection_split(data: ImageData, options: ImageTrainOptions) -> tuple[ImageSplit, ImageSplit]:
    """(fit, selection): the selection holdout carved from `data`'s train split, stratified by class; a
    ValueError when either part would be empty."""
    return holdout(data.train, options.selection_fraction, options.selection_seed)


def network_input(data: ImageData, options: ImageTrainOptions) -> augment.Augment:
    """uint8 images -> the network's normalised input; random crops (and flips) under a generator."""
    return augment.Augment(options.padding, options.flip, data.mean, data.std)


def samples(split: ImageSplit) -> Samples:
    return Samples(augment.nchw(split.x), torch.from_numpy(split.y))


def train_in_worker(training: bytes) -> bytes:
    """In a seed worker: the pickled SeedTraining trained, its SeedTrained pickled by value (a plain pickle, not
    multiprocessing's, which passes each tensor as a shared-memory file descriptor: hundreds per model, and a
    teacher's checkpoint goes out that way too)."""
    return pickle.dumps(interruptible(_timed, training))


def _timed(training: bytes) -> SeedTrained:
    return pickle.loads(training).timed()  # a dataset crosses as a reference, read here again
