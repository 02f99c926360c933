"""django-q2 entry points: primary keys in, a service call, nothing else."""

from apps.batches.runner import run_sweep
from apps.batches.services import sweeps_recover_stalled


def load_sweep_run(sweep_id: int) -> str:
    return run_sweep(sweep_id)


def recover_stalled_sweeps() -> int:
    return sweeps_recover_stalled()
