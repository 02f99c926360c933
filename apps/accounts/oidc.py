"""Single sign-on with OpenID Connect (mozilla-django-oidc), configured from the OIDC_* settings.

The provider's endpoints come from OIDC_ISSUER/.well-known/openid-configuration, read once per
process. Every setting is read when a request needs it, so the site follows the settings it runs
with (and tests can override them). The identity provider's groups set the user's memberships of
the teams named in OIDC_GROUP_MAP; teams not in the map are left alone. docs/sso.md.
"""

import logging
import re
import threading
from dataclasses import dataclass

import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.db import transaction
from django.http import Http404
from django.shortcuts import render
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from apps.accounts.models import Membership, Team
from llmbench.metrics import LOGINS

logger = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
DISCOVERY_TIMEOUT_S = 10
# Endpoints mozilla-django-oidc reads from settings, and where the discovery document has them.
_DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
# mozilla-django-oidc's setting names → ours (llmbench/settings.py fills theirs once; ours can change).
_OURS = {
    "OIDC_RP_CLIENT_ID": "OIDC_CLIENT_ID",
    "OIDC_RP_CLIENT_SECRET": "OIDC_CLIENT_SECRET",
    "OIDC_RP_SCOPES": "OIDC_SCOPES",
    "OIDC_RP_SIGN_ALGO": "OIDC_SIGN_ALGO",
    "OIDC_CREATE_USER": "OIDC_CREATE_USERS",
}
# Used unless settings say otherwise: PKCE (every major provider supports it; django-oauth-toolkit
# requires it) and a timeout on every call to the provider.
_DEFAULTS = {"OIDC_USE_PKCE": True, "OIDC_TIMEOUT": DISCOVERY_TIMEOUT_S}


class DiscoveryError(Exception):
    """The issuer's discovery document could not be read or lacks an endpoint."""


_discovered: dict[str, dict] = {}
_discovered_lock = threading.Lock()


def discovery_document(issuer: str) -> dict:
    """The issuer's OpenID configuration, fetched once per process (failures are not remembered)."""
    with _discovered_lock:
        if issuer in _discovered:
            return _discovered[issuer]
    url = issuer.rstrip("/") + DISCOVERY_PATH
    try:
        response = requests.get(url, timeout=DISCOVERY_TIMEOUT_S)
        response.raise_for_status()
        document = response.json()
    except requests.RequestException as exc:
        raise DiscoveryError(f"Could not read {url}: {exc.__class__.__name__}.") from exc
    except ValueError as exc:
        raise DiscoveryError(f"{url} did not answer with JSON.") from exc
    if not isinstance(document, dict):
        raise DiscoveryError(f"{url} did not answer with a JSON object.")
    missing = [key for key in _DISCOVERED.values() if not document.get(key)]
    if missing:
        raise DiscoveryError(f"{url} does not name the {', '.join(missing)}.")
    if document.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise DiscoveryError(f"{url} names the issuer {document.get('issuer')!r}, not {issuer!r} (OIDC_ISSUER).")
    with _discovered_lock:
        _discovered[issuer] = document
    return document


def discovery_forget() -> None:
    """Forget the discovery documents read so far (tests; a changed issuer)."""
    with _discovered_lock:
        _discovered.clear()


def oidc_setting(attr: str, *default):
    """A setting as mozilla-django-oidc asks for it, answered from ours and from discovery."""
    if attr in _DISCOVERED:
        return discovery_document(settings.OIDC_ISSUER)[_DISCOVERED[attr]]
    if attr in _OURS:
        return getattr(settings, _OURS[attr])
    if attr in _DEFAULTS and not hasattr(settings, attr):
        return _DEFAULTS[attr]
    if default:
        return getattr(settings, attr, default[0])
    try:
        return getattr(settings, attr)
    except AttributeError:
        raise ImproperlyConfigured(f"Setting {attr} not found") from None


def sso_options() -> dict:
    """What the sign-in pages offer: the SSO button (and its label), the password form."""
    return {
        "enabled": settings.OIDC_ENABLED,
        "provider_name": settings.OIDC_PROVIDER_NAME,
        "password_login": settings.PASSWORD_LOGIN,
    }


# --- Group map -------------------------------------------------------------------------------------

_ROLES = {role.value for role in Membership.Role}


def parse_group_map(text: str) -> dict[str, list[tuple[str, str]]]:
    """OIDC_GROUP_MAP ("group=team-slug:role;…") → {group: [(team slug, role), …]}. A group may give
    roles in several teams (one entry per team); several groups may give roles in one team (the
    highest wins)."""
    group_map: dict[str, list[tuple[str, str]]] = {}
    for entry in re.split(r"[;\n]", text or ""):
        entry = entry.strip()
        if not entry:
            continue
        group, sep, target = entry.rpartition("=")
        team_slug, _, role = target.partition(":")
        group, team_slug, role = group.strip(), team_slug.strip(), (role.strip() or "member")
        if not sep or not group or not team_slug:
            raise ImproperlyConfigured(f'OIDC_GROUP_MAP: "{entry}" is not "group=team-slug:role".')
        if role not in _ROLES:
            raise ImproperlyConfigured(
                f'OIDC_GROUP_MAP: "{entry}" names the role "{role}"; roles are {", ".join(sorted(_ROLES))}.'
            )
        group_map.setdefault(group, []).append((team_slug, role))
    return group_map


def claimed_groups(claims: dict) -> set[str]:
    """The groups named by the OIDC_GROUPS_CLAIM claim (a list, or one string)."""
    value = claims.get(settings.OIDC_GROUPS_CLAIM)
    if value is None:
        return set()
    if isinstance(value, str):
        return {value}
    if isinstance(value, (list, tuple)):
        return {str(group) for group in value}
    return set()


@dataclass(frozen=True)
class MembershipChanges:
    """What a sign-in changed in the user's memberships of mapped teams (team slug → role)."""

    added: dict[str, str]
    changed: dict[str, str]
    removed: list[str]


def memberships_sync(*, user, groups: set[str], group_map: dict[str, list[tuple[str, str]]]) -> MembershipChanges:
    """Make the user's memberships of the mapped teams what their groups say; other teams untouched."""
    wanted: dict[str, str] = {}
    for group in groups:
        for team_slug, role in group_map.get(group, []):
            current = wanted.get(team_slug)
            if current is None or Membership.RANK[Membership.Role(role)] > Membership.RANK[Membership.Role(current)]:
                wanted[team_slug] = role
    mapped_slugs = {team_slug for targets in group_map.values() for team_slug, _ in targets}
    teams = {team.slug: team for team in Team.objects.filter(slug__in=mapped_slugs)}
    for slug in sorted(mapped_slugs - teams.keys()):
        logger.warning("OIDC_GROUP_MAP names the team %r, which does not exist.", slug)
    added, changed, removed = {}, {}, []
    with transaction.atomic():
        existing = {
            m.team.slug: m for m in Membership.objects.filter(user=user, team__in=teams.values()).select_related("team")
        }
        for slug, team in sorted(teams.items()):
            membership, role = existing.get(slug), wanted.get(slug)
            if role is None and membership is not None:
                membership.delete()  # one by one: post_delete signals (the audit trail) see each
                removed.append(slug)
            elif role is not None and membership is None:
                Membership.objects.create(user=user, team=team, role=role)
                added[slug] = role
            elif role is not None and membership.role != role:
                membership.role = role
                membership.save(update_fields=["role"])
                changed[slug] = role
    return MembershipChanges(added=added, changed=changed, removed=removed)


def sso_settings_check(app_configs=None, **kwargs) -> list:
    """System check: a group map that does not parse fails at start-up, not at each sign-in."""
    from django.core import checks

    if not settings.OIDC_ENABLED:
        return []
    try:
        parse_group_map(settings.OIDC_GROUP_MAP)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="accounts.E001")]
    return []


# --- Backends --------------------------------------------------------------------------------------


def _username_base(claims: dict) -> str:
    raw = claims.get("preferred_username") or (claims.get("email") or "").split("@")[0] or "user"
    # Django's usernames allow letters, digits and @ . + - _
    base = re.sub(r"[^\w.@+-]", "", raw)[:140]
    return base or "user"


class TeamOIDCBackend(OIDCAuthenticationBackend):
    """Signs in with the authorization code from the identity provider; matches users by e-mail,
    creates them (OIDC_CREATE_USERS) and sets their memberships from their groups."""

    def __init__(self, *args, **kwargs):
        # Django makes a backend for every request's session look-up: read nothing here (mozilla's
        # __init__ reads the endpoints), only when a sign-in needs them.
        from django.contrib.auth import get_user_model

        self.UserModel = get_user_model()

    @staticmethod
    def get_settings(attr, *args):
        return oidc_setting(attr, *args)

    def authenticate(self, request, **kwargs):
        # Only the callback view's call (it passes the nonce); never a password sign-in.
        if request is None or "nonce" not in kwargs or not settings.OIDC_ENABLED:
            return None
        for attr in (*_DISCOVERED, "OIDC_RP_CLIENT_ID", "OIDC_RP_CLIENT_SECRET", "OIDC_RP_SIGN_ALGO"):
            setattr(self, attr, self.get_settings(attr))
        self.OIDC_RP_IDP_SIGN_KEY = self.get_settings("OIDC_RP_IDP_SIGN_KEY", None)
        return super().authenticate(request, **kwargs)

    def get_or_create_user(self, access_token, id_token, payload):
        try:
            self._check_issuer_and_audience(payload)
            self._id_token_claims = payload
            user = super().get_or_create_user(access_token, id_token, payload)
        except SuspiciousOperation as exc:
            self.request.sso_failure = str(exc)  # shown on the sign-in page
            raise
        if user is None:
            self.request.sso_failure = "There is no account with this e-mail address; ask an administrator for one."
        return user

    @staticmethod
    def _check_issuer_and_audience(payload: dict) -> None:
        # mozilla-django-oidc checks neither in the ID token.
        if str(payload.get("iss", "")).rstrip("/") != settings.OIDC_ISSUER.rstrip("/"):
            raise SuspiciousOperation("The ID token was issued by another issuer.")
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if settings.OIDC_CLIENT_ID not in audiences:
            raise SuspiciousOperation("The ID token is meant for another client.")

    def verify_claims(self, claims):
        if not claims.get("email"):
            raise SuspiciousOperation("The identity provider sent no e-mail address (ask for the email scope).")
        return True

    def filter_users_by_claims(self, claims):
        # An address the provider says it has not verified must not take over an existing account.
        if claims.get("email_verified") is False:
            raise SuspiciousOperation("The identity provider has not verified this e-mail address.")
        return super().filter_users_by_claims(claims)

    def get_username(self, claims):
        base = _username_base(claims)
        username, suffix = base, 1
        while self.UserModel.objects.filter(username__iexact=username).exists():
            suffix += 1
            username = f"{base}-{suffix}"
        return username

    def create_user(self, claims):
        user = super().create_user(claims)
        user.first_name = str(claims.get("given_name") or "")[:150]
        user.last_name = str(claims.get("family_name") or "")[:150]
        user.save(update_fields=["first_name", "last_name"])
        self._sync_memberships(user, claims)
        return user

    def update_user(self, user, claims):
        self._sync_memberships(user, claims)
        return user

    def _sync_memberships(self, user, claims) -> None:
        group_map = parse_group_map(settings.OIDC_GROUP_MAP)
        if not group_map:
            return
        # The groups may be in the userinfo answer, the ID token, or both.
        groups = claimed_groups(claims) | claimed_groups(getattr(self, "_id_token_claims", {}))
        changes = memberships_sync(user=user, groups=groups, group_map=group_map)
        logger.info(
            "Single sign-on of %s: memberships added %s, changed %s, removed %s.",
            user.username,
            changes.added,
            changes.changed,
            changes.removed,
        )


class PasswordBackend(ModelBackend):
    """Django's password sign-in, refused while PASSWORD_LOGIN is false (read at each attempt)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not settings.PASSWORD_LOGIN:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


# --- Views -----------------------------------------------------------------------------------------


def _unavailable(request, reason: str, status: int):
    return render(
        request,
        "registration/sso_error.html",
        {"provider_name": settings.OIDC_PROVIDER_NAME, "reason": reason, "password_login": settings.PASSWORD_LOGIN},
        status=status,
    )


class SSOStartView(OIDCAuthenticationRequestView):
    """Sends the browser to the identity provider (404 while single sign-on is off)."""

    def __init__(self, *args, **kwargs):
        # mozilla's __init__ reads the endpoint from settings; it is discovered per request instead.
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    @staticmethod
    def get_settings(attr, *args):
        return oidc_setting(attr, *args)

    def get(self, request):
        if not settings.OIDC_ENABLED:
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = self.get_settings("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except DiscoveryError as exc:
            logger.warning("Single sign-on discovery failed: %s", exc)
            return _unavailable(request, str(exc), status=503)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        return super().get(request)


class SSOCallbackView(OIDCAuthenticationCallbackView):
    """Where the identity provider sends the browser back: signs the user in, or says why not."""

    @staticmethod
    def get_settings(attr, *args):
        return oidc_setting(attr, *args)

    def get(self, request):
        if not settings.OIDC_ENABLED:
            raise Http404("Single sign-on is not configured.")
        state = request.GET.get("state")
        if "code" in request.GET and state not in request.session.get("oidc_states", {}):
            # Not a sign-in this browser started (or started and finished already): refuse it.
            LOGINS.labels("sso", "failure").inc()
            return _unavailable(request, "This sign-in was not started here or has expired. Please start again.", 400)
        try:
            response = super().get(request)
        except DiscoveryError as exc:
            logger.warning("Single sign-on discovery failed: %s", exc)
            LOGINS.labels("sso", "failure").inc()
            return _unavailable(request, str(exc), status=503)
        except requests.RequestException as exc:
            logger.warning("Single sign-on: the identity provider's answer failed: %s", exc)
            LOGINS.labels("sso", "failure").inc()
            return _unavailable(request, "The identity provider did not accept the sign-in. Please try again.", 502)
        except SuspiciousOperation as exc:
            # A token that does not verify (signature, nonce, key): say so, do not sign in.
            logger.warning("Single sign-on refused: %s", exc)
            LOGINS.labels("sso", "failure").inc()
            return _unavailable(request, "The identity provider's answer could not be verified.", 400)
        except ImproperlyConfigured as exc:
            logger.error("Single sign-on is misconfigured: %s", exc)
            LOGINS.labels("sso", "failure").inc()
            return _unavailable(request, "Single sign-on is misconfigured; the server log says how.", 500)
        user = getattr(self, "user", None)
        if user is not None and user.is_active and request.user.is_authenticated:
            LOGINS.labels("sso", "success").inc()
        elif getattr(request, "axes_locked_out", False):
            # django-axes refused this address; its middleware answers with the lockout page.
            LOGINS.labels("sso", "locked").inc()
            return response
        else:
            LOGINS.labels("sso", "failure").inc()
            reason = getattr(request, "sso_failure", None) or "The sign-in was cancelled or refused."
            messages.error(request, f"Sign-in with {settings.OIDC_PROVIDER_NAME} failed: {reason}")
        return response
