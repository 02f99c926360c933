"""The kit's own table: what each django-q2 worker process last reported (llmbench/workers.py).

django-q2's own cluster stats live in the cache, which with the ORM broker and no Redis is each
process's private memory: the web process could not read them. The database is shared by every
setup, so the workers report there."""

from django.db import models
from django.dispatch import receiver
from django_q.signals import post_execute_in_worker, post_spawn, pre_enqueue, pre_execute


class TaskWorker(models.Model):
    """A worker process of a task cluster: whether it runs a task, since when, and its last beat."""

    host = models.CharField(max_length=255, help_text="Host name and PID namespace: where `pid` names it.")
    pid = models.PositiveIntegerField()
    cluster = models.CharField(max_length=100, help_text="The queue it takes tasks from (Q_CLUSTER name).")
    busy = models.BooleanField(default=False)
    state_since = models.DateTimeField(help_text="When it took its task (busy) or became idle.")
    task_name = models.CharField(max_length=200, blank=True)
    beat_at = models.DateTimeField(help_text="Written every few seconds by a thread of the worker.")
    started_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "pid"], name="task_worker_unique_process")]

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"


class TaskQueueMark(models.Model):
    """When a task was last queued for a cluster: a task swallowed by a stuck cluster's internal
    queue is no longer in the broker, but a queueing that no worker answered still shows."""

    cluster = models.CharField(max_length=100, unique=True)
    enqueued_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.cluster}: {self.enqueued_at}"


# Connected here because every process, the cluster's workers included, imports the models.
@receiver(post_spawn, dispatch_uid="llmbench-task-worker-spawned")
def _worker_spawned(sender, **kwargs):
    from llmbench import workers

    workers.worker_spawned()


@receiver(pre_enqueue, dispatch_uid="llmbench-task-queued")
def _task_queued(sender, task=None, **kwargs):
    from llmbench import workers

    workers.task_queued(task or {})


@receiver(pre_execute, dispatch_uid="llmbench-task-worker-busy")
def _task_started(sender, task=None, **kwargs):
    from llmbench import workers

    workers.worker_busy(task or {})


@receiver(post_execute_in_worker, dispatch_uid="llmbench-task-worker-idle")
def _task_finished(sender, **kwargs):
    from llmbench import workers

    workers.worker_idle()
