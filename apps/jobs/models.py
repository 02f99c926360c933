"""The fair queue's jobs: one row per run task waiting for, or handed to, the workers (docs/queue.md)."""

from django.db import models
from django.utils import timezone


class Job(models.Model):
    """A task of a team's run: `func(*args)`, queued here and handed to django-q2 when its turn comes."""

    class State(models.TextChoices):
        QUEUED = "queued", "Waiting its turn"
        RUNNING = "running", "Handed to the workers"
        DONE = "done", "Done"
        LOST = "lost", "Lost (its worker stopped or it overran the task time limit)"

    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs",
        help_text="Whose turn it takes; empty for a task of no team (it queues as a team of its own).",
    )  # fmt: skip
    func = models.CharField(max_length=200, help_text="Dotted path of the task function, e.g. apps.x.tasks.run.")
    args = models.JSONField(default=list, blank=True, help_text="Positional arguments (primary keys, leases).")
    group = models.CharField(max_length=100, blank=True, help_text="django-q2 group of the task.")
    label = models.CharField(max_length=200, blank=True)
    key = models.CharField(max_length=64, help_text="Hash of team, function and arguments: one queued copy at most.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    queued_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="When it was handed to the broker.")
    started_at = models.DateTimeField(null=True, blank=True, help_text="When a worker began it (its last attempt).")
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="How many times a worker began it.")
    worker = models.CharField(max_length=300, blank=True, help_text="host:pid of the worker of its last attempt.")
    error = models.TextField(blank=True, help_text="The exception that ended it, if one did.")

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [
            models.Index(fields=["state", "team", "queued_at", "id"], name="jobs_state_team_queued"),
            models.Index(fields=["key", "state"], name="jobs_key_state"),
            models.Index(fields=["team", "-dispatched_at"], name="jobs_team_dispatched"),
        ]

    def __str__(self) -> str:
        return self.label or self.func


class DispatchLock(models.Model):
    """One row (pk 1): the dispatcher locks it (SELECT … FOR UPDATE), so two dispatchers never hand out one slot."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)

    def __str__(self) -> str:
        return "the fair queue's dispatch lock"
