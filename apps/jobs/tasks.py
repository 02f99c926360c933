"""django-q2 entry points: primary keys in, a service call, nothing else."""

from apps.jobs.services import job_execute, jobs_tick


def job_run(job_id: int):
    return job_execute(job_id=job_id)


def dispatch_tick() -> int:
    return jobs_tick()
