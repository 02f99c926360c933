"""The notifications API: channels (admins), deliveries (admins, read), preferences (everyone, their own)."""

import pytest

from apps.notifications import events
from apps.notifications.models import Channel, Delivery, Preference
from apps.notifications.services import channel_create, channel_test
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

CHANNELS = "/api/v1/notification-channels"
DELIVERIES = "/api/v1/notification-deliveries"
PREFERENCES = "/api/v1/notification-preferences"


def hook(team, user, url, name="Ops hook", **kwargs) -> Channel:
    fields = {"kind": "webhook", "url": url, "fmt": "generic", "events": [events.RUN_FAILED]} | kwargs
    return channel_create(team=team, user=user, name=name, **fields)[0]


# --- Channels ------------------------------------------------------------------------------------------------------


def test_anonymous_callers_are_refused(anon_api):
    """No token: 401 or 403, never data."""
    for url in (CHANNELS, DELIVERIES, PREFERENCES):
        assert anon_api.get(url).status_code in (401, 403)


@pytest.mark.parametrize("who", ["viewer_api", "member_api"])
def test_only_admins_see_and_change_channels(request, who, admin_user, receiver, team):
    """Viewers and members get 403 on channels and deliveries."""
    api = request.getfixturevalue(who)
    channel = hook(team, admin_user, receiver.url)
    assert api.get(CHANNELS).status_code == 403
    assert api.get(f"{CHANNELS}/{channel.pk}").status_code == 403
    assert (
        api.post(CHANNELS, {"name": "x", "kind": "email", "email": "a@example.com"}, format="json").status_code == 403
    )
    assert api.post(f"{CHANNELS}/{channel.pk}/test").status_code == 403
    assert api.delete(f"{CHANNELS}/{channel.pk}").status_code == 403
    assert api.get(DELIVERIES).status_code == 403
    assert Channel.objects.count() == 1 and not receiver.received


def test_creating_a_webhook_answers_its_secret_once(admin_api, receiver, team):
    """201 with `secret`; reading the channel later shows only that it has one."""
    body = {"name": "Slack", "kind": "webhook", "url": receiver.url, "format": "slack",
            "events": [events.REGRESSION, events.BUDGET_100]}  # fmt: skip
    response = admin_api.post(CHANNELS, body, format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    channel = Channel.objects.get(team=team)
    assert created["secret"] == channel.secret() and created["secret"].startswith("whsec_")
    assert created["has_secret"] is True and created["format"] == "slack"
    later = admin_api.get(f"{CHANNELS}/{channel.pk}").json()
    assert "secret" not in later and later["has_secret"] is True
    assert admin_api.get(f"{CHANNELS}/").json()["results"][0]["name"] == "Slack"


def test_creating_an_email_channel_has_no_secret(admin_api, team):
    """An e-mail channel answers 201 without a secret."""
    response = admin_api.post(CHANNELS, {"name": "List", "kind": "email", "email": "ops@example.com",
                                         "events": [events.RUN_FAILED]}, format="json")  # fmt: skip
    assert response.status_code == 201 and "secret" not in response.json()
    assert response.json()["has_secret"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "webhook", "url": "http://169.254.169.254/"}, "url"),
        ({"kind": "webhook", "url": "gopher://example.com/"}, "url"),
        ({"kind": "webhook", "url": "http://user:pw@example.com/"}, "url"),
        ({"kind": "webhook"}, "url"),
        ({"kind": "webhook", "url": "http://127.0.0.1:9/", "format": "xml"}, "format"),
        ({"kind": "email"}, "email"),
        ({"kind": "email", "email": "not-an-address"}, "email"),
        ({"kind": "fax", "email": "a@example.com"}, "kind"),
        ({"email": "a@example.com"}, "kind"),
        ({"kind": "email", "email": "a@example.com", "events": ["run_exploded"]}, "events"),
        ({"kind": "email", "email": "a@example.com", "events": "run_failed"}, "events"),
        ({"kind": "email", "email": "a@example.com", "name": ""}, "name"),
    ],
)
def test_bad_channels_answer_400_naming_the_field(admin_api, body, field):
    """Each refusal is a 400 whose body names the field; nothing is saved."""
    response = admin_api.post(CHANNELS, {"name": "x"} | body, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not Channel.objects.exists()


def test_a_duplicate_name_is_refused(admin_api, admin_user, receiver, team):
    """400 on name."""
    hook(team, admin_user, receiver.url, name="Dup")
    response = admin_api.post(CHANNELS, {"name": "Dup", "kind": "email", "email": "a@example.com"}, format="json")
    assert response.status_code == 400 and "name" in response.json()


def test_updating_a_channel_but_never_its_kind(admin_api, admin_user, receiver, team):
    """PATCH changes events and format; a different kind is a 400 on kind."""
    channel = hook(team, admin_user, receiver.url)
    response = admin_api.patch(f"{CHANNELS}/{channel.pk}", {"events": [events.GATE_FINISHED], "format": "teams"},
                               format="json")  # fmt: skip
    assert response.status_code == 200, response.json()
    channel.refresh_from_db()
    assert channel.events == [events.GATE_FINISHED] and channel.format == "teams"
    response = admin_api.patch(f"{CHANNELS}/{channel.pk}", {"kind": "email"}, format="json")
    assert response.status_code == 400 and "kind" in response.json()
    response = admin_api.patch(f"{CHANNELS}/{channel.pk}", {"url": "http://169.254.169.254/"}, format="json")
    assert response.status_code == 400 and "url" in response.json()


def test_another_teams_channel_is_404(admin_api, outsider, other_team, receiver):
    """Read, change, test, rotate, delete: all 404 for another team's channel."""
    channel = hook(other_team, outsider, receiver.url)
    assert admin_api.get(f"{CHANNELS}/{channel.pk}").status_code == 404
    assert admin_api.patch(f"{CHANNELS}/{channel.pk}", {"active": False}, format="json").status_code == 404
    assert admin_api.post(f"{CHANNELS}/{channel.pk}/test").status_code == 404
    assert admin_api.post(f"{CHANNELS}/{channel.pk}/rotate-secret").status_code == 404
    assert admin_api.delete(f"{CHANNELS}/{channel.pk}").status_code == 404
    assert admin_api.get(CHANNELS).json()["results"] == []
    assert Channel.objects.get(pk=channel.pk).active and not receiver.received


def test_rotating_a_secret_answers_the_new_one(admin_api, admin_user, receiver, team):
    """The answer holds the new secret; an e-mail channel has none (400)."""
    channel = hook(team, admin_user, receiver.url)
    old = channel.secret()
    response = admin_api.post(f"{CHANNELS}/{channel.pk}/rotate-secret")
    assert response.status_code == 200
    channel.refresh_from_db()
    assert response.json()["secret"] == channel.secret() != old
    mail_channel = channel_create(team=team, user=admin_user, name="m", kind="email", email="a@example.com",
                                  events=[])[0]  # fmt: skip
    response = admin_api.post(f"{CHANNELS}/{mail_channel.pk}/rotate-secret")
    assert response.status_code == 400 and "detail" in response.json()


def test_the_test_action_answers_200_or_502(admin_api, admin_user, receiver, team, closed_port):
    """A reachable webhook: 200 with the answer; a closed port: 502 with the reason."""
    channel = hook(team, admin_user, receiver.url)
    response = admin_api.post(f"{CHANNELS}/{channel.pk}/test")
    assert response.status_code == 200
    assert response.json()["status"] == "sent" and response.json()["last_status_code"] == 200
    down = hook(team, admin_user, f"http://127.0.0.1:{closed_port}/", name="Down")
    response = admin_api.post(f"{CHANNELS}/{down.pk}/test")
    assert response.status_code == 502 and response.json()["last_response"] == "Connection refused."


def test_deleting_a_channel(admin_api, admin_user, receiver, team):
    """204, and its deliveries stay."""
    channel = hook(team, admin_user, receiver.url)
    channel_test(channel=channel)
    assert admin_api.delete(f"{CHANNELS}/{channel.pk}").status_code == 204
    assert not Channel.objects.exists() and Delivery.objects.count() == 1


def test_a_read_only_token_cannot_change_channels(admin_user, team):
    """A read-only admin token reads but does not create."""
    from apps.accounts.services import token_create

    issued = token_create(user=admin_user, team=team, name="ro", scope="read")
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {issued.key}")
    assert api.get(CHANNELS).status_code == 200
    assert (
        api.post(CHANNELS, {"name": "x", "kind": "email", "email": "a@example.com"}, format="json").status_code == 403
    )


# --- Deliveries ----------------------------------------------------------------------------------------------------


def test_deliveries_list_with_tries_and_filters(admin_api, admin_user, receiver, team, other_team, outsider):
    """Each delivery with its tries; status filter; another team's deliveries neither listed nor readable."""
    receiver.planned = [500]
    channel = hook(team, admin_user, receiver.url)
    failed = channel_test(channel=channel)
    channel_test(channel=channel)
    theirs = channel_test(channel=hook(other_team, outsider, receiver.url, name="Theirs"))
    results = admin_api.get(DELIVERIES).json()["results"]
    assert len(results) == 2 and {r["channel_name"] for r in results} == {"Ops hook"}
    response = admin_api.get(DELIVERIES, {"status": "failed"}).json()["results"]
    assert [r["id"] for r in response] == [failed.pk]
    assert response[0]["attempt_log"][0]["status_code"] == 500 and response[0]["event"] == "test"
    assert admin_api.get(f"{DELIVERIES}/{theirs.pk}").status_code == 404
    assert admin_api.get(DELIVERIES, {"status": "bogus"}).status_code == 400
    assert admin_api.get(DELIVERIES, {"channel": theirs.channel_id}).status_code == 400


def test_deliveries_are_read_only(admin_api, admin_user, receiver, team):
    """POST and DELETE are 405."""
    delivery = channel_test(channel=hook(team, admin_user, receiver.url))
    assert admin_api.post(DELIVERIES, {}, format="json").status_code == 405
    assert admin_api.delete(f"{DELIVERIES}/{delivery.pk}").status_code == 405


def test_the_deliveries_list_reads_in_a_fixed_number_of_queries(
    admin_api, admin_user, receiver, team, django_assert_max_num_queries
):
    """Twenty deliveries with tries: the query count does not grow with the rows."""
    channel = hook(team, admin_user, receiver.url)
    for _ in range(20):
        channel_test(channel=channel)
    with django_assert_max_num_queries(12):
        assert len(admin_api.get(DELIVERIES).json()["results"]) == 20


# --- Preferences ---------------------------------------------------------------------------------------------------


def test_a_viewer_reads_and_sets_their_preferences(viewer_api, viewer, team):
    """GET gives the defaults; PUT sets the list (every role); the answer is the new list."""
    body = viewer_api.get(PREFERENCES).json()
    assert body["events"] == [events.RUN_FAILED, events.REGRESSION, events.BUDGET_80, events.BUDGET_100,
                              events.SCHEDULE_PAUSED]  # fmt: skip
    assert set(body["available"]) == set(events.EVENTS)
    response = viewer_api.put(PREFERENCES, {"events": [events.GATE_FINISHED]}, format="json")
    assert response.status_code == 200 and response.json()["events"] == [events.GATE_FINISHED]
    assert Preference.objects.get(team=team, user=viewer).events == [events.GATE_FINISHED]
    assert viewer_api.patch(f"{PREFERENCES}/", {"events": []}, format="json").json()["events"] == []


@pytest.mark.parametrize("body", [{"events": ["run_exploded"]}, {"events": "run_failed"}, {}])
def test_bad_preferences_answer_400_on_events(member_api, body):
    """An unknown event, a string instead of a list, or nothing: 400 naming events."""
    response = member_api.put(PREFERENCES, body, format="json")
    assert response.status_code == 400 and "events" in response.json()


def test_preferences_are_per_user_and_team(member, admin_user, team, other_team):
    """One user's choice does not change another's, nor the same user's in another team."""
    from tests.factories import MembershipFactory

    MembershipFactory(team=other_team, user=member, role="member")
    api_client_for(member, team).put(PREFERENCES, {"events": [events.RUN_FINISHED]}, format="json")
    assert api_client_for(admin_user, team).get(PREFERENCES).json()["events"] != [events.RUN_FINISHED]
    assert api_client_for(member, other_team).get(PREFERENCES).json()["events"] != [events.RUN_FINISHED]
