"""django-q2 entry points: primary keys in, a service call, nothing else."""

from apps.capacity.runner import run_search
from apps.capacity.services import searches_recover_stalled


def capacity_run(search_id: int, lease: str = "") -> str:
    return run_search(search_id, lease)


def recover_stalled_searches() -> int:
    return searches_recover_stalled()
