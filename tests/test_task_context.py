"""Tasks log under the request that queued them (llmbench/task_context.py).

A request (the site's own middleware, django-guid first) queues a task; the task goes through the
real broker (ORM, or Redis with REDIS_URL) and is run by django-q2's own worker function, here in
this process, and by a real `manage.py qcluster` in the last test. Every line the task logs carries
the request's X-Request-ID; a task queued outside a request carries none, and a worker's next task
does not inherit the id of the one before, even when that one failed.
"""

import contextvars
import io
import json
import logging
import uuid
from multiprocessing import Value

import pytest
from django.db import transaction
from django.http import HttpResponse
from django.urls import path
from django_guid.context import guid
from django_q.brokers import get_broker
from django_q.queues import Queue
from django_q.signing import SignedPackage
from django_q.tasks import async_task
from django_q.worker import worker

from llmbench.logs import JsonFormatter
from llmbench.request_id import RequestIdLogFilter
from llmbench.task_context import TASK_KEY
from tests.cluster import kill_cluster, start_cluster, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),  # on_commit runs as in production, and a cluster sees the rows
    pytest.mark.urls("tests.test_task_context"),
]

task_log = logging.getLogger("tests.task_context")
QUEUE_TIMEOUT_S = 30
CLUSTER_TIMEOUT_S = 120


# --- the tasks and the view that queues them --------------------------------------------------------
def say(text: str) -> None:
    """A task that logs two lines."""
    task_log.warning("task says %s", text)
    task_log.warning("task still says %s", text)


def fail(text: str) -> None:
    task_log.warning("task says %s", text)
    raise RuntimeError(f"task fails on {text}")


def queue_view(request):
    """Queues `?task=say|fail` with `?text=` the way the site does: in transaction.on_commit."""
    func, text = f"tests.test_task_context.{request.GET['task']}", request.GET["text"]
    if request.GET.get("sync"):  # django-q2 runs it right here, inside the request
        async_task(func, text, sync=True)
        task_log.warning("request goes on after %s", text)
    else:
        transaction.on_commit(lambda: async_task(func, text))
    return HttpResponse("queued")


urlpatterns = [path("queue", queue_view)]


# --- helpers -------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _empty_queue():
    get_broker().purge_queue()  # the Redis list outlives a test
    yield
    get_broker().purge_queue()


@pytest.fixture
def task_lines():
    """The JSON lines logged on the tasks' logger, as the console handler makes them (the request-id
    filter of the settings, the JSON formatter of LOG_FORMAT=json), parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(JsonFormatter())
    task_log.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        task_log.removeHandler(handler)


def outside_a_request(function, *args, **kwargs):
    """`function` in an empty context, as in a management command or the scheduler. (The test client
    serves requests in the test's own context, where django-guid leaves the last request's id.)"""
    return contextvars.Context().run(function, *args, **kwargs)


def run_queued_tasks(count: int) -> tuple[list[dict], contextvars.Context]:
    """What a cluster does with `count` queued tasks, in this process: its pusher's dequeue and
    unpacking, then django-q2's worker function over all of them, in order, in a context of its own
    (a worker process starts with nothing set). Returns the tasks as they came out of the broker and
    that context as the worker left it."""
    broker, tasks = get_broker(), []

    def take() -> bool:
        for ack_id, pack in broker.dequeue() or []:
            tasks.append(SignedPackage.loads(pack) | {"ack_id": ack_id})
        return len(tasks) >= count

    wait_for(take, QUEUE_TIMEOUT_S, f"{count} queued tasks")
    tasks.sort(key=lambda task: task["started"])  # first queued, first run (the ORM broker has no order)
    received = [dict(task) for task in tasks]
    task_queue, result_queue = Queue(), Queue()
    for task in tasks:
        task_queue.put(task)
    task_queue.put("STOP")
    context = contextvars.Context()
    context.run(worker, task_queue, result_queue, Value("f", -1), -1)
    results = [result_queue.get(timeout=QUEUE_TIMEOUT_S) for _ in tasks]
    for task in results:
        broker.acknowledge(task["ack_id"])
    assert [t["id"] for t in results] == [t["id"] for t in received]
    return received, context


def ids_by_message(lines: list[dict]) -> list[tuple[str, str | None]]:
    return [(line["message"], line["request_id"]) for line in lines]


# --- tests ---------------------------------------------------------------------------------------
def test_a_task_queued_by_a_request_logs_every_line_with_that_requests_id(client, task_lines):
    request_id = str(uuid.uuid4())
    response = client.get("/queue", {"task": "say", "text": "a"}, HTTP_X_REQUEST_ID=request_id)
    assert response.status_code == 200 and response["X-Request-ID"] == request_id
    (task,), worker_context = run_queued_tasks(1)
    assert task[TASK_KEY] == {"request_id": request_id}  # tracing is off: no trace context to carry
    assert ids_by_message(task_lines()) == [("task says a", request_id), ("task still says a", request_id)]
    assert worker_context.get(guid) is None  # put back once the task ended


def test_a_request_without_an_id_gets_one_and_its_task_logs_it(client, task_lines):
    response = client.get("/queue", {"task": "say", "text": "b"})
    generated = response["X-Request-ID"]
    assert uuid.UUID(generated)
    run_queued_tasks(1)
    assert {line["request_id"] for line in task_lines()} == {generated}


def test_a_task_queued_outside_a_request_logs_no_id(task_lines):
    outside_a_request(async_task, "tests.test_task_context.say", "c")
    (task,), _ = run_queued_tasks(1)
    assert TASK_KEY not in task  # nothing to carry
    assert ids_by_message(task_lines()) == [("task says c", None), ("task still says c", None)]


@pytest.mark.parametrize("first", ["say", "fail"])
def test_the_next_task_of_the_worker_does_not_inherit_the_id(client, task_lines, first):
    """A worker runs the request's task, then one queued outside a request: the second has no id,
    whether the first succeeded or raised."""
    request_id = str(uuid.uuid4())
    client.get("/queue", {"task": first, "text": "first"}, HTTP_X_REQUEST_ID=request_id)
    wait_for(lambda: get_broker().queue_size() >= 1, QUEUE_TIMEOUT_S, "the first task in the queue")
    outside_a_request(async_task, "tests.test_task_context.say", "second")
    run_queued_tasks(2)
    lines = ids_by_message(task_lines())
    assert lines[0] == ("task says first", request_id)
    assert lines[-2:] == [("task says second", None), ("task still says second", None)]


def test_a_sync_task_in_a_request_keeps_the_id_and_leaves_it_to_the_request(client, task_lines):
    """With sync=True the task runs inside the request: it logs the request's id, and the request
    still has its id afterwards (the task puts back what it found rather than clearing it)."""
    request_id = str(uuid.uuid4())
    client.get("/queue", {"task": "say", "text": "d", "sync": "1"}, HTTP_X_REQUEST_ID=request_id)
    assert ids_by_message(task_lines()) == [
        ("task says d", request_id), ("task still says d", request_id), ("request goes on after d", request_id)
    ]  # fmt: skip


def test_a_real_cluster_logs_the_queuing_requests_id_in_json(client, tmp_path):
    """`manage.py qcluster` with LOG_FORMAT=json: the task's lines in the worker's output carry the
    request's id, the next task's lines carry null."""
    request_id = str(uuid.uuid4())
    client.get("/queue", {"task": "say", "text": "e"}, HTTP_X_REQUEST_ID=request_id)
    outside_a_request(async_task, "tests.test_task_context.say", "f")
    log = tmp_path / "cluster.log"
    cluster = start_cluster(log, LOG_FORMAT="json", Q_WORKERS="1")
    try:

        def task_lines_of_the_cluster() -> list[tuple[str, str | None]]:
            records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
            lines = [(r["message"], r["request_id"]) for r in records if r["logger"] == task_log.name]
            return lines if len(lines) == 4 else []

        lines = wait_for(task_lines_of_the_cluster, CLUSTER_TIMEOUT_S, lambda: f"4 task lines in {log.read_text()}")
    finally:
        kill_cluster(cluster)
    assert sorted(lines) == [("task says e", request_id), ("task says f", None),
                             ("task still says e", request_id), ("task still says f", None)]  # fmt: skip
