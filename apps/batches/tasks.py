"""django-q2 entry points: primary keys in, a service call, nothing else."""

from apps.batches.batch_runner import run_batch_chunk
from apps.batches.runner import run_sweep
from apps.batches.services import batches_recover_stalled, sweeps_recover_stalled
from apps.batches.shards import shard_run


def load_sweep_run(sweep_id: int) -> str:
    return run_sweep(sweep_id)


def recover_stalled_sweeps() -> int:
    return sweeps_recover_stalled()


def batch_run_chunk(batch_id: int) -> str:
    return run_batch_chunk(batch_id)


def recover_stalled_batches() -> int:
    return batches_recover_stalled()


def load_step_shard(step_id: int, attempt: int, index: int) -> str:
    return shard_run(step_id=step_id, attempt=attempt, index=index)
