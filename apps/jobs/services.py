"""The fair queue in front of django-q2 (issue 17): every run kind submits its tasks here, not to async_task."""

from __future__ import annotations

from django_q.tasks import async_task


def job_submit(*, team_id: int, func: str, args: tuple = (), group: str = "", label: str = "") -> None:
    """Queue `func(*args)` for `team_id`'s run. Call it inside the caller's transaction.on_commit, as async_task was.

    CONTRACT STUB: forwards to async_task at once; the jobs helper replaces it with the fair, per-team-capped queue.
    """
    async_task(func, *args, group=group or None)
