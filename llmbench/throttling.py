"""API throttles: per token, per user, per address for anonymous calls, lower rates for costly views, and
bad credentials counted per address (settings.THROTTLE_RATES; docs/limits.md).

Counting is a fixed window per client and scope in Django's default cache (Redis when REDIS_URL is set, so
every web process shares it): one atomic increment of "<scope>:<client>:<window number>" per request. DRF's
SimpleRateThrottle keeps a list of timestamps per client instead and writes it back on every request: at
1,200 calls a minute that is about 10 KB read and written per call, and two processes answering the same
client at once overwrite each other's counts. A fixed window lets a client send up to twice its rate across
a window's edge; for abuse limits that is fine.

A refusal raises `RateLimited` (DRF's Throttled: 429 with Retry-After) whose body names the limit. Page views that
cost what an API export costs (downloads of CSV, Excel, JSON and PDF) take the same rate with `page_throttle`.
"""

import functools
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.shortcuts import render
from rest_framework.exceptions import ErrorDetail, Throttled
from rest_framework.throttling import BaseThrottle

from llmbench.clientip import client_ip
from llmbench.metrics import THROTTLED

PERIODS_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

# What each limit counts, for the message of a refusal.
WHAT = {
    "token": "API calls with this token",
    "user": "API calls from your account",
    "anon": "API calls without credentials from your address",
    "auth_failure": "failed sign-ins and bad API tokens from your address",
    "exports": "exports and downloads",
    "analytics": "analytics requests",
    "run_start": "runs started",
}

# Set on the Django request once its bad credentials were counted (the API's exception handler counts a
# 401 it sees only when nobody did).
NOTED_ATTRIBUTE = "_llmbench_auth_failure_noted"


def parse_rate(scope: str, rate: str) -> tuple[int, str]:
    """ "30/minute" → (30, "minute"): calls allowed per window and the window's unit (also 30/m, 30/min,
    30/minutes)."""
    count, _, unit = (part.strip().lower() for part in rate.partition("/"))
    name = next((name for name in PERIODS_S if unit and (name.startswith(unit) or unit == f"{name}s")), None)
    if not count.isdigit() or name is None:
        raise ImproperlyConfigured(
            f'THROTTLE_RATE_{scope.upper()}={rate!r}: expected "<calls>/<second|minute|hour|day>", e.g. "30/minute".'
        )
    return int(count), name


class RateLimited(Throttled):
    """429: over the named limit. The body says which limit, its rate and when to try again."""

    def __init__(self, *, scope: str, calls: int, unit: str, wait_s: float):
        super().__init__(wait=max(1, math.ceil(wait_s)))
        message = (
            f"Too many {WHAT.get(scope, scope)}: the limit is {calls} per {unit}. "
            f"Try again in {self.wait} second{'s' if self.wait != 1 else ''}."
        )
        self.detail = {
            "detail": ErrorDetail(message, code="throttled"),
            "limit": scope,
            "rate": f"{calls}/{unit}",
            "retry_after_s": self.wait,
        }


def charge(scope: str, ident: str) -> None:
    """Count one call of `ident` against the `scope` rate; raise RateLimited when it is over."""
    rate = settings.THROTTLE_RATES.get(scope)
    if not rate:
        return
    limit, unit = parse_rate(scope, rate)
    period_s = PERIODS_S[unit]
    now = time.time()
    window = math.floor(now / period_s)
    key = f"throttle:{scope}:{ident}:{window}"
    # Kept a window longer than it is used, so a late increment never recreates it without an expiry.
    counter = getattr(cache, "count", None)  # Redis (llmbench/cache.py): one round trip
    if counter is not None:
        count = counter(key, 2 * period_s)
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # the window's first call (or its key expired)
            count = 1 if cache.add(key, 1, timeout=2 * period_s) else cache.incr(key)
    if count > limit:
        THROTTLED.labels(scope).inc()
        raise RateLimited(scope=scope, calls=limit, unit=unit, wait_s=(window + 1) * period_s - now)


def _client(request) -> tuple[str, str]:
    """The rate a caller gets and who it is: its API token, its user, or its address."""
    auth = getattr(request, "auth", None)
    meta = getattr(auth, "_meta", None)
    if meta is not None and meta.label_lower == "accounts.apitoken":  # llmbench does not import the apps
        return "token", f"token-{auth.pk}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return "user", f"user-{user.pk}"
    return "anon", f"ip-{client_ip(request) or 'unknown'}"


class ClientRateThrottle(BaseThrottle):
    """Per API token ("token" rate), per signed-in user ("user"), per address for anonymous calls ("anon")."""

    def allow_request(self, request, view) -> bool:
        if settings.THROTTLE_ENABLED:
            charge(*_client(request))
        return True


def cost_scope(request, view) -> str | None:
    """The costly scope a view names: `throttle_cost_scope = "exports"`, or per action (viewsets) or method
    (other views): `{"export": "exports", "start": "run_start"}`. OPTIONS (the description) costs nothing."""
    named = getattr(view, "throttle_cost_scope", None)
    if not named or request.method == "OPTIONS":
        return None
    if isinstance(named, str):
        return named
    return named.get(getattr(view, "action", None) or request.method.lower())


class ScopedCostThrottle(BaseThrottle):
    """A costly view's own lower rate (exports, analytics, run_start), per token, user or address."""

    def allow_request(self, request, view) -> bool:
        if settings.THROTTLE_ENABLED and (scope := cost_scope(request, view)):
            charge(scope, _client(request)[1])
        return True


def note_auth_failure(request) -> None:
    """Count a bad token or password from this request's address; raise RateLimited (429) when over the
    "auth_failure" rate."""
    django_request = getattr(request, "_request", request)
    if getattr(django_request, NOTED_ATTRIBUTE, False):
        return
    setattr(django_request, NOTED_ATTRIBUTE, True)
    if settings.THROTTLE_ENABLED:
        charge("auth_failure", f"ip-{client_ip(request) or 'unknown'}")


def note_anonymous_refusal(request) -> None:
    """Count a call refused for want of credentials against the address's "anon" rate (DRF checks
    permissions before throttles, so without this an anonymous caller would only ever see 401)."""
    if settings.THROTTLE_ENABLED:
        charge("anon", f"ip-{client_ip(request) or 'unknown'}")


def page_throttle(scope: str):
    """A page view's costly-scope rate, counted with the API's for the same person (a download from a page and one
    through the API with the browser's session are the same "user-<id>"): over it, a 429 page that names the limit,
    with Retry-After. Put it below the sign-in and role checks, so that only a permitted request is counted, as who
    it is. The view is marked with `throttle_cost_scope`, as API views are."""

    def decorator(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if settings.THROTTLE_ENABLED:
                try:
                    charge(scope, _client(request)[1])
                except RateLimited as refusal:
                    response = render(request, "429.html", {"message": refusal.detail["detail"]}, status=429)
                    response["Retry-After"] = str(refusal.wait)
                    return response
            return view(request, *args, **kwargs)

        wrapped.throttle_cost_scope = scope
        return wrapped

    return decorator
