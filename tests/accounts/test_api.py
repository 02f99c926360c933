"""Token authentication (Token and Bearer), team pinning, and the tokens API."""

import pytest

from apps.accounts.models import ApiToken, Membership
from apps.accounts.services import token_create, token_revoke
from tests.factories import MembershipFactory, ModelVariantFactory

pytestmark = pytest.mark.django_db


def test_me_answers_with_token_auth(member_api, member, team):
    response = member_api.get("/api/v1/me")
    assert response.status_code == 200
    assert response.json()["username"] == member.username
    assert response.json()["team"] == {"team_id": team.pk, "team_name": "Alpha", "team_slug": "alpha", "role": "member"}


def test_bearer_works_like_token(anon_api, member, team):
    issued = token_create(user=member, team=team, name="b")
    anon_api.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.key}")
    assert anon_api.get("/api/v1/me").status_code == 200


@pytest.mark.parametrize("header", ["Token llmb_wrong", "Bearer", "Token a b", "Token \xff"])
def test_a_bad_token_is_401(anon_api, header, db):
    anon_api.credentials(HTTP_AUTHORIZATION=header)
    response = anon_api.get("/api/v1/me")
    assert response.status_code == 401


def test_anonymous_is_401(anon_api, db):
    response = anon_api.get("/api/v1/me")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_a_revoked_token_is_401(anon_api, member, team):
    issued = token_create(user=member, team=team, name="b")
    token_revoke(token=issued.token)
    anon_api.credentials(HTTP_AUTHORIZATION=f"Token {issued.key}")
    assert anon_api.get("/api/v1/me").status_code == 401


def test_a_token_acts_in_its_own_team_whatever_the_session_says(anon_api, member, team, other_team):
    MembershipFactory(user=member, team=other_team, role=Membership.Role.ADMIN)
    ModelVariantFactory(team=team, model_name="alpha-model")
    ModelVariantFactory(team=other_team, model_name="bravo-model")
    issued = token_create(user=member, team=other_team, name="bravo")
    anon_api.credentials(HTTP_AUTHORIZATION=f"Token {issued.key}")
    names = [v["model_name"] for v in anon_api.get("/api/v1/variants").json()["results"]]
    assert names == ["bravo-model"]


def test_session_auth_works_for_the_browser(client, member):
    client.force_login(member)
    assert client.get("/api/v1/me").status_code == 200


class TestTokensApi:
    def test_create_returns_the_key_once(self, viewer_api, viewer, team):
        response = viewer_api.post("/api/v1/tokens", {"name": "script"}, format="json")
        assert response.status_code == 201
        key = response.json()["key"]
        assert ApiToken.objects.filter(user=viewer, name="script").exists()
        listing = viewer_api.get("/api/v1/tokens").json()["results"]
        assert all("key" not in t for t in listing) and key not in str(listing)

    def test_create_rejects_a_missing_name(self, member_api):
        response = member_api.post("/api/v1/tokens", {}, format="json")
        assert response.status_code == 400 and "name" in response.json()

    def test_delete_revokes(self, member_api, member, team):
        issued = token_create(user=member, team=team, name="old")
        assert member_api.delete(f"/api/v1/tokens/{issued.token.pk}").status_code == 204
        issued.token.refresh_from_db()
        assert issued.token.revoked_at is not None

    def test_another_users_token_is_404(self, member_api, viewer, team):
        issued = token_create(user=viewer, team=team, name="theirs")
        assert member_api.delete(f"/api/v1/tokens/{issued.token.pk}").status_code == 404
        assert member_api.get(f"/api/v1/tokens/{issued.token.pk}").status_code == 404

    def test_another_teams_token_is_404(self, member_api, outsider, other_team):
        issued = token_create(user=outsider, team=other_team, name="theirs")
        assert member_api.delete(f"/api/v1/tokens/{issued.token.pk}").status_code == 404

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.get("/api/v1/tokens").status_code == 401
        assert anon_api.post("/api/v1/tokens", {"name": "x"}, format="json").status_code == 401
