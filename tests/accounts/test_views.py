"""Login, team switcher and the API token page."""

import pytest
from django.urls import reverse

from apps.accounts.models import ApiToken, Membership
from apps.accounts.services import token_create
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_login_page_signs_a_user_in(client, member):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    response = client.post(reverse("login"), {"username": member.username, "password": "pass-word-123"})
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 200


def test_login_rejects_a_wrong_password(client, member):
    response = client.post(reverse("login"), {"username": member.username, "password": "nope"})
    assert response.status_code == 200
    assert b"correct username and password" in response.content


def test_logout_needs_post_and_signs_out(member_client):
    assert member_client.post(reverse("logout")).status_code == 302
    assert member_client.get(reverse("home")).status_code == 302


def test_pages_redirect_anonymous_users_to_login(client):
    for name in ["home", "accounts:tokens", "scores:leaderboard", "hardware:grid"]:
        response = client.get(reverse(name))
        assert response.status_code == 302 and response["Location"].startswith("/login/"), name


def test_a_user_without_a_team_is_told_so(client, db):
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    assert b"not a member of any team" in client.get(reverse("home")).content
    response = client.get(reverse("scores:leaderboard"))
    assert response.status_code == 403


class TestTeamSwitch:
    def test_it_switches_to_another_team_of_the_user(self, member_client, member, other_team):
        MembershipFactory(user=member, team=other_team, role=Membership.Role.VIEWER)
        response = member_client.post(reverse("accounts:switch-team"), {"team": other_team.pk, "next": "/scores/"})
        assert response.status_code == 302 and response["Location"] == "/scores/"
        assert member_client.get(reverse("home")).context["active_team"] == other_team

    def test_it_is_404_for_a_team_the_user_is_not_in(self, member_client, other_team):
        response = member_client.post(reverse("accounts:switch-team"), {"team": other_team.pk})
        assert response.status_code == 404

    def test_it_rejects_a_missing_team(self, member_client):
        response = member_client.post(reverse("accounts:switch-team"), {"team": "x"})
        assert response.status_code == 400 and b"team" in response.content

    def test_it_rejects_get(self, member_client, team):
        assert member_client.get(reverse("accounts:switch-team")).status_code == 405

    def test_it_ignores_an_offsite_next(self, member_client, team):
        response = member_client.post(
            reverse("accounts:switch-team"), {"team": team.pk, "next": "https://evil.example/"}
        )
        assert response["Location"] == reverse("home")

    def test_it_redirects_anonymous_users(self, client, team):
        assert client.post(reverse("accounts:switch-team"), {"team": team.pk}).status_code == 302


class TestTokensPage:
    def test_it_shows_a_new_key_once(self, viewer_client, viewer, team):
        response = viewer_client.post(reverse("accounts:tokens"), {"name": "laptop"})
        assert response.status_code == 200
        key = response.context["issued_key"]
        assert key and key.encode() in response.content
        token = ApiToken.objects.get(user=viewer)
        assert token.team == team and token.name == "laptop"
        again = viewer_client.get(reverse("accounts:tokens"))
        assert key.encode() not in again.content and token.key_prefix.encode() in again.content

    def test_it_rejects_an_empty_name(self, member_client):
        response = member_client.post(reverse("accounts:tokens"), {"name": ""})
        assert response.status_code == 400 and response.context["form"].errors["name"]
        assert not ApiToken.objects.exists()

    def test_it_lists_only_the_users_tokens_in_the_active_team(self, member_client, member, viewer, team):
        token_create(user=viewer, team=team, name="someone-elses")
        mine = token_create(user=member, team=team, name="mine")
        tokens = list(member_client.get(reverse("accounts:tokens")).context["tokens"])
        assert tokens == [mine.token]

    def test_revoke_revokes_own_token(self, member_client, member, team):
        issued = token_create(user=member, team=team, name="mine")
        response = member_client.post(reverse("accounts:token-revoke", args=[issued.token.pk]))
        assert response.status_code == 302
        issued.token.refresh_from_db()
        assert issued.token.revoked_at is not None

    def test_revoke_is_404_for_another_users_token(self, member_client, viewer, team):
        issued = token_create(user=viewer, team=team, name="theirs")
        assert member_client.post(reverse("accounts:token-revoke", args=[issued.token.pk])).status_code == 404
        issued.token.refresh_from_db()
        assert issued.token.revoked_at is None

    def test_revoke_is_404_for_another_teams_token(self, member_client, outsider, other_team):
        issued = token_create(user=outsider, team=other_team, name="theirs")
        assert member_client.post(reverse("accounts:token-revoke", args=[issued.token.pk])).status_code == 404

    def test_revoke_rejects_get(self, member_client, member, team):
        issued = token_create(user=member, team=team, name="mine")
        assert member_client.get(reverse("accounts:token-revoke", args=[issued.token.pk])).status_code == 405


def test_password_change_needs_the_old_password(member_client, member):
    url = reverse("password_change")
    assert member_client.get(url).status_code == 200
    bad = member_client.post(
        url, {"old_password": "wrong", "new_password1": "N3w-pass-word!", "new_password2": "N3w-pass-word!"}
    )
    assert bad.status_code == 200 and "old_password" in bad.context["form"].errors
    good = member_client.post(
        url, {"old_password": "pass-word-123", "new_password1": "N3w-pass-word!", "new_password2": "N3w-pass-word!"}
    )
    assert good.status_code == 302
    member.refresh_from_db()
    assert member.check_password("N3w-pass-word!")


def test_password_change_redirects_anonymous_users(client):
    assert client.get(reverse("password_change")).status_code == 302
