"""Q1: one MLP on the mixed domains per seed."""
from __future__ import annotations

from .. import tracking
from ..data.multidomain import load_multidomain
from ..distillers import make_distiller
from .common import Job, Member, cell_hash, cell_tags, fit_and_log, hash_tags, pending_job, run_params, seed_hash
from .inputs import make_splits, shared_batch


def run_baseline(job: Job) -> str | None:
    """The parent run id, or None when `skip_finished` found every seed done."""
    data = load_multidomain(job.data)
    splits = make_splits(data, job.train)
    tracking.use_experiment(job.experiment)
    label = job.label or "baseline"
    cell = cell_hash("baseline", data, job.train)
    job = pending_job(job, data, label, lambda seed: seed_hash(cell, seed))
    if job is None:
        return None
    tags = cell_tags("baseline", data, job, label, cell)
    with tracking.parent_run(f"baseline {data.name}", tags, run_params(job)) as parent_id:
        members = [Member(seed, f"seed {seed}", {"seed": str(seed), **hash_tags(cell, seed)}, {"seed": str(seed)}, data.valid)
                   for seed in job.seeds]
        selection = None if splits.selection is None else shared_batch(splits.selection)
        fit_and_log(job, "baseline", label, data, members, make_distiller("ce", job.train.epochs),
                    [shared_batch(splits.fit)], shared_batch(splits.valid), selection, {})
    return parent_id
