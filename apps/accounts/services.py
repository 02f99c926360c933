"""Account operations: teams, memberships, the active team and API tokens."""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts.models import ApiToken, Membership, Team, token_hash

ACTIVE_TEAM_SESSION_KEY = "active_team_id"
# last_used_at is written at most this often per token, so API traffic does not turn reads into writes.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


def membership_set(*, user: AbstractBaseUser, team: Team, role: str) -> Membership:
    """Give `user` the `role` in `team`, creating the membership if needed."""
    membership, _ = Membership.objects.update_or_create(user=user, team=team, defaults={"role": role})
    return membership


def memberships_for(user: AbstractBaseUser) -> list[Membership]:
    """Every team of `user`, by team name."""
    if not user.is_authenticated:
        return []
    return list(Membership.objects.filter(user=user).select_related("team"))


def active_membership(request: HttpRequest) -> Membership | None:
    """The membership of the team chosen in this session, else the user's first team."""
    user = request.user
    if not user.is_authenticated:
        return None
    memberships = Membership.objects.filter(user=user).select_related("team")
    chosen = request.session.get(ACTIVE_TEAM_SESSION_KEY)
    if chosen is not None:
        membership = memberships.filter(team_id=chosen).first()
        if membership is not None:
            return membership
    return memberships.order_by("team__name").first()


def team_switch(*, request: HttpRequest, team_id: int) -> Membership | None:
    """Make `team_id` the active team of this session; None when the user is not in it."""
    membership = Membership.objects.filter(user=request.user, team_id=team_id).select_related("team").first()
    if membership is not None:
        request.session[ACTIVE_TEAM_SESSION_KEY] = membership.team_id
    return membership


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    key: str  # shown once, never stored


def token_create(*, user: AbstractBaseUser, team: Team, name: str) -> IssuedToken:
    """Issue a new API key for `user` in `team`; the plain key is returned once and only hashed."""
    if not Membership.objects.filter(user=user, team=team).exists():
        raise PermissionError(f"{user} is not a member of {team}.")
    key = ApiToken.PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, team=team, name=name, key_prefix=key[: len(ApiToken.PREFIX) + 6], key_hash=token_hash(key)
    )
    return IssuedToken(token=token, key=key)


def token_revoke(*, token: ApiToken) -> None:
    """Revoke `token` from now on; the row stays for the record."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


def token_authenticate(key: str) -> tuple[ApiToken, Membership] | None:
    """The active token for `key` and its user's current membership in the token's team."""
    token = (
        ApiToken.objects.select_related("user", "team")
        .filter(key_hash=token_hash(key), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    membership = Membership.objects.filter(user=token.user, team=token.team).select_related("team").first()
    if membership is None:  # removed from the team: the token dies with the membership
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token, membership
