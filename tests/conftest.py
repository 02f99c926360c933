"""Shared fixtures: one team with a user per role, a second team, clients for each."""

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import Membership
from apps.accounts.services import token_create
from tests.factories import MembershipFactory, TeamFactory


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """Test users' passwords are hashed with a fast hasher: Django's default PBKDF2 (1,000,000 rounds)
    cost about 0.3 s per user here, half of the suite's time. Production keeps the default."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def _keep_the_test_connection_open(monkeypatch):
    """Progress streams and consumers read through channels' database_sync_to_async, which closes the
    thread's connection around each call (so a long stream gives its pooled connection back). A
    test's own connection sits in the test's transaction (an atomic block), and closing it would end
    the test: leave connections inside an atomic block open, close the others as the product does."""
    import channels.db
    from django.db import connections

    def close_old_connections_outside_atomic_blocks():
        for connection in connections.all(initialized_only=True):
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()

    monkeypatch.setattr(channels.db, "close_old_connections", close_old_connections_outside_atomic_blocks)


@pytest.fixture(autouse=True)
def _clear_cache():
    """Each test starts with an empty cache (the Redis one is shared between runs)."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def team(db):
    return TeamFactory(name="Alpha", slug="alpha")


@pytest.fixture
def other_team(db):
    return TeamFactory(name="Bravo", slug="bravo")


def _member(team, role):
    return MembershipFactory(team=team, role=role).user


@pytest.fixture
def viewer(team):
    return _member(team, Membership.Role.VIEWER)


@pytest.fixture
def member(team):
    return _member(team, Membership.Role.MEMBER)


@pytest.fixture
def admin_user(team):
    return _member(team, Membership.Role.ADMIN)


@pytest.fixture
def outsider(other_team):
    """A member of the other team only."""
    return _member(other_team, Membership.Role.ADMIN)


def _logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    return _logged_in(client, viewer)


@pytest.fixture
def member_client(client, member):
    return _logged_in(client, member)


@pytest.fixture
def admin_client_team(client, admin_user):
    return _logged_in(client, admin_user)


def api_client_for(user, team) -> APIClient:
    """An API client authenticated by a fresh token of `user` in `team`."""
    issued = token_create(user=user, team=team, name="test")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {issued.key}")
    return api


@pytest.fixture
def viewer_api(viewer, team):
    return api_client_for(viewer, team)


@pytest.fixture
def member_api(member, team):
    return api_client_for(member, team)


@pytest.fixture
def admin_api(admin_user, team):
    return api_client_for(admin_user, team)


@pytest.fixture
def anon_api():
    return APIClient()
