"""The worker children of a cluster (not the whole cluster) are killed with SIGKILL mid-sweep: the
workers spawned in their place wait forever for the internal queue's lock the dead held, so the
cluster takes nothing more. The supervisor `manage.py serve` runs sees it stuck, kills it and
starts another, and the sweep completes with one result per key and no provider call repeated.

Recovery tasks that piled up behind the stuck cluster and then run together count the lost chunk
once (they used to count one each, and failed the sweep after five without running a chunk).

Real processes (`manage.py qcluster` with the test's own broker: the ORM broker on SQLite, Redis
with REDIS_URL) against the test database; mockllm over HTTP in this process."""

import os
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Task
from django_q.tasks import async_task

from apps.batches import batch_runner, services
from apps.batches.batch_runner import run_batch_chunk
from apps.batches.models import Batch
from apps.batches.services import batch_start, batches_recover_stalled
from apps.experiments.models import Experiment, Response
from apps.providers.models import ProviderEndpoint
from llmbench.workers import WorkerSupervisor, cluster_health
from tests.batches.helpers import make_batch, run_until_done
from tests.cluster import (
    QCLUSTER,
    ROOT,
    cluster_env,
    descendants,
    kill_cluster,
    live_worker_pids,
    start_cluster,
    wait_for,
)

RECOVER = "apps.batches.tasks.recover_stalled_batches"


@pytest.fixture(autouse=True)
def _empty_queue():
    get_broker().purge_queue()  # the Redis list outlives a test
    yield
    get_broker().purge_queue()


def lost_chunk(batch, *, recoveries=0) -> Batch:
    """A running batch whose chunk took the lease and then went silent five minutes ago."""
    Experiment.objects.filter(pk=batch.pk).update(status="running")
    Batch.objects.filter(pk=batch.pk).update(lease="dead", heartbeat_at=timezone.now() - timedelta(minutes=5),
                                             queued_at=None, recoveries=recoveries)  # fmt: skip
    return Batch.objects.get(pk=batch.pk)


@pytest.mark.django_db(transaction=True)  # the chunk reads in its own thread
def test_recoveries_that_piled_up_count_a_lost_chunk_once_and_queue_it_once(team, queued):
    batch = lost_chunk(batch_start(batch=make_batch(team)))
    queued.clear()
    assert [batches_recover_stalled() for _ in range(11)] == [1] + [0] * 10
    assert queued == [("apps.batches.tasks.batch_run_chunk", batch.pk)]
    batch.refresh_from_db()
    assert batch.recoveries == 1 and batch.lease == "" and batch.queued_at is not None
    run_until_done(batch.pk)
    assert Experiment.objects.get(pk=batch.pk).status == "completed"
    assert Batch.objects.get(pk=batch.pk).recoveries == 0  # a stored result starts the count again


@pytest.mark.django_db(transaction=True)  # the chunk reads in its own thread
def test_a_queued_chunk_no_worker_took_is_queued_again_without_counting(team, queued):
    batch = batch_start(batch=make_batch(team))
    queued.clear()
    Experiment.objects.filter(pk=batch.pk).update(status="running")  # between two chunks
    Batch.objects.filter(pk=batch.pk).update(lease="", queued_at=timezone.now() - timedelta(minutes=10))
    assert batches_recover_stalled() == 1 and len(queued) == 1
    assert batches_recover_stalled() == 0  # queued again just now
    assert Batch.objects.get(pk=batch.pk).recoveries == 0  # nothing ran, so nothing was lost


@pytest.mark.django_db(transaction=True)  # the chunk reads in its own thread
def test_a_chunk_taking_over_a_dead_chunks_lease_counts_it_and_recovery_then_has_nothing_to_do(team, queued):
    batch = lost_chunk(batch_start(batch=make_batch(team)))
    assert batch_runner._acquire(batch.pk, "mine") is None
    batch.refresh_from_db()
    assert batch.lease == "mine" and batch.recoveries == 1
    Batch.objects.filter(pk=batch.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert batches_recover_stalled() == 1  # then this chunk died too: a second loss
    assert Batch.objects.get(pk=batch.pk).recoveries == 2


@pytest.mark.django_db(transaction=True)  # the chunk reads in its own thread
def test_the_fifth_lost_chunk_in_a_row_fails_the_batch_without_running_it(team, queued, sim_calls):
    batch = lost_chunk(batch_start(batch=make_batch(team)), recoveries=services.MAX_RECOVERIES - 1)
    assert run_batch_chunk(batch.pk) == "failed" and sim_calls == []
    experiment = Experiment.objects.get(pk=batch.pk)
    assert experiment.status == "failed" and f"stopped {services.MAX_RECOVERIES} times" in experiment.error
    assert Batch.objects.get(pk=batch.pk).lease == ""


@pytest.mark.django_db(transaction=True)
def test_recovery_tasks_queued_behind_a_stuck_cluster_run_together_and_the_sweep_completes(team, queued, tmp_path):
    """The incident: eleven recovery tasks ran within 0.3 s on a new cluster; each counted a
    recovery, and the sweep failed ("worker stopped 5 times") without a chunk running."""
    batch = lost_chunk(batch_start(batch=make_batch(team)))  # its chunk task lost (`queued` keeps it)
    for _ in range(11):
        async_task(RECOVER)
    log = tmp_path / "cluster.log"
    cluster = start_cluster(log)  # two workers: the recoveries race each other
    try:
        wait_for(lambda: Experiment.objects.get(pk=batch.pk).status in ("completed", "failed"), 50,
                 lambda: f"the sweep to end (log: {log.read_text()[-2000:]})")  # fmt: skip
        wait_for(lambda: Task.objects.filter(func=RECOVER).count() == 11, 20, "the recoveries' results")
    finally:
        kill_cluster(cluster)
    experiment = Experiment.objects.get(pk=batch.pk)
    assert experiment.status == "completed", experiment.error
    assert sum(t.result for t in Task.objects.filter(func=RECOVER)) == 1  # one of the eleven acted
    assert Response.objects.filter(experiment_id=batch.pk).count() == batch.result_count


@pytest.mark.django_db(transaction=True)
def test_killing_the_worker_children_mid_sweep_gets_the_stuck_cluster_restarted_and_repeats_nothing(
    team, counting_mockllm, tmp_path, settings
):
    url, calls = counting_mockllm
    endpoint = ProviderEndpoint.objects.create(team=team, name="mockllm", kind="openai_compatible", base_url=url)
    batch = make_batch(team, endpoint=endpoint, repetitions=1, concurrency=4,
                       ranges={"temperature": {"min": 0.1, "max": 2.0, "step": 0.1}, "top_p": [0.5, 0.75, 1.0]})  # fmt: skip
    assert batch.result_count == 60
    stored = Response.objects.filter(experiment_id=batch.pk)
    log, said = tmp_path / "cluster.log", []
    supervisor = WorkerSupervisor(QCLUSTER, write=said.append, stall_s=5, check_every_s=0.5, cwd=ROOT,
                                  env=cluster_env(), stdout=log.open("ab"), stderr=log.open("ab"))  # fmt: skip
    supervisor.start()
    try:
        batch_start(batch=batch)
        wait_for(lambda: stored.count() >= 12, 45, lambda: f"a dozen results (log: {log.read_text()[-2000:]})")
        workers = wait_for(lambda: live_worker_pids() & descendants(supervisor.process.pid), 10, "the workers")
        for pid in workers:  # the workers only: the cluster's main process, sentinel, pusher and monitor live on
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)  # requests the dead worker had in flight reach the server or die with it
        stored_at_kill = set(stored.values_list("combination", flat=True))
        calls_at_kill = sum(calls.values())
        assert 12 <= len(stored_at_kill) < 60, "the kill came too late to test anything"
        ticks = []

        seen = []  # what the health check saw, every few seconds: for the failure message

        def tick():  # the sentinel's scheduler queues a recovery every minute; here every second
            if not ticks or time.monotonic() - ticks[-1] >= 1:
                ticks.append(time.monotonic())
                async_task(RECOVER)
                if len(ticks) % 5 == 1:
                    seen.append(cluster_health(stall_s=5).detail)
            supervisor.poll()

        wait_for(lambda: Experiment.objects.get(pk=batch.pk).status in ("completed", "failed"), 75,
                 lambda: f"the sweep to end (said: {said}; seen: {seen}; log: {log.read_text()[-2000:]})", between=tick)  # fmt: skip
    finally:
        if supervisor.process is not None:
            kill_cluster(supervisor.process)

    assert any("stuck" in line for line in said), said  # restarted because it took nothing, not because it died
    experiment = Experiment.objects.get(pk=batch.pk)
    assert experiment.status == "completed", experiment.error
    keys = list(stored.values_list("target_id", "item_key", "combination", "repetition"))
    assert len(keys) == len(set(keys)) == 60  # exactly one result per key
    assert sum(calls.values()) - calls_at_kill <= 60 - len(stored_at_kill)  # asked again only for the unfinished
    values = Batch.objects.get(pk=batch.pk).parameter_values
    for c in stored_at_kill:  # what was stored before the kill was asked exactly once
        t, p = values["temperature"][c // 3], values["top_p"][c % 3]
        assert calls[(t, p, None)] == 1
