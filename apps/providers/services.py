"""Provider endpoint operations: save with a write-only key, and test the connection."""

import asyncio
import time

import aiohttp
from django.utils import timezone

from apps.providers.engine.types import ErrorKind, Kind, RequestError
from apps.providers.models import ProviderEndpoint
from apps.providers.prices import default_price
from apps.providers.urlcheck import UrlRefused, check_base_url


def endpoint_save(*, endpoint: ProviderEndpoint, api_key: str | None = None) -> ProviderEndpoint:
    """Check the base URL, fill empty prices from the default table, encrypt a new key, save.

    `api_key=None` keeps the stored key; "" removes it. Raises UrlRefused."""
    if endpoint.kind != Kind.SIM:
        check_base_url(endpoint.base_url)
    if api_key is not None:
        endpoint.set_api_key(api_key)
    if endpoint.price_input_per_1m_usd is None and endpoint.price_output_per_1m_usd is None:
        price = next((p for p in map(default_price, endpoint.model_names) if p), None)
        if price:
            endpoint.price_input_per_1m_usd, endpoint.price_output_per_1m_usd = price
    endpoint.save()
    return endpoint


async def _list_models(endpoint: ProviderEndpoint) -> list[str]:
    from apps.providers.engine.adapters import adapter_for

    config = endpoint.config()
    timeout = aiohttp.ClientTimeout(total=min(config.total_timeout_s, 20), sock_connect=config.connect_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return await adapter_for(config).list_models(session)


FAILURE_WORDS = {
    ErrorKind.RATE_LIMITED: "Rate limited",
    ErrorKind.AUTH: "The API key was refused",
    ErrorKind.BAD_REQUEST: "The endpoint refused the request",
    ErrorKind.SERVER: "Server error",
    ErrorKind.TIMEOUT: "Timed out",
    ErrorKind.CANCELLED: "Cancelled",
    ErrorKind.CONNECTION: "Could not connect",
    ErrorKind.PROTOCOL: "Unexpected answer",
    ErrorKind.CIRCUIT_OPEN: "Not sent: the endpoint kept failing",
}


def failure_message(exc: Exception) -> str:
    """What went wrong, in words, then the provider's own message (an HTTP status alone, or an
    error code, is not enough to act on)."""
    error = getattr(exc, "error", None)
    if isinstance(error, RequestError):
        words, detail = FAILURE_WORDS.get(error.kind, "Failed"), error.message.strip()
        return f"{words}: {detail}" if detail and detail.lower() != error.kind.value else f"{words}."
    detail = str(exc).strip()
    return f"Failed with {type(exc).__name__}: {detail}" if detail else f"Failed with {type(exc).__name__}."


def endpoint_test(*, endpoint: ProviderEndpoint) -> tuple[bool, str]:
    """List the endpoint's models to prove the URL and key work; records and returns the outcome.

    The message names what failed without ever containing the key."""
    started = time.monotonic()
    try:
        if endpoint.kind != Kind.SIM:
            check_base_url(endpoint.base_url, must_resolve=True)
        names = asyncio.run(_list_models(endpoint))
        ok = True
        message = f"Connected in {(time.monotonic() - started) * 1000:.0f} ms; {len(names)} model(s)" + (
            f": {', '.join(names[:5])}{' …' if len(names) > 5 else ''}." if names else "."
        )
        if names and not endpoint.model_names:
            endpoint.model_names = names[:50]
    except UrlRefused as exc:
        ok, message = False, f"Base URL refused: {exc}"
    except Exception as exc:  # the adapter's error, whatever it is, becomes the message
        ok, message = False, failure_message(exc)
    key = endpoint.config().api_key if endpoint.api_key_encrypted else ""
    if key:
        message = message.replace(key, "[key]")
    endpoint.last_test_at, endpoint.last_test_ok, endpoint.last_test_message = timezone.now(), ok, message[:500]
    endpoint.save(update_fields=["last_test_at", "last_test_ok", "last_test_message", "model_names"])
    return ok, message
