"""The web tier: `manage.py serve` runs several web processes, each with a bounded PostgreSQL pool.

The load test drives a real server process (what users run) with many concurrent requests and
counts the server's connections in pg_stat_activity by their application_name while it runs.
"""

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test import Client
from websockets.sync.client import connect as websocket_connect

from apps.accounts.models import Membership
from apps.accounts.services import token_create
from apps.experiments.models import Experiment
from llmbench.management.commands.serve import Command as ServeCommand
from tests.factories import MembershipFactory

ROOT = Path(__file__).resolve().parent.parent
POOL_MAX_SIZE = 3
WEB_PROCESSES = 2
CONCURRENT_REQUESTS = 32
REQUESTS_PER_CLIENT = 6

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the connection pool is PostgreSQL's (SQLite opens a file per request, no server connections to count)",
)


def _database_url() -> str:
    """The test database (pytest-django's test_<name>, or SQLite's test file), for the server process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env(application_name: str) -> dict:
    """DEBUG=false over plain HTTP on localhost, as the README's trial run, on the test database."""
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    return {
        **clean,
        "DEBUG": "false",
        # The test's own key, so that a session signed in here is valid there.
        "SECRET_KEY": django_settings.SECRET_KEY,
        "LLMBENCH_ENCRYPTION_KEYS": "q0bVZhHZr1_fh7t1yhXfYb0g3JVK6bXmLkRvX0C3H5w=",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": _database_url(),
        "DB_APPLICATION_NAME": application_name,
        "DB_POOL_MAX_SIZE": str(POOL_MAX_SIZE),
        "LOG_LEVEL": "WARNING",
    }


@contextmanager
def _serving(env: dict, workers: int = WEB_PROCESSES):
    """`manage.py serve --no-worker --workers N` until the block ends; yields its base URL once it answers."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a server that logs much never blocks on it
        server = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--no-worker", "--port", str(port), "--workers", str(workers)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                if server.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"manage.py serve exited with {server.returncode}: {log.read().decode()[-2000:]}")
                assert time.monotonic() < deadline, "the server did not answer /health within 90 s"
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.1)
            yield url
        finally:
            server.terminate()  # serve stops uvicorn (and so every web process) on SIGTERM
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


class _ConnectionSampler:
    """Counts the server's PostgreSQL connections (its application_name) in a thread, as fast as it can."""

    def __init__(self, application_name: str):
        self.application_name = application_name
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run)
        self._thread.start()
        return self

    def _run(self):
        with psycopg.connect(_database_url(), autocommit=True) as conn:
            while not self._stop.is_set():
                # Parallel query workers carry their leader's application_name: count connections only.
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                    "AND backend_type = 'client backend'",
                    [self.application_name],
                ).fetchone()
                self.peak = max(self.peak, count)
                self.samples += 1

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _get(url: str, headers: dict) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_the_server_never_holds_more_connections_than_its_pools_allow(team):
    """32 clients at once on two web processes: every answer is a 200, and PostgreSQL never sees more
    than processes × DB_POOL_MAX_SIZE connections from the server (the old settings opened one per
    request thread and kept it, until PostgreSQL refused clients)."""
    user = MembershipFactory(team=team, role=Membership.Role.VIEWER).user
    headers = {"Authorization": f"Token {token_create(user=user, team=team, name='load').key}"}
    application_name = f"llmbench-test-{uuid.uuid4().hex[:12]}"
    with (
        _serving(_server_env(application_name)) as url,
        _ConnectionSampler(application_name) as sampler,
        ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool,
    ):
        statuses = list(
            pool.map(
                lambda _: _get(f"{url}/api/v1/scores/leaderboard", headers),
                range(CONCURRENT_REQUESTS * REQUESTS_PER_CLIENT),
            )
        )
    assert statuses == [200] * len(statuses)
    assert sampler.samples > 0 and sampler.peak >= 1, "the sampler never saw the server's connections"
    assert sampler.peak <= WEB_PROCESSES * POOL_MAX_SIZE


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_progress_streams_do_not_hold_pooled_connections(team):
    """More Server-Sent Events streams than the pool has connections: each reads the database every
    half second for as long as the job runs, and must give its connection back between reads, or
    every other request of the process waits for DB_POOL_TIMEOUT_S and fails."""
    user = MembershipFactory(team=team, role=Membership.Role.VIEWER).user
    headers = {"Authorization": f"Token {token_create(user=user, team=team, name='sse').key}"}
    running = Experiment.objects.create(team=team, name="long", prompt="hi", status=Experiment.Status.RUNNING)
    env = {**_server_env(f"llmbench-test-{uuid.uuid4().hex[:12]}"), "DB_POOL_MAX_SIZE": "2", "DB_POOL_TIMEOUT_S": "3"}
    with _serving(env, workers=1) as url:  # one process: every stream draws on the same pool
        streams = []
        try:
            for _ in range(3):
                request = urllib.request.Request(f"{url}/api/v1/experiments/{running.pk}/progress", headers=headers)
                streams.append(urllib.request.urlopen(request, timeout=30))
                assert streams[-1].readline().startswith(b"event: progress")  # this stream has read once
            assert _get(f"{url}/api/v1/scores/leaderboard", headers) == 200
        finally:
            for stream in streams:
                stream.close()


@pytest.mark.django_db(transaction=True)
def test_websockets_work_on_the_multi_process_server(team):
    """The dashboard's websocket (Channels) answers from the processes of `serve --workers 2`."""
    user = MembershipFactory(team=team, role=Membership.Role.MEMBER).user
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    with _serving(_server_env(f"llmbench-test-{uuid.uuid4().hex[:12]}")) as url:
        for _ in range(4):  # new connections, spread over the processes by the kernel
            with websocket_connect(
                url.replace("http", "ws") + "/ws/dashboard/",
                additional_headers={"Cookie": cookie, "Origin": url},
                open_timeout=30,
            ) as ws:
                message = json.loads(ws.recv(timeout=30))
                assert message["type"] == "jobs"


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _report_backend_pid(queue) -> None:
    queue.put(_backend_pid())


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_forked_child_opens_its_own_connections():
    """django-q2 returns its connections to the pool and then forks its workers: a child that took
    the parent's pooled connection would talk over the parent's socket (seen: "can't change
    'autocommit' now", lost tasks). The child must open a connection of its own."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        open_before_fork = {pid for (pid,) in cursor.fetchall()}
    connections.close_all()  # back to the pool, as django-q2 does before it forks
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_report_backend_pid, args=(queue,))
    child.start()
    child_pid = queue.get(timeout=60)
    child.join(timeout=60)
    assert child_pid not in open_before_fork
    assert _backend_pid() in open_before_fork  # the parent goes on with its own pool


def _check(env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DB_POOL", "DB_CONN_MAX_AGE"}}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**clean, "DATABASE_URL": "postgres://llmbench@127.0.0.1:5432/llmbench", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_persistent_connection_age_with_the_pool_fails_loudly():
    result = _check({"DB_CONN_MAX_AGE": "60"})
    assert result.returncode != 0 and "DB_CONN_MAX_AGE=60 needs DB_POOL=false" in result.stderr


def test_a_pool_whose_minimum_exceeds_its_maximum_fails_loudly():
    result = _check({"DB_POOL_MIN_SIZE": "5", "DB_POOL_MAX_SIZE": "2"})
    assert result.returncode != 0 and "DB_POOL_MIN_SIZE=5 is larger than DB_POOL_MAX_SIZE=2" in result.stderr


def test_a_malformed_pool_size_fails_loudly():
    result = _check({"DB_POOL_MAX_SIZE": "ten"})
    assert result.returncode != 0 and "DB_POOL_MAX_SIZE='ten' is not a whole number" in result.stderr


def test_without_the_pool_connections_may_persist():
    result = _check({"DB_POOL": "false", "DB_CONN_MAX_AGE": "60"})
    assert result.returncode == 0, result.stderr


def test_serve_starts_web_concurrency_processes_by_default(settings):
    settings.WEB_CONCURRENCY = 3  # the pytest-django fixture, restored after the test
    command, env = ServeCommand().web_command(host="127.0.0.1", port=8000, workers=None)
    assert command[command.index("--workers") + 1] == "3"
    # Several processes share one folder of metrics, so /metrics adds all of them up.
    assert env["PROMETHEUS_MULTIPROC_DIR"]


def test_serve_refuses_zero_web_processes():
    with pytest.raises(CommandError, match="not a positive number of processes"):
        call_command("serve", "--workers", "0")
