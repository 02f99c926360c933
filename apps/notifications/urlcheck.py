"""Which webhook addresses a channel may post to (the server makes the request, so a URL is an SSRF risk).

Like providers' base URLs: http(s) only, cloud metadata addresses never. Unlike them, a webhook is usually a
public service (Slack, Teams), so loopback, private, link-local and other non-public addresses are refused unless
NOTIFY_WEBHOOK_ALLOW_PRIVATE is on (default: on when DEBUG is, i.e. development and tests; set it in production for
an in-house receiver). The addresses are checked when a channel is saved and again, resolving, before each post,
which then connects to the address that was checked (no second lookup a DNS answer could change in between)."""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

METADATA_NETWORKS = [ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fd00:ec2::254/128")]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def allow_private() -> bool:
    """NOTIFY_WEBHOOK_ALLOW_PRIVATE (default: DEBUG)."""
    return bool(getattr(settings, "NOTIFY_WEBHOOK_ALLOW_PRIVATE", settings.DEBUG))


class UrlRefused(ValueError):
    """The webhook address is not allowed; the message says why."""


class UrlUnresolved(UrlRefused):
    """The host name does not resolve (now: DNS may answer on the next try)."""


def _check_address(address: Address) -> None:
    mapped = getattr(address, "ipv4_mapped", None) or address
    if any(mapped in network for network in METADATA_NETWORKS):
        raise UrlRefused("Cloud metadata addresses (169.254.0.0/16, fd00:ec2::254) are never allowed.")
    if not mapped.is_global and not allow_private():
        raise UrlRefused(
            f"{address} is not a public address; webhooks to local or private networks need "
            "NOTIFY_WEBHOOK_ALLOW_PRIVATE=true."
        )


def check_webhook_url(url: str, *, resolve: bool = True, must_resolve: bool = False) -> list[Address]:
    """Raise UrlRefused unless `url` is http(s) and every address of its host is allowed; return the addresses.

    A host that does not resolve passes unless `must_resolve` (UrlUnresolved then)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # an unclosed IPv6 bracket, a port out of range
        raise UrlRefused(f"This is not a usable URL ({exc}).") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlRefused("Use an http:// or https:// URL with a host name.")
    if parts.username or parts.password:
        raise UrlRefused("Put no user name or password in the address (the channel's secret signs each post).")
    host = parts.hostname.lower()
    try:
        addresses: list[Address] = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = []
        if resolve:
            default_port = 443 if parts.scheme == "https" else 80
            try:
                infos = socket.getaddrinfo(host, port or default_port, proto=socket.IPPROTO_TCP)
            except (socket.gaierror, UnicodeError):
                if must_resolve:
                    raise UrlUnresolved(f"The host {host!r} does not resolve.") from None
                infos = []
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        _check_address(address)
    return addresses
