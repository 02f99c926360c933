"""/ready and /metrics on the task cluster: a cluster that takes nothing while tasks wait is named
as not ready (a worker's killed children froze one for 11.5 minutes while /ready said all was
well); no worker with nothing waiting is fine, and said so. /ready on the provider endpoints
(READY_CHECK_PROVIDERS), against real local HTTP servers up and down (at the end).

Tasks are queued in the test's own broker (the ORM broker, or Redis when REDIS_URL is set), and
the workers are rows as llmbench/workers.py writes them, except in the last test, where a real
cluster is stopped with SIGSTOP and continued."""

import signal
import socket
import uuid
from contextlib import contextmanager
from datetime import timedelta

import pytest
from aiohttp import web
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from apps.providers.models import ProviderEndpoint
from apps.providers.readiness import forget_results
from llmbench.models import TaskQueueMark, TaskWorker
from llmbench.workers import cluster_health
from tests.cluster import kill_cluster, live_worker_pids, signal_group, start_cluster, wait_for
from tests.threaded import running_in_thread

STALL_S = 30


@pytest.fixture(autouse=True)
def _stall_threshold(settings):
    settings.TASK_CLUSTER_STALL_S = STALL_S


@pytest.fixture(autouse=True)
def _empty_queue():
    """The Redis broker's list outlives a test; the ORM broker's rows do not."""
    get_broker().purge_queue()
    yield
    get_broker().purge_queue()


def queue_task(age_s: float = 0.0, count: int = 1) -> None:
    """Tasks waiting in the broker for `age_s` (as async_task packs them), noted as queued then."""
    broker = get_broker()
    then = timezone.now() - timedelta(seconds=age_s)
    for _ in range(count):
        task = {
            "id": uuid.uuid4().hex,
            "name": "t",
            "func": "math.floor",
            "args": (1.5,),
            "kwargs": {},
            "started": then,
        }
        broker.enqueue(SignedPackage.dumps(task))
    if isinstance(broker, ORM):
        broker.get_connection().filter(key=broker.list_key).update(lock=then)
    TaskQueueMark.objects.update_or_create(cluster="llmbench", defaults={"enqueued_at": then})


def worker(pid: int, *, busy: bool = False, since_s: float = 0.0, beat_s: float = 1.0) -> TaskWorker:
    now = timezone.now()
    return TaskWorker.objects.create(
        host="test", pid=pid, cluster="llmbench", busy=busy, state_since=now - timedelta(seconds=since_s),
        beat_at=now - timedelta(seconds=beat_s), started_at=now - timedelta(hours=1),
    )  # fmt: skip


def ready(client) -> tuple[int, dict]:
    response = client.get("/ready")
    return response.status_code, response.json()


def gauge(client, name: str) -> float:
    text = client.get("/metrics").content.decode()
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).rsplit(" ", 1)[1])


@pytest.mark.django_db
def test_without_a_worker_and_with_nothing_waiting_the_site_is_ready_and_says_why(client):
    status, body = ready(client)
    assert status == 200
    assert body["checks"]["task_cluster"] == "ok: no task worker is running; no task waits, so none is needed yet"


@pytest.mark.django_db
def test_a_task_queued_a_moment_ago_without_a_worker_is_not_a_failure_yet(client):
    async_task("math.floor", 1.5)  # the real path: the broker, and the queueing noted
    status, body = ready(client)
    assert status == 200
    assert body["checks"]["task_cluster"].startswith("ok: no task worker is running; 1 task waits (the oldest for 0 s)")


@pytest.mark.django_db
def test_tasks_waiting_past_the_threshold_without_a_worker_are_not_ready(client):
    queue_task(age_s=95, count=3)
    status, body = ready(client)
    assert status == 503 and body["failed"] == ["task_cluster"]
    assert body["checks"]["task_cluster"] == (
        "failed: RuntimeError: no task worker is running while 3 tasks wait (the oldest for 95 s)"
    )
    assert body["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_live_workers_that_take_nothing_while_tasks_wait_are_a_stuck_cluster(client):
    worker(101, since_s=95)
    worker(102, since_s=96)
    queue_task(age_s=120, count=17)
    status, body = ready(client)
    assert status == 503 and body["failed"] == ["task_cluster"]
    assert body["checks"]["task_cluster"] == (
        "failed: RuntimeError: no worker has taken a task for 95 s while 17 tasks wait (the oldest for 120 s); "
        "2 workers alive but idle: the cluster is stuck"
    )
    assert gauge(client, "llmbench_task_cluster_alive") == 0
    assert gauge(client, "llmbench_task_queue_depth") == 17
    assert 119 <= gauge(client, "llmbench_task_queue_oldest_age_seconds") <= 125
    assert 94 <= gauge(client, "llmbench_task_workers_idle_seconds") <= 100


@pytest.mark.django_db
def test_a_task_the_stuck_cluster_swallowed_still_shows_as_not_taken(client):
    """Its pusher pulled the task into the cluster's own queue: the broker is empty, but the last
    queueing came after the workers' last activity."""
    worker(101, since_s=100)
    TaskQueueMark.objects.create(cluster="llmbench", enqueued_at=timezone.now() - timedelta(seconds=90))
    status, body = ready(client)
    assert status == 503
    assert "a task queued 90 s ago is not taken yet" in body["checks"]["task_cluster"]


@pytest.mark.django_db
def test_a_busy_worker_is_not_stuck_however_long_tasks_wait(client):
    worker(101, busy=True, since_s=200)
    queue_task(age_s=120, count=2)
    status, body = ready(client)
    assert status == 200
    assert body["checks"]["task_cluster"] == "ok: 1 worker (1 busy); 2 tasks wait (the oldest for 120 s)"
    assert gauge(client, "llmbench_task_cluster_alive") == 1


@pytest.mark.django_db
def test_a_worker_that_took_a_task_lately_is_not_stuck(client):
    worker(101, since_s=95)
    worker(102, since_s=2)  # finished a task two seconds ago: the backlog is being worked off
    queue_task(age_s=120, count=5)
    assert ready(client)[0] == 200


@pytest.mark.django_db
def test_workers_that_stopped_reporting_count_as_none(client):
    worker(101, since_s=300, beat_s=40)
    queue_task(age_s=60)
    status, body = ready(client)
    assert status == 503
    assert body["checks"]["task_cluster"] == (
        "failed: RuntimeError: no task worker has reported for 40 s while 1 task waits (the oldest for 60 s)"
    )


@pytest.mark.django_db
def test_workers_of_another_cluster_do_not_count(client):
    TaskWorker.objects.create(host="test", pid=7, cluster="other", busy=True, state_since=timezone.now(),
                              beat_at=timezone.now(), started_at=timezone.now())  # fmt: skip
    queue_task(age_s=60)
    assert ready(client)[0] == 503


@pytest.mark.django_db
def test_ready_rejects_post_and_needs_no_login(client):
    assert client.post("/ready").status_code == 405
    assert client.get("/ready").status_code == 200  # anonymous, as a load balancer asks


@pytest.mark.django_db(transaction=True)
def test_a_real_cluster_stopped_while_a_task_waits_is_not_ready_until_it_continues(client, settings, tmp_path):
    settings.TASK_CLUSTER_STALL_S = 5
    log = tmp_path / "cluster.log"
    cluster = start_cluster(log, Q_WORKERS="1")
    try:
        wait_for(lambda: live_worker_pids(), 30, f"the worker to report (log: {log.read_text()[-2000:]})")
        assert ready(client)[0] == 200
        signal_group(cluster, signal.SIGSTOP)
        async_task("math.floor", 1.5)
        _status, body = wait_for(lambda: (r := ready(client))[0] == 503 and r, 40, "/ready to report the stop")
        assert body["failed"] == ["task_cluster"]
        detail = body["checks"]["task_cluster"]
        # In the ORM broker the task waits; Redis hands it to the stopped pusher's pending pop at once,
        # so it is gone from the list and only its queueing shows.
        assert "while 1 task waits" in detail or "while a task queued" in detail, detail
        signal_group(cluster, signal.SIGCONT)
        wait_for(lambda: ready(client)[0] == 200, 30, "/ready to be well again once the cluster takes the task")
        assert cluster_health().waiting == 0
    finally:
        kill_cluster(cluster)


# --- Provider endpoints (READY_CHECK_PROVIDERS) -------------------------------------------------------
# Reachable: the server answers a GET of the model list with any HTTP status, asked without the key.


@pytest.fixture(autouse=True)
def _fresh_provider_results():
    """The results are kept for a few seconds per process; each test looks anew."""
    forget_results()
    yield
    forget_results()


def provider_server():
    """A real HTTP server in a thread answering every request with 401 (a server that is up but
    refuses the missing key), recording the headers of what it was asked; yields (base URL, requests)."""
    seen: list[dict] = []

    async def answer(request):
        seen.append({"path": request.path, "headers": dict(request.headers)})
        return web.json_response({"error": "no key"}, status=401)

    async def start():
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    async def stop(runner):
        await runner.cleanup()

    @contextmanager
    def running():
        with running_in_thread(start, stop) as runner:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen

    return running()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def provider(team, name: str, base_url: str, kind: str = "openai_compatible", **fields) -> ProviderEndpoint:
    endpoint = ProviderEndpoint(team=team, name=name, kind=kind, base_url=base_url, **fields)
    endpoint.set_api_key("sk-secret-key-1234")
    endpoint.save()
    return endpoint


@pytest.mark.django_db
def test_provider_endpoints_are_not_checked_when_off(client, settings, team):
    settings.READY_CHECK_PROVIDERS = "off"
    provider(team, "down", f"http://127.0.0.1:{closed_port()}/v1")
    status, body = ready(client)
    assert status == 200 and "providers" not in body["checks"]


@pytest.mark.django_db
def test_report_names_the_endpoints_down_but_stays_ready_and_sees_them_come_back(client, settings, team, other_team):
    settings.READY_CHECK_PROVIDERS = "report"
    with provider_server() as (root, seen):
        provider(team, "vllm", f"{root}/v1")
        provider(other_team, "vllm-too", f"{root}/v1/")  # the same server: asked once
        provider(team, "claude", root, kind="anthropic")
        status, body = ready(client)
        assert status == 200 and body["status"] == "ok"
        assert body["checks"]["providers"] == "ok: 3 provider endpoints reachable"
        assert sorted(r["path"] for r in seen) == ["/v1/models", "/v1/models"]  # openai-style and Anthropic's
        # The key never leaves for a readiness probe.
        assert not any({"authorization", "x-api-key"} & {h.lower() for h in r["headers"]} for r in seen)
    forget_results()
    status, body = ready(client)
    assert status == 200 and body["status"] == "degraded"
    assert body["failed"] == [] and body["degraded"] == ["providers"]
    assert body["checks"]["providers"] == (
        "failed: 3 of 3 provider endpoints down: alpha/vllm (connection refused), "
        "bravo/vllm-too (connection refused), alpha/claude (connection refused)"
    )
    assert body["details"]["providers"][0] == {"endpoint": "alpha/vllm", "reason": "connection refused"}
    assert "127.0.0.1" not in str(body)  # names and reasons, never the addresses


@pytest.mark.django_db
def test_require_fails_ready_while_an_endpoint_is_down(client, settings, team):
    settings.READY_CHECK_PROVIDERS = "require"
    with provider_server() as (root, _seen):
        provider(team, "up", f"{root}/v1")
        assert ready(client)[0] == 200
        provider(team, "gone", f"http://127.0.0.1:{closed_port()}/v1")
        forget_results()
        status, body = ready(client)
    assert status == 503 and body["status"] == "unavailable" and body["failed"] == ["providers"]
    assert body["details"]["providers"] == [{"endpoint": "alpha/gone", "reason": "connection refused"}]
    assert body["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_a_server_that_accepts_connections_but_never_answers_is_down_after_the_timeout(client, settings, team):
    settings.READY_CHECK_PROVIDERS = "require"
    settings.READY_PROVIDER_TIMEOUT_S = 1
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        provider(team, "hung", f"http://127.0.0.1:{listener.getsockname()[1]}/v1")
        status, body = ready(client)
    assert status == 503
    assert body["details"]["providers"] == [{"endpoint": "alpha/hung", "reason": "no answer within 1 s"}]


@pytest.mark.django_db
def test_at_most_the_limit_of_addresses_is_asked_and_simulators_never(client, settings, team):
    settings.READY_CHECK_PROVIDERS = "require"
    settings.READY_PROVIDER_LIMIT = 1
    ProviderEndpoint.objects.create(team=team, name="sim", kind="sim")
    with provider_server() as (root, seen):
        provider(team, "first", f"{root}/v1")
        provider(team, "second", f"http://127.0.0.1:{closed_port()}/v1")  # past the limit: not asked
        status, body = ready(client)
    assert status == 200
    assert body["checks"]["providers"] == "ok: 1 provider endpoint reachable; 1 more not checked (READY_PROVIDER_LIMIT)"
    assert len(seen) == 1


@pytest.mark.django_db
def test_without_provider_endpoints_there_is_nothing_to_check(client, settings):
    settings.READY_CHECK_PROVIDERS = "require"
    status, body = ready(client)
    assert status == 200 and body["checks"]["providers"] == "ok: no provider endpoint to check"
