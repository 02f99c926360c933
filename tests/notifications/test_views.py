"""The notification pages: my choices (every role), channels (admins), the delivery log (admins)."""

import pytest
from django.urls import reverse

from apps.notifications import events
from apps.notifications.models import Channel, Delivery, Preference
from apps.notifications.services import channel_create, channel_test
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

INDEX = reverse("notifications:index")
CHOICES = reverse("notifications:choices")
NEW = reverse("notifications:channel-new")
DELIVERIES = reverse("notifications:deliveries")


def hook(team, user, url, name="Ops hook", **kwargs) -> Channel:
    fields = {"kind": "webhook", "url": url, "fmt": "slack", "events": [events.RUN_FAILED]} | kwargs
    return channel_create(team=team, user=user, name=name, **fields)[0]


def webhook_form(url: str, **overrides) -> dict:
    return {"name": "Slack alerts", "kind": "webhook", "url": url, "format": "slack",
            "events": [events.RUN_FAILED, events.REGRESSION], "active": "on"} | overrides  # fmt: skip


# --- My choices -------------------------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_log_in(client):
    """The page needs a signed-in user."""
    response = client.get(INDEX)
    assert response.status_code == 302 and "login" in response["Location"]


def test_a_viewer_sees_the_default_choices_and_no_channels(viewer_client, admin_user, receiver, team):
    """Failures, regressions, budget and paused schedules are ticked; channels are for admins only."""
    hook(team, admin_user, receiver.url)
    response = viewer_client.get(INDEX)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'value="run_failed" id="id_events_0" checked' in body.replace("\n", "")
    assert "The team's channels" not in body and "Ops hook" not in body
    assert "you have none on your account" in body


def test_a_viewer_saves_their_choices(viewer_client, viewer, team):
    """Every role chooses what it receives; an empty choice means nothing."""
    response = viewer_client.post(CHOICES, {"events": [events.RUN_FINISHED, events.GATE_FINISHED]})
    assert response.status_code == 302
    assert Preference.objects.get(team=team, user=viewer).events == [events.RUN_FINISHED, events.GATE_FINISHED]
    viewer_client.post(CHOICES, {})
    assert Preference.objects.get(team=team, user=viewer).events == []


def test_saving_choices_with_htmx_answers_the_fragment(member_client, member, team):
    """An htmx save swaps only the choices block and says it was saved."""
    response = member_client.post(CHOICES, {"events": [events.REGRESSION]}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="choices"' in body and "Saved." in body and "<html" not in body


def test_an_unknown_event_is_refused_in_words(member_client):
    """A made-up event answers 400 naming the field by its label."""
    response = member_client.post(CHOICES, {"events": ["run_exploded"]})
    assert response.status_code == 400
    assert "E-mail me when" in response.content.decode()


def test_choices_are_saved_by_post_only(member_client):
    """GET on the save address is 405."""
    assert member_client.get(CHOICES).status_code == 405


def test_choices_are_per_team(client, team, other_team):
    """A member of two teams chooses in the active team only."""
    membership = MembershipFactory(team=team, role="viewer")
    MembershipFactory(team=other_team, user=membership.user, role="viewer")
    client.force_login(membership.user)
    client.post(CHOICES, {"events": [events.BUDGET_80]})
    assert Preference.objects.filter(user=membership.user).count() == 1


# --- Channels ------------------------------------------------------------------------------------------------------


def test_an_admin_sees_the_channels(admin_client_team, admin_user, receiver, team):
    """Admins see each channel with where it sends (host only) and its events."""
    hook(team, admin_user, receiver.url)
    body = admin_client_team.get(INDEX).content.decode()
    assert "Ops hook" in body and f"http://127.0.0.1:{receiver.server.server_address[1]}/…" in body
    assert "token=abc" not in body
    assert "A run failed" in body


@pytest.mark.parametrize("who", ["viewer_client", "member_client"])
def test_only_admins_manage_channels(request, who, admin_user, receiver, team):
    """Viewers and members get 403 on every channel page and action."""
    client = request.getfixturevalue(who)
    channel = hook(team, admin_user, receiver.url)
    assert client.get(NEW).status_code == 403
    assert client.post(NEW, webhook_form(receiver.url)).status_code == 403
    assert client.get(reverse("notifications:channel-edit", args=[channel.pk])).status_code == 403
    for name in ("channel-test", "channel-rotate", "channel-delete"):
        assert client.post(reverse(f"notifications:{name}", args=[channel.pk])).status_code == 403
    assert client.get(DELIVERIES).status_code == 403
    assert Channel.objects.count() == 1 and not receiver.received


def test_creating_a_webhook_shows_its_secret_once(admin_client_team, receiver, team):
    """The answer to the form shows the secret; the channel page afterwards does not."""
    response = admin_client_team.post(NEW, webhook_form(receiver.url))
    assert response.status_code == 200
    channel = Channel.objects.get(team=team)
    secret = channel.secret()
    assert secret in response.content.decode() and "shown only once" in response.content.decode()
    assert channel.events == [events.RUN_FAILED, events.REGRESSION] and channel.format == "slack"
    later = admin_client_team.get(reverse("notifications:channel-edit", args=[channel.pk])).content.decode()
    assert secret not in later and channel.secret_encrypted not in later


def test_creating_an_email_channel_goes_back_to_the_list(admin_client_team, team):
    """An e-mail channel has no secret: the answer is the channel list."""
    data = {"name": "Ops list", "kind": "email", "email": "ops@example.com", "events": [events.BUDGET_100]}
    response = admin_client_team.post(NEW, data)
    assert response.status_code == 302 and response["Location"] == INDEX
    channel = Channel.objects.get(team=team)
    assert channel.email == "ops@example.com" and channel.secret_encrypted == "" and channel.url == ""


@pytest.mark.parametrize(
    ("data", "field_label", "words"),
    [
        ({"url": "http://169.254.169.254/latest"}, "Webhook address", "Cloud metadata addresses"),
        ({"url": "ftp://example.com/x"}, "Webhook address", "http:// or https://"),
        ({"url": ""}, "Webhook address", "needs its address"),
        ({"url": "http://[::1/x"}, "Webhook address", "not a usable URL"),
        ({"kind": "email", "email": ""}, "E-mail address", "needs an address"),
        ({"kind": "pigeon"}, "Kind", "Select a valid choice"),
        ({"events": ["run_exploded"]}, "Send these events", "Select a valid choice"),
        ({"name": ""}, "Name", "required"),
    ],
)
def test_bad_channel_settings_answer_400_in_words(admin_client_team, receiver, data, field_label, words):
    """Each refusal names the field by its label and says why; nothing is saved."""
    response = admin_client_team.post(NEW, webhook_form(receiver.url) | data)
    assert response.status_code == 400
    body = response.content.decode()
    assert field_label in body and words in body
    assert not Channel.objects.exists()


def test_a_private_address_is_refused_unless_allowed(settings, admin_client_team):
    """With NOTIFY_WEBHOOK_ALLOW_PRIVATE off, loopback and private networks are refused."""
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://[::1]:9/x"):
        response = admin_client_team.post(NEW, webhook_form(url))
        assert response.status_code == 400 and "not a public address" in response.content.decode()


def test_two_channels_cannot_share_a_name(admin_client_team, admin_user, receiver, team):
    """A second channel of the same name in the team is refused."""
    hook(team, admin_user, receiver.url, name="Slack alerts")
    response = admin_client_team.post(NEW, webhook_form(receiver.url))
    assert response.status_code == 400 and "already exists" in response.content.decode()


def test_an_admin_edits_a_channel_but_not_its_kind(admin_client_team, admin_user, receiver, team):
    """Saving changes the events and format; a posted kind is ignored (the field is fixed)."""
    channel = hook(team, admin_user, receiver.url)
    url = reverse("notifications:channel-edit", args=[channel.pk])
    response = admin_client_team.post(url, webhook_form(receiver.url, name="Ops hook", kind="email", format="teams"))
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.kind == "webhook" and channel.format == "teams"
    assert channel.events == [events.RUN_FAILED, events.REGRESSION]


def test_another_teams_channel_is_404(admin_client_team, outsider, other_team, receiver):
    """Every channel page and action on another team's channel is a 404."""
    channel = hook(other_team, outsider, receiver.url)
    assert admin_client_team.get(reverse("notifications:channel-edit", args=[channel.pk])).status_code == 404
    for name in ("channel-test", "channel-rotate", "channel-delete"):
        assert admin_client_team.post(reverse(f"notifications:{name}", args=[channel.pk])).status_code == 404
    assert Channel.objects.filter(pk=channel.pk).exists() and not receiver.received


def test_a_new_secret_replaces_the_old_one(admin_client_team, admin_user, receiver, team):
    """New signing secret: shown once on the answer, the stored one changes."""
    channel = hook(team, admin_user, receiver.url)
    old = channel.secret()
    response = admin_client_team.post(reverse("notifications:channel-rotate", args=[channel.pk]))
    assert response.status_code == 200
    channel.refresh_from_db()
    assert channel.secret() != old and channel.secret() in response.content.decode()


def test_an_email_channel_has_no_secret_to_rotate(admin_client_team, admin_user, team):
    """Rotating an e-mail channel's secret is a 404."""
    channel = channel_create(team=team, user=admin_user, name="list", kind="email", email="a@example.com", events=[])[0]
    assert admin_client_team.post(reverse("notifications:channel-rotate", args=[channel.pk])).status_code == 404


def test_send_a_test_says_what_the_channel_answered(admin_client_team, admin_user, receiver, team, closed_port):
    """A reachable webhook: sent; a closed port: failed, with the reason, on the next page."""
    channel = hook(team, admin_user, receiver.url)
    response = admin_client_team.post(reverse("notifications:channel-test", args=[channel.pk]), follow=True)
    assert "test message sent (answered 200)" in response.content.decode()
    assert receiver.received[0].json()["blocks"][0]["text"]["text"].startswith("Test message")
    down = hook(team, admin_user, f"http://127.0.0.1:{closed_port}/x", name="Down")
    response = admin_client_team.post(reverse("notifications:channel-test", args=[down.pk]), follow=True)
    assert "the test message failed: Connection refused." in response.content.decode()


def test_test_and_delete_need_post(admin_client_team, admin_user, receiver, team):
    """GET on an action is 405."""
    channel = hook(team, admin_user, receiver.url)
    for name in ("channel-test", "channel-rotate", "channel-delete"):
        assert admin_client_team.get(reverse(f"notifications:{name}", args=[channel.pk])).status_code == 405


def test_deleting_a_channel_keeps_its_deliveries(admin_client_team, admin_user, receiver, team):
    """The log keeps the deleted channel's deliveries under its name."""
    channel = hook(team, admin_user, receiver.url)
    channel_test(channel=channel)
    response = admin_client_team.post(reverse("notifications:channel-delete", args=[channel.pk]))
    assert response.status_code == 302 and not Channel.objects.exists()
    assert Delivery.objects.get().channel_name == "Ops hook"


# --- Delivery log --------------------------------------------------------------------------------------------------


def test_the_delivery_log_shows_each_try(admin_client_team, admin_user, receiver, team, other_team, outsider):
    """Status, the answer and each try are listed; another team's deliveries are not."""
    receiver.planned = [500]
    channel = hook(team, admin_user, receiver.url)
    channel_test(channel=channel)
    channel_test(channel=hook(other_team, outsider, receiver.url, name="Theirs"))
    body = admin_client_team.get(DELIVERIES).content.decode()
    assert "Ops hook" in body and "Theirs" not in body
    assert "HTTP 500" in body and "Failed" in body and "Try 1" in body


def test_the_delivery_log_filters_with_htmx(admin_client_team, admin_user, receiver, team):
    """Filtering by status with htmx answers only the results."""
    receiver.planned = [500]
    channel = hook(team, admin_user, receiver.url)
    channel_test(channel=channel)
    channel_test(channel=channel)
    response = admin_client_team.get(DELIVERIES, {"status": "sent"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert body.count("<tr>") == 2  # the header and one sent delivery
    assert admin_client_team.get(DELIVERIES, {"status": "failed"}).content.decode().count("HTTP 500") >= 1


def test_a_bad_filter_answers_400_in_words(admin_client_team):
    """An unknown status or a reversed date range is a 400 naming the filter."""
    response = admin_client_team.get(DELIVERIES, {"status": "exploded"})
    assert response.status_code == 400 and "Status:" in response.content.decode()
    response = admin_client_team.get(DELIVERIES, {"since": "2026-12-04", "until": "2026-12-01"})
    assert response.status_code == 400 and "before its start" in response.content.decode()


def test_the_delivery_log_reads_in_a_fixed_number_of_queries(
    admin_client_team, admin_user, receiver, team, django_assert_max_num_queries
):
    """Twenty deliveries with their tries: the query count does not grow with the rows."""
    channel = hook(team, admin_user, receiver.url)
    for _ in range(20):
        channel_test(channel=channel)
    with django_assert_max_num_queries(12):
        assert admin_client_team.get(DELIVERIES).status_code == 200
