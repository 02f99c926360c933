"""django-q2 entry points: primary keys in, a service call, nothing else."""

from apps.experiments.runner import run_experiment


def experiment_run(experiment_id: int) -> str:
    return run_experiment(experiment_id)
