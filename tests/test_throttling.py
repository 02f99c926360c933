"""API throttles: bad tokens from one address end in 429, per token / per user / per address rates, costly
views' own lower rates, Retry-After and a body naming the limit, the switch, and the /metrics counter."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from apps.accounts.services import token_create
from apps.experiments.services import experiment_create
from apps.providers.models import ProviderEndpoint
from llmbench import throttling
from tests.conftest import api_client_for
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"
EXPERIMENTS = "/api/v1/experiments"


@pytest.fixture
def rates(settings, clock):
    """Small rates, so a test reaches them in a few calls (read at call time: settings.THROTTLE_RATES), on a clock
    that stands still: a test's calls must not straddle the edge of a minute's window (on a busy machine the 300
    calls of the first test took long enough to, and their count started again at the new minute)."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES}
    settings.THROTTLE_ENABLED = True
    settings.TRUSTED_PROXY_COUNT = 0
    return settings.THROTTLE_RATES


@pytest.fixture
def clock(monkeypatch):
    """The throttles' clock, moved by hand: 45 s into a minute's window."""
    now = {"t": 1_800_000_000.0 + 45}  # a multiple of 60 plus 45
    monkeypatch.setattr(throttling.time, "time", lambda: now["t"])
    return now


def throttled(name: str = "llmbench_api_throttled_total", **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def assert_refused(response, limit: str, rate: str) -> dict:
    """A 429 with Retry-After, whose JSON body names the limit, its rate and the wait."""
    assert response.status_code == 429, response.content[:300]
    body = response.json()
    assert body["limit"] == limit and body["rate"] == rate
    assert int(response["Retry-After"]) == body["retry_after_s"] >= 1
    assert f"Try again in {body['retry_after_s']} second" in body["detail"]
    assert body["request_id"]
    return body


def bad_token_client(address="203.0.113.5") -> APIClient:
    api = APIClient(REMOTE_ADDR=address)
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")
    return api


def test_three_hundred_bad_token_calls_end_in_429(rates, viewer_api):
    """The issue's repro with the default rate (30 a minute per address): 401 at first, then 429 with Retry-After."""
    before = throttled(scope="auth_failure")
    api = bad_token_client()
    statuses = []
    for _ in range(300):
        response = api.get(ME)
        statuses.append(response.status_code)
    assert statuses[:30] == [401] * 30
    assert set(statuses[30:]) == {429}
    body = assert_refused(response, "auth_failure", "30/minute")
    assert "failed sign-ins and bad API tokens from your address" in body["detail"]
    assert throttled(scope="auth_failure") - before == 270
    # A good token from the same address is not refused: only failures count.
    assert viewer_api.get(ME, REMOTE_ADDR="203.0.113.5").status_code == 200


def test_bad_tokens_from_another_address_are_counted_apart(rates):
    rates["auth_failure"] = "2/minute"
    for _ in range(2):
        assert bad_token_client().get(ME).status_code == 401
    assert bad_token_client().get(ME).status_code == 429
    assert bad_token_client("198.51.100.1").get(ME).status_code == 401


def test_behind_a_proxy_the_forwarded_address_counts(rates, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    rates["auth_failure"] = "2/minute"
    via_proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for _ in range(2):
        bad_token_client().get(ME, HTTP_X_FORWARDED_FOR="192.0.2.1", **via_proxy)
    # The same client, claiming another address on the left, is still itself.
    assert bad_token_client().get(ME, HTTP_X_FORWARDED_FOR="1.2.3.4, 192.0.2.1", **via_proxy).status_code == 429
    # Another client behind the same proxy is not.
    assert bad_token_client().get(ME, HTTP_X_FORWARDED_FOR="192.0.2.2", **via_proxy).status_code == 401


def test_wrong_passwords_on_the_api_login_count_too(rates, member):
    rates["auth_failure"] = "3/minute"
    api = APIClient()
    body = {"username": member.username, "password": "wrong", "name": "script"}
    assert [api.post("/api/v1/auth/login", body, format="json").status_code for _ in range(3)] == [401] * 3
    assert_refused(api.post("/api/v1/auth/login", body, format="json"), "auth_failure", "3/minute")


def test_each_token_has_its_own_rate(rates, viewer, team):
    rates["token"] = "3/minute"
    first, second = api_client_for(viewer, team), api_client_for(viewer, team)
    assert [first.get(ME).status_code for _ in range(3)] == [200] * 3
    body = assert_refused(first.get(ME), "token", "3/minute")
    assert "API calls with this token" in body["detail"]
    assert second.get(ME).status_code == 200


def test_a_browser_session_has_the_user_rate(rates, viewer, member):
    rates["user"] = "2/minute"
    browser = Client()
    browser.force_login(viewer)
    assert [browser.get(ME).status_code for _ in range(2)] == [200, 200]
    assert_refused(browser.get(ME), "user", "2/minute")
    other = Client()
    other.force_login(member)
    assert other.get(ME).status_code == 200


def test_anonymous_calls_have_the_address_rate(rates):
    """Without credentials the API answers 401, and past the "anon" rate 429, per address."""
    rates["anon"] = "2/minute"
    anonymous = APIClient(REMOTE_ADDR="203.0.113.9")
    assert [anonymous.get(EXPERIMENTS).status_code for _ in range(2)] == [401, 401]
    assert_refused(anonymous.get(EXPERIMENTS), "anon", "2/minute")
    assert APIClient(REMOTE_ADDR="203.0.113.10").get(EXPERIMENTS).status_code == 401


def test_the_open_login_endpoint_has_the_anonymous_rate(rates, member):
    rates["anon"] = "2/minute"
    api = APIClient()
    body = {"username": member.username, "password": "pass-word-123", "name": "script"}
    assert [api.post("/api/v1/auth/login", body, format="json").status_code for _ in range(2)] == [200, 200]
    assert_refused(api.post("/api/v1/auth/login", body, format="json"), "anon", "2/minute")


def test_the_window_ends_when_retry_after_says(rates, viewer_api, clock):
    rates["token"] = "1/minute"
    assert viewer_api.get(ME).status_code == 200
    response = viewer_api.get(ME)
    assert assert_refused(response, "token", "1/minute")["retry_after_s"] == 15
    clock["t"] += 15
    assert viewer_api.get(ME).status_code == 200


class TestCostlyViews:
    @pytest.fixture
    def experiment(self, team):
        endpoint = ProviderEndpoint.objects.create(team=team, name="sim", kind="sim", model_names=["sim-small"])
        return experiment_create(team=team, user=None, name="exp", targets=[(endpoint, "sim-small")], prompt="Hi")

    def test_exports_have_their_own_lower_rate(self, rates, viewer_api, experiment):
        rates["exports"] = "2/minute"
        url = f"/api/v1/experiments/{experiment.pk}/export?format=csv"
        assert [viewer_api.get(url).status_code for _ in range(2)] == [200, 200]
        assert_refused(viewer_api.get("/api/v1/testcases/export"), "exports", "2/minute")  # shared by every export
        assert viewer_api.get(f"/api/v1/experiments/{experiment.pk}").status_code == 200  # the rest goes on

    def test_the_export_rate_is_per_token(self, rates, viewer_api, member_api):
        rates["exports"] = "1/minute"
        assert viewer_api.get("/api/v1/testcases/export").status_code == 200
        assert viewer_api.get("/api/v1/testcases/export").status_code == 429
        assert member_api.get("/api/v1/testcases/export").status_code == 200

    def test_analytics_have_their_own_rate(self, rates, viewer_api):
        rates["analytics"] = "1/minute"
        assert viewer_api.get("/api/v1/analytics/quality/trends").status_code == 200
        body = assert_refused(viewer_api.get("/api/v1/analytics/leaderboard"), "analytics", "1/minute")
        assert "analytics requests" in body["detail"]

    def test_starting_runs_has_its_own_rate(self, rates, member_api, experiment):
        """Counted before the body is read: a bad body costs a call too."""
        rates["run_start"] = "2/minute"
        assert member_api.post(EXPERIMENTS, {}, format="json").status_code == 400
        assert member_api.post(f"/api/v1/experiments/{experiment.pk}/cancel").status_code == 200  # not a start
        assert member_api.post("/api/v1/batches/", {}, format="json").status_code == 400
        body = assert_refused(member_api.post(EXPERIMENTS, {}, format="json"), "run_start", "2/minute")
        assert "runs started" in body["detail"]

    def test_describing_a_costly_view_costs_nothing(self, rates, viewer_api):
        rates["exports"] = "1/minute"
        for _ in range(3):
            assert viewer_api.options("/api/v1/testcases/export").status_code == 200
        assert viewer_api.get("/api/v1/testcases/export").status_code == 200


def test_downloads_from_pages_have_the_exports_rate_shared_with_the_api(rates, viewer_client, member, team):
    """A page download counts against its person's exports rate, with that person's API exports: past it a 429 page
    in words with Retry-After. Sign-in comes first (not counted); another person is counted apart."""
    from tests.hardware.helpers import stored_run

    rates["exports"] = "3/minute"
    run = stored_run(team, name="r")
    page, api = f"/performance/runs/{run.pk}/export.csv", f"/api/v1/performance/runs/{run.pk}/export"
    before = throttled(scope="exports")
    assert viewer_client.get(page).status_code == 200 and viewer_client.get(page).status_code == 200
    assert viewer_client.get(api, {"format": "csv"}).status_code == 200  # the third of the person's three
    refused = viewer_client.get(page)
    assert refused.status_code == 429 and int(refused["Retry-After"]) == 15  # the clock stands 45 s into its minute
    assert (
        "Too many exports and downloads: the limit is 3 per minute. Try again in 15 seconds."
        in refused.content.decode()
    )
    assert throttled(scope="exports") - before == 1
    assert_refused(viewer_client.get(api, {"format": "csv"}), "exports", "3/minute")
    assert Client().get(page).status_code == 302  # anonymous: to the sign-in page, nothing counted
    other = Client()
    other.force_login(member)
    assert other.get(page).status_code == 200


def test_every_download_page_names_its_costly_scope():
    """A page that answers a file (an export.<format> or .csv route) takes the exports rate (page_throttle)."""
    missing = []

    def walk(resolver, prefix=""):
        for entry in resolver.url_patterns:
            if isinstance(entry, URLResolver):
                yield from walk(entry, prefix + str(entry.pattern))
            else:
                yield prefix + str(entry.pattern), entry.callback

    for route, callback in walk(get_resolver()):
        if route.startswith(("api/", "admin/")) or not ("export" in route or route.endswith(".csv")):
            continue
        if getattr(callback, "throttle_cost_scope", None) != "exports":
            missing.append(route)
    assert (
        missing == [] and len([r for r, _ in walk(get_resolver()) if "export" in r and not r.startswith("api/")]) >= 9
    )


def test_throttles_can_be_turned_off(rates, settings, viewer_api):
    settings.THROTTLE_ENABLED = False
    rates.update(token="1/minute", auth_failure="1/minute", exports="1/minute")
    assert all(viewer_api.get("/api/v1/testcases/export").status_code == 200 for _ in range(3))
    assert all(bad_token_client().get(ME).status_code == 401 for _ in range(3))


def test_refusals_are_counted_in_metrics(rates, viewer_api, client):
    rates["token"] = "1/minute"
    viewer_api.get(ME)
    before = throttled(scope="token")
    assert viewer_api.get(ME).status_code == 429
    assert throttled(scope="token") - before == 1
    assert 'llmbench_api_throttled_total{scope="token"}' in client.get("/metrics").content.decode()


def test_tokens_of_many_users_share_nothing(rates, team):
    rates["token"] = "1/minute"
    clients = [api_client_for(MembershipFactory(team=team).user, team) for _ in range(3)]
    assert [api.get(ME).status_code for api in clients] == [200, 200, 200]


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [("30/minute", (30, "minute")), ("5/s", (5, "second")), ("100/hours", (100, "hour")), (" 7 / Day ", (7, "day"))],
)
def test_rates_are_read_in_their_usual_spellings(rate, parsed):
    assert throttling.parse_rate("token", rate) == parsed


@pytest.mark.parametrize("rate", ["30", "30/fortnight", "many/minute", "-1/minute"])
def test_a_bad_rate_names_its_setting(rate):
    with pytest.raises(ImproperlyConfigured, match="THROTTLE_RATE_EXPORTS"):
        throttling.parse_rate("exports", rate)


def _api_routes(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _api_routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and (prefix + str(entry.pattern)).startswith("api/v1/"):
            yield prefix + str(entry.pattern), entry.callback


def test_every_export_and_run_start_names_its_costly_scope():
    """A new export, start or analytics route gets the lower rate too (or this test names it)."""
    missing = []
    for route, callback in _api_routes():
        cls = getattr(callback, "cls", None)
        if cls is None:
            continue
        named = getattr(cls, "throttle_cost_scope", None)
        actions = getattr(callback, "actions", None) or {"": ""}
        for action in set(actions.values()):
            scope = named if isinstance(named, str) else (named or {}).get(action)
            words = f"{route} {action}"
            wanted = (
                "exports" if "export" in words or "answer-key" in words
                else "run_start" if action in ("start", "generate", "resume") or route.endswith("/run")
                else "analytics" if route.startswith("api/v1/analytics/")
                else None
            )  # fmt: skip
            if wanted and scope != wanted:
                missing.append(f"{route} {action}: {scope!r}, expected {wanted!r}")
    assert missing == []


def test_a_token_in_a_query_cannot_pose_as_another(rates, viewer, team):
    """The rate follows the token that authenticated, whatever else the request carries."""
    rates["token"] = "1/minute"
    issued = token_create(user=viewer, team=team, name="one")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {issued.key}")
    assert api.get(ME).status_code == 200
    assert api.get(ME, HTTP_X_FORWARDED_FOR="192.0.2.50").status_code == 429
