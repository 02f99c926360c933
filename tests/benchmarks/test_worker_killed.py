"""The worker running a benchmark is killed with SIGKILL in the middle of the run; the scheduled recovery queues
it again, a new worker finishes it, and every item is answered exactly once, the items stored before the kill
were asked only once, and the accuracy is the exact known one.

Real processes: `manage.py qcluster` with the Redis broker (no receipts: the killed worker's task is gone, so the
recovery has to find the run) against the test database, known-answer mockllm over HTTP in this process. The
recovery runs here, as the schedule would, with its waits shortened."""

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection

from apps.benchmarks import services
from apps.benchmarks.models import BenchmarkAnswer, BenchmarkRun, Status
from apps.benchmarks.selectors import run_results
from apps.benchmarks.services import TargetSpec, benchmark_run_create, benchmark_run_start, runs_recover_stalled
from apps.scores.models import Score
from tests.benchmarks.files import mmlu_pro_items
from tests.benchmarks.test_runner import CATEGORIES, expected, make_suite, mock_endpoint, mocks, variant, write_key  # noqa: F401
from tests.cluster import kill_cluster, start_cluster, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql" or "redis" not in settings.Q_CLUSTER,
        reason="needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL): a worker process writes beside the test, and "
        "the Redis broker loses a killed worker's task, which is the case the recovery is for",
    ),
]
ITEMS = 200


def test_a_worker_killed_mid_run_is_recovered_and_answers_every_item_once(team, mocks, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(services, "STALL_AFTER", timedelta(seconds=2))
    monkeypatch.setattr(services, "QUEUE_GRACE", timedelta(seconds=2))
    suite = make_suite(team, items=mmlu_pro_items(ITEMS, categories=CATEGORIES, seed=5))
    key = write_key(suite, tmp_path / "key.jsonl")
    endpoint = mock_endpoint(team, mocks.start(key, 0.8, ttft_ms=100.0))
    run = benchmark_run_create(team=team, user=None, suite=suite, concurrency=4,
                               targets=[TargetSpec(endpoint, "mock", variant(team, "BF16"))])  # fmt: skip
    benchmark_run_start(run=run)  # queued in Redis
    stored = BenchmarkAnswer.objects.filter(run=run)
    log = tmp_path / "workers.log"

    first = start_cluster(log, Q_WORKERS="1")
    try:
        wait_for(
            lambda: stored.count() >= 40,
            60,
            lambda: f"the first worker to store 40 answers ({log.read_text()[-2000:]})",
        )
    finally:
        kill_cluster(first)
    time.sleep(0.3)  # requests the dead worker had in flight reach the server or die with it
    stored_at_kill = set(stored.values_list("item__question", flat=True))
    assert 40 <= len(stored_at_kill) < ITEMS, "the kill came too late to test anything"
    assert BenchmarkRun.objects.get(pk=run.pk).status == Status.RUNNING  # the dead worker could not say otherwise

    second = start_cluster(log, Q_WORKERS="1")
    last_recovery = [0.0]

    def recover() -> None:  # what the every-minute schedule does, every second here
        if time.monotonic() - last_recovery[0] > 1.0:
            last_recovery[0] = time.monotonic()
            runs_recover_stalled()

    try:
        wait_for(lambda: BenchmarkRun.objects.get(pk=run.pk).status in (Status.COMPLETED, Status.FAILED), 120,
                 lambda: f"the second worker to finish the run (log: {log.read_text()[-2000:]})", between=recover)  # fmt: skip
    finally:
        kill_cluster(second)

    run.refresh_from_db()
    assert run.status == Status.COMPLETED, run.error
    assert run.recoveries == 0 and run.completed_answers == ITEMS and run.failed_answers == 0
    keys = list(stored.values_list("target_id", "item_id"))
    assert len(keys) == len(set(keys)) == ITEMS  # every item answered exactly once
    prompts = [r["body"]["messages"][-1]["content"] for r in mocks.requests()]
    for question in stored_at_kill:  # what was stored before the kill was asked exactly once
        assert sum(question in prompt for prompt in prompts) == 1
    assert len(prompts) <= ITEMS + 4  # at most the requests in flight at the kill were asked again
    (result,) = run_results(run)
    assert result.overall.accuracy == expected(key, 0.8, list(range(ITEMS)))
    assert Score.objects.get(origin=Score.Origin.MEASURED).value_pct == pytest.approx(100 * result.overall.accuracy)
