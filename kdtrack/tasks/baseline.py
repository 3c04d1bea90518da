"""Q1: one MLP on the mixed domains per seed."""
from __future__ import annotations

import dataclasses

from .. import tracking
from ..data.multidomain import load_multidomain
from ..distillers import make_distiller
from .common import Job, Member, fit_and_log, run_params, run_tags, skipped, task_hash, unfinished
from .inputs import make_splits, shared_batch


def run_baseline(job: Job) -> str | None:
    """The parent run id, or None when `skip_finished` found every seed done."""
    data = load_multidomain(job.data)
    splits = make_splits(data, job.train)
    tracking.use_experiment(job.experiment)
    label = job.label or "baseline"
    seed_hash = lambda seed: task_hash("baseline", data, job.train, seed=seed)  # noqa: E731
    if job.skip_finished:
        job = dataclasses.replace(job, seeds=unfinished(job.seeds, seed_hash))
        if not job.seeds:
            skipped(data, label)
            return None
    with tracking.parent_run(f"baseline {data.name}", run_tags("baseline", data, job, label), run_params(job)) as parent_id:
        members = [Member(seed, f"seed {seed}", {"seed": str(seed)}, data.valid, seed_hash(seed)) for seed in job.seeds]
        selection = None if splits.selection is None else shared_batch(splits.selection)
        fit_and_log(job, "baseline", label, data, members, make_distiller("ce", job.train.epochs),
                    [shared_batch(splits.fit)], shared_batch(splits.valid), selection, {})
    return parent_id
