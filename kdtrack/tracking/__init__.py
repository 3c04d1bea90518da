from .store import (
    SeedRun,
    auto_log_every,
    child_runs,
    find_finished,
    get_run,
    load_mlp,
    log_seed_run,
    log_summary,
    parent_run,
    tag,
    use_experiment,
)

__all__ = [
    "SeedRun",
    "auto_log_every",
    "child_runs",
    "find_finished",
    "get_run",
    "load_mlp",
    "log_seed_run",
    "log_summary",
    "parent_run",
    "tag",
    "use_experiment",
]
