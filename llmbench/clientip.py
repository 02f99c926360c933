"""The client's address, the same for login lockout, throttles, logs and the audit trail.

Each proxy appends the address it was connected from to CLIENT_IP_HEADER (X-Forwarded-For), so behind
TRUSTED_PROXY_COUNT proxies the client is the Nth address from the right: the ones left of it were
written by the client itself and are not believed. With no proxy the connecting address (REMOTE_ADDR)
is the client, whatever the headers say.
"""

import functools
import ipaddress

from django.conf import settings


@functools.lru_cache(maxsize=4096)  # a few µs of parsing, asked by the log, the throttles and the audit
def _valid(candidate: str) -> str | None:
    try:
        return str(ipaddress.ip_address(candidate.strip()))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    """The client's IP address (a Django or DRF request), or None when there is no usable one."""
    meta = getattr(request, "META", None)
    if meta is None:
        meta = getattr(getattr(request, "_request", None), "META", {})
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        chain = [part for part in meta.get(settings.CLIENT_IP_HEADER, "").split(",") if part.strip()]
        if len(chain) >= proxies:
            return _valid(chain[-proxies])
        # Fewer addresses than proxies: the request did not come through them all; trust the connection.
    return _valid(meta.get("REMOTE_ADDR") or "")
