"""Tracing end to end: one API call that starts an experiment is one trace, from the request through
the django-q2 task to the provider call.

The traced side runs as the product runs: `manage.py serve --no-worker` (uvicorn) and a real
`manage.py qcluster` (forked workers), both with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP
receiver in this process, on the test database. The task goes through the broker, so what carries
the trace from the request to the worker is django-q2's pre_enqueue → pre_execute path. Tracing is
set up in those processes only: nothing of OpenTelemetry is installed in the test process.
"""

import contextvars
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from email.message import Message

import pytest
from aiohttp import web
from django.conf import settings
from django.db import connection
from django_q.tasks import async_task

from apps.accounts.models import Membership
from apps.accounts.services import token_create
from apps.experiments.models import Experiment, Response
from apps.providers.mockllm import MockProfile, make_app
from apps.providers.models import ProviderEndpoint
from llmbench import telemetry
from tests.cluster import ROOT, cluster_env, kill_cluster, start_cluster, wait_for
from tests.factories import MembershipFactory
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.threaded import running_in_thread

pytestmark = pytest.mark.django_db(transaction=True)  # the server and the worker read what the test wrote

STARTUP_TIMEOUT_S = 120  # two Django processes starting on a busy two-core machine
RUN_TIMEOUT_S = 120
TASK = "apps.experiments.tasks.experiment_run"
FAILING_TASK = "tests.test_tracing.fail_on_purpose"


def fail_on_purpose() -> None:
    """A task that raises (run by the traced worker)."""
    raise RuntimeError("failing on purpose")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _traced(receiver: OtlpReceiver, service: str) -> dict[str, str]:
    """The environment a traced process gets on top of the test's (tests.cluster.cluster_env)."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms between batches: the test waits on the spans, not on the SDK
        "SECRET_KEY": settings.SECRET_KEY,  # task packages are signed with it, API tokens hashed with it
    }


@contextmanager
def _serving(env: dict[str, str], log):
    """`manage.py serve --no-worker --workers 1` until the block ends; yields its base URL once it answers."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-worker", "--port", str(port), "--workers", "1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def answers() -> bool:
        assert server.poll() is None, f"manage.py serve exited with {server.returncode}"
        try:
            urllib.request.urlopen(f"{url}/health", timeout=5).read()
            return True
        except OSError:
            return False

    try:
        wait_for(answers, STARTUP_TIMEOUT_S, "the traced server to answer /health")
        yield url
    finally:
        server.terminate()  # serve stops uvicorn on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextmanager
def _mockllm():
    """The OpenAI-compatible mock on a free port, in a thread: the worker calls it over real HTTP."""

    async def start():
        runner = web.AppRunner(make_app(MockProfile(ttft_ms=2, itl_ms=1, output_tokens=4)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    async def stop(runner):
        await runner.cleanup()

    with running_in_thread(start, stop) as runner:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


def _post(url: str, body: dict, headers: dict[str, str]) -> tuple[int, Message, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"{}")


def _db_system(span: ReceivedSpan) -> str | None:
    return span.attributes.get("db.system.name", span.attributes.get("db.system"))


def _ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[str]:
    """The ids of the spans above `span`, nearest first (as far as they were received)."""
    by_id = {s.span_id: s for s in spans}
    found, parent = [], span.parent_span_id
    while parent is not None and parent not in found:
        found.append(parent)
        parent = by_id[parent].parent_span_id if parent in by_id else None
    return found


def test_tracing_is_off_in_the_test_process():
    """Without OTEL_EXPORTER_OTLP_ENDPOINT nothing is set up (and no other test is traced)."""
    assert not settings.OTEL_EXPORTER_OTLP_ENDPOINT
    assert telemetry.configure() is False and telemetry.is_on() is False


def test_one_api_call_that_starts_an_experiment_is_one_trace_from_request_to_provider_call(team, tmp_path):
    """The request span (web process), the task span (worker) and the aiohttp call to the provider
    share one trace id: the task span's parent is the request's span, the provider call is inside
    the task span; the task carries the request's X-Request-ID; database spans come along."""
    user = MembershipFactory(team=team, role=Membership.Role.MEMBER).user
    token = token_create(user=user, team=team, name="tracing").key
    request_id = str(uuid.uuid4())
    log_path = tmp_path / "processes.log"
    with (
        OtlpReceiver() as receiver,
        _mockllm() as base_url,
        log_path.open("ab") as log,
        _serving(cluster_env(**_traced(receiver, "llmbench-web")), log) as url,
    ):
        ProviderEndpoint.objects.create(team=team, name="mock", kind="openai_compatible", base_url=base_url)
        cluster = start_cluster(log_path, **_traced(receiver, "llmbench-worker"), Q_WORKERS="1")
        try:
            status, headers, body = _post(
                f"{url}/api/v1/experiments",
                {"name": "traced", "targets_text": "mock: mock", "prompt": "Say hi", "max_tokens": 4},
                {"Authorization": f"Token {token}", "X-Request-ID": request_id},
            )
            assert status == 201, body
            assert headers.get("X-Request-ID") == request_id

            def finished():
                return Experiment.objects.filter(pk=body["id"], status=Experiment.Status.COMPLETED).exists()

            wait_for(finished, RUN_TIMEOUT_S, lambda: f"the experiment to complete ({log_path.read_text()[-3000:]})")
            assert Response.objects.filter(experiment_id=body["id"], error_code="").count() == 1

            def whole_trace(spans):
                requests = [s for s in spans if s.kind == "SERVER" and s.service == "llmbench-web"
                            and s.attributes.get("http.request.method", s.attributes.get("http.method")) == "POST"]  # fmt: skip
                tasks = [s for s in spans if s.kind == "CONSUMER" and s.name == f"task {TASK}"]
                calls = [s for s in spans if s.kind == "CLIENT" and s.service == "llmbench-worker"
                         and "/chat/completions" in str(s.attributes.get("url.full", s.attributes.get("http.url")))]  # fmt: skip
                return (requests[0], tasks[0], calls[0], spans) if requests and tasks and calls else None

            request, task, call, spans = receiver.wait_for(
                whole_trace, RUN_TIMEOUT_S, "the request, task and provider-call spans"
            )
            # A task queued outside a request (here: by the test) starts a trace of its own; one that
            # raises ends its span with an error.
            contextvars.Context().run(async_task, FAILING_TASK)
            (failed,) = receiver.wait_for(
                lambda spans: [s for s in spans if s.name == f"task {FAILING_TASK}"], RUN_TIMEOUT_S, "the failed task"
            )
        finally:
            kill_cluster(cluster)

    assert request.trace_id == task.trace_id == call.trace_id
    assert task.parent_span_id == request.span_id  # the task belongs to the request that queued it
    assert task.service == "llmbench-worker" and task.attributes["llmbench.request_id"] == request_id
    assert task.status != "ERROR"
    assert task.span_id in _ancestors(call, spans)  # the provider call was made inside the task
    assert task.start_ns <= call.start_ns and call.end_ns <= task.end_ns
    assert call.attributes.get("http.response.status_code", call.attributes.get("http.status_code")) == 200
    # The database calls of both sides are in the same trace, under the request or the task.
    vendor = "postgresql" if connection.vendor == "postgresql" else "sqlite"
    database = [s for s in spans if s.trace_id == request.trace_id and _db_system(s) == vendor]
    assert {s.service for s in database} == {"llmbench-web", "llmbench-worker"}
    assert all({request.span_id, task.span_id} & set(_ancestors(s, spans)) for s in database)
    if settings.REDIS_URL:  # the broker is Redis: queueing the task is a Redis call of the request
        redis = [s for s in spans if s.trace_id == request.trace_id and _db_system(s) == "redis"]
        assert any(request.span_id in _ancestors(s, spans) for s in redis)
    assert failed.parent_span_id is None and failed.trace_id != request.trace_id
    assert failed.status == "ERROR" and failed.status_message == "failing on purpose"
    assert "exception" in failed.event_names and failed.attributes["llmbench.request_id"] == ""
    # Database and Redis calls outside a request or task (the cluster polling its broker) start no trace.
    assert all(s.parent_span_id is not None for s in spans if s.kind == "CLIENT")


def test_a_collector_that_is_down_does_not_stop_the_site_from_starting():
    """With the endpoint set but nothing listening, set-up still succeeds (spans are sent later, from
    a thread), `manage.py check` passes, and configuring twice instruments once."""
    script = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "from llmbench import telemetry\n"
        "assert telemetry.configure() is True and telemetry.configure() is True\n"
        "print(sum('opentelemetry' in m for m in settings.MIDDLEWARE))\n"
    )
    env = cluster_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{_free_port()}", DJANGO_SETTINGS_MODULE="llmbench.settings"
    )
    configured = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert configured.returncode == 0, configured.stderr
    assert configured.stdout.split() == ["1"]  # the request middleware, once
    check = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stderr
