"""A student per seed, each sample taught by its in-domain teacher of the same seed."""
from __future__ import annotations

import dataclasses

from .. import tracking
from ..data.multidomain import MultiDomainData, load_multidomain
from ..distillers import make_distiller
from ..engine import Batch
from ..errors import InputError
from .common import Job, Member, cell_hash, cell_tags, fit_and_log, hash_tags, pending_job, run_params, seed_hash
from .inputs import Splits, domain_batches, fingerprint, make_splits, shared_batch
from .options import DistillOptions, TrainOptions
from .teachers import Teachers, check_holdout, complete_teachers, expected_teachers, teacher_logits, teachers_of_run


@dataclasses.dataclass(frozen=True)
class Students:
    """Everything a stack of students needs before it trains: the data, its splits, and the teachers
    (`teacher_job` says how missing ones are trained)."""

    data: MultiDomainData
    splits: Splits
    teacher_job: Job
    teachers: Teachers


def check_student_data(data: MultiDomainData, path: str) -> None:
    unseen = sorted(set(data.valid.d.tolist()) - set(data.domains))
    if unseen:
        raise InputError(f"{path}: validation domain(s) {unseen} have no training data, so no teacher")


def prepare_students(job: Job, teachers: str | None, teacher_train: TrainOptions | None) -> Students:
    """Load and check the data and find the teachers, all before any run is opened.

    Teachers come from the `teachers` run if given; otherwise finished teachers of the same configuration
    (`teacher_train`, default the student's options) are found, and the rest are trained later.
    """
    data = load_multidomain(job.data)
    check_student_data(data, job.data)
    splits = make_splits(data, job.train)
    tracking.use_experiment(job.experiment)
    teacher_job = dataclasses.replace(job, train=teacher_train or job.train, label=None, skip_finished=False)
    make_splits(data, teacher_job.train)  # the teachers' holdout too is checked before any run opens
    found = teachers_of_run(teachers, data, job.seeds) if teachers else expected_teachers(teacher_job, data)
    check_holdout(job.train, found.holdout, f"run {teachers}" if teachers else job.data)
    return Students(data, splits, teacher_job, found)


def run_distill(job: Job, distill: DistillOptions, teachers: str | None = None,
                teacher_train: TrainOptions | None = None, tuned: str | None = None) -> str | None:
    """The parent run id, or None when `skip_finished` found every seed done. `tuned`, a tune run's id,
    replaces alpha and temperature with the values it chose."""
    students = prepare_students(job, teachers, teacher_train)
    data = students.data
    if tuned:
        alpha, temperature = tuned_values(tuned, fingerprint(data))
        distill = dataclasses.replace(distill, alpha=alpha, temperature=temperature)
    label = job.label or distill.method
    cell = student_cell(job, students, distill)
    job = pending_job(job, data, label, lambda seed: seed_hash(cell, seed))
    if job is None:
        return None
    params = {**run_params(job), **distill.params(), "teachers": teachers or ""}
    with tracking.parent_run(f"distill {data.name}", cell_tags("distill", data, job, label, cell), params) as parent_id:
        complete_teachers(students.teacher_job, data, students.teachers, job.seeds)
        train_batches, valid, selection = student_batches(students, distill, job.seeds)
        members = []
        for seed in job.seeds:
            run_ids = ",".join(students.teachers.refs[(seed, domain)].run_id for domain in data.domains)
            tags = {"seed": str(seed), "teacher_run_ids": run_ids, **hash_tags(cell, seed)}
            members.append(Member(seed, f"seed {seed}", tags, {"seed": str(seed)}, data.valid))
        distiller = make_distiller(distill.method, job.train.epochs, distill.alpha, distill.temperature)
        fit_and_log(job, "student", label, data, members, distiller, train_batches, valid, selection, distill.params())
    return parent_id


def tuned_values(run_id: str, data_hash: str | None = None) -> tuple[float, float]:
    """(alpha, temperature) chosen by a finished tune run, checked to be of the data `data_hash` if given."""
    run = tracking.get_run(run_id)
    metrics = run.data.metrics
    if tracking.tag(run, "task") != "tune" or "best_alpha" not in metrics or run.info.status != "FINISHED":
        raise InputError(f"run {run_id}: is not a finished tune run")
    if data_hash is not None and tracking.tag(run, "data_hash") != data_hash:
        raise InputError(f"run {run_id}: was tuned on other data")
    return metrics["best_alpha"], metrics["best_temperature"]


def student_cell(job: Job, students: Students, distill: DistillOptions) -> str:
    return cell_hash("student", students.data, job.train, distill=distill.params(), teachers=students.teachers.cell)


def student_batches(students: Students, distill: DistillOptions, seeds: tuple[int, ...],
                    repeats: int = 1) -> tuple[list[Batch], Batch, Batch | None]:
    """Training, validation and selection batches for a stack of `repeats` x seeds students
    (model m learns from the teachers of seed m % len(seeds))."""
    data, splits = students.data, students.splits
    train_logits, valid_logits = (
        logits.repeat(repeats, 1, 1) for logits in teacher_logits(students.teachers, [data.train, data.valid], seeds)
    )
    fit_logits = train_logits[:, splits.fit_index]
    if distill.step_order == "per-domain":
        train_batches = domain_batches(splits.fit, data.domains, fit_logits)
    else:
        train_batches = [shared_batch(splits.fit, fit_logits)]
    selection = None
    if splits.selection is not None:
        selection = shared_batch(splits.selection, train_logits[:, splits.selection_index])
    return train_batches, shared_batch(splits.valid, valid_logits), selection
