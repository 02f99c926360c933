"""`manage.py serve` keeps its task worker taking tasks: one that died is started again (after a
pause that grows while it keeps dying at once), one that is stuck is killed with its whole
process group and started again, each time saying why; if the web server dies, serve stops."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from llmbench import workers
from llmbench.workers import ClusterHealth, WorkerSupervisor, restart_delay_s, restart_reason
from tests.cluster import ROOT, cluster_env, descendants, wait_for

STUCK = ClusterHealth(False, "no worker has taken a task for 95 s while 17 tasks wait", 17, 120.0, 2, 0, 95.0)
WELL = ClusterHealth(True, "2 workers (1 busy); no task waits", 0, None, 2, 1, 0.0)
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_a_stuck_cluster_is_restarted_with_the_reason_the_check_gave():
    assert restart_reason(STUCK, running_for_s=300, stall_s=60) == STUCK.detail


def test_a_well_cluster_or_an_unknown_one_is_left_alone():
    assert restart_reason(WELL, running_for_s=300, stall_s=60) is None
    assert restart_reason(None, running_for_s=300, stall_s=60) is None  # the check itself failed


def test_a_cluster_younger_than_the_threshold_is_not_judged_yet():
    """The tasks it is catching up on waited before it started."""
    assert restart_reason(STUCK, running_for_s=59, stall_s=60) is None


def test_a_worker_that_keeps_dying_at_once_waits_longer_each_time_up_to_a_minute():
    assert [restart_delay_s(n) for n in range(9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]


def test_the_supervisor_restarts_a_dead_worker_and_says_so():
    said: list[str] = []
    supervisor = WorkerSupervisor(SLEEPER, write=said.append, stall_s=5, check_every_s=3600)
    supervisor.start()
    first = supervisor.process
    try:
        first.kill()
        first.wait()
        wait_for(lambda: supervisor.process is not None and supervisor.process is not first, 10, "a new worker",
                 between=supervisor.poll)  # fmt: skip
        assert said == [f"The task worker exited with code {-signal.SIGKILL} after 0 s; starting it again in 1 s."]
        second = supervisor.process
        second.kill()
        second.wait()
        wait_for(lambda: supervisor.process is not second, 10, "the supervisor to see it", between=supervisor.poll)
        assert said[-1].endswith("starting it again in 2 s.")  # it keeps dying at once: a longer pause
    finally:
        supervisor.kill()


def test_the_supervisor_kills_a_stuck_worker_with_its_children_and_starts_another(monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(workers, "cluster_health", lambda stall_s: STUCK)
    # a "cluster" with a child of its own, as a sentinel has workers
    family = [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
              "'import time; time.sleep(120)']); time.sleep(120)"]  # fmt: skip
    supervisor = WorkerSupervisor(family, write=said.append, stall_s=0, check_every_s=0)
    supervisor.start()
    first = supervisor.process
    try:
        child = wait_for(lambda: descendants(first.pid), 10, "the child")
        supervisor.poll()
        assert said == [f"The task worker is stuck ({STUCK.detail}); killing it and starting a new one."]
        assert first.poll() is not None
        # SIGKILL to the group is delivered asynchronously: the child dies soon, not necessarily yet
        wait_for(lambda: not any(alive(pid) for pid in child), 10, "the stuck worker's child to die")
        assert supervisor.process.pid != first.pid and supervisor.process.poll() is None
    finally:
        supervisor.kill()


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):  # it ended between being listed and being read
        return ""


def direct_children(serve: subprocess.Popen, word: str) -> list[int]:
    found = []
    for task in Path(f"/proc/{serve.pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            continue
        found += [int(pid) for pid in children if word in cmdline(int(pid))]
    return found


def children_running(serve: subprocess.Popen, word: str) -> list[int]:
    return [pid for pid in descendants(serve.pid) if word in cmdline(pid) and "manage.py serve" not in cmdline(pid)]


@pytest.mark.django_db(transaction=True)
def test_serve_restarts_a_killed_worker_keeps_serving_and_stops_when_the_web_server_dies(tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--workers", "1"], cwd=ROOT,
        env=cluster_env(TASK_CLUSTER_STALL_S="5"), stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    worker, new_worker = [], []
    try:
        worker = wait_for(lambda: direct_children(serve, "qcluster"), 30, "the task worker")
        web = wait_for(lambda: children_running(serve, "uvicorn"), 30, "the web server")
        health = f"http://127.0.0.1:{port}/health"
        wait_for(lambda: _answers(health), 30, lambda: f"the site (log: {log.read_text()[-2000:]})")
        for pid in worker:  # the whole cluster: its main process, sentinel and workers (its own group)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: "The task worker exited with code -9" in log.read_text(), 30,
                 lambda: f"serve to see the worker die (log: {log.read_text()[-2000:]})")  # fmt: skip
        wait_for(lambda: [pid for pid in children_running(serve, "qcluster") if alive(pid) and pid not in worker],
                 30, lambda: f"a new task worker (log: {log.read_text()[-2000:]})")  # fmt: skip
        assert serve.poll() is None
        assert _answers(health)  # the site went on serving
        new_worker = direct_children(serve, "qcluster")
        for pid in web:
            _kill(pid)
        assert serve.wait(timeout=30) != 0
        assert "The web process exited with code" in log.read_text()
        assert new_worker and not any(alive(pid) for pid in new_worker)  # serve stopped its worker before it left
    finally:
        # SIGTERM, not SIGINT: a job started in the background by a script (as CI starts the test runs) ignores
        # SIGINT until serve sets its own handler, and a serve that outlived this test took the next tests' tasks.
        left = descendants(serve.pid)
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _kill(serve.pid)
                serve.wait(timeout=10)
        for pid in left | descendants(serve.pid):
            _kill(pid)
        for pid in worker + new_worker:  # a cluster is a process group of its own: none of it outlives the test
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
