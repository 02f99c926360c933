"""Retry policy, circuit breaker and generate_with_retry: unit tests and over real HTTP."""

import asyncio
import time
from email.utils import formatdate

import aiohttp
import pytest

from apps.providers.engine.adapters import VendorError, adapter_for
from apps.providers.engine.retry import CircuitBreaker, RetryPolicy, breaker_for, generate_with_retry
from apps.providers.engine.types import (
    EndpointConfig,
    ErrorKind,
    GenerationRequest,
    GenerationResult,
    Kind,
    RequestError,
)
from tests.providers.servers import MockLLMServer, Script, mock_server

KINDS = [Kind.OPENAI, Kind.OPENAI_COMPATIBLE, Kind.ANTHROPIC, Kind.GEMINI]
REQUEST = GenerationRequest(model="test-model", messages=[{"role": "user", "content": "hi"}], max_tokens=8)


class Sleeps(list):
    """An injectable sleep that only remembers what it was asked."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


class FakeAdapter:
    """Returns the scripted errors (None = success) in order, then successes."""

    def __init__(self, *errors: RequestError | None):
        self.errors = list(errors)
        self.calls = 0

    async def generate(self, session, request) -> GenerationResult:
        self.calls += 1
        error = self.errors.pop(0) if self.errors else None
        return GenerationResult(send_time=0.0, end_time=0.0, error=error)


class CountingLimiter:
    def __init__(self):
        self.acquired = 0

    async def acquire(self, tokens: int = 1) -> None:
        self.acquired += tokens


def error(kind: ErrorKind, retry_after_s: float | None = None) -> RequestError:
    return RequestError(kind, f"{kind} happened", retry_after_s=retry_after_s)


def retry(adapter, policy=None, **kwargs) -> tuple[GenerationResult, Sleeps]:
    sleeps = Sleeps()
    result = asyncio.run(
        generate_with_retry(
            adapter, None, REQUEST, policy=policy or RetryPolicy(random=lambda: 0.0), sleep=sleeps, **kwargs
        )
    )
    return result, sleeps


# --- policy --------------------------------------------------------------------------------------


def test_backoff_doubles_to_the_cap_and_jitter_only_shortens():
    policy = RetryPolicy(random=lambda: 0.0)
    assert [policy.backoff_s(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert RetryPolicy(random=lambda: 1.0).backoff_s(1) == 0.75
    jittered = [RetryPolicy().backoff_s(2) for _ in range(200)]
    assert all(1.5 <= d <= 2.0 for d in jittered) and len(set(jittered)) > 1


def test_delay_honours_retry_after_within_the_cap():
    policy = RetryPolicy(random=lambda: 0.0)
    assert policy.delay_s(error(ErrorKind.RATE_LIMITED, 3.5), 0) == 3.5
    assert policy.delay_s(error(ErrorKind.RATE_LIMITED, 120), 0) == 120
    assert policy.delay_s(error(ErrorKind.RATE_LIMITED, 121), 0) is None  # too long: give up
    assert policy.delay_s(error(ErrorKind.SERVER, 0), 2) == 2.0  # zero or negative: back off
    assert policy.delay_s(error(ErrorKind.SERVER, -5), 0) == 0.5
    for kind in (
        ErrorKind.AUTH,
        ErrorKind.BAD_REQUEST,
        ErrorKind.PROTOCOL,
        ErrorKind.CANCELLED,
        ErrorKind.CIRCUIT_OPEN,
    ):
        assert policy.delay_s(error(kind), 0) is None


def test_delay_obeys_x_should_retry_false():
    policy = RetryPolicy(random=lambda: 0.0)
    assert policy.delay_s(VendorError(ErrorKind.SERVER, "x", 503, should_retry=False), 0) is None
    assert policy.delay_s(VendorError(ErrorKind.SERVER, "x", 503, should_retry=True), 0) == 0.5


# --- generate_with_retry with a fake adapter -----------------------------------------------------


def test_retries_retryable_failures_with_backoff_and_counts_attempts():
    adapter = FakeAdapter(error(ErrorKind.SERVER), error(ErrorKind.TIMEOUT), None)
    limiter = CountingLimiter()
    result, sleeps = retry(adapter, limiter=limiter)
    assert result.ok and result.attempts == 3 and adapter.calls == 3
    assert sleeps == [0.5, 1.0] and limiter.acquired == 3


def test_gives_up_after_max_attempts_with_the_last_result():
    adapter = FakeAdapter(*[error(ErrorKind.CONNECTION)] * 5)
    result, sleeps = retry(adapter, RetryPolicy(max_attempts=4, random=lambda: 0.0))
    assert result.error.kind == ErrorKind.CONNECTION and result.attempts == 4 and sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("kind", [ErrorKind.AUTH, ErrorKind.BAD_REQUEST, ErrorKind.PROTOCOL])
def test_never_retries_what_cannot_improve(kind):
    adapter = FakeAdapter(error(kind))
    result, sleeps = retry(adapter)
    assert result.error.kind == kind and result.attempts == 1 and adapter.calls == 1 and sleeps == []


def test_cancellation_propagates_from_the_sleep():
    async def go():
        adapter = FakeAdapter(error(ErrorKind.SERVER, 10.0))
        task = asyncio.create_task(generate_with_retry(adapter, None, REQUEST, policy=RetryPolicy()))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return adapter.calls

    assert asyncio.run(go()) == 1


# --- circuit breaker -----------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_retryable_failures_only():
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=Clock())
    for _ in range(2):
        breaker.record(error(ErrorKind.SERVER))
    breaker.record(None)  # a success resets the count
    breaker.record(error(ErrorKind.TIMEOUT))
    breaker.record(error(ErrorKind.BAD_REQUEST))  # an answer: the endpoint is up
    assert breaker.state == "closed" and breaker.failures == 0
    for _ in range(3):
        assert breaker.allow()
        breaker.record(error(ErrorKind.CONNECTION))
    assert breaker.state == "open" and not breaker.allow()


def test_breaker_half_open_lets_one_probe_through():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=10, clock=clock)
    breaker.record(error(ErrorKind.SERVER))
    breaker.record(error(ErrorKind.SERVER))
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # one probe, the rest wait for its outcome
    breaker.record(error(ErrorKind.SERVER))  # the probe failed: open again for a full cool-down
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 10
    assert breaker.allow()
    breaker.record(None)
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_open_breaker_returns_circuit_open_without_sending():
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=60, clock=Clock())
    adapter = FakeAdapter(*[error(ErrorKind.SERVER)] * 10)
    result, _ = retry(adapter, RetryPolicy(max_attempts=5, random=lambda: 0.0), breaker=breaker)
    # The breaker opened after the second failure: the retry loop stops with the real error.
    assert result.error.kind == ErrorKind.SERVER and result.attempts == 2 and adapter.calls == 2
    result, _ = retry(adapter, breaker=breaker)
    assert result.error.kind == ErrorKind.CIRCUIT_OPEN and result.attempts == 0 and adapter.calls == 2


def test_a_cancelled_probe_frees_the_slot():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=1, clock=clock)
    breaker.record(error(ErrorKind.SERVER))
    clock.now += 2

    class Hangs:
        async def generate(self, session, request):
            await asyncio.sleep(10)

    async def go():
        task = asyncio.create_task(generate_with_retry(Hangs(), None, REQUEST, breaker=breaker))
        await asyncio.sleep(0.01)
        assert not breaker.allow()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert breaker.allow()


def test_breaker_for_is_one_per_endpoint():
    a = breaker_for(EndpointConfig(Kind.OPENAI, "http://one.test/v1/"), failure_threshold=2)
    assert breaker_for(EndpointConfig(Kind.OPENAI, "http://one.test/v1")) is a and a.failure_threshold == 2
    assert breaker_for(EndpointConfig(Kind.OPENAI, "http://two.test/v1")) is not a


# --- over HTTP, for every vendor -----------------------------------------------------------------


def http_retry(kind: Kind, queue: list[Script], **kwargs) -> tuple[GenerationResult, Sleeps, MockLLMServer]:
    async def go():
        async with mock_server() as server, aiohttp.ClientSession() as session:
            server.queue = list(queue)
            config = EndpointConfig(kind=kind, base_url=server.base_url(kind), api_key="sk-canary-0123456789")
            sleeps = Sleeps()
            policy = kwargs.pop("policy", RetryPolicy(random=lambda: 0.0))
            result = await generate_with_retry(
                adapter_for(config), session, REQUEST, policy=policy, sleep=sleeps, **kwargs
            )
            return result, sleeps, server

    return asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "30"}, 0.25),
        ({}, 0.5),  # no header: backoff
    ],
)
def test_429_waits_what_the_server_asks(kind, headers, expected):
    queue = [Script(status=429, headers=headers, error_message="slow down"), Script()]
    result, sleeps, server = http_retry(kind, queue)
    assert result.ok and result.text == "Hello, world!" and result.attempts == 2
    assert sleeps == [expected] and len(server.requests) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_429_with_an_http_date(kind):
    when = formatdate(usegmt=True, timeval=time.time() + 5)
    result, sleeps, _ = http_retry(kind, [Script(status=429, headers={"Retry-After": when}), Script()])
    assert result.ok and len(sleeps) == 1 and 3.5 <= sleeps[0] <= 5.0


@pytest.mark.parametrize("kind", KINDS)
def test_retry_after_beyond_the_cap_is_not_retried(kind):
    result, sleeps, server = http_retry(kind, [Script(status=429, headers={"Retry-After": "3600"}), Script()])
    assert result.error.kind == ErrorKind.RATE_LIMITED and result.error.retry_after_s == 3600
    assert result.attempts == 1 and sleeps == [] and len(server.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_x_should_retry(kind):
    queue = [Script(status=503, headers={"x-should-retry": "false"}), Script()]
    result, sleeps, _ = http_retry(kind, queue)
    assert result.error.kind == ErrorKind.SERVER and result.attempts == 1 and sleeps == []
    queue = [Script(status=500, headers={"x-should-retry": "true"}), Script()]
    result, sleeps, _ = http_retry(kind, queue)
    assert result.ok and result.attempts == 2 and sleeps == [0.5]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [400, 401])
def test_no_retry_for_400_and_401(kind, status):
    result, sleeps, server = http_retry(kind, [Script(status=status), Script()])
    assert not result.ok and result.error.status == status and result.attempts == 1
    assert sleeps == [] and len(server.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_cut_stream_is_retried(kind):
    result, sleeps, _ = http_retry(kind, [Script(cut_after=1), Script()])
    assert result.ok and result.attempts == 2 and sleeps == [0.5]


@pytest.mark.parametrize("kind", KINDS)
def test_breaker_over_http_stops_sending_then_probes(kind):
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=30, clock=clock)

    async def go():
        async with mock_server(Script(status=500)) as server, aiohttp.ClientSession() as session:
            config = EndpointConfig(kind=kind, base_url=server.base_url(kind))
            adapter = adapter_for(config)
            policy = RetryPolicy(max_attempts=1)
            results = [
                await generate_with_retry(adapter, session, REQUEST, policy=policy, breaker=breaker) for _ in range(5)
            ]
            sent_while_open = len(server.requests)
            clock.now += 31
            server.script = Script()
            probe = await generate_with_retry(adapter, session, REQUEST, policy=policy, breaker=breaker)
            return results, sent_while_open, probe

    results, sent, probe = asyncio.run(go())
    assert [r.error.kind for r in results] == [ErrorKind.SERVER] * 3 + [ErrorKind.CIRCUIT_OPEN] * 2
    assert sent == 3
    assert probe.ok and breaker.state == "closed"
