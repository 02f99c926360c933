"""Retries, a per-endpoint circuit breaker and the rate-limiter hook around one adapter call.

The conventions are the vendors' own SDKs': wait what the server asks (`retry-after-ms`, then
`retry-after` in seconds or as an HTTP-date) when that is a sane 0 < wait ≤ 120 s, give up when it
asks for longer, else back off exponentially with jitter; obey `x-should-retry`. Only RETRYABLE
kinds are retried: a refused key, a bad request or a reply we cannot parse will not improve.

The breaker is in-process, one per endpoint: after N consecutive retryable failures it opens and
requests fail fast with CIRCUIT_OPEN (not sent, so a dying endpoint is not hammered and a run
does not spend its time on timeouts); after a cool-down one probe goes through, and its outcome
closes or reopens it.
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from apps.providers.engine.types import (
    RETRYABLE,
    EndpointConfig,
    ErrorKind,
    GenerationRequest,
    GenerationResult,
    RequestError,
)


class Limiter(Protocol):
    """A shared rate limiter (a token bucket elsewhere); `acquire` waits until it may send."""

    async def acquire(self, tokens: int = 1) -> None: ...


class GenerateAdapter(Protocol):
    async def generate(self, session: Any, request: GenerationRequest) -> GenerationResult: ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3  # attempts in all, the first included
    base_s: float = 0.5
    cap_s: float = 8.0
    jitter: float = 0.25  # a backoff is shortened by up to this share
    retry_after_cap_s: float = 120.0  # a server asking for longer is not retried
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def backoff_s(self, retry: int) -> float:
        """The wait before retry number `retry` (0 for the first): min(base·2^n, cap)·(1 − jitter·U)."""
        return min(self.base_s * 2**retry, self.cap_s) * (1.0 - self.jitter * self.random())

    def delay_s(self, error: RequestError, retry: int) -> float | None:
        """How long to wait before retrying after `error`, or None when it must not be retried."""
        should_retry = getattr(error, "should_retry", None)  # adapters.VendorError carries it
        if error.kind not in RETRYABLE or should_retry is False:
            return None
        after = error.retry_after_s
        if after is not None and after > 0:
            return after if after <= self.retry_after_cap_s else None
        return self.backoff_s(retry)


class CircuitBreaker:
    """closed → (N consecutive retryable failures) → open → (cool-down) → half-open: one probe.

    Not thread-safe; it lives in one event loop like the session it guards."""

    def __init__(
        self, failure_threshold: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ):
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.probing or self.clock() - self.opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether a request may be sent now. In half-open state only the first caller may (the
        probe); the others are refused until it reports."""
        if self.opened_at is None:
            return True
        if self.probing or self.clock() - self.opened_at < self.cooldown_s:
            return False
        self.probing = True
        return True

    def record(self, error: RequestError | None) -> None:
        """The outcome of a request that `allow()` let through."""
        was_probe, self.probing = self.probing, False
        if error is None or error.kind not in RETRYABLE:
            # An answer, even a 4xx, means the endpoint is up.
            if error is not None and error.kind in (ErrorKind.CANCELLED, ErrorKind.CIRCUIT_OPEN):
                return
            self.failures = 0
            self.opened_at = None
            return
        self.failures += 1
        if was_probe or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()

    def release(self) -> None:
        """A let-through request ended without an outcome (cancelled): free the probe slot."""
        self.probing = False


_breakers: dict[tuple[str, str], CircuitBreaker] = {}


def breaker_for(config: EndpointConfig, **kwargs: Any) -> CircuitBreaker:
    """This process's breaker for an endpoint (by kind and base URL); kwargs apply on creation."""
    key = (str(config.kind), config.base_url.rstrip("/"))
    breaker = _breakers.get(key)
    if breaker is None:
        breaker = _breakers[key] = CircuitBreaker(**kwargs)
    return breaker


async def generate_with_retry(
    adapter: GenerateAdapter,
    session: Any,
    request: GenerationRequest,
    *,
    policy: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
    limiter: Limiter | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> GenerationResult:
    """Run `request`, retrying retryable failures; the last result, with `attempts` = sends made.

    A refusal by an open breaker is CIRCUIT_OPEN when nothing was sent, else the last real
    failure is returned (it says more). Cancellation propagates at any point."""
    policy = policy or RetryPolicy()
    result: GenerationResult | None = None
    attempts = 0
    while True:
        if breaker is not None and not breaker.allow():
            if result is not None:
                return result
            now = time.monotonic()
            message = f"not sent: the circuit is open after {breaker.failures} consecutive failures"
            return GenerationResult(
                send_time=now, end_time=now, attempts=0, error=RequestError(ErrorKind.CIRCUIT_OPEN, message)
            )
        try:
            if limiter is not None:
                await limiter.acquire()
            result = await adapter.generate(session, request)
        except asyncio.CancelledError:
            if breaker is not None:
                breaker.release()
            raise
        attempts += 1
        result.attempts = attempts
        if breaker is not None:
            breaker.record(result.error)
        if result.error is None or attempts >= policy.max_attempts:
            return result
        delay = policy.delay_s(result.error, attempts - 1)
        if delay is None:
            return result
        await sleep(delay)
