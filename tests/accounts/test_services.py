"""Tokens are shown once, stored hashed, revocable, and die with the membership."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.models import ApiToken, Membership, token_hash
from apps.accounts.services import membership_set, token_authenticate, token_create, token_revoke
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
