"""Django's Redis cache with one connection pool and one client per process (issue #12).

Django keeps its cache objects per context (asgiref Local), and under ASGI every request runs in a
context of its own: each request built a new RedisCache, a new redis-py connection pool and a new
TCP connection to Redis (redis-py reads its own package metadata for every new connection), then
dropped them for the garbage collector to close. On a signed-in page that was about a fifth of the
server's CPU (py-spy, bench/web.py). Here the pool of each server URL is made once per process and
shared by every cache object (redis-py's pools are thread-safe and open new connections after a
fork), and so is the client that wraps it: Django builds a new `redis.Redis` for every call, whose
constructor fills a table of response callbacks each time.
"""

import threading

import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient

_pools: dict[tuple[str, str], redis.ConnectionPool] = {}
_clients: dict[int, redis.Redis] = {}
_lock = threading.Lock()


class RedisCacheClient(DjangoRedisCacheClient):
    def _get_connection_pool(self, write):
        index = self._get_connection_pool_index(write)
        key = (self._servers[index], repr(sorted(self._pool_options.items())))
        pool = _pools.get(key)
        if pool is None:
            with _lock:
                pool = _pools.get(key)
                if pool is None:
                    pool = _pools[key] = self._pool_class.from_url(self._servers[index], **self._pool_options)
        return pool

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = _clients.get(id(pool))
        if client is None:
            with _lock:
                client = _clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient

    def count(self, key: str, timeout_s: int) -> int:
        """Add one to the counter `key` and return it; the call that creates it (the count is 1) also sets
        its expiry, `timeout_s`. One INCR per call, where Django's incr() makes two round trips (it checks
        that the key exists first) and a pipeline costs more client CPU than the command. Should a process
        die between the INCR and the EXPIRE, the key outlives its use without harm: callers put the time
        window in the key. The API throttles count every call this way."""
        key = self.make_and_validate_key(key)
        client = self._cache.get_client(key, write=True)
        count = client.incr(key)
        if count == 1:
            client.expire(key, timeout_s)
        return count
