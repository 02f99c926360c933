"""API throttles (THROTTLE_RATES). CONTRACT STUB: issue 16 helper fills it."""

from rest_framework.throttling import BaseThrottle


class ClientRateThrottle(BaseThrottle):
    """Per token, per user, per address for anonymous calls (stub: allows everything)."""

    def allow_request(self, request, view) -> bool:
        return True


class ScopedCostThrottle(BaseThrottle):
    """A lower rate for costly views naming a scope (stub: allows everything)."""

    def allow_request(self, request, view) -> bool:
        return True


def note_auth_failure(request) -> None:
    """Count a bad token or password from this request's address; raise Throttled when over the
    "auth_failure" rate (stub: counts nothing)."""
