"""A student per seed, each sample taught by its in-domain teacher of the same seed."""
from __future__ import annotations

import dataclasses

from .. import tracking
from ..data.multidomain import MultiDomainData, load_multidomain
from ..distillers import make_distiller
from ..engine import Batch
from ..errors import InputError
from .common import Job, Member, fit_and_log, run_params, run_tags, skipped, task_hash, unfinished
from .inputs import Splits, domain_batches, make_splits, shared_batch
from .options import DistillOptions, TrainOptions
from .teachers import Teachers, complete_teachers, expected_teachers, teacher_logits, teachers_of_run


@dataclasses.dataclass(frozen=True)
class Students:
    """Everything a stack of students needs before it trains: the data, its splits, and the teachers
    (`teacher_job` says how missing ones are trained)."""

    data: MultiDomainData
    splits: Splits
    teacher_job: Job
    teachers: Teachers


def prepare_students(job: Job, teachers: str | None, teacher_train: TrainOptions | None) -> Students:
    """Load and check the data and find the teachers, all before any run is opened.

    Teachers come from the `teachers` run if given; otherwise finished teachers of the same configuration
    (`teacher_train`, default the student's options) are found, and the rest are trained later.
    """
    data = load_multidomain(job.data)
    unseen = sorted(set(data.valid.d.tolist()) - set(data.domains))
    if unseen:
        raise InputError(f"{job.data}: validation domain(s) {unseen} have no training data, so no teacher")
    tracking.use_experiment(job.experiment)
    teacher_job = dataclasses.replace(job, train=teacher_train or job.train, label=None, skip_finished=False)
    make_splits(data, teacher_job.train)  # the teachers' holdout too is checked before any run opens
    found = teachers_of_run(teachers, data, job.seeds) if teachers else expected_teachers(teacher_job, data)
    return Students(data, make_splits(data, job.train), teacher_job, found)


def run_distill(job: Job, distill: DistillOptions, teachers: str | None = None,
                teacher_train: TrainOptions | None = None) -> str | None:
    """The parent run id, or None when `skip_finished` found every seed done."""
    students = prepare_students(job, teachers, teacher_train)
    data = students.data
    label = job.label or distill.method
    seed_hash = lambda seed: student_hash(job, students, distill, seed)  # noqa: E731
    if job.skip_finished:
        job = dataclasses.replace(job, seeds=unfinished(job.seeds, seed_hash))
        if not job.seeds:
            skipped(data, label)
            return None
    params = {**run_params(job), **distill.params(), "teachers": teachers or ""}
    with tracking.parent_run(f"distill {data.name}", run_tags("distill", data, job, label), params) as parent_id:
        complete_teachers(students.teacher_job, data, students.teachers, job.seeds)
        train_batches, valid, selection = student_batches(students, distill, job.seeds)
        members = []
        for seed in job.seeds:
            run_ids = ",".join(students.teachers[(seed, domain)].run_id for domain in data.domains)
            tags = {"seed": str(seed), "teacher_run_ids": run_ids}
            members.append(Member(seed, f"seed {seed}", tags, data.valid, seed_hash(seed)))
        distiller = make_distiller(distill.method, job.train.epochs, distill.alpha, distill.temperature)
        fit_and_log(job, "student", label, data, members, distiller, train_batches, valid, selection, distill.params())
    return parent_id


def student_hash(job: Job, students: Students, distill: DistillOptions, seed: int) -> str:
    teacher_hashes = [students.teachers[(seed, domain)].config_hash for domain in students.data.domains]
    return task_hash("student", students.data, job.train, seed=seed, distill=distill.params(), teachers=teacher_hashes)


def student_batches(students: Students, distill: DistillOptions, seeds: tuple[int, ...],
                    repeats: int = 1) -> tuple[list[Batch], Batch, Batch | None]:
    """Training, validation and selection batches for a stack of `repeats` x seeds students
    (model m learns from the teachers of seed m % len(seeds))."""
    data, splits = students.data, students.splits
    train_logits = teacher_logits(students.teachers, data.train, seeds).repeat(repeats, 1, 1)
    valid_logits = teacher_logits(students.teachers, data.valid, seeds).repeat(repeats, 1, 1)
    fit_logits = train_logits[:, splits.fit_index]
    if distill.step_order == "per-domain":
        train_batches = domain_batches(splits.fit, data.domains, fit_logits)
    else:
        train_batches = [shared_batch(splits.fit, fit_logits)]
    selection = None
    if splits.selection is not None:
        selection = shared_batch(splits.selection, train_logits[:, splits.selection_index])
    return train_batches, shared_batch(splits.valid, valid_logits), selection
