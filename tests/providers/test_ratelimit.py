"""The per-endpoint token bucket: it refills at the rate set and makes callers wait, in the
database (no Redis) and in Redis (when REDIS_URL is set, as in CI's first run)."""

import asyncio

import pytest

from apps.providers.models import ProviderEndpoint
from apps.providers.ratelimit import EndpointRateLimiter, _take


def test_the_bucket_arithmetic():
    assert _take(level=10, updated=0, capacity=10, rate=1, now=0, want=4) == (6, 0.0)
    assert _take(level=1, updated=0, capacity=10, rate=2, now=0, want=5) == (1, 2.0)  # (5 − 1) / 2 per s
    assert _take(level=0, updated=0, capacity=10, rate=1, now=100, want=1) == (9, 0.0)  # refilled, capped


@pytest.mark.django_db(transaction=True)
def test_callers_wait_for_the_bucket(team, settings):
    """60 requests per minute: a burst of 3 beyond the bucket waits one second each."""
    endpoint = ProviderEndpoint.objects.create(team=team, name="lim", kind="sim", requests_per_minute=60)
    now = [1000.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = EndpointRateLimiter(endpoint, clock=lambda: now[0], sleep=fake_sleep)

    async def burst():
        for _ in range(63):
            await limiter.acquire()

    asyncio.run(burst())
    assert waits == pytest.approx([1.0, 1.0, 1.0])


@pytest.mark.django_db(transaction=True)
def test_two_limiters_of_one_endpoint_share_the_bucket(team):
    endpoint = ProviderEndpoint.objects.create(team=team, name="shared", kind="sim", tokens_per_minute=600)
    now = [5000.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    first = EndpointRateLimiter(endpoint, clock=lambda: now[0], sleep=fake_sleep)
    second = EndpointRateLimiter(endpoint, clock=lambda: now[0], sleep=fake_sleep)

    async def both():
        await first.acquire(tokens=600)
        await second.acquire(tokens=300)  # the bucket is empty: 300 tokens at 10/s

    asyncio.run(both())
    assert waits == pytest.approx([30.0])
