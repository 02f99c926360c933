"""Single sign-on against a real OpenID Connect provider: django-oauth-toolkit running in a second process
(tests/oidc_provider). The browser is the Django test client on our side and a requests.Session on the
provider's side; our backend calls the provider's token, keys and userinfo endpoints over real HTTP."""

import contextlib
import json
import re
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import authenticate, get_user_model
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.test import Client, RequestFactory

from apps.accounts import oidc
from apps.accounts.models import Membership
from llmbench.metrics import LOGINS
from tests.factories import MembershipFactory, TeamFactory, UserFactory

ROOT = Path(__file__).resolve().parents[2]
CALLBACK = "http://testserver/oidc/callback/"
# The provider is a second Django process: on a busy two-core machine it can take long to start and answer.
START_TIMEOUT_S = 180
HTTP_TIMEOUT_S = 60
provider_process = pytest.mark.timeout(900)

OIDC_BACKEND = "apps.accounts.oidc.TeamOIDCBackend"
BACKENDS = ["axes.backends.AxesStandaloneBackend", "apps.accounts.oidc.PasswordBackend", OIDC_BACKEND]
GROUP_MAP = "llm-admins=alpha:admin; llm-users=alpha:viewer; llm-users=bravo:member"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Provider:
    issuer: str
    client_id: str
    client_secret: str
    control_secret: str
    log: Path
    user: dict = field(default_factory=dict)

    def set_groups(self, groups: list[str]) -> None:
        response = requests.post(
            f"{self.issuer.rsplit('/o', 1)[0]}/control/groups/{self.user['username']}/",
            data=json.dumps({"groups": groups}),
            headers={"X-Control-Secret": self.control_secret},
            timeout=HTTP_TIMEOUT_S,
        )
        response.raise_for_status()


def _rsa_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _wait_for_discovery(process: subprocess.Popen, issuer: str, log: Path) -> None:
    url = issuer + "/.well-known/openid-configuration"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The test identity provider exited ({process.returncode}): {log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.2)  # returns early if the process dies; otherwise a short pause between polls
    raise RuntimeError(
        f"The test identity provider did not answer {url} in {START_TIMEOUT_S} s: {log.read_text()[-3000:]}"
    )


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    """django-oauth-toolkit as an OpenID Connect provider in its own process, SQLite file and port."""
    folder = tmp_path_factory.mktemp("oidc_provider")
    key_file = folder / "rsa.pem"
    key_file.write_text(_rsa_key_pem())
    user = {
        "username": "alice",
        "password": secrets.token_urlsafe(12),
        "email": "alice@example.com",
        "first_name": "Alice",
        "last_name": "Liddell",
        "groups": [],
    }
    client_id, client_secret, control_secret = (secrets.token_urlsafe(16) for _ in range(3))
    log = folder / "provider.log"
    for _attempt in range(3):  # a port taken between choosing it and binding it: choose another
        port = free_port()
        issuer = f"http://127.0.0.1:{port}/o"
        env = {
            "PATH": "/usr/bin:/bin",
            "OIDC_PROVIDER_DB": str(folder / f"provider-{port}.sqlite3"),
            "OIDC_PROVIDER_PORT": str(port),
            "OIDC_PROVIDER_ISSUER": issuer,
            "OIDC_PROVIDER_KEY_FILE": str(key_file),
            "OIDC_PROVIDER_CLIENT_ID": client_id,
            "OIDC_PROVIDER_CLIENT_SECRET": client_secret,
            "OIDC_PROVIDER_REDIRECT_URI": CALLBACK,
            "OIDC_PROVIDER_USER": json.dumps(user),
            "OIDC_PROVIDER_CONTROL_SECRET": control_secret,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.oidc_provider"],
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_for_discovery(process, issuer, log)
            break
        except RuntimeError:
            process.kill()
            process.wait()
            if "Address already in use" not in log.read_text():
                raise
    try:
        yield Provider(issuer, client_id, client_secret, control_secret, log, user)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def teams(db):
    return {slug: TeamFactory(name=slug.title(), slug=slug) for slug in ("alpha", "bravo", "charlie")}


@pytest.fixture
def sso(settings, provider, teams):
    """Single sign-on turned on against the test provider, with a group map over alpha and bravo."""
    oidc.discovery_forget()
    settings.OIDC_ENABLED = True
    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_CLIENT_ID = provider.client_id
    settings.OIDC_CLIENT_SECRET = provider.client_secret
    settings.OIDC_SCOPES = "openid email profile"
    settings.OIDC_PROVIDER_NAME = "Test IdP"
    settings.OIDC_GROUP_MAP = GROUP_MAP
    settings.OIDC_CREATE_USERS = True
    settings.PASSWORD_LOGIN = True
    settings.AUTHENTICATION_BACKENDS = BACKENDS
    settings.OIDC_TIMEOUT = HTTP_TIMEOUT_S
    provider.set_groups([])
    yield provider
    oidc.discovery_forget()


def _login_form_fields(html: str) -> dict:
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    next_url = re.search(r'name="next" value="([^"]*)"', html)
    assert csrf, html[:2000]
    return {"csrfmiddlewaretoken": csrf.group(1), "next": next_url.group(1).replace("&amp;", "&") if next_url else ""}


def _through_the_provider(browser: requests.Session, authorize_url: str, provider: Provider) -> str:
    """Acts as the browser at the provider: signs in on its form if asked; returns our callback URL."""
    response = browser.get(authorize_url, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
    for _step in range(10):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(CALLBACK):
                return location
            response = browser.get(location, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
        elif response.status_code == 200 and 'name="password"' in response.text:
            form = _login_form_fields(response.text)
            form |= {"username": provider.user["username"], "password": provider.user["password"]}
            response = browser.post(response.url, data=form, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
        else:
            raise AssertionError(f"The provider answered {response.status_code}: {response.text[:2000]}")
    raise AssertionError("Too many redirects at the provider.")


def _start(client: Client, next_url: str = "/providers/") -> str:
    response = client.get("/oidc/authenticate/", {"next": next_url})
    assert response.status_code == 302, response.content[:2000]
    return response["Location"]


def _local(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("", "", parts.path, parts.query, ""))


def sso_sign_in(client: Client, provider: Provider, browser: requests.Session | None = None, next_url="/providers/"):
    """The whole authorization-code flow; returns our callback's response."""
    browser = browser or requests.Session()
    callback = _through_the_provider(browser, _start(client, next_url), provider)
    return client.get(_local(callback))


def _memberships(user) -> dict[str, str]:
    return dict(Membership.objects.filter(user=user).values_list("team__slug", "role"))


def _count(outcome: str) -> float:
    return LOGINS.labels("sso", outcome)._value.get()


# --- the flow against the real provider -----------------------------------------------------------


@provider_process
def test_first_sign_in_creates_the_user_with_memberships_from_groups_and_signs_them_in(sso):
    sso.set_groups(["llm-users", "llm-admins", "not-mapped"])
    successes = _count("success")
    client = Client()

    start = _start(client)
    authorize = urlsplit(start)
    params = dict(parse_qsl(authorize.query))
    assert start.startswith(sso.issuer + "/authorize/")  # from the discovery document
    assert params["redirect_uri"] == CALLBACK and params["client_id"] == sso.client_id
    assert params["code_challenge_method"] == "S256" and params["nonce"]

    response = client.get(_local(_through_the_provider(requests.Session(), start, sso)))

    assert response.status_code == 302 and response["Location"] == "/providers/"
    user = get_user_model().objects.get(email="alice@example.com")
    assert (user.username, user.first_name, user.last_name) == ("alice", "Alice", "Liddell")
    assert not user.has_usable_password()
    assert int(client.session["_auth_user_id"]) == user.pk
    assert client.session["_auth_user_backend"] == OIDC_BACKEND
    # alpha: admin (llm-admins) beats viewer (llm-users); bravo: member (llm-users); charlie is not mapped.
    assert _memberships(user) == {"alpha": "admin", "bravo": "member"}
    assert client.get("/providers/").status_code == 200
    assert _count("success") == successes + 1


@provider_process
def test_a_later_sign_in_updates_mapped_memberships_and_leaves_other_teams_alone(sso, teams):
    existing = UserFactory(username="alice-local", email="Alice@Example.com")
    MembershipFactory(user=existing, team=teams["charlie"], role=Membership.Role.VIEWER)  # not in the map
    MembershipFactory(user=existing, team=teams["alpha"], role=Membership.Role.MEMBER)
    browser = requests.Session()

    sso.set_groups(["llm-users"])
    assert sso_sign_in(Client(), sso, browser).status_code == 302
    assert _memberships(existing) == {"alpha": "viewer", "bravo": "member", "charlie": "viewer"}

    sso.set_groups(["llm-admins"])
    client = Client()
    assert sso_sign_in(client, sso, browser).status_code == 302  # the provider remembers the browser: no form

    assert get_user_model().objects.filter(email__iexact="alice@example.com").count() == 1  # matched, not created
    assert int(client.session["_auth_user_id"]) == existing.pk
    assert _memberships(existing) == {"alpha": "admin", "charlie": "viewer"}


@provider_process
def test_a_tampered_or_replayed_state_is_refused(sso):
    failures = _count("failure")
    client = Client()
    callback = _through_the_provider(requests.Session(), _start(client), sso)
    parts = urlsplit(callback)
    query = dict(parse_qsl(parts.query))

    tampered = client.get(parts.path + "?" + urlencode(query | {"state": query["state"][:-2] + "xx"}))

    assert tampered.status_code == 400
    assert b"not started here" in tampered.content
    assert "_auth_user_id" not in client.session
    assert not get_user_model().objects.filter(email="alice@example.com").exists()
    assert _count("failure") == failures + 1

    assert client.get(_local(callback)).status_code == 302  # the real one still works, once
    assert "_auth_user_id" in client.session
    replay = Client().get(_local(callback))  # another browser replaying it
    assert replay.status_code == 400


@provider_process
def test_no_account_is_created_when_creating_users_is_off(sso, settings):
    settings.OIDC_CREATE_USERS = False
    client = Client()

    response = sso_sign_in(client, sso)

    assert response.status_code == 302 and response["Location"] == "/login/?sso=failed"
    assert not get_user_model().objects.filter(email="alice@example.com").exists()
    page = client.get(response["Location"])
    assert "There is no account with this e-mail address" in page.content.decode()
    from axes.models import AccessAttempt  # a refused single sign-on counts towards the address's lockout

    assert list(AccessAttempt.objects.values_list("ip_address", "username", "failures_since_start")) == [
        ("127.0.0.1", None, 1)
    ]


@provider_process
def test_an_inactive_user_is_not_signed_in(sso):
    UserFactory(email="alice@example.com", is_active=False)
    client = Client()

    response = sso_sign_in(client, sso)

    assert response.status_code == 302 and response["Location"] == "/login/?sso=failed"
    assert "_auth_user_id" not in client.session


@provider_process
def test_a_wrong_client_secret_shows_a_clear_error(sso, settings):
    settings.OIDC_CLIENT_SECRET = "not-the-secret"
    failures = _count("failure")
    client = Client()

    response = sso_sign_in(client, sso)  # the provider's token endpoint refuses the code exchange

    assert response.status_code == 502
    assert b"did not accept the sign-in" in response.content
    assert "_auth_user_id" not in client.session
    assert _count("failure") == failures + 1


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"iss": "http://idp.example/o", "aud": "someone-else"}, "another client"),
        ({"iss": "http://idp.example/o", "aud": ["a", "b"]}, "another client"),
        ({"iss": "http://evil.example/o", "aud": "llmbench"}, "another issuer"),
    ],
)
def test_an_id_token_from_another_issuer_or_for_another_client_is_refused(db, settings, claims, message):
    # mozilla-django-oidc checks neither; the flow cannot produce such a token with our credentials.
    settings.OIDC_ISSUER = "http://idp.example/o"
    settings.OIDC_CLIENT_ID = "llmbench"
    backend = oidc.TeamOIDCBackend()
    backend.request = RequestFactory().get("/oidc/callback/")

    with pytest.raises(SuspiciousOperation, match=message):
        backend.get_or_create_user("access", "id", claims)
    assert message in backend.request.sso_failure


@provider_process
def test_a_locked_out_address_cannot_sign_in_with_sso_either(sso, settings):
    from axes.models import AccessAttempt

    AccessAttempt.objects.create(
        ip_address="127.0.0.1", username="someone", user_agent="", failures_since_start=settings.AXES_FAILURE_LIMIT
    )
    locked = _count("locked")
    client = Client()

    response = sso_sign_in(client, sso)

    assert response.status_code in (403, 429)
    assert "_auth_user_id" not in client.session
    assert not get_user_model().objects.filter(email="alice@example.com").exists()
    assert _count("locked") == locked + 1


# --- settings: off, passwords off, provider unreachable --------------------------------------------


def test_the_sso_urls_are_404_and_the_button_hidden_while_sso_is_off(db, settings):
    settings.OIDC_ENABLED = False
    client = Client()

    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/", {"code": "x", "state": "y"}).status_code == 404
    page = client.get("/login/").content.decode()
    assert "Sign in with" not in page and 'name="password"' in page


@pytest.mark.parametrize(
    "backends",
    [BACKENDS, ["axes.backends.AxesStandaloneBackend", OIDC_BACKEND]],
    ids=["password-backend-refuses", "no-password-backend"],
)
def test_with_passwords_off_only_the_sso_button_is_offered_and_passwords_are_refused(db, settings, backends):
    settings.OIDC_ENABLED = True
    settings.OIDC_ISSUER = "http://127.0.0.1:9/o"
    settings.OIDC_PROVIDER_NAME = "Corp SSO"
    settings.PASSWORD_LOGIN = False
    settings.AUTHENTICATION_BACKENDS = backends
    user = UserFactory(username="bob", is_staff=True, is_superuser=True)
    user.set_password("right-password")
    user.save()
    client = Client()

    page = client.get("/login/").content.decode()
    assert "Sign in with Corp SSO" in page and 'name="password"' not in page
    client.post("/login/", {"username": "bob", "password": "right-password"})
    assert "_auth_user_id" not in client.session

    # The admin signs in through the site's page (llmbench/admin.py): the same button, no password form.
    admin_page = client.get("/admin/login/?next=/admin/", follow=True).content.decode()
    assert 'href="/oidc/authenticate/?next=/admin/"' in admin_page and 'name="password"' not in admin_page
    client.post("/admin/login/?next=/admin/", {"username": "bob", "password": "right-password", "next": "/admin/"})
    assert "_auth_user_id" not in client.session

    request = RequestFactory().post("/api/v1/auth/login")
    assert authenticate(request, username="bob", password="right-password") is None


def test_with_passwords_on_both_ways_are_offered_and_the_password_works(db, settings):
    settings.OIDC_ENABLED = True
    settings.OIDC_PROVIDER_NAME = "Corp SSO"
    settings.PASSWORD_LOGIN = True
    settings.AUTHENTICATION_BACKENDS = BACKENDS
    user = UserFactory(username="bob")
    user.set_password("right-password")
    user.save()
    client = Client()

    page = client.get("/login/?next=/providers/").content.decode()
    assert 'href="/oidc/authenticate/?next=/providers/"' in page and 'name="password"' in page
    client.post("/login/", {"username": "bob", "password": "right-password"})
    assert int(client.session["_auth_user_id"]) == user.pk


def test_an_unreachable_issuer_gives_a_clear_error_page(db, settings):
    oidc.discovery_forget()
    closed = free_port()  # nothing listens there
    settings.OIDC_ENABLED = True
    settings.OIDC_ISSUER = f"http://127.0.0.1:{closed}/realms/corp"
    settings.OIDC_CLIENT_ID = "llmbench"
    settings.OIDC_PROVIDER_NAME = "Corp SSO"

    response = Client().get("/oidc/authenticate/")

    assert response.status_code == 503
    page = response.content.decode()
    assert "Sign-in with Corp SSO failed" in page
    assert f"http://127.0.0.1:{closed}/realms/corp/.well-known/openid-configuration" in page
    assert "ConnectionError" in page
    oidc.discovery_forget()


@provider_process
def test_an_issuer_whose_discovery_names_another_issuer_is_refused(sso, settings):
    settings.OIDC_ISSUER = sso.issuer.replace("127.0.0.1", "localhost")

    response = Client().get("/oidc/authenticate/")

    assert response.status_code == 503
    assert "names the issuer" in response.content.decode()


# --- the group map ---------------------------------------------------------------------------------


def test_the_group_map_parses_several_teams_per_group_and_defaults_to_member():
    assert oidc.parse_group_map("a=alpha:admin; a=bravo ;\n/corp/b = alpha:viewer;") == {
        "a": [("alpha", "admin"), ("bravo", "member")],
        "/corp/b": [("alpha", "viewer")],
    }
    assert oidc.parse_group_map("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [("just-a-group", '"just-a-group" is not'), ("g=alpha:owner", 'the role "owner"'), ("=alpha:admin", "is not")],
)
def test_a_bad_group_map_names_the_bad_entry(text, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        oidc.parse_group_map(text)


def test_memberships_sync_ignores_teams_that_do_not_exist(teams):
    user = UserFactory()
    changes = oidc.memberships_sync(
        user=user, groups={"g"}, group_map={"g": [("alpha", "member"), ("no-such-team", "admin")]}
    )
    assert changes.added == {"alpha": "member"}
    assert _memberships(user) == {"alpha": "member"}


def test_the_system_check_reports_a_bad_group_map_only_while_sso_is_on(settings):
    settings.OIDC_GROUP_MAP = "admins=alpha:boss"
    settings.OIDC_ENABLED = True
    errors = oidc.sso_settings_check()
    assert [error.id for error in errors] == ["accounts.E001"] and 'the role "boss"' in errors[0].msg
    settings.OIDC_GROUP_MAP = GROUP_MAP
    assert oidc.sso_settings_check() == []
    settings.OIDC_ENABLED = False
    settings.OIDC_GROUP_MAP = "nonsense"
    assert oidc.sso_settings_check() == []
