"""Account operations: teams, memberships, the active team and API tokens."""

import functools
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connections, models, router, transaction
from django.db.models.sql import Query
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import slugify

from apps.accounts.models import ApiToken, Membership, Team, token_hash
from llmbench.db import prepared_cursor

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


# The longest expiry a token may be given, in days (ten years): beyond it "never" says the same thing.
TOKEN_MAX_DAYS = 3650


def token_create(
    *,
    user: AbstractBaseUser,
    team: Team,
    name: str,
    expires_in_days: int | None = None,
    scope: str = ApiToken.Scope.FULL,
) -> IssuedToken:
    """Issue a new API key for `user` in `team`, expiring after `expires_in_days` (None: never) with
    `scope`; the plain key is returned once and only hashed."""
    if not Membership.objects.filter(user=user, team=team).exists():
        raise PermissionError(f"{user} is not a member of {team}.")
    if expires_in_days is not None and not 1 <= expires_in_days <= TOKEN_MAX_DAYS:
        raise ValueError(f"expires_in_days must be between 1 and {TOKEN_MAX_DAYS}.")
    key = ApiToken.PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        team=team,
        name=name,
        key_prefix=key[: len(ApiToken.PREFIX) + 6],
        key_hash=token_hash(key),
        expires_at=None if expires_in_days is None else timezone.now() + timedelta(days=expires_in_days),
        scope=ApiToken.Scope(scope),
    )
    return IssuedToken(token=token, key=key)


def login_token_days(requested: int | None, *, limit_days: int) -> int | None:
    """The lifetime in days (None: never) of a token made by signing in through the API, given what the
    call asked for and API_LOGIN_TOKEN_DAYS (`limit_days`; 0: no limit and no expiry unless asked).
    Raises ValueError with the allowed range."""
    if limit_days <= 0:
        if requested is None or requested == 0:
            return None
        if 1 <= requested <= TOKEN_MAX_DAYS:
            return requested
        raise ValueError(f"Ask for 1 to {TOKEN_MAX_DAYS} days, or 0 for a token that never expires.")
    if requested is None:
        return limit_days
    if 1 <= requested <= limit_days:
        return requested
    raise ValueError(f"Ask for 1 to {limit_days} days: tokens made by signing in expire within {limit_days} days.")


def login_membership(*, user: AbstractBaseUser, team_slug: str | None) -> Membership | None:
    """The membership a token made by signing in acts in: the team named by `team_slug`, else the user's
    first team by name; None when the user is not in it (or in no team)."""
    memberships = Membership.objects.filter(user=user).select_related("team")
    if team_slug:
        return memberships.filter(team__slug=team_slug).first()
    return memberships.order_by("team__name").first()


@dataclass(frozen=True)
class Registration:
    user: AbstractBaseUser
    membership: Membership
    issued: IssuedToken


def _free_team_slug(base: str) -> str:
    """`base` slugified, with -2, -3… when a team already has it."""
    base = (slugify(base) or "team")[:40]
    taken = set(Team.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    if base not in taken:
        return base
    return next(f"{base}-{n}" for n in range(2, len(taken) + 3) if f"{base}-{n}" not in taken)


@transaction.atomic
def account_register(
    *, username: str, email: str, password: str, team_name: str = "", token_days: int | None
) -> Registration:
    """A new user with a team of their own (as its admin) and a first full-scope API key. The caller
    has validated the fields (unique username and e-mail, Django's password validators)."""
    user = get_user_model().objects.create_user(username=username, email=email, password=password)
    team_name = team_name.strip() or username
    team = Team.objects.create(name=team_name, slug=_free_team_slug(team_name))
    membership = Membership.objects.create(user=user, team=team, role=Membership.Role.ADMIN)
    issued = token_create(user=user, team=team, name="registration", expires_in_days=token_days)
    return Registration(user=user, membership=membership, issued=issued)


def token_revoke(*, token: ApiToken) -> None:
    """Revoke `token` from now on; the row stays for the record."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


# The token look-up runs on every API request. Compiling it with the ORM took about three quarters
# of its CPU (four models' columns, three joins), so its SQL is built once per database from the
# models' metadata and only executed per request; the rows are converted and turned into model
# instances the way Django's raw() does it.
_TOKEN_ROW_MODELS = ("token", "user", "team", "membership")


@functools.cache
def _token_lookup(alias: str) -> tuple[str, list[type[models.Model]], list]:
    """(SQL taking the key hash, True and the time now, the models whose columns it selects in order, those columns)."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    user_model = get_user_model()
    models_in_row = [ApiToken, user_model, Team, Membership]
    columns = [
        f"{quote(prefix)}.{quote(field.column)}"
        for prefix, model in zip(_TOKEN_ROW_MODELS, models_in_row, strict=True)
        for field in model._meta.concrete_fields
    ]

    def column(prefix: str, model: type[models.Model], name: str) -> str:
        return f"{quote(prefix)}.{quote(model._meta.get_field(name).column)}"

    def table(prefix: str, model: type[models.Model]) -> str:
        return f"{quote(model._meta.db_table)} {quote(prefix)}"

    sql = (
        f"SELECT {', '.join(columns)} FROM {table('token', ApiToken)}"
        f" INNER JOIN {table('user', user_model)}"
        f" ON {column('user', user_model, user_model._meta.pk.name)} = {column('token', ApiToken, 'user')}"
        f" INNER JOIN {table('team', Team)} ON {column('team', Team, 'id')} = {column('token', ApiToken, 'team')}"
        # the membership of the token's user in the token's team: removed from the team, the token dies
        f" INNER JOIN {table('membership', Membership)}"
        f" ON {column('membership', Membership, 'user')} = {column('token', ApiToken, 'user')}"
        f" AND {column('membership', Membership, 'team')} = {column('token', ApiToken, 'team')}"
        f" WHERE {column('token', ApiToken, 'key_hash')} = %s AND {column('token', ApiToken, 'revoked_at')} IS NULL"
        f" AND {column('user', user_model, 'is_active')} = %s"
        # an expired token is refused like a revoked one
        f" AND ({column('token', ApiToken, 'expires_at')} IS NULL OR {column('token', ApiToken, 'expires_at')} > %s)"
    )
    selected = [
        field.get_col(prefix)
        for prefix, model in zip(_TOKEN_ROW_MODELS, models_in_row, strict=True)
        for field in model._meta.concrete_fields
    ]
    return sql, models_in_row, selected


def token_authenticate(key: str) -> tuple[ApiToken, Membership] | None:
    """The active token for `key` and its user's current membership in the token's team (one query)."""
    alias = router.db_for_read(ApiToken)
    sql, models_in_row, selected = _token_lookup(alias)
    connection = connections[alias]  # this thread's: converters are bound to it, so they are not cached
    now = timezone.now()
    with prepared_cursor(connection) as cursor:  # planned once per connection (llmbench/db.py)
        cursor.execute(sql, [token_hash(key), True, connection.ops.adapt_datetimefield_value(now)])
        row = cursor.fetchone()
    if row is None:  # unknown, revoked, expired, inactive user, or no longer in the token's team
        return None
    compiler = connection.ops.compiler("SQLCompiler")(Query(ApiToken), connection, alias)
    converters = compiler.get_converters(selected)  # SQLite's dates and booleans; none on PostgreSQL
    if converters:
        row = next(compiler.apply_converters([row], converters))
    instances, start = [], 0
    for model in models_in_row:
        fields = model._meta.concrete_fields
        instances.append(model.from_db(alias, [f.attname for f in fields], row[start : start + len(fields)]))
        start += len(fields)
    token, user, team, membership = instances
    token.user = membership.user = user
    token.team = membership.team = team
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token, membership


def token_refusal_reason(key: str) -> str:
    """Why `key` did not authenticate, for the 401 (a second query, on failures only)."""
    token = ApiToken.objects.filter(key_hash=token_hash(key)).only("revoked_at", "expires_at").first()
    if token is None:
        return "Invalid token."
    if token.revoked_at is not None:
        return "This token was revoked."
    if token.expires_at is not None and token.expires_at <= timezone.now():
        return f"This token expired at {token.expires_at:%Y-%m-%d %H:%M} UTC; create a new one."
    return "This token's user is inactive or no longer in the token's team."
