"""The hot paths' statements prepared on PostgreSQL (llmbench/db.py) and the Redis cache client kept
per connection pool (llmbench/cache.py), issue #12."""

import contextvars
import os

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.accounts.services import token_authenticate, token_create
from llmbench import dashboard
from llmbench.cache import RedisCache
from llmbench.db import prepared_cursor

pytestmark = pytest.mark.django_db

on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


def _run(times: int, statement: str = "SELECT %s::int + 1") -> list[int]:
    answers = []
    for n in range(times):
        with prepared_cursor(connection) as cursor:
            cursor.execute(statement, [n])
            answers.append(cursor.fetchone()[0])
    return answers


@on_postgresql
def test_a_statement_run_often_on_a_connection_is_prepared_and_still_logged():
    with CaptureQueriesContext(connection) as queries:
        assert _run(6) == [1, 2, 3, 4, 5, 6]
    assert len(queries) == 6  # counted and logged like any other query
    assert [s for s in _prepared_statements() if "$1::int + 1" in s]


@on_postgresql
def test_without_prepared_statements_nothing_is_prepared(settings):
    settings.DB_PREPARED_STATEMENTS = False
    assert _run(6, "SELECT %s::int + 2") == [2, 3, 4, 5, 6, 7]
    assert not [s for s in _prepared_statements() if "::int + 2" in s]


@on_postgresql
def test_the_orms_queries_are_never_prepared(team):
    for _ in range(8):
        list(type(team).objects.filter(pk=team.pk))
    assert not [s for s in _prepared_statements() if "accounts_team" in s]


def test_the_hot_paths_answer_the_same_once_prepared(team, member):
    # More runs than psycopg's prepare threshold (5): the later answers come from the prepared statement.
    figures = [dashboard.page_figures(team, with_pending_testcases=True) for _ in range(7)]
    assert all(f == figures[0] for f in figures)
    key = token_create(user=member, team=team, name="ci").key
    assert all(token_authenticate(key)[0].user == member for _ in range(7))
    assert token_authenticate(key + "x") is None


def _redis_url() -> str:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url).ping()
    except redis.ConnectionError:
        pytest.skip("no Redis at " + url)
    return url


def test_every_cache_object_of_the_process_shares_one_pool_and_client():
    # Django makes a cache object per context, and under ASGI per request: they must not each open
    # a pool and a connection to Redis.
    url = _redis_url()
    first, second = (RedisCache(url, {"KEY_PREFIX": "test-cache-client"}) for _ in range(2))
    client = first._cache.get_client()
    assert first._cache.get_client() is client
    assert second._cache.get_client() is client
    assert second._cache.get_client(write=True) is client  # one server: reads and writes share its pool
    first.set("answer", {"value": 42}, 30)
    assert second.get("answer") == {"value": 42}
    second.delete("answer")


def test_requests_in_their_own_contexts_reuse_the_redis_connection():
    url = _redis_url()
    server = redis.Redis.from_url(url)
    cache = RedisCache(url, {"KEY_PREFIX": "test-cache-client"})
    cache.get("warm")  # this process's pool has its connection now

    def one_request(n):
        # What Django does per request under ASGI: a new cache object from the settings.
        RedisCache(url, {"KEY_PREFIX": "test-cache-client"}).get(f"key-{n}")

    before = server.info("stats")["total_connections_received"]
    for n in range(20):
        contextvars.copy_context().run(one_request, n)
    opened = server.info("stats")["total_connections_received"] - before
    assert opened <= 1  # the test's own INFO call may open one; Django's client opened 20
