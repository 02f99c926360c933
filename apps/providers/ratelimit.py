"""Per-endpoint token buckets shared by every worker: requests per minute and tokens per minute.

With REDIS_URL the bucket is a Redis hash updated by one Lua script (atomic across processes);
without it, a database row locked with SELECT … FOR UPDATE (SQLite serialises writers anyway).
`acquire()` waits until the bucket holds enough, so callers simply await it before sending.
"""

import asyncio
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction

from apps.providers.models import ProviderEndpoint, RateBucket

_LUA = """
local level = tonumber(redis.call('HGET', KEYS[1], 'level') or ARGV[1])
local updated = tonumber(redis.call('HGET', KEYS[1], 'updated') or ARGV[3])
local capacity, rate, now, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
level = math.min(capacity, level + (now - updated) * rate)
local wait = 0
if level >= want then level = level - want else wait = (want - level) / rate end
redis.call('HSET', KEYS[1], 'level', level, 'updated', now)
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(wait)
"""


def _take(level: float, updated: float, capacity: float, rate: float, now: float, want: float) -> tuple[float, float]:
    """(new level, seconds to wait): refill since `updated`, then take `want` if it is there."""
    level = min(capacity, level + (now - updated) * rate)
    if level >= want:
        return level - want, 0.0
    return level, (want - level) / rate


class EndpointRateLimiter:
    """The `Limiter` of the retry layer for one endpoint; limits of None are not enforced."""

    def __init__(self, endpoint: ProviderEndpoint, *, clock=time.time, sleep=asyncio.sleep):
        self.endpoint_id = endpoint.pk
        self.limits = {"requests": endpoint.requests_per_minute, "tokens": endpoint.tokens_per_minute}
        self.clock, self.sleep = clock, sleep
        self._redis = None

    async def acquire(self, tokens: int = 1) -> None:
        """Wait until one request (and `tokens` tokens, when limited) may go."""
        for kind, want in (("requests", 1), ("tokens", tokens)):
            per_minute = self.limits[kind]
            if not per_minute:
                continue
            want = min(float(want), float(per_minute))  # a request larger than the bucket still goes, at full wait
            while True:
                wait = await self._take(kind, capacity=float(per_minute), rate=per_minute / 60.0, want=want)
                if wait <= 0:
                    break
                await self.sleep(wait)

    async def _take(self, kind: str, *, capacity: float, rate: float, want: float) -> float:
        now = self.clock()
        if settings.REDIS_URL:
            if self._redis is None:
                import redis.asyncio as redis

                self._redis = redis.from_url(settings.REDIS_URL)
            key = f"{settings.CACHES['default'].get('KEY_PREFIX', 'llmbench')}:bucket:{self.endpoint_id}:{kind}"
            return float(await self._redis.eval(_LUA, 1, key, capacity, rate, now, want))
        return await sync_to_async(self._take_db)(kind, capacity, rate, want, now)

    def _take_db(self, kind: str, capacity: float, rate: float, want: float, now: float) -> float:
        try:
            return self._take_db_locked(kind, capacity, rate, want, now)
        finally:
            connection.close()  # runs in a pool thread: do not leave a connection open per thread

    def _take_db_locked(self, kind: str, capacity: float, rate: float, want: float, now: float) -> float:
        with transaction.atomic():
            bucket, _ = RateBucket.objects.select_for_update().get_or_create(
                endpoint_id=self.endpoint_id, kind=kind, defaults={"level": capacity, "updated": now}
            )
            bucket.level, wait = _take(bucket.level, bucket.updated, capacity, rate, now, want)
            bucket.updated = now
            bucket.save(update_fields=["level", "updated"])
        return wait
