"""The checks apps add to /ready (llmbench/views.py). A module of its own, importing nothing, so an
app can register from its AppConfig.ready() without importing the views (which import the dashboard,
and so every app: the import contracts of pyproject.toml forbid that path)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class CheckFailed(RuntimeError):
    """What a readiness check raises to put `details` (e.g. the provider endpoints that are down) in
    /ready's body beside its message."""

    def __init__(self, message: str, details: Any = None):
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class RegisteredCheck:
    check: Callable[[], str | None]
    enabled: Callable[[], bool]
    required: Callable[[], bool]


# Filled from the apps' AppConfig.ready(): apps.providers adds "providers" (READY_CHECK_PROVIDERS).
REGISTERED_CHECKS: dict[str, RegisteredCheck] = {}


def _always() -> bool:
    return True


def register_ready_check(
    name: str,
    check: Callable[[], str | None],
    *,
    enabled: Callable[[], bool] = _always,
    required: Callable[[], bool] = _always,
) -> None:
    """Add a check to /ready. `check()` returns None or what it saw, and raises when something is
    wrong (CheckFailed to add details). `enabled()` and `required()` are asked at every request, so
    settings apply as they are now: a disabled check is not run; a failing check that is not required
    is listed under "degraded" and /ready still answers 200."""
    REGISTERED_CHECKS[name] = RegisteredCheck(check, enabled, required)
