"""Tokens are shown once, stored hashed, revocable, and die with the membership."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.models import ApiToken, Membership, token_hash
from apps.accounts.services import (
    TOKEN_MAX_DAYS,
    account_register,
    login_token_days,
    membership_set,
    token_authenticate,
    token_create,
    token_refusal_reason,
    token_revoke,
)
from tests.factories import UserFactory


def test_it_stores_only_the_hash_of_a_new_key(member, team):
    issued = token_create(user=member, team=team, name="ci")
    stored = ApiToken.objects.get(pk=issued.token.pk)
    assert issued.key.startswith("llmb_") and len(issued.key) > 40
    assert stored.key_hash == token_hash(issued.key)
    assert issued.key not in {stored.key_hash, stored.key_prefix, stored.name}
    assert issued.key.startswith(stored.key_prefix)


def test_it_refuses_a_token_for_a_team_the_user_is_not_in(member, other_team):
    with pytest.raises(PermissionError):
        token_create(user=member, team=other_team, name="x")


def test_it_authenticates_and_records_last_use(member, team):
    issued = token_create(user=member, team=team, name="ci")
    token, membership = token_authenticate(issued.key)
    assert token.pk == issued.token.pk and membership.team == team
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


def test_it_writes_last_use_at_most_once_a_minute(member, team):
    issued = token_create(user=member, team=team, name="ci")
    token_authenticate(issued.key)
    first = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    token_authenticate(issued.key)
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == first
    ApiToken.objects.filter(pk=issued.token.pk).update(last_used_at=first - timedelta(minutes=5))
    token_authenticate(issued.key)
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at > first - timedelta(minutes=1)


def test_a_revoked_or_unknown_key_does_not_authenticate(member, team):
    issued = token_create(user=member, team=team, name="ci")
    token_revoke(token=issued.token)
    assert token_authenticate(issued.key) is None
    assert token_authenticate("llmb_nonsense") is None
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at <= timezone.now()


def test_a_token_dies_with_its_membership(member, team):
    issued = token_create(user=member, team=team, name="ci")
    Membership.objects.filter(user=member, team=team).delete()
    assert token_authenticate(issued.key) is None


def test_a_token_of_an_inactive_user_does_not_authenticate(member, team):
    issued = token_create(user=member, team=team, name="ci")
    member.is_active = False
    member.save()
    assert token_authenticate(issued.key) is None


def test_roles_are_ordered(team):
    user = UserFactory()
    membership = membership_set(user=user, team=team, role=Membership.Role.MEMBER)
    assert membership.has_role("viewer") and membership.has_role("member")
    assert not membership.has_role("admin")
    assert membership_set(user=user, team=team, role="admin").has_role("admin")
    assert Membership.objects.filter(user=user).count() == 1


def test_an_expired_key_does_not_authenticate_and_a_later_expiry_does(member, team):
    issued = token_create(user=member, team=team, name="ci", expires_in_days=1)
    assert token_authenticate(issued.key) is not None
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert token_authenticate(issued.key) is None
    assert token_refusal_reason(issued.key).startswith("This token expired at ")


def test_a_token_is_inactive_once_revoked_or_expired(member, team):
    token = token_create(user=member, team=team, name="ci", expires_in_days=1).token
    assert token.is_active
    token.expires_at = timezone.now() - timedelta(seconds=1)
    assert not token.is_active
    token.expires_at, token.revoked_at = None, timezone.now()
    assert not token.is_active


@pytest.mark.parametrize("days", [0, -1, TOKEN_MAX_DAYS + 1])
def test_it_refuses_an_expiry_out_of_range(member, team, days):
    with pytest.raises(ValueError):
        token_create(user=member, team=team, name="x", expires_in_days=days)


def test_it_refuses_an_unknown_scope(member, team):
    with pytest.raises(ValueError):
        token_create(user=member, team=team, name="x", scope="admin")


@pytest.mark.parametrize(
    "requested, limit, expected",
    [(None, 30, 30), (7, 30, 7), (30, 30, 30), (None, 0, None), (0, 0, None), (400, 0, 400)],
)
def test_login_token_days_within_the_limit(requested, limit, expected):
    assert login_token_days(requested, limit_days=limit) == expected


@pytest.mark.parametrize("requested, limit", [(0, 30), (31, 30), (-1, 30), (-1, 0), (TOKEN_MAX_DAYS + 1, 0)])
def test_login_token_days_out_of_the_limit(requested, limit):
    with pytest.raises(ValueError):
        login_token_days(requested, limit_days=limit)


def test_register_makes_an_admin_of_a_new_team_with_a_key(db):
    registration = account_register(
        username="ana", email="ana@example.com", password="x-Long-pass-99", team_name="", token_days=5
    )
    assert registration.membership.role == Membership.Role.ADMIN
    assert (registration.membership.team.name, registration.membership.team.slug) == ("ana", "ana")
    assert registration.issued.token.expires_at is not None
    assert token_authenticate(registration.issued.key)[1] == registration.membership
    again = account_register(username="Ana2", email="b@example.com", password="x-Long-pass-99",
                             team_name="ana", token_days=None)  # fmt: skip
    assert again.membership.team.slug == "ana-2" and again.issued.token.expires_at is None
