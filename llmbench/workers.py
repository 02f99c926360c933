"""Is the task cluster taking tasks? The workers report, /ready and /metrics read, serve restarts.

Each django-q2 worker process writes a row (llmbench.models.TaskWorker) when it starts, takes a
task and finishes one, and a thread of it beats every WORKER_BEAT_S. A cluster can look alive to
django-q2 and still take nothing: when a worker is killed while it holds the lock of the cluster's
internal task queue, the workers spawned in its place wait for that lock forever and the pusher
stops pulling from the broker, while the sentinel keeps saving fresh cluster stats. So the check
reads what users feel: tasks wait in the broker and no worker takes them.

The cluster is stuck when tasks have waited TASK_CLUSTER_STALL_S and no live worker is running a
task or has taken or finished one in that time (a healthy idle worker takes a waiting task within
a second; a busy one is bounded by the task time limit, which the sentinel enforces). With no
worker at all and nothing waiting, all is well: a development site without a worker is ready.
"""

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Count, Max, Min
from django.utils import timezone

logger = logging.getLogger(__name__)

WORKER_BEAT_S = 2.0
# A worker silent for this long is gone (killed, or its whole cluster stopped). Several beats, so
# that a beat held up by a busy SQLite writer does not count a live worker as dead. A worker of
# this machine (and PID namespace) that no longer exists counts as gone at once.
WORKER_LIVE_S = 10.0
# Rows of workers gone for longer than this are deleted when a worker starts.
WORKER_FORGET = timedelta(days=1)


# --- reporting, in the worker processes ---------------------------------------------------------

_row_id: int | None = None


def process_space() -> str:
    """Where a pid names one process: the host name and, on Linux, the PID namespace (a container
    may share the host's name but not its processes)."""
    try:
        namespace = f"#{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}{namespace}"[:255]


def _gone(host: str, pid: int) -> bool:
    """A worker of this process space whose process no longer exists (killed, its beat not yet stale)."""
    if host != process_space():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: it exists
        return False
    return False


def _cluster_name() -> str:
    from django_q.conf import Conf

    return Conf.CLUSTER_NAME


def worker_spawned() -> None:
    """Register this worker process and start its beat (django-q2's post_spawn, in the worker)."""
    global _row_id
    from django_q.conf import Conf

    # A synchronous task (Q_CLUSTER sync, tests) runs django-q2's worker function in the caller's
    # own process, which is no worker of a cluster.
    if Conf.SYNC or multiprocessing.parent_process() is None:
        return
    from llmbench.models import TaskWorker

    now = timezone.now()
    TaskWorker.objects.filter(beat_at__lt=now - WORKER_FORGET).delete()
    row, _ = TaskWorker.objects.update_or_create(
        host=process_space(), pid=os.getpid(),
        defaults={"cluster": _cluster_name(), "busy": False, "state_since": now, "task_name": "", "beat_at": now,
                  "started_at": now},
    )  # fmt: skip
    _row_id = row.pk
    threading.Thread(target=_beat, name="llmbench-worker-beat", daemon=True).start()


def _beat() -> None:
    from llmbench.models import TaskWorker

    while True:
        time.sleep(WORKER_BEAT_S)
        try:
            close_old_connections()
            TaskWorker.objects.filter(pk=_row_id).update(beat_at=timezone.now())
        except Exception:  # the database is away for a moment: the next beat tries again
            logger.warning("task worker %s could not write its beat", os.getpid(), exc_info=True)


def _report(**fields) -> None:
    if _row_id is None:
        return
    from llmbench.models import TaskWorker

    try:
        now = timezone.now()
        TaskWorker.objects.filter(pk=_row_id).update(state_since=now, beat_at=now, **fields)
    except Exception:  # reporting must never fail the task itself
        logger.warning("task worker %s could not report its state", os.getpid(), exc_info=True)


def worker_busy(task: dict) -> None:
    """This worker took a task (django-q2's pre_execute)."""
    _report(busy=True, task_name=str(task.get("func") or "")[:200])


def worker_idle() -> None:
    """This worker finished its task (django-q2's post_execute_in_worker)."""
    _report(busy=False, task_name="")


def task_queued(task: dict) -> None:
    """Note when a task was queued (django-q2's pre_enqueue, in whichever process queues it)."""
    from django.db import transaction

    from llmbench.models import TaskQueueMark

    cluster = task.get("cluster") or _cluster_name()
    now = timezone.now()
    try:
        with transaction.atomic():  # a savepoint: a failure here must not spoil the caller's transaction
            if not TaskQueueMark.objects.filter(cluster=cluster).update(enqueued_at=now):
                TaskQueueMark.objects.create(cluster=cluster, enqueued_at=now)
    except Exception:  # queueing the task matters more than the mark
        logger.warning("could not note the queueing of task %s", task.get("name"), exc_info=True)


# --- reading, anywhere --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterHealth:
    """The task queue and the workers, as one check sees them."""

    ok: bool
    detail: str
    waiting: int  # tasks in the broker that a worker may take now
    oldest_wait_s: float | None
    workers_live: int
    workers_busy: int
    idle_for_s: float | None  # since a live worker last took or finished a task; 0 while one is busy


def _seconds(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds())


def queue_waiting(now: datetime | None = None) -> tuple[int, datetime | None]:
    """How many tasks wait in the broker, and since when the oldest waits. The ORM broker keeps
    every task as a row whose lock is the time it became available (queued, or handed back after
    Q_RETRY_S); Redis keeps a list whose head is the oldest, stamped by async_task when queued."""
    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM

    now = now or timezone.now()
    broker = get_broker()
    if isinstance(broker, ORM):
        row = (
            broker.get_connection()
            .filter(key=broker.list_key, lock__lte=now)
            .aggregate(count=Count("id"), oldest=Min("lock"))
        )
        return row["count"], row["oldest"]
    size = int(broker.queue_size() or 0)
    oldest = None
    if size and hasattr(broker.connection, "lindex"):
        from django_q.signing import SignedPackage

        head = broker.connection.lindex(broker.list_key, 0)
        if head is not None:
            try:
                oldest = SignedPackage.loads(head).get("started")
            except Exception:  # a package signed with another key: its age is unknown, not an error
                oldest = None
    return size, oldest


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cluster_health(*, stall_s: float | None = None, now: datetime | None = None) -> ClusterHealth:
    """Whether the task cluster takes the tasks that wait; `detail` says what it sees, in words."""
    from llmbench.models import TaskQueueMark, TaskWorker

    stall_s = settings.TASK_CLUSTER_STALL_S if stall_s is None else stall_s
    now = now or timezone.now()
    cluster = _cluster_name()
    waiting, oldest = queue_waiting(now)
    oldest_wait_s = None if oldest is None else _seconds(now - oldest)
    rows = TaskWorker.objects.filter(cluster=cluster)
    live = [
        (busy, since)
        for host, pid, busy, since in rows.filter(beat_at__gte=now - timedelta(seconds=WORKER_LIVE_S)).values_list(
            "host", "pid", "busy", "state_since"
        )
        if not _gone(host, pid)
    ]
    ever = rows.aggregate(last_activity=Max("state_since"), last_beat=Max("beat_at"))
    live_n, busy_n = len(live), sum(busy for busy, _ in live)
    last = max((since for _, since in live), default=None)
    idle_for_s = 0.0 if busy_n else (None if last is None else _seconds(now - last))

    # Since when has work waited that no worker took? The oldest task in the broker; or the last
    # queueing when no worker has taken or finished anything since (a stuck cluster's pusher has
    # pulled it into the cluster's internal queue, where the broker no longer shows it).
    unserved_since = oldest
    queued_at = TaskQueueMark.objects.filter(cluster=cluster).values_list("enqueued_at", flat=True).first()
    untaken = queued_at is not None and (ever["last_activity"] is None or queued_at > ever["last_activity"])
    if untaken and (unserved_since is None or queued_at < unserved_since):
        unserved_since = queued_at
    unserved_s = None if unserved_since is None else _seconds(now - unserved_since)

    if waiting:
        queue = f"{_count(waiting, 'task')} {'waits' if waiting == 1 else 'wait'}" + (
            "" if oldest_wait_s is None else f" (the oldest for {oldest_wait_s:.0f} s)"
        )
    elif untaken:
        queue = f"a task queued {unserved_s:.0f} s ago is not taken yet"
    else:
        queue = "no task waits"
    judged = unserved_s is not None and unserved_s >= stall_s and busy_n == 0

    def health(ok: bool, detail: str) -> ClusterHealth:
        return ClusterHealth(ok, detail, waiting, oldest_wait_s, live_n, busy_n, idle_for_s)

    if live_n == 0:
        if ever["last_beat"] is None:
            workers = "no task worker is running"
        else:
            workers = f"no task worker has reported for {_seconds(now - ever['last_beat']):.0f} s"
        if judged:
            return health(False, f"{workers} while {queue}")
        if unserved_s is None:
            return health(True, f"{workers}; {queue}, so none is needed yet")
        return health(True, f"{workers}; {queue}: not ready once that is {stall_s:.0f} s")
    if judged and idle_for_s is not None and idle_for_s >= stall_s:
        return health(False, f"no worker has taken a task for {idle_for_s:.0f} s while {queue}; "
                              f"{_count(live_n, 'worker')} alive but idle: the cluster is stuck")  # fmt: skip
    return health(True, f"{_count(live_n, 'worker')} ({busy_n} busy); {queue}")


# --- supervision, in manage.py serve --------------------------------------------------------------

RESTART_DELAY_MAX_S = 60.0
# A worker that stayed up this long before dying is started again at once: it did not die of
# something that would kill it again straight away (a bad setting, a broken database).
STAYED_UP_S = 60.0


def restart_reason(health: ClusterHealth | None, *, running_for_s: float, stall_s: float) -> str | None:
    """Why the cluster that serve runs must be killed and started again, or None. A cluster younger
    than the stall threshold is not judged yet: the tasks it is catching up on waited before it."""
    if health is None or health.ok or running_for_s < stall_s:
        return None
    return health.detail


def restart_delay_s(quick_deaths: int) -> float:
    """The pause before starting a worker that died, doubling while it keeps dying soon after its
    start (so a broken setup does not spin), capped at a minute."""
    if quick_deaths <= 0:
        return 0.0
    return min(RESTART_DELAY_MAX_S, 2.0 ** (quick_deaths - 1))


class WorkerSupervisor:
    """Runs `manage.py qcluster` in its own process group and keeps it taking tasks: a cluster that
    died is started again (see restart_delay_s), one that is stuck (cluster_health) is killed with
    its whole group and started again. Each restart is logged with its reason."""

    def __init__(self, command: list[str], *, write, stall_s: float | None = None, check_every_s: float = 5.0,
                 **popen) -> None:  # fmt: skip
        self.command, self.write, self.popen = command, write, popen
        self.stall_s = settings.TASK_CLUSTER_STALL_S if stall_s is None else stall_s
        self.check_every_s = check_every_s
        self.process: subprocess.Popen | None = None
        self.started = self.last_check = 0.0
        self.quick_deaths = 0
        self.restart_at: float | None = None
        self.restarts = 0

    def start(self) -> None:
        # Its own session: a stuck cluster is killed with the sentinel and every worker at once,
        # and Ctrl-C reaches it once, from serve, rather than from the terminal too.
        self.process = subprocess.Popen(self.command, start_new_session=True, **self.popen)
        self.started = self.last_check = time.monotonic()
        self.restart_at = None

    def poll(self) -> None:
        """Called often by serve's loop: restart the cluster if it died or is stuck."""
        now = time.monotonic()
        if self.process is None:
            if self.restart_at is not None and now >= self.restart_at:
                self.start()
            return
        code = self.process.poll()
        if code is not None:
            self._signal_group(signal.SIGKILL)  # its sentinel and workers must not live on beside the next one
            up_s = now - self.started
            self.quick_deaths = 0 if up_s >= STAYED_UP_S else self.quick_deaths + 1
            delay = restart_delay_s(self.quick_deaths)
            self.write(f"The task worker exited with code {code} after {up_s:.0f} s; starting it again"
                       + (f" in {delay:.0f} s." if delay else "."))  # fmt: skip
            self.process, self.restart_at = None, now + delay
            self.restarts += 1
            return
        if now - self.last_check < self.check_every_s:
            return
        self.last_check = now
        try:
            close_old_connections()
            health = cluster_health(stall_s=self.stall_s)
        except Exception as exc:  # the database or broker is away: that is /ready's to report, not a stuck worker
            self.write(f"Could not check the task worker: {type(exc).__name__}: {exc}")
            return
        reason = restart_reason(health, running_for_s=now - self.started, stall_s=self.stall_s)
        if reason:
            self.write(f"The task worker is stuck ({reason}); killing it and starting a new one.")
            self.kill()
            self.restarts += 1
            self.start()

    def kill(self) -> None:
        """Kill the cluster's whole process group at once: a stuck cluster cannot stop politely (its
        sentinel waits forever for the pusher), and none of its workers runs a task."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self, timeout_s: float) -> None:
        """Stop it the polite way (SIGINT lets the sentinel finish its tasks), then by force."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal_group(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=max(0.1, timeout_s))
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
