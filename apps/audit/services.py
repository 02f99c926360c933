"""Writing the audit trail: who (user and API token), team, when, from where (address, request id),
through what (page, API, admin, system), which object, and a before/after summary without secrets.

The request being served is kept in a context variable by AuditMiddleware, so the model signals
(apps/audit/signals.py) and any service can record without being handed the request. The user is read
when the entry is written, not when the request arrives: an API token's user is only known once DRF
has authenticated the request (it sets the Django request's `user` and `auth` then)."""

import contextlib
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

from django.db import models
from django.http import HttpRequest

from apps.accounts.models import ApiToken, Team
from apps.audit.models import AuditEntry
from llmbench.clientip import client_ip
from llmbench.request_id import current_request_id

_current_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)

# Query parameters and URL parts whose values are never written down.
SECRET_NAME = re.compile(r"key|token|secret|password|passwd|auth|credential|signature|session", re.IGNORECASE)
HIDDEN = "(hidden)"


@contextlib.contextmanager
def request_context(request: HttpRequest) -> Iterator[None]:
    """Make `request` the one entries are attributed to while the block runs."""
    reset = _current_request.set(request)
    try:
        yield
    finally:
        _current_request.reset(reset)


def current_request() -> HttpRequest | None:
    return _current_request.get()


def via_of(request: HttpRequest | None) -> str:
    if request is None:
        return AuditEntry.Via.SYSTEM
    path = request.path_info or ""
    if path.startswith("/admin/"):
        return AuditEntry.Via.ADMIN
    if path.startswith("/api/"):
        return AuditEntry.Via.API
    return AuditEntry.Via.PAGE


def actor_of(request: HttpRequest | None) -> tuple[Any, str]:
    """(the signed-in user or None, a label naming them and the API token used — never its key)."""
    if request is None:
        return None, "system"
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None, "anonymous"
    label = user.get_username()
    token = getattr(request, "auth", None)
    if isinstance(token, ApiToken):
        label += f" (API token “{token.name}”, {token.key_prefix}…)"
    return user, label[:200]


def plain(value: Any) -> Any:
    """A value as JSON can hold it."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, models.Model):
        return str(value)
    return str(value)


def safe_url(url: str) -> str:
    """A URL without a password in it or secret-looking query values."""
    if not url or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            netloc = f"{userinfo.split(':', 1)[0]}:{HIDDEN}@{host}" if ":" in userinfo else f"{HIDDEN}@{host}"
        return urlunsplit(parts._replace(netloc=netloc, query=safe_query(parts.query)))
    except ValueError:
        return HIDDEN


def safe_query(query: str) -> str:
    """A query string with the values of secret-looking parameters hidden."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(name, HIDDEN if SECRET_NAME.search(name) else value) for name, value in pairs], safe="()")


def _team_label(team_id: int | None, request: HttpRequest | None, instance: models.Model | None) -> str:
    if team_id is None:
        return ""
    if isinstance(instance, Team) and instance.pk == team_id:
        return instance.name
    request_team = getattr(request, "team", None) if request is not None else None
    if request_team is not None and request_team.pk == team_id:
        return request_team.name
    cached = instance._state.fields_cache.get("team") if instance is not None else None
    if cached is not None:
        return cached.name
    return Team.objects.filter(pk=team_id).values_list("name", flat=True).first() or ""


def team_id_of(instance: models.Model | None, request: HttpRequest | None) -> int | None:
    """The team an entry belongs to: the object's own (a Team is its own), else the request's."""
    if isinstance(instance, Team):
        return instance.pk
    team_id = getattr(instance, "team_id", None) if instance is not None else None
    if team_id is None and request is not None and getattr(request, "team", None) is not None:
        team_id = request.team.pk
    return team_id


def build_entry(
    *,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    changes: dict | None = None,
    team_id: int | None = None,
    team_label: str | None = None,
    request: HttpRequest | None = None,
    signing_in: Callable[[], Any] | None = None,
) -> AuditEntry:
    """An unsaved entry attributed to `request` (default: the current one). `signing_in`: gives the user a
    request that is not signed in yet acts for (the token an API login issues, the memberships a single sign-on sets)."""
    request = request if request is not None else current_request()
    actor, actor_label = actor_of(request)
    if actor is None and request is not None and signing_in is not None:
        user = signing_in()
        if user is not None:
            actor, actor_label = user, f"{user.get_username()} (signing in)"[:200]
    if team_id is None:
        team_id = team_id_of(obj, request)
    if team_label is None:
        team_label = _team_label(team_id, request, obj)
    if obj is not None:
        object_id = object_id or ("" if obj.pk is None else str(obj.pk))
        object_repr = object_repr or str(obj)
    return AuditEntry(
        team_id=team_id,
        team_label=team_label[:100],
        actor_id=actor.pk if actor is not None else None,
        actor_label=actor_label,
        via=via_of(request),
        action=action[:64],
        object_type=object_type[:64],
        object_id=object_id[:64],
        object_repr=object_repr[:200],
        changes=plain(changes or {}),
        ip=client_ip(request) if request is not None else None,
        request_id=(current_request_id() or "")[:64],
    )


def record(*, action: str, using: str | None = None, **fields) -> AuditEntry:
    """Write one entry now (in the current transaction: an action rolled back leaves no entry)."""
    entry = build_entry(action=action, **fields)
    entry.save(using=using)
    return entry
