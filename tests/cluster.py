"""Real task clusters for tests: `manage.py qcluster` against the test database, in its own
process group, and waiting on conditions."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.utils import timezone

ROOT = Path(settings.BASE_DIR)
QCLUSTER = [sys.executable, "manage.py", "qcluster"]


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def cluster_env(**overrides: str) -> dict[str, str]:
    """The test's own settings (its broker: Redis when REDIS_URL is set), its database, short chunks
    and a task of a dead worker handed out again 16 s after it was taken (ORM broker)."""
    env = dict(os.environ)
    env |= {"DATABASE_URL": database_url(), "Q_WORKERS": "2", "Q_TIMEOUT_S": "15", "Q_RETRY_S": "16",
            "BATCH_CHUNK_S": "1", "LOG_LEVEL": "WARNING"}  # fmt: skip
    return env | overrides


def start_cluster(log: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        QCLUSTER, cwd=ROOT, env=cluster_env(**env), stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped or killed whole
    )  # fmt: skip


def signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def kill_cluster(process: subprocess.Popen) -> None:
    signal_group(process, signal.SIGCONT)  # a stopped group would not die of SIGKILL until continued
    signal_group(process, signal.SIGKILL)
    process.wait(timeout=10)


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc)."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except (FileNotFoundError, ProcessLookupError):
                continue
            todo += children - found
            found |= children
    return found


def live_worker_pids() -> set[int]:
    """The pids of the task workers that beat in the last few seconds (llmbench.workers)."""
    from llmbench.models import TaskWorker
    from llmbench.workers import WORKER_LIVE_S

    fresh = timezone.now() - timedelta(seconds=WORKER_LIVE_S)
    return set(TaskWorker.objects.filter(beat_at__gte=fresh).values_list("pid", flat=True))


def wait_for(condition, timeout: float, what: str, *, between=None):
    """Poll `condition` until it returns something true; `between` runs on every round (e.g. a
    supervisor's poll). `what` may be a function, to say what it saw by the time it gave up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if between is not None:
            between()
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
