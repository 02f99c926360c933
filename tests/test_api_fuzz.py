"""Every operation of /api/schema/ fuzzed by Schemathesis, in process, against a team with data.

Each operation is one test item, `test_operation_conforms[GET /api/v1/...]`. Its requests are the schema's
examples and valid and invalid bodies, query strings and path values generated from the schema (a fixed
seed, so every run sends the same ones), sent as the demo team's admin with a token through Django's WSGI
handler, and each answer is checked: no 5xx, a documented success status and content type, a body that
matches the declared schema, and client errors (4xx) as JSON objects. Path parameters are pointed at the
demo team's objects, so operations on one object reach it rather than answering 404.

Nothing here starts real work: tasks are never queued (each test's changes are rolled back, so the
`transaction.on_commit` hooks that queue sweeps, batches and experiments never run, and the queueing
function is replaced as well, failing the module should anything queue); the team's endpoints are the
built-in simulator (no outgoing HTTP); progress streams send one event and close (SSE_MAX_S = 0).

    .venv/bin/pytest tests/test_api_fuzz.py -q -p no:cacheprovider              # bounded, as in CI
    LLMBENCH_FUZZ_DEEP=1 .venv/bin/pytest tests/test_api_fuzz.py -q -p no:cacheprovider   # deeper, minutes

A failure prints the operation, the failed check and a `curl` line that repeats the request.
"""

import io
import ipaddress
import json
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import schemathesis
from django.core import signals
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, connection
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# CI's run is bounded: a few generated requests per operation and mode (valid, invalid), the first failure
# reported as found (no shrinking). The deep run adds Schemathesis's coverage phase (boundary values, wrong
# types such as `[null, null]` for an object, unexpected methods: about 9,000 requests) and more examples.
DEEP = os.environ.get("LLMBENCH_FUZZ_DEEP") == "1"
EXAMPLES_PER_OPERATION = 30 if DEEP else 10
FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 12,
        "generation": {
            "mode": "all",
            "max-examples": EXAMPLES_PER_OPERATION,
            "deterministic": True,
            "no-shrink": True,
            "database": "none",  # nothing replayed from earlier runs: every run is the same
            # The token is sent by the test; generated Authorization headers would only test the 401.
            "with-security-parameters": False,
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": DEEP},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},  # links between operations are not declared
        },
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
        "max-stream-events": 1,
    }
)


@schemathesis.check
def success_status_documented(ctx, response, case):
    """status_code_conformance for everything but client errors: the schema lists each operation's
    successes, while 400 (invalid input), 401, 403, 404 and 409 are the API-wide error answer that
    `client_error_is_json` checks (drf-spectacular does not list them per operation)."""
    if 400 <= response.status_code < 500:
        return None
    return status_code_conformance(ctx, response, case)


@schemathesis.check
def client_error_is_json(ctx, response, case):
    """A 4xx answer is a JSON object naming the problem (`detail`, or field → messages)."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"{response.status_code} answered as {content_type!r}"
    assert isinstance(response.json(), dict), f"{response.status_code} body is not a JSON object"
    return None


CHECKS = [
    not_a_server_error,
    success_status_documented,
    content_type_conformance,
    response_schema_conformance,
    client_error_is_json,
]


def _served_schema() -> dict:
    """What GET /api/schema/?format=json answers (it asks for a token, which needs the database that
    collection cannot use): the same generator and renderer, without the request."""
    generator = SchemaGenerator()
    document = json.loads(OpenApiJsonRenderer().render(generator.get_schema(request=None, public=True)))
    # Importing the URLconf may reach for the database (llmbench.metrics' collector reads the task queue
    # when it is registered); on PostgreSQL that opens a connection pool to the database named in the
    # settings, before the test database exists. Closed here, the tests' own setup opens the right one.
    if hasattr(connection, "close_pool"):
        connection.close_pool()
    return document


schema = schemathesis.openapi.from_dict(_served_schema(), config=FUZZ_CONFIG)

# Each test runs in a transaction rolled back after it (and marks the module as one that needs the database).
pytestmark = pytest.mark.django_db


@dataclass
class World:
    """Django's WSGI application, the admin's token and the demo team's objects the path parameters point at."""

    app: object
    token: str
    ids_by_path_prefix: list[tuple[str, int]]

    def path_parameters(self, path: str) -> dict[str, int]:
        for prefix, pk in self.ids_by_path_prefix:
            if path.startswith(prefix):
                name = path[len(prefix) :].split("}", 1)[0].lstrip("{")
                return {name: pk}
        return {}


def _make_jobs_inert(patch: pytest.MonkeyPatch, queued: list) -> None:
    """No task reaches the queue and no event stream stays open (see the module docstring)."""
    for module in ("apps.experiments.services", "apps.batches.services", "apps.benchmarks.services",
                   "apps.capacity.services"):  # fmt: skip
        patch.setattr(f"{module}.job_submit", lambda **kwargs: queued.append(kwargs))
    patch.setattr("apps.notifications.services.async_task", lambda *args, **kwargs: queued.append(args))
    patch.setattr("llmbench.sse.SSE_MAX_S", 0)


def _is_loopback(host) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _keep_off_the_network(patch: pytest.MonkeyPatch, outgoing: list) -> None:
    """Generated base URLs name random hosts: they do not resolve here (as in a sandbox; the URL check
    then accepts or refuses them as it would), and a connection anywhere but loopback (the database and
    Redis) is refused and recorded, failing the module."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if host is None or _is_loopback(host):
            return real_getaddrinfo(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "not resolved in the fuzz test")

    def connect(sock, address):
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            outgoing.append(address)
            raise ConnectionRefusedError(f"no outgoing connection in the fuzz test: {address}")
        return real_connect(sock, address)

    patch.setattr(socket, "getaddrinfo", getaddrinfo)
    patch.setattr(socket.socket, "connect", connect)


@contextmanager
def _connections_kept_open(patch: pytest.MonkeyPatch):
    """Django's handler closes the database connection around each request, which would end the test's
    transaction; its test Client disconnects the same two signals. Channels' database_sync_to_async (the
    async views' database calls) closes it too, around each call."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    patch.setattr("channels.db.close_old_connections", lambda: None)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """The demo team (load_demo: scores, performance runs with samples, test cases, evaluated experiments,
    a parameter sweep) plus a suite, a load sweep and a spare token. It is committed, as `make demo` does
    it (the demo's experiments run on worker threads with their own connections), each test runs in a
    transaction rolled back after it, and the tables are flushed at the end as `transactional_db` does."""
    from apps.accounts.models import Membership, Team
    from apps.accounts.services import token_create
    from apps.audit.models import AuditEntry
    from apps.automation.services import schedule_create
    from apps.batches.models import Batch
    from apps.batches.services import sweep_create
    from apps.benchmarks.imports import suite_import
    from apps.benchmarks.services import TargetSpec, benchmark_run_create
    from apps.capacity.models import CapacitySearch
    from apps.experiments.models import Experiment, Response, TestCase
    from apps.experiments.services import suite_publish
    from apps.gates.models import Gate, GateCheck
    from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun
    from apps.notifications.services import channel_create, channel_test
    from apps.providers.models import ProviderEndpoint
    from apps.scores.models import Benchmark, Score
    from apps.workloads.models import Workload, WorkloadDataset
    from apps.workloads.services import tokenizer_upload
    from tests.benchmarks.files import mmlu_csv, mmlu_items
    from tests.workloads.conftest import tokenizer_json

    queued: list = []
    outgoing: list = []
    with django_db_blocker.unblock(), pytest.MonkeyPatch.context() as patch, _connections_kept_open(patch):
        _make_jobs_inert(patch, queued)
        _keep_off_the_network(patch, outgoing)
        try:
            call_command("load_demo", stdout=io.StringIO())
            team = Team.objects.get(slug="demo")
            admin = Membership.objects.get(team=team, role=Membership.Role.ADMIN).user
            endpoint = ProviderEndpoint.objects.filter(team=team, name="Simulator").get()
            run = PerformanceRun.objects.filter(team=team).select_related("variant", "hardware").first()
            approved = TestCase.objects.filter(team=team, status=TestCase.Status.APPROVED, is_current=True)
            suite = suite_publish(team=team, name="Fuzz suite", test_cases=list(approved[:2]))
            sweep = sweep_create(
                team=team, user=admin, name="Fuzz sweep", endpoint=endpoint, model="sim-small",
                variant=run.variant, hardware=run.hardware, levels=[1, 2], step_request_count=4, output_tokens=8,
            )  # fmt: skip
            single = Experiment.objects.filter(team=team, kind=Experiment.Kind.SINGLE).first()
            tokenizer = tokenizer_upload(team=team, user=admin, name="fuzz tokenizer", content=tokenizer_json())
            bench_suite = suite_import(
                team=team, user=admin, name="Fuzz MMLU",
                files=[("anatomy_test.csv", mmlu_csv(mmlu_items(6, subjects=("anatomy",))))],
                fewshot_files=[("anatomy_dev.csv", mmlu_csv(mmlu_items(2, subjects=("anatomy",), seed=1)))],
            )  # fmt: skip
            bench_run = benchmark_run_create(team=team, user=admin, suite=bench_suite, name="Fuzz run",
                                             targets=[TargetSpec(endpoint=endpoint, model="sim-small")])  # fmt: skip
            check = GateCheck.objects.create(team=team, name="fuzz-check", kind="experiment",
                                             template_run_id=single.pk, criteria=["pass_rate >= 0.5"])  # fmt: skip
            gate = Gate.objects.create(team=team, kind="experiment", template_run_id=single.pk, run_id=single.pk,
                                       criteria=["pass_rate >= 0.5"], status="passed", reason="All 1 criteria passed.")  # fmt: skip
            schedule = schedule_create(team=team, user=admin, kind="experiment", template_run_id=single.pk,
                                       interval_minutes=60)  # fmt: skip
            mail_channel, _ = channel_create(team=team, user=admin, name="Fuzz list", kind="email",
                                             email="fuzz@example.com", events=["run_failed"])  # fmt: skip
            delivery = channel_test(channel=mail_channel)
            ids = [
                ("/api/v1/audit-entries/{", AuditEntry.objects.filter(team=team).first().pk),
                ("/api/v1/notification-channels/{", mail_channel.pk),
                ("/api/v1/schedules/{", schedule.pk),
                ("/api/v1/gates/{", gate.pk),
                ("/api/v1/gate-checks/{", check.pk),
                ("/api/v1/notification-deliveries/{", delivery.pk),
                ("/api/v1/benchmark-runs/{", bench_run.pk),
                ("/api/v1/benchmark-suites/{", bench_suite.pk),
                ("/api/v1/admin/testcases/{", TestCase.objects.get(team=team, status=TestCase.Status.PENDING).pk),
                ("/api/v1/batches/{", Batch.objects.get(experiment__team=team).pk),
                ("/api/v1/benchmarks/{", Benchmark.objects.filter(team=team).first().pk),
                ("/api/v1/capacity/{", CapacitySearch.objects.filter(team=team).first().pk),
                ("/api/v1/executions/{", single.pk),
                ("/api/v1/experiments/{", single.pk),
                ("/api/v1/performance/deployments/{", Deployment.objects.filter(team=team).first().pk),
                ("/api/v1/performance/hardware/{", HardwareProfile.objects.filter(team=team).first().pk),
                ("/api/v1/performance/models/{", run.variant_id),
                ("/api/v1/performance/runs/{", run.pk),
                ("/api/v1/providers/endpoints/{", endpoint.pk),
                ("/api/v1/responses/{", Response.objects.filter(experiment=single).first().pk),
                ("/api/v1/scores/{", Score.objects.filter(team=team).first().pk),
                ("/api/v1/suites/{", suite.pk),
                ("/api/v1/sweeps/{", sweep.pk),
                ("/api/v1/testcases/{", approved.first().pk),
                # Not the token the requests carry: DELETE /tokens/{id} would sign the rest of the run out.
                ("/api/v1/tokens/{", token_create(user=admin, team=team, name="fuzz spare").token.pk),
                ("/api/v1/variants/{", run.variant_id),
                ("/api/v1/workloads/{", Workload.objects.filter(team=team).first().pk),
                ("/api/v1/workload-datasets/{", WorkloadDataset.objects.filter(team=team).first().pk),
                ("/api/v1/tokenizers/{", tokenizer.pk),
            ]
            queued.clear()  # the demo queued its sweep's next chunk: only the requests' tasks count
            # Requests go through Django's WSGI handler in this process. Loaded here, not at collection:
            # loading the middleware may touch the database, which exists only once the tests start.
            yield World(
                app=get_wsgi_application(),
                token=token_create(user=admin, team=team, name="fuzz").key,
                ids_by_path_prefix=ids,
            )
        finally:
            call_command("flush", interactive=False, verbosity=0)
    assert queued == [], f"a task was queued: {queued}"
    assert outgoing == [], f"a request tried to leave the machine: {outgoing}"


@pytest.fixture(autouse=True)
def _no_abuse_limits(settings):
    """The throttles and the login lockout have their own tests (tests/test_throttling.py, test_lockout.py);
    here a 429 would only hide the view's own answer (the deep run sends hundreds of requests per operation,
    and /api/v1/auth/login's generated passwords are wrong)."""
    settings.THROTTLE_ENABLED = False
    settings.AXES_ENABLED = False


@schema.parametrize()
def test_operation_conforms(case, world):
    """Valid and invalid requests get a documented, schema-conforming answer and never a 5xx."""
    case.path_parameters = {**(case.path_parameters or {}), **world.path_parameters(case.operation.path)}
    case.call_and_validate(app=world.app, headers={"Authorization": f"Token {world.token}"}, checks=CHECKS)


def test_every_path_parameter_points_at_an_object(world):
    """A new operation on one object gets an id here too, or its fuzzing would only ever see 404s."""
    missing = [
        operation.label
        for operation in (result.ok() for result in schema.get_all_operations())
        if any(
            p.location == "path" and not p.definition.get("schema", {}).get("enum") for p in operation.iter_parameters()
        )
        and not world.path_parameters(operation.path)
    ]
    assert missing == []
