"""What the multi-domain cells share: their data and options, and training a stack of MLPs (every seed, and
every domain teacher, as one program) while the cell's parent run opens."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

from ... import tracking
from ...distillers import Distiller
from ...engine import Batch, TrainResult, train
from ...models.mlp import MLP, StackedMLP, init_mlps
from ...progress import Progress
from ...spine.cells import Cell, ModelRecord, Stopwatch, in_background
from ..batches import tensors
from ..data import MultiDomainData, Split
from ..options import MLPTrainOptions
from ..splits import Splits, domain_subset, make_splits


@dataclass(frozen=True, kw_only=True)
class MLPCell(Cell):
    """A cell of MLPs on multi-domain data. Making one checks its inputs, so a bad holdout is an error
    before any run opens."""

    data: MultiDomainData
    train: MLPTrainOptions

    def __post_init__(self):
        super().__post_init__()
        self.splits  # noqa: B018 (checks the selection split)

    @cached_property
    def splits(self) -> Splits:
        return make_splits(self.data, self.train)

    def member(self, seed: int, domain: int | None = None, **tags: str) -> Member:
        """A model of the stack, on every domain, or on `domain` alone."""
        splits = [self.splits.fit, self.splits.selection, self.splits.valid]
        if domain is None:
            return Member({"seed": seed}, *splits, tags=tags)
        own = [None if split is None else domain_subset(split, domain) for split in splits]
        return Member({"seed": seed, "domain": domain}, *own, tags=tags)

    def model_epoch(self, best_epoch: int) -> int:
        return best_epoch if self.train.early_stopping else self.epochs

    @abstractmethod
    def stack(self) -> Stack:
        """What the cell trains: its models, their objective and their batches."""

    def train_models(self, engine: Stopwatch) -> Iterator[ModelRecord]:
        """Train in a thread from now on, while the parent run opens and the model exporter warms up (the
        native step leaves the interpreter free); then each member's record."""
        return self.records(in_background(lambda: self.train_stack(engine)).result)

    def train_stack(self, engine: Stopwatch) -> Trained:
        stack = self.stack()
        with engine.timing():
            model = StackedMLP(init_mlps(self.train.mlp(), [member.key["seed"] for member in stack.members]))
            progress = Progress(f"{self.name} ({len(stack.members)} models)", self.epochs)
            result = train(model, stack.distiller, stack.train_batches, stack.valid, self.train.spec(self.device),
                           stack.selection, progress)
        return Trained(stack.members, model, result)

    def records(self, trained: Callable[[], Trained]) -> Iterator[ModelRecord]:
        """Each member as its run, scored on its validation split, once the stack has trained."""
        stacked = trained()
        for index, member in enumerate(stacked.members):
            yield self.record(member.key, stacked.result, index, self.selected(stacked, index), tensors(member.valid),
                              member.inputs(self.data), tags=member.tags)

    def selected(self, trained: Trained, index: int) -> MLP:
        """Member `index`'s logged model: its selected checkpoint under early stopping, else its last."""
        return trained.model.unstack(trained.result.best if self.train.early_stopping else trained.result.last, index)


@dataclass
class Member:
    """One model of a stack: its key (seed, and domain for a teacher), the data it trains and selects on,
    the split its accuracy is scored on, and tags of its own beyond the cell's."""

    key: dict[str, int]
    fit: Split
    selection: Split | None
    valid: Split
    tags: dict[str, str] = field(default_factory=dict)

    def inputs(self, data: MultiDomainData) -> dict[str, tracking.DataInput]:
        """What it saw, for MLflow's dataset tracking, by context."""
        name = data.name if "domain" not in self.key else f"{data.name} domain {self.key['domain']}"
        splits = {"training": self.fit, "selection": self.selection, "validation": self.valid}
        return {context: tracking.DataInput(split.x, split.y, data.source, name, split.fingerprint)
                for context, split in splits.items() if split is not None}


@dataclass
class Stack:
    """One stack to train: model m is members[m] (its seed initialises it), on row m of the batches."""

    members: list[Member]
    distiller: Distiller
    train_batches: list[Batch]
    valid: Batch
    selection: Batch | None


@dataclass
class Trained:
    members: list[Member]
    model: StackedMLP
    result: TrainResult
