"""Login lockout (django-axes): wrong passwords lock the username and the address, the right password is then
refused with a page saying when it ends, behind a proxy each client is told apart, and a team admin unlocks."""

import re

import pytest
from axes.models import AccessAttempt
from django.test import Client
from prometheus_client import REGISTRY

from llmbench import signins
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/login/"
PASSWORD = "pass-word-123"  # tests.factories.UserFactory's


@pytest.fixture(autouse=True)
def _counters_connected():
    signins.connect()  # LlmbenchConfig.ready connects them; connecting again is a no-op


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.AXES_FAILURE_LIMIT = 5
    settings.TRUSTED_PROXY_COUNT = 0


def sign_in(client, username, password=PASSWORD, **extra):
    return client.post(LOGIN, {"username": username, "password": password}, **extra)


def signed_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/"


def counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_thirty_wrong_passwords_lock_and_the_right_one_is_then_refused(client, member):
    """The issue's repro: 30 wrong passwords in a row, then the right one gets the lockout page, not a session."""
    answers = [sign_in(client, member.username, "wrong").status_code for _ in range(30)]
    assert answers[:4] == [200] * 4  # the form again, with its error
    assert set(answers[4:]) == {429}  # from the 5th failure on: the lockout page
    response = sign_in(client, member.username)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    page = response.content.decode()
    assert "Signing in is blocked for now" in page
    assert re.search(r"try again in 15 minutes, at <time datetime=\"[^\"]+\">\d\d:\d\d</time>", page)
    assert "Unlock sign-in" in page  # how to be unlocked sooner


def test_the_lockout_ends_with_the_setting(client, member, settings):
    from datetime import timedelta

    settings.AXES_COOLOFF_TIME = timedelta(minutes=3)
    for _ in range(5):
        sign_in(client, member.username, "wrong")
    assert "try again in 3 minutes" in sign_in(client, member.username).content.decode()


def test_fewer_failures_than_the_limit_do_not_lock(client, member):
    for _ in range(4):
        assert sign_in(client, member.username, "wrong").status_code == 200
    assert signed_in(sign_in(client, member.username))


def test_a_success_forgets_the_earlier_failures(client, member):
    for _ in range(4):
        sign_in(client, member.username, "wrong")
    assert signed_in(sign_in(client, member.username))
    assert not AccessAttempt.objects.filter(username=member.username).exists()


def test_one_address_is_locked_across_usernames(team):
    """Guessing a different username each time still locks the address: even a real user is refused from it."""
    users = [MembershipFactory(team=team).user for _ in range(6)]
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for user in users[:5]:
        sign_in(attacker, user.username, "wrong")
    assert sign_in(attacker, users[5].username).status_code == 429
    # The same user from another address is not locked: only one failure was counted for that name.
    assert signed_in(sign_in(Client(REMOTE_ADDR="198.51.100.2"), users[0].username))


def test_a_locked_username_is_locked_from_every_address(team, member):
    for index in range(5):
        sign_in(Client(REMOTE_ADDR=f"203.0.113.{index + 1}"), member.username, "wrong")
    assert sign_in(Client(REMOTE_ADDR="198.51.100.9"), member.username).status_code == 429


class TestBehindAProxy:
    """TRUSTED_PROXY_COUNT=1: the proxy (REMOTE_ADDR) appends each client's address to X-Forwarded-For."""

    PROXY = "10.0.0.1"

    @pytest.fixture(autouse=True)
    def _one_proxy(self, settings):
        settings.TRUSTED_PROXY_COUNT = 1

    def through_proxy(self, client_address: str, sent_by_client: str = "") -> dict:
        chain = f"{sent_by_client}, {client_address}" if sent_by_client else client_address
        return {"REMOTE_ADDR": self.PROXY, "HTTP_X_FORWARDED_FOR": chain}

    def test_two_clients_behind_the_same_proxy_are_told_apart(self, team):
        users = [MembershipFactory(team=team).user for _ in range(6)]
        attacker = Client(**self.through_proxy("192.0.2.10"))
        for user in users[:5]:
            sign_in(attacker, user.username, "wrong")
        assert sign_in(attacker, users[5].username).status_code == 429
        assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"192.0.2.10"}  # not the proxy
        # Another client behind the same proxy signs in.
        assert signed_in(sign_in(Client(**self.through_proxy("192.0.2.20")), users[5].username))

    def test_a_spoofed_left_most_address_is_ignored(self, team):
        users = [MembershipFactory(team=team).user for _ in range(7)]
        for index, user in enumerate(users[:5]):
            # Each time the client claims another address; the proxy's entry is what counts.
            sign_in(
                Client(**self.through_proxy("192.0.2.10", sent_by_client=f"198.51.100.{index}")), user.username, "x"
            )
        assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"192.0.2.10"}
        spoofing = Client(**self.through_proxy("192.0.2.10", sent_by_client="192.0.2.99"))
        assert sign_in(spoofing, users[5].username).status_code == 429
        # The address it pretends to be is not locked.
        assert signed_in(sign_in(Client(**self.through_proxy("192.0.2.99")), users[6].username))

    def test_without_a_trusted_proxy_the_header_is_not_believed(self, team, settings):
        settings.TRUSTED_PROXY_COUNT = 0
        user = MembershipFactory(team=team).user
        sign_in(Client(**self.through_proxy("192.0.2.10")), user.username, "wrong")
        assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [self.PROXY]


class TestUnlock:
    def lock(self, user, address="203.0.113.7") -> Client:
        browser = Client(REMOTE_ADDR=address)
        for _ in range(5):
            sign_in(browser, user.username, "wrong")
        assert sign_in(browser, user.username).status_code == 429
        return browser

    def test_a_team_admin_unlocks_a_member_in_the_admin(self, member, admin_user):
        browser = self.lock(member)
        admin = Client()
        admin.force_login(admin_user)
        listing = admin.get("/admin/accounts/membership/")
        assert listing.status_code == 200 and b"locked out" in listing.content
        response = admin.post(
            "/admin/accounts/membership/",
            {"action": "unlock_sign_in", "_selected_action": [member.memberships.get().pk]},
            follow=True,
        )
        assert response.status_code == 200
        assert f"Unlocked sign-in of 1 user(s): {member.username}".encode() in response.content
        assert signed_in(sign_in(browser, member.username))

    def test_a_team_admin_cannot_unlock_another_teams_member(self, admin_user, outsider):
        browser = self.lock(outsider)
        admin = Client()
        admin.force_login(admin_user)
        admin.post(
            "/admin/accounts/membership/",
            {"action": "unlock_sign_in", "_selected_action": [outsider.memberships.get().pk]},
        )
        assert sign_in(browser, outsider.username).status_code == 429

    def test_a_member_cannot_unlock(self, member_client, viewer):
        self.lock(viewer)
        response = member_client.post(
            "/admin/accounts/membership/",
            {"action": "unlock_sign_in", "_selected_action": [viewer.memberships.get().pk]},
        )
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")  # then a 403 page
        assert AccessAttempt.objects.filter(username=viewer.username).exists()

    def test_a_superuser_unlocks_an_address_in_the_access_attempts(self, team):
        users = [MembershipFactory(team=team).user for _ in range(6)]
        attacker = Client(REMOTE_ADDR="203.0.113.7")
        for user in users[:5]:
            sign_in(attacker, user.username, "wrong")
        assert sign_in(attacker, users[5].username).status_code == 429
        superuser = Client()
        superuser.force_login(UserFactory(is_superuser=True, is_staff=True))
        rows = list(AccessAttempt.objects.values_list("pk", flat=True))
        response = superuser.post(
            "/admin/axes/accessattempt/", {"action": "unlock", "_selected_action": rows}, follow=True
        )
        assert f"Unlocked {len(rows)} username and address pair(s).".encode() in response.content
        assert signed_in(sign_in(attacker, users[5].username))

    def test_team_admins_do_not_see_every_failed_sign_in(self, admin_client_team):
        assert admin_client_team.get("/admin/axes/accessattempt/").status_code == 403


def test_sign_ins_and_lockouts_are_counted(client, member):
    before = {
        outcome: counter("llmbench_logins_total", method="password", outcome=outcome)
        for outcome in ("success", "failure", "locked")
    }
    lockouts = counter("llmbench_login_lockouts_total")
    assert signed_in(sign_in(client, member.username))
    client.logout()
    for _ in range(6):
        sign_in(client, member.username, "wrong")
    after = {outcome: counter("llmbench_logins_total", method="password", outcome=outcome) for outcome in before}
    assert {k: after[k] - before[k] for k in before} == {"success": 1, "failure": 4, "locked": 2}
    assert counter("llmbench_login_lockouts_total") - lockouts == 2
    assert 'llmbench_logins_total{method="password",outcome="locked"}' in client.get("/metrics").content.decode()


def test_a_forced_login_is_not_counted_as_a_password_sign_in(client, member):
    before = counter("llmbench_logins_total", method="password", outcome="success")
    client.force_login(member)
    assert counter("llmbench_logins_total", method="password", outcome="success") == before


def test_lockout_can_be_turned_off(client, member, settings):
    settings.AXES_ENABLED = False
    for _ in range(10):
        assert sign_in(client, member.username, "wrong").status_code == 200
    assert signed_in(sign_in(client, member.username))
