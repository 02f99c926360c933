"""The worker running a batch is killed with SIGKILL half-way through a sweep against mockllm;
a new worker finishes it with exactly one result per (combination, repetition), and asks the
provider again only for what had not been stored.

Real processes: `manage.py qcluster` (the ORM broker, so the killed worker's task is delivered
again once its lock expires) against the test database, mockllm over HTTP in this process."""

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

from apps.batches.models import Batch
from apps.batches.services import batch_start
from apps.experiments.models import Experiment, Response
from apps.providers.models import ProviderEndpoint
from tests.batches.helpers import make_batch
from tests.cluster import database_url, wait_for

ROOT = Path(settings.BASE_DIR)
pytestmark = pytest.mark.django_db(transaction=True)


def start_worker(log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the ORM broker: receipts survive a kill
    # Short chunks, and a task of a dead worker delivered again 16 s after it was taken: by then
    # its lease (10 s after the last heartbeat) has gone stale and the new worker takes it over.
    env |= {"DATABASE_URL": database_url(), "Q_WORKERS": "1", "Q_TIMEOUT_S": "15", "Q_RETRY_S": "16",
            "BATCH_CHUNK_S": "1", "LOG_LEVEL": "WARNING"}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the kill takes the sentinel and its workers at once
    )  # fmt: skip


def test_a_worker_killed_mid_batch_loses_nothing_and_repeats_nothing(team, counting_mockllm, queued, tmp_path):
    url, calls = counting_mockllm
    endpoint = ProviderEndpoint.objects.create(team=team, name="mockllm", kind="openai_compatible", base_url=url)
    batch = make_batch(team, endpoint=endpoint, repetitions=1, concurrency=4,
                       ranges={"temperature": {"min": 0.1, "max": 2.0, "step": 0.1}, "top_p": [0.5, 0.75, 1.0]})  # fmt: skip
    assert batch.result_count == 60
    batch_start(batch=batch)
    async_task("apps.batches.tasks.batch_run_chunk", batch.pk, broker=ORM(list_key=Conf.PREFIX))
    stored = Response.objects.filter(experiment_id=batch.pk)
    log = tmp_path / "workers.log"

    first = start_worker(log)
    try:
        wait_for(lambda: stored.count() >= 12, 60, "the first worker to store a dozen results")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    time.sleep(0.3)  # requests the dead worker had in flight reach the server or die with it
    stored_at_kill = set(stored.values_list("combination", flat=True))
    calls_at_kill = sum(calls.values())
    assert 12 <= len(stored_at_kill) < 60, "the kill came too late to test anything"
    assert Experiment.objects.get(pk=batch.pk).status == "running"  # the dead worker could not say otherwise

    second = start_worker(log)
    try:
        wait_for(lambda: Experiment.objects.get(pk=batch.pk).status in ("completed", "failed"), 90,
                 f"the second worker to finish the batch (log: {log.read_text()[-2000:]})")  # fmt: skip
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait(timeout=10)

    experiment = Experiment.objects.get(pk=batch.pk)
    assert experiment.status == "completed", experiment.error
    keys = list(stored.values_list("target_id", "item_key", "combination", "repetition"))
    assert len(keys) == len(set(keys)) == 60  # exactly one result per (combination, repetition)
    unfinished = 60 - len(stored_at_kill)
    assert sum(calls.values()) - calls_at_kill <= unfinished  # the provider was asked once per unfinished one
    values = Batch.objects.get(pk=batch.pk).parameter_values
    for c in stored_at_kill:  # what was stored before the kill was asked exactly once
        t, p = values["temperature"][c // 3], values["top_p"][c % 3]
        assert calls[(t, p, None)] == 1
