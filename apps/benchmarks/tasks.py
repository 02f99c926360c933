"""django-q2 entry points: primary keys in, a service call, nothing else."""

from apps.benchmarks.runner import run_benchmark
from apps.benchmarks.services import runs_recover_stalled


def benchmark_run_chunk(run_id: int, lease: str = "") -> str:
    return run_benchmark(run_id, lease)


def recover_stalled_runs() -> int:
    return runs_recover_stalled()
