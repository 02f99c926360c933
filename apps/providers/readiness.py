"""/ready's look at the provider endpoints (READY_CHECK_PROVIDERS=report|require).

Reachable means the endpoint's server answers HTTP: a GET of its model list (`<base URL>/models`,
`/v1/models` for Anthropic, `/v1beta/models` for Gemini), sent WITHOUT the API key, with any HTTP
status as the answer (a 401 is a server that is up). A refused connection, a name that does not
resolve, a failed TLS handshake or no answer within READY_PROVIDER_TIMEOUT_S is "down". A TCP
connect alone would call a port that accepts connections but serves nothing (a hung server, a proxy
with no backend) up; the model list is the cheapest request every vendor serves.

Endpoints sharing a base URL are one request. At most READY_PROVIDER_LIMIT addresses are asked, all
at once, so the check takes at most READY_PROVIDER_TIMEOUT_S. Simulated endpoints are not asked.
Results are kept for CACHE_S seconds per process: a load balancer asking /ready every second, or
anyone on the internet, does not turn into a stream of requests to the providers.
"""

import asyncio
import contextvars
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aiohttp
from django.conf import settings

from apps.providers.engine.adapters import adapter_for
from apps.providers.engine.types import EndpointConfig, Kind
from apps.providers.models import ProviderEndpoint
from llmbench.readiness import CheckFailed

CACHE_S = 5.0


@dataclass(frozen=True)
class Address:
    kind: str
    base_url: str
    endpoints: tuple[str, ...]  # "team-slug/endpoint name" of every endpoint using it


def _addresses() -> tuple[list[Address], int]:
    """The distinct (kind, base URL) pairs to ask, at most READY_PROVIDER_LIMIT, and how many more there are."""
    rows = (
        ProviderEndpoint.objects.exclude(kind=Kind.SIM)
        .exclude(base_url="")
        .order_by("pk")
        .values_list("kind", "base_url", "team__slug", "name")
    )
    grouped: dict[tuple[str, str], list[str]] = {}
    for kind, base_url, team, name in rows:
        grouped.setdefault((kind, base_url.rstrip("/")), []).append(f"{team}/{name}")
    addresses = [Address(kind, url, tuple(names)) for (kind, url), names in grouped.items()]
    limit = settings.READY_PROVIDER_LIMIT
    return addresses[:limit], max(0, len(addresses) - limit)


def _reason(exc: BaseException, timeout_s: float) -> str:
    """Why an address is down, in words and without its URL (the body of /ready is not secret)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError | ssl.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "host name does not resolve"
    os_error = getattr(exc, "os_error", None) or (exc if isinstance(exc, OSError) else None)
    if isinstance(os_error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror.lower()
    return f"no HTTP answer ({type(exc).__name__})"


async def _probe(session: aiohttp.ClientSession, url: str, timeout_s: float) -> str | None:
    """None when the server answered with any HTTP status, else why not."""
    try:
        async with session.get(url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout_s)):
            return None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return _reason(exc, timeout_s)


async def _probe_all(addresses: list[Address], timeout_s: float) -> list[str | None]:
    urls = [adapter_for(EndpointConfig(kind=Kind(a.kind), base_url=a.base_url)).models_url() for a in addresses]
    async with aiohttp.ClientSession(headers={"User-Agent": "llmbench-ready"}) as session:
        return await asyncio.gather(*(_probe(session, url, timeout_s) for url in urls))


def _run(coroutine):
    """Run `coroutine` to its end from synchronous code, with or without an event loop in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:  # a loop runs here already: use a thread of its own
        # with this request's context: its trace and request id go along
        return pool.submit(contextvars.copy_context().run, asyncio.run, coroutine).result()


# (when, what it saw, the endpoints down: None when none is)
_cache: dict[str, tuple[float, str, list[dict] | None]] = {}


def forget_results() -> None:
    """Drop the kept results (tests; a changed endpoint shows after CACHE_S anyway)."""
    _cache.clear()


def check_provider_endpoints() -> str:
    """What /ready says about the provider endpoints; raises CheckFailed naming the ones down."""
    kept = _cache.get("result")
    if kept is None or time.monotonic() - kept[0] >= CACHE_S:
        kept = _cache["result"] = (time.monotonic(), *_check())
    _when, said, down = kept
    if down is not None:
        raise CheckFailed(said, details=down)
    return said


def _check() -> tuple[str, list[dict] | None]:
    addresses, left_out = _addresses()
    more = f"; {left_out} more not checked (READY_PROVIDER_LIMIT)" if left_out else ""
    if not addresses:
        return f"no provider endpoint to check{more}", None
    timeout_s = float(settings.READY_PROVIDER_TIMEOUT_S)
    reasons = _run(_probe_all(addresses, timeout_s))
    down = [
        {"endpoint": name, "reason": reason}
        for address, reason in zip(addresses, reasons, strict=True)
        if reason is not None
        for name in address.endpoints
    ]
    endpoints = sum(len(a.endpoints) for a in addresses)
    if not down:
        return f"{endpoints} provider endpoint{'s' if endpoints != 1 else ''} reachable{more}", None
    named = ", ".join(f"{d['endpoint']} ({d['reason']})" for d in down)
    return f"{len(down)} of {endpoints} provider endpoints down: {named}{more}", down
