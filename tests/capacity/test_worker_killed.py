"""The worker running a capacity search is killed with SIGKILL in the middle of a probe; the task is delivered
again, and the search resumes at the probe it lost: the same step is run again, every judged probe is kept,
and no probe or run is recorded twice.

Real processes: `manage.py qcluster` (the ORM broker, so the killed worker's task is delivered again once its
lock expires) against the test database, the simulator inside the worker."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.tasks import async_task

from apps.batches.models import LoadSweepStep
from apps.capacity.models import CapacitySearch, Status
from apps.capacity.services import capacity_start
from apps.hardware.models import PerformanceRun
from tests.batches.helpers import FAST, sim_endpoint
from tests.capacity.helpers import make_search
from tests.cluster import database_url, wait_for

ROOT = Path(settings.BASE_DIR)
pytestmark = pytest.mark.django_db(transaction=True)


def start_worker(log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the ORM broker: receipts survive a kill
    # A task of a dead worker is delivered again 16 s after it was taken; by then the search has been silent
    # for more than CAPACITY_STALL_S, so the new task takes it over. Chunks of 7.5 s (half of Q_TIMEOUT_S).
    env |= {"DATABASE_URL": database_url(), "Q_WORKERS": "1", "Q_TIMEOUT_S": "15", "Q_RETRY_S": "16",
            "BATCH_CHUNK_S": "1", "CAPACITY_STALL_S": "4", "LOG_LEVEL": "WARNING"}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the kill takes the sentinel and its workers at once
    )  # fmt: skip


def test_a_worker_killed_mid_probe_resumes_at_the_probe_it_lost(team, tmp_path, monkeypatch):
    monkeypatch.setattr("apps.capacity.services.job_submit", lambda **kwargs: None)
    endpoint = sim_endpoint(team, name="fast", base_url=FAST, model_names=["sim-small"])
    search = make_search(team, endpoint=endpoint, model="sim-small", start_level=4, max_level=64, probe_duration_s=3,
                         slo={"objectives": [{"metric": "ttft_ms", "percentile": 50, "max_ms": 100}]})  # fmt: skip
    capacity_start(search=search)
    async_task("apps.capacity.tasks.capacity_run", search.pk, broker=ORM(list_key=Conf.PREFIX))
    probes = search.probes.order_by("index")
    running = LoadSweepStep.objects.filter(sweep_id=search.sweep_id, status=Status.RUNNING, run__isnull=True)
    log = tmp_path / "workers.log"

    first = start_worker(log)
    try:
        wait_for(lambda: probes.count() >= 2 and running.exists(), 90,
                 lambda: f"the first worker to judge two probes and start a third (log: {log.read_text()[-3000:]})")  # fmt: skip
        time.sleep(0.5)  # into the probe
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    judged_at_kill = list(probes.values_list("pk", "level", "step_id"))
    lost = running.get()
    assert CapacitySearch.objects.get(pk=search.pk).status == Status.RUNNING  # the dead worker could not say otherwise

    second = start_worker(log)
    try:
        wait_for(lambda: CapacitySearch.objects.get(pk=search.pk).status in (Status.COMPLETED, Status.FAILED), 150,
                 lambda: f"the second worker to finish the search (log: {log.read_text()[-3000:]})")  # fmt: skip
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait(timeout=10)

    search.refresh_from_db()
    assert search.status == Status.COMPLETED, search.error
    after = list(probes.values_list("pk", "level", "step_id"))
    assert after[: len(judged_at_kill)] == judged_at_kill  # what was judged stays as it was
    assert [level for _, level, _ in after] == [4, 8, 16, 32, 64]
    assert after[len(judged_at_kill)][2] == lost.pk  # the lost probe ran again in its own step
    steps = LoadSweepStep.objects.filter(sweep_id=search.sweep_id)
    assert steps.count() == len(after) and not steps.filter(run__isnull=True).exists()
    assert PerformanceRun.objects.filter(sweep_step__sweep_id=search.sweep_id).count() == len(after)
