"""Where a student's teachers come from, in either study: a teachers cell of the same study (trained first,
or found finished by its configuration), or finished teachers named by a run id. Either answers
`runs(seeds)`: the run of the teacher of each model key a student seed learns from, keyed (seed, *rest)
where rest is what else tells teachers of one seed apart (the multi-domain study's domain).

Teachers must have trained under the student's holdout settings, so that they never saw the samples the
student selects on."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .. import tracking
from ..errors import InputError
from .cells import Cell, Data
from .options import TrainOptions

HOLDOUT_PARAMS = ("selection", "selection_fraction", "selection_seed")
TEACHER_TASKS = ("teachers", "teacher")
"""The kdtrack.task of a teachers cell's parent run (the multi-domain study's, the image study's)."""

TeacherKey = tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class TeachingCell(Cell):
    """A cell whose models teach: each student seed learns from the models of the same seed, or every
    student seed from those of `teacher_seed` when set (then the cell trains that seed alone)."""

    teacher_seed: int | None = field(default=None, compare=False)

    option = ""
    """The option that names these teachers: none, they are found by their configuration."""

    @property
    def holdout(self) -> dict[str, str]:
        return holdout_of(self.train.params())

    def teacher_cells(self, seeds: tuple[int, ...]) -> tuple[Cell, ...]:
        """This cell over the seeds that `seeds`' students learn from: the cells to run first."""
        return (self.with_seeds(self.teacher_seeds(seeds)),)

    def teacher_seeds(self, seeds: tuple[int, ...]) -> tuple[int, ...]:
        return seeds if self.teacher_seed is None else (self.teacher_seed,)

    def runs(self, seeds: tuple[int, ...]) -> dict[TeacherKey, str]:
        """The finished teacher of each student seed and key, once this cell has run."""
        done = self.with_seeds(self.teacher_seeds(seeds)).finished_runs()
        return {(seed, *list(key.values())[1:]): done[self.model_hash(**key)]
                for seed in seeds for key in self.model_keys(seed if self.teacher_seed is None else self.teacher_seed)}


@dataclass(frozen=True)
class TeachersRun:
    """Finished teachers given by a run, looked up once (a registered model's alias moved meanwhile changes
    nothing): a teachers cell's parent run, each student seed learning from the teacher(s) of its own seed or
    all from those of `seed`; or one teacher's own run, every student seed learning from it. `reference` is
    how the user named it (a run id, `runs:/ID/model`, `models:/NAME@ALIAS`)."""

    run_id: str
    data: Data
    seed: int | None = None
    reference: str = ""
    domains: tuple[int, ...] = ()
    """The domains every seed must have a teacher of (the multi-domain study's); none: any teacher of the seed."""
    seed_option: str = ""
    """The option that names another seed's teachers, if the command has one (for the error's hint)."""

    def __post_init__(self):
        run, named = self._run, self.reference or f"run {self.run_id}"
        if tracking.tag(run, "task") not in TEACHER_TASKS or (self.single and run.info.status != "FINISHED"):
            raise InputError(f"{named}: names no teacher (run {self.run_id} has kdtrack.task "
                             f"{tracking.tag(run, 'task')!r}, status {run.info.status}); pass the run id a teachers "
                             "command printed, a teacher's runs:/ID/model, or a registered models:/NAME@ALIAS")
        if self.single and self.seed is not None:
            raise InputError(f"{named}: names one teacher's run; a teacher seed goes with the teachers' parent run")
        if tracking.tag(run, "data_hash") != self.data.fingerprint:
            raise InputError(f"{named}: its teachers were trained on other data than {self.data.name!r}")

    @cached_property
    def _run(self):
        return tracking.get_run(self.run_id)

    @property
    def single(self) -> bool:
        """Whether the run is one teacher's (a per-seed run) rather than a teachers cell's parent."""
        return tracking.tag(self._run, "seed") is not None

    @property
    def hash(self) -> str:
        own = tracking.tag(self._run, "config_hash" if self.single else "cell_hash") or self.run_id
        return own + ("" if self.seed is None else f" seed {self.seed}")

    @property
    def option(self) -> str:
        if not self.reference or self.run_id in self.reference:
            return self.reference or self.run_id
        return f"{self.reference} (run {self.run_id})"

    @property
    def holdout(self) -> dict[str, str]:
        return holdout_of(self._run.data.params)

    def teacher_cells(self, seeds: tuple[int, ...]) -> tuple[Cell, ...]:
        return ()

    @cached_property
    def _finished(self) -> dict[TeacherKey, str]:
        """Each FINISHED teacher of the run, keyed by its seed (and domain)."""
        teachers = [self._run] if self.single else tracking.child_runs(self.run_id)
        return {tuple(int(tracking.tag(run, name)) for name in ("seed", "domain") if tracking.tag(run, name) is not None):
                run.info.run_id for run in teachers if run.info.status == "FINISHED"}

    def runs(self, seeds: tuple[int, ...]) -> dict[TeacherKey, str]:
        runs, missing = {}, []
        for seed in seeds:
            wanted = self.seed if self.seed is not None else seed
            keys = list(self._finished) if self.single else [key for key in self._finished if key[0] == wanted]
            if self.domains:
                missing += [f"seed {wanted} domain {domain}" for domain in self.domains if (wanted, domain) not in keys]
            elif not keys:
                missing.append(f"seed {wanted}")
            runs.update({(seed, *key[1:]): self._finished[key] for key in keys})
        if missing:
            hint = f" (name a seed it has with {self.seed_option})" if self.seed_option and self.seed is None else ""
            raise InputError(f"run {self.run_id}: has no finished teacher of {', '.join(dict.fromkeys(missing))}{hint}")
        return runs


Teachers = TeachingCell | TeachersRun


def holdout_of(params: dict[str, str]) -> dict[str, str]:
    """The selection settings among run params (or TrainOptions.params())."""
    return {key: params.get(key, "") for key in HOLDOUT_PARAMS}


def check_holdout(student: TrainOptions, teachers: Teachers, where: str) -> None:
    """A student selecting on a holdout needs teachers that never trained on it: the same holdout."""
    wanted = holdout_of(student.params())
    if wanted["selection"] == "holdout" and teachers.holdout != wanted:
        raise InputError(f"{where}: the teachers' selection settings {teachers.holdout} differ from the "
                         f"student's {wanted}, so the teachers may have trained on the student's holdout")
