"""Which base URLs an endpoint may use: private and loopback networks yes (an in-house vLLM is
the main use), cloud metadata addresses never, and the optional allow/deny lists of the settings."""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

METADATA_NETWORKS = [ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fd00:ec2::254/128")]


class UrlRefused(ValueError):
    """The base URL is not allowed; the message says why."""


def _matches(host: str, addresses: list, entries: list[str]) -> bool:
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if host == entry.lower() or host.endswith("." + entry.lower().lstrip(".")):
                return True
            continue
        if any(address in network for address in addresses):
            return True
    return False


def check_base_url(url: str, *, resolve: bool = True, must_resolve: bool = False) -> None:
    """Raise UrlRefused unless `url` is http(s) and none of its addresses is forbidden.

    A host that does not resolve passes unless `must_resolve` (saving an endpoint that only the
    workers' network can reach is fine; the engine checks again, resolving, before every run)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlRefused("Use an http:// or https:// URL with a host name.")
    host = parts.hostname.lower()
    addresses = []
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if resolve:
            try:
                infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
            except socket.gaierror:
                if must_resolve:
                    raise UrlRefused(f"The host {host!r} does not resolve.") from None
                infos = []
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        mapped = getattr(address, "ipv4_mapped", None) or address
        if any(mapped in network for network in METADATA_NETWORKS):
            raise UrlRefused("Cloud metadata addresses (169.254.0.0/16, fd00:ec2::254) are never allowed.")
    if settings.PROVIDER_URL_DENYLIST and _matches(host, addresses, settings.PROVIDER_URL_DENYLIST):
        raise UrlRefused(f"{host} is on the deny list (PROVIDER_URL_DENYLIST).")
    if settings.PROVIDER_URL_ALLOWLIST and not _matches(host, addresses, settings.PROVIDER_URL_ALLOWLIST):
        raise UrlRefused(f"{host} is not on the allow list (PROVIDER_URL_ALLOWLIST).")
