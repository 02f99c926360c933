"""API sign-in for scripts (POST /api/v1/auth/login), self-registration (/api/v1/auth/register), who am I
(/api/v1/auth/me), token expiry and read-only scope, and the login lockout as a script sees it."""

from datetime import timedelta

import pytest
import schemathesis
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.wsgi import get_wsgi_application
from django.test import override_settings
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken, Membership, Team
from apps.accounts.services import token_create
from tests.factories import MembershipFactory, TeamFactory, UserFactory
from tests.test_api_fuzz import CHECKS, FUZZ_CONFIG, _connections_kept_open, _served_schema

pytestmark = pytest.mark.django_db

LOGIN = "/api/v1/auth/login"
REGISTER = "/api/v1/auth/register"
ME = "/api/v1/auth/me"
PASSWORD = "pass-word-123"  # tests/factories.py


def logins(outcome: str) -> float:
    return REGISTRY.get_sample_value("llmbench_logins_total", {"method": "api", "outcome": outcome}) or 0.0


@pytest.fixture
def auth_failures(monkeypatch) -> list:
    """The requests llmbench.throttling.note_auth_failure was told about (by the login view and TokenAuthentication)."""
    seen: list = []
    monkeypatch.setattr("apps.accounts.api.views.note_auth_failure", seen.append)
    monkeypatch.setattr("apps.accounts.authentication.note_auth_failure", seen.append)
    return seen


def login(api: APIClient, **body):
    return api.post(LOGIN, body, format="json")


def with_key(key: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


class TestLogin:
    def test_it_answers_a_key_that_works_for_the_users_first_team(self, anon_api, member, team, other_team):
        """The default team is the first by name; the key expires after API_LOGIN_TOKEN_DAYS, full scope."""
        MembershipFactory(user=member, team=other_team, role=Membership.Role.ADMIN)
        before = logins("success")
        response = login(anon_api, username=member.username, password=PASSWORD)
        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["key"].startswith("llmb_") and body["username"] == member.username
        assert body["team"] == {"team_id": team.pk, "team_name": "Alpha", "team_slug": "alpha", "role": "member"}
        assert body["token"]["scope"] == "full" and body["token"]["name"] == "API login"
        token = ApiToken.objects.get(pk=body["token"]["id"])
        expected = timezone.now() + timedelta(days=settings.API_LOGIN_TOKEN_DAYS)
        assert abs((token.expires_at - expected).total_seconds()) < 60
        assert token.key_hash != body["key"] and body["key"] not in str(ApiToken.objects.values())
        me = with_key(body["key"]).get(ME)
        assert me.status_code == 200 and me.json()["token"]["id"] == token.pk
        assert logins("success") == before + 1
        member.refresh_from_db()
        assert member.last_login is not None  # a sign-in like the page's

    def test_it_issues_the_key_in_the_named_team_with_name_expiry_and_scope(self, anon_api, member, other_team):
        MembershipFactory(user=member, team=other_team, role=Membership.Role.VIEWER)
        response = login(
            anon_api, username=member.username, password=PASSWORD, team="bravo", name="nightly",
            expires_in_days=2, scope="read",
        )  # fmt: skip
        assert response.status_code == 200, response.json()
        token = ApiToken.objects.get(pk=response.json()["token"]["id"])
        assert (token.team, token.name, token.scope) == (other_team, "nightly", "read")
        assert timedelta(days=2) - timedelta(minutes=1) < token.expires_at - timezone.now() <= timedelta(days=2)
        assert response.json()["team"]["role"] == "viewer"

    def test_a_wrong_password_is_a_401_counted_as_an_auth_failure(self, anon_api, member, auth_failures):
        before = logins("failure")
        response = login(anon_api, username=member.username, password="wrong")
        assert response.status_code == 401
        assert response["Content-Type"] == "application/json"
        assert response.json()["detail"] == "Wrong username or password."
        assert response["WWW-Authenticate"] == "Token"
        assert len(auth_failures) == 1 and logins("failure") == before + 1
        assert not ApiToken.objects.exists()

    def test_an_unknown_user_gets_the_same_answer(self, anon_api, db, auth_failures):
        response = login(anon_api, username="nobody", password="wrong")
        assert (response.status_code, response.json()["detail"]) == (401, "Wrong username or password.")
        assert len(auth_failures) == 1

    def test_an_inactive_user_cannot_sign_in(self, anon_api, member):
        member.is_active = False
        member.save()
        assert login(anon_api, username=member.username, password=PASSWORD).status_code == 401

    def test_a_team_the_user_is_not_in_is_a_400_naming_the_field(self, anon_api, member, other_team):
        for slug in ("bravo", "no-such-team"):  # another team's and a missing one answer alike
            response = login(anon_api, username=member.username, password=PASSWORD, team=slug)
            assert response.status_code == 400
            assert response.json()["team"] == ["You are not a member of a team with this slug."]
        assert not ApiToken.objects.exists()

    def test_a_user_without_a_team_is_told_so(self, anon_api, db):
        user = UserFactory()
        response = login(anon_api, username=user.username, password=PASSWORD)
        assert response.status_code == 403 and "not a member of any team" in response.json()["detail"]

    @pytest.mark.parametrize(
        "body, field",
        [
            ({"password": PASSWORD}, "username"),
            ({"username": "u"}, "password"),
            ({"username": "u", "password": "p", "scope": "admin"}, "scope"),
            ({"username": "u", "password": "p", "expires_in_days": "soon"}, "expires_in_days"),
            ({"username": "u", "password": "p", "expires_in_days": -1}, "expires_in_days"),
            ({"username": "u", "password": "p", "expires_in_days": 10**12}, "expires_in_days"),
            ({"username": "u", "password": "p", "team": "not a slug!"}, "team"),
            ({"username": "u" * 151, "password": "p"}, "username"),
            ({"username": "u\x00", "password": "p"}, "username"),
        ],
    )
    def test_bad_input_is_a_400_naming_the_field(self, anon_api, db, body, field, auth_failures):
        response = anon_api.post(LOGIN, body, format="json")
        assert response.status_code == 400 and field in response.json(), response.json()
        assert auth_failures == []  # nothing was tried

    def test_a_longer_expiry_than_the_setting_allows_is_refused(self, anon_api, member):
        days = settings.API_LOGIN_TOKEN_DAYS
        for asked in (days + 1, 0):
            response = login(anon_api, username=member.username, password=PASSWORD, expires_in_days=asked)
            assert response.status_code == 400
            assert response.json()["expires_in_days"] == [
                f"Ask for 1 to {days} days: tokens made by signing in expire within {days} days."
            ]

    @override_settings(API_LOGIN_TOKEN_DAYS=0)
    def test_without_a_limit_tokens_never_expire_unless_asked(self, anon_api, member):
        forever = login(anon_api, username=member.username, password=PASSWORD)
        assert forever.json()["token"]["expires_at"] is None
        asked = login(anon_api, username=member.username, password=PASSWORD, expires_in_days=400)
        assert asked.json()["token"]["expires_at"] is not None

    @override_settings(PASSWORD_LOGIN=False)
    def test_it_is_refused_when_password_sign_in_is_off(self, anon_api, member):
        response = login(anon_api, username=member.username, password=PASSWORD)
        assert response.status_code == 403 and "single sign-on" in response.json()["detail"]
        assert not ApiToken.objects.exists()

    def test_it_answers_only_post(self, anon_api, db):
        assert anon_api.get(LOGIN).status_code == 405

    def test_a_token_or_session_sent_along_is_ignored(self, member_api, member, viewer):
        """The credentials in the body decide; a script's old key does not interfere."""
        response = login(member_api, username=viewer.username, password=PASSWORD)
        assert response.status_code == 200 and response.json()["username"] == viewer.username


class TestLockout:
    """After LOGIN_FAILURE_LIMIT wrong passwords django-axes locks the username (and the address) out; a script
    gets a 429 JSON answer with Retry-After, not the HTML lockout page."""

    def _fail_until_locked(self, api, username):
        limit = settings.AXES_FAILURE_LIMIT
        answers = [login(api, username=username, password=f"wrong-{i}") for i in range(limit)]
        assert [a.status_code for a in answers[:-1]] == [401] * (limit - 1)
        return answers[-1]

    def test_the_limit_locks_the_user_out_even_with_the_right_password(self, anon_api, member, auth_failures):
        before = logins("locked")
        locked = self._fail_until_locked(anon_api, member.username)
        assert locked.status_code == 429
        assert locked["Content-Type"] == "application/json"
        assert int(locked["Retry-After"]) == settings.LOGIN_LOCKOUT_MINUTES * 60
        detail = locked.json()["detail"]
        assert detail.startswith(f"Too many failed sign-ins ({settings.AXES_FAILURE_LIMIT})")
        assert f"locked for {settings.LOGIN_LOCKOUT_MINUTES} minutes" in detail and locked.json()["request_id"]
        right = login(anon_api, username=member.username, password=PASSWORD)
        assert right.status_code == 429 and right.json()["detail"] == detail
        assert not ApiToken.objects.exists()
        assert logins("locked") == before + 2
        assert len(auth_failures) == settings.AXES_FAILURE_LIMIT + 1
        assert AccessAttempt.objects.filter(username=member.username).exists()

    def test_the_address_is_locked_for_other_usernames_too(self, anon_api, member, viewer):
        self._fail_until_locked(anon_api, "someone-else")
        assert login(anon_api, username=viewer.username, password=PASSWORD).status_code == 429

    def test_a_success_before_the_limit_resets_the_count(self, anon_api, member):
        limit = settings.AXES_FAILURE_LIMIT
        for i in range(limit - 1):
            login(anon_api, username=member.username, password=f"wrong-{i}")
        assert login(anon_api, username=member.username, password=PASSWORD).status_code == 200
        assert login(anon_api, username=member.username, password="wrong").status_code == 401

    def test_an_unlock_lets_the_user_in_again(self, anon_api, member):
        from axes.utils import reset

        self._fail_until_locked(anon_api, member.username)
        reset(username=member.username)
        reset(ip="127.0.0.1")
        assert login(anon_api, username=member.username, password=PASSWORD).status_code == 200

    def test_the_sign_in_page_and_the_api_share_the_count(self, client, anon_api, member):
        for i in range(settings.AXES_FAILURE_LIMIT - 1):
            assert client.post("/login/", {"username": member.username, "password": f"wrong-{i}"}).status_code == 200
        assert login(anon_api, username=member.username, password="wrong").status_code == 429


class TestRegister:
    def _body(self, **overrides):
        return {"username": "newcomer", "email": "new@example.com", "password": "a-Long-unusual-pass-42", **overrides}

    def test_it_is_closed_unless_the_setting_opens_it(self, anon_api, db):
        response = anon_api.post(REGISTER, self._body(), format="json")
        assert response.status_code == 403 and "REGISTRATION_OPEN" in response.json()["detail"]
        assert not get_user_model().objects.filter(username="newcomer").exists()

    @override_settings(REGISTRATION_OPEN=True)
    def test_it_creates_the_user_a_team_of_their_own_and_a_key(self, anon_api, db):
        response = anon_api.post(REGISTER, self._body(team_name="New Lab"), format="json")
        assert response.status_code == 201, response.json()
        body = response.json()
        user = get_user_model().objects.get(username="newcomer")
        assert user.email == "new@example.com" and user.check_password("a-Long-unusual-pass-42")
        membership = Membership.objects.get(user=user)
        assert (membership.team.name, membership.team.slug, membership.role) == ("New Lab", "new-lab", "admin")
        assert body["team"]["team_slug"] == "new-lab" and body["token"]["scope"] == "full"
        assert body["token"]["expires_at"] is not None  # API_LOGIN_TOKEN_DAYS
        me = with_key(body["key"]).get(ME)
        assert me.status_code == 200 and me.json()["team"]["role"] == "admin"
        assert login(anon_api, username="newcomer", password="a-Long-unusual-pass-42").status_code == 200

    @override_settings(REGISTRATION_OPEN=True)
    def test_a_taken_team_slug_gets_a_number(self, anon_api, db):
        TeamFactory(name="newcomer", slug="newcomer")
        response = anon_api.post(REGISTER, self._body(), format="json")
        assert response.status_code == 201 and response.json()["team"]["team_slug"] == "newcomer-2"
        assert Team.objects.get(slug="newcomer-2").name == "newcomer"

    @override_settings(REGISTRATION_OPEN=True)
    @pytest.mark.parametrize(
        "overrides, field, message",
        [
            ({"password": "123"}, "password", "This password is too short. It must contain at least 8 characters."),
            ({"password": "password123"}, "password", "This password is too common."),
            ({"password": "newcomer-x1"}, "password", "The password is too similar to the username."),
            ({"username": "no spaces!"}, "username", None),
            ({"username": ""}, "username", None),
            ({"email": "not-an-address"}, "email", "Enter a valid email address."),
            ({"email": ""}, "email", None),
            ({"team_name": "t" * 101}, "team_name", None),
        ],
    )
    def test_bad_input_is_a_400_naming_the_field(self, anon_api, db, overrides, field, message):
        response = anon_api.post(REGISTER, self._body(**overrides), format="json")
        assert response.status_code == 400 and field in response.json(), response.json()
        if message:
            assert message in response.json()[field]
        assert not get_user_model().objects.filter(email="new@example.com").exists()

    @override_settings(REGISTRATION_OPEN=True)
    def test_a_taken_username_or_email_is_refused(self, anon_api, member):
        member.email = "taken@example.com"
        member.save()
        response = anon_api.post(REGISTER, self._body(username=member.username.upper()), format="json")
        assert response.status_code == 400 and response.json()["username"] == ["This username is taken."]
        response = anon_api.post(REGISTER, self._body(email="TAKEN@example.com"), format="json")
        assert response.status_code == 400
        assert response.json()["email"] == ["An account with this e-mail address exists already."]

    @override_settings(REGISTRATION_OPEN=True, PASSWORD_LOGIN=False)
    def test_it_is_closed_when_password_sign_in_is_off(self, anon_api, db):
        response = anon_api.post(REGISTER, self._body(), format="json")
        assert response.status_code == 403 and "single sign-on" in response.json()["detail"]

    @override_settings(REGISTRATION_OPEN=True, OIDC_ENABLED=True, OIDC_PROVIDER_NAME="Keycloak")
    def test_it_is_closed_while_single_sign_on_is_on(self, anon_api, db):
        """SSO matches accounts by e-mail, which a registration does not prove: registering a colleague's address
        first must not put anyone in the account their single sign-on lands in."""
        response = anon_api.post(REGISTER, self._body(), format="json")
        assert response.status_code == 403
        assert response.json()["detail"] == (
            "Registration is closed while single sign-on is on: sign in with Keycloak instead, which makes your account."
        )
        assert not get_user_model().objects.filter(email="new@example.com").exists()


class TestMe:
    def test_a_token_sees_its_team_role_and_token(self, anon_api, member, team):
        issued = token_create(user=member, team=team, name="ci", expires_in_days=3, scope="read")
        body = with_key(issued.key).get(ME).json()
        assert body["username"] == member.username and body["team"]["role"] == "member"
        assert body["token"]["name"] == "ci" and body["token"]["scope"] == "read"
        assert body["token"]["expires_at"] is not None and "key" not in body["token"]

    def test_a_session_has_no_token(self, client, member):
        client.force_login(member)
        body = client.get(ME).json()
        assert body["token"] is None and body["team"]["team_slug"] == "alpha"

    def test_the_old_address_answers_the_same(self, member_api):
        assert member_api.get("/api/v1/me").json() == member_api.get(ME).json()

    def test_anonymous_is_401(self, anon_api, db):
        response = anon_api.get(ME)
        assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"

    def test_a_token_answers_for_its_own_team_only(self, member, team, other_team):
        MembershipFactory(user=member, team=other_team, role=Membership.Role.ADMIN)
        body = with_key(token_create(user=member, team=other_team, name="b").key).get(ME).json()
        assert body["team"]["team_slug"] == "bravo" and body["team"]["role"] == "admin"
        assert sorted(t["team_slug"] for t in body["teams"]) == ["alpha", "bravo"]


class TestExpiry:
    def test_an_expired_token_is_a_401_saying_so(self, member, team, auth_failures):
        issued = token_create(user=member, team=team, name="ci", expires_in_days=1)
        api = with_key(issued.key)
        assert api.get(ME).status_code == 200
        ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        response = api.get(ME)
        assert response.status_code == 401 and "expired" in response.json()["detail"]
        assert len(auth_failures) == 1

    def test_a_revoked_or_unknown_token_is_a_401_counted_as_an_auth_failure(self, member, team, auth_failures):
        issued = token_create(user=member, team=team, name="ci")
        issued.token.revoked_at = timezone.now()
        issued.token.save()
        assert with_key(issued.key).get(ME).json()["detail"] == "This token was revoked."
        assert with_key("llmb_nonsense").get(ME).json()["detail"] == "Invalid token."
        bad_header = APIClient()
        bad_header.credentials(HTTP_AUTHORIZATION="Token a b")
        assert bad_header.get(ME).status_code == 401
        assert len(auth_failures) == 3


class TestReadOnlyScope:
    MESSAGE = "This API token is read-only: it may only read (GET, HEAD, OPTIONS)."

    def test_it_reads_but_does_not_write(self, admin_user, team):
        api = with_key(token_create(user=admin_user, team=team, name="dash", scope="read").key)
        assert api.get("/api/v1/variants").status_code == 200
        response = api.post("/api/v1/variants", {"model_name": "x/y", "quantization": "BF16"}, format="json")
        assert response.status_code == 403 and response.json()["detail"].startswith(self.MESSAGE)

    def test_it_cannot_make_itself_a_full_token_or_revoke_one(self, member, team):
        issued = token_create(user=member, team=team, name="dash", scope="read")
        api = with_key(issued.key)
        assert api.post("/api/v1/tokens", {"name": "escape"}, format="json").status_code == 403
        assert api.delete(f"/api/v1/tokens/{issued.token.pk}").status_code == 403
        assert ApiToken.objects.filter(user=member).count() == 1

    def test_a_full_token_keeps_the_role_check(self, viewer, team):
        """Scope narrows a role; it never widens one: a viewer's full token still cannot write."""
        api = with_key(token_create(user=viewer, team=team, name="x").key)
        response = api.post("/api/v1/variants", {"model_name": "x/y", "quantization": "BF16"}, format="json")
        assert (
            response.status_code == 403 and response.json()["detail"] == "Your role in this team does not allow this."
        )


class TestTokensApiExpiryAndScope:
    def test_create_takes_an_expiry_and_a_scope_and_the_list_shows_them(self, member_api, member):
        response = member_api.post(
            "/api/v1/tokens", {"name": "ci", "expires_in_days": 7, "scope": "read"}, format="json"
        )
        assert response.status_code == 201, response.json()
        created = response.json()
        assert created["scope"] == "read" and created["expires_at"] and created["key"]
        listed = {t["name"]: t for t in member_api.get("/api/v1/tokens").json()["results"]}
        assert listed["ci"]["scope"] == "read" and listed["ci"]["expires_at"] == created["expires_at"]
        assert listed["test"]["expires_at"] is None and listed["test"]["scope"] == "full"

    @pytest.mark.parametrize(
        "body, field",
        [
            ({"name": "x", "expires_in_days": 0}, "expires_in_days"),
            ({"name": "x", "expires_in_days": 3651}, "expires_in_days"),
            ({"name": "x", "expires_in_days": "soon"}, "expires_in_days"),
            ({"name": "x", "scope": "write"}, "scope"),
        ],
    )
    def test_bad_expiry_or_scope_is_a_400_naming_the_field(self, member_api, member, body, field):
        response = member_api.post("/api/v1/tokens", body, format="json")
        assert response.status_code == 400 and field in response.json()
        assert ApiToken.objects.filter(user=member).count() == 1  # the client's own


class TestTokensPageExpiryAndScope:
    def test_it_creates_a_read_only_key_that_expires(self, member_client, member):
        response = member_client.post("/account/tokens/", {"name": "dash", "expires_in_days": "30", "scope": "read"})
        assert response.status_code == 200 and response.context["issued_key"]
        token = ApiToken.objects.get(user=member, name="dash")
        assert token.scope == "read" and timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
        assert b"read only" in response.content

    def test_it_lists_expired_keys_as_expired(self, member_client, member, team):
        issued = token_create(user=member, team=team, name="old", expires_in_days=1)
        ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(hours=1))
        page = member_client.get("/account/tokens/").content.decode()
        row = page[page.index("<td>old</td>") :].split("</tr>")[0]
        assert "expired" in row and "Revoke" not in row

    def test_a_bad_expiry_is_refused_with_the_fields_words(self, member_client, member):
        response = member_client.post("/account/tokens/", {"name": "x", "expires_in_days": "0"})
        assert response.status_code == 400 and "expires_in_days" in response.context["form"].errors
        assert b"Expires after (days): Ensure this value is greater than or equal to 1." in response.content
        assert not ApiToken.objects.filter(user=member).exists()


# tests/test_api_fuzz.py fuzzes every operation with the default settings, where registration is closed (403):
# here sign-in and registration are fuzzed with registration open, so generated bodies reach the serializers,
# the password validators, django-axes and the account creation. Never a 5xx; every 4xx a JSON object.
auth_schema = schemathesis.openapi.from_dict(_served_schema(), config=FUZZ_CONFIG).include(
    path_regex=r"^/api/v1/auth/(login|register)$"
)


@pytest.fixture(scope="module")
def wsgi_app(django_db_setup, django_db_blocker):
    """Django's WSGI handler in this process, leaving the test's connection (and transaction) open."""
    with django_db_blocker.unblock(), pytest.MonkeyPatch.context() as patch, _connections_kept_open(patch):
        yield get_wsgi_application()


@auth_schema.parametrize()
@override_settings(REGISTRATION_OPEN=True)
def test_sign_in_and_registration_hold_under_fuzzing(case, wsgi_app):
    """Generated valid and invalid bodies get a documented answer or a JSON 4xx, never a 5xx."""
    case.call_and_validate(app=wsgi_app, checks=CHECKS)
