"""notify() end to end: events stored once, webhooks posted (signed) to a real local server, e-mail through the
outbox and a refusing SMTP port, retries with backoff, giving up after the last try."""

import hashlib
import hmac
from datetime import timedelta

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from apps.notifications import events
from apps.notifications.models import Channel, Delivery, DeliveryAttempt, Event
from apps.notifications.services import (
    channel_create,
    channel_test,
    deliveries_sweep,
    delivery_attempt,
    notify,
    preference_set,
)
from apps.notifications.tasks import delivery_send
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def run_queued(queued: list[int]) -> list:
    """Work off what was queued, as a worker would; the outcomes."""
    outcomes = [delivery_send(delivery_id) for delivery_id in list(queued)]
    queued.clear()
    return outcomes


def make_due(delivery: Delivery) -> None:
    """The backoff has passed (moved back in time instead of waiting)."""
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def send_event(django_capture_on_commit_callbacks, team, **kwargs) -> None:
    fields = {"event": events.RUN_FAILED, "title": "Experiment #7 failed", "text": "The endpoint answered 500.",
              "url": "/experiments/7/", "facts": {"Errors": 12, "Error rate": 0.25}}  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        notify(team_id=team.pk, **(fields | kwargs))


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (docs/notifications.md)."""
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def test_a_webhook_receives_a_signed_json_post(webhook, receiver, queued, team, django_capture_on_commit_callbacks):
    """The local server gets one POST whose signature verifies with the secret shown at creation."""
    _channel, secret = webhook
    send_event(django_capture_on_commit_callbacks, team)
    assert run_queued(queued) == ["sent"]
    (post,) = receiver.received
    assert post.path == "/hook?token=abc"
    assert post.headers["X-Llmbench-Event"] == "run_failed"
    delivery = Delivery.objects.get()
    assert post.headers["X-Llmbench-Delivery"] == str(delivery.key)
    assert verify(secret, post.headers["X-Llmbench-Timestamp"], post.body, post.headers["X-Llmbench-Signature"])
    assert not verify(
        "whsec_wrong", post.headers["X-Llmbench-Timestamp"], post.body, post.headers["X-Llmbench-Signature"]
    )
    body = post.json()
    assert body["event"] == "run_failed" and body["title"] == "Experiment #7 failed"
    assert body["url"] == "https://llmbench.example.com/experiments/7/"
    assert body["facts"] == {"Errors": 12, "Error rate": 0.25}
    assert body["team"]["slug"] == team.slug and body["delivery"] == str(delivery.key)
    assert delivery.status == Delivery.Status.SENT and delivery.attempts == 1 and delivery.last_status_code == 200
    assert '"ok": true' in delivery.last_response
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert attempt.outcome == "sent" and attempt.status_code == 200 and attempt.duration_ms >= 0


def test_a_slack_channel_gets_text_and_blocks(team, admin_user, receiver, queued, django_capture_on_commit_callbacks):
    """A Slack-format channel gets `text` (with the link) and header/section/fields/button blocks."""
    channel_create(team=team, user=admin_user, name="Slack", kind="webhook", url=receiver.url, fmt="slack",
                   events=[events.REGRESSION])  # fmt: skip
    send_event(django_capture_on_commit_callbacks, team, event=events.REGRESSION, title="p95 TTFT <worse>")
    run_queued(queued)
    body = receiver.received[0].json()
    assert body["text"].startswith("p95 TTFT <worse>: The endpoint answered 500.")
    assert "<https://llmbench.example.com/experiments/7/|Open>" in body["text"]
    kinds = [block["type"] for block in body["blocks"]]
    assert kinds == ["header", "section", "section", "context", "actions"]
    assert body["blocks"][2]["fields"][0]["text"] == "*Errors*\n12"
    assert body["blocks"][4]["elements"][0]["url"] == "https://llmbench.example.com/experiments/7/"


def test_a_teams_channel_gets_an_adaptive_card(team, admin_user, receiver, queued, django_capture_on_commit_callbacks):
    """A Teams-format channel gets a message with one Adaptive Card holding the facts and the link."""
    channel_create(team=team, user=admin_user, name="Teams", kind="webhook", url=receiver.url, fmt="teams",
                   events=[events.RUN_FAILED])  # fmt: skip
    send_event(django_capture_on_commit_callbacks, team)
    run_queued(queued)
    body = receiver.received[0].json()
    assert body["type"] == "message"
    card = body["attachments"][0]["content"]
    assert body["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["type"] == "AdaptiveCard" and card["body"][0]["text"] == "Experiment #7 failed"
    assert {"title": "Errors", "value": "12"} in card["body"][-1]["facts"]
    assert card["actions"][0]["url"] == "https://llmbench.example.com/experiments/7/"


def test_a_500_is_retried_after_the_backoff_and_then_sent(
    webhook, receiver, queued, team, django_capture_on_commit_callbacks
):
    """500 → waiting 30–37.5 s; the sweep queues it once due; the second try is sent; both tries logged."""
    receiver.planned = [500]
    send_event(django_capture_on_commit_callbacks, team)
    before = timezone.now()
    assert run_queued(queued) == ["retry"]
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.PENDING and delivery.attempts == 1 and delivery.last_status_code == 500
    wait = (delivery.next_attempt_at - before).total_seconds()
    assert 29 <= wait <= 38
    assert deliveries_sweep() == 0 and queued == []  # not due yet
    make_due(delivery)
    assert deliveries_sweep() == 1 and queued == [delivery.pk]
    assert deliveries_sweep() == 0  # queued already
    assert run_queued(queued) == ["sent"]
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT and delivery.attempts == 2
    assert [a.outcome for a in delivery.attempt_log.all()] == ["retry", "sent"]
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 200]
    assert len(receiver.received) == 2
    # the same delivery id on every try, so a receiver can drop repeats
    assert receiver.received[0].headers["X-Llmbench-Delivery"] == receiver.received[1].headers["X-Llmbench-Delivery"]


def test_the_backoff_doubles_between_tries(webhook, receiver, queued, team, django_capture_on_commit_callbacks):
    """After the second failed try the wait is 60–75 s."""
    receiver.planned = [503, 503]
    send_event(django_capture_on_commit_callbacks, team)
    run_queued(queued)
    delivery = Delivery.objects.get()
    make_due(delivery)
    before = timezone.now()
    assert delivery_attempt(delivery_id=delivery.pk) == "retry"
    delivery.refresh_from_db()
    assert 59 <= (delivery.next_attempt_at - before).total_seconds() <= 76


def test_a_closed_port_is_retried_then_given_up(
    team, admin_user, closed_port, queued, django_capture_on_commit_callbacks
):
    """Connection refused on every try: retried, and failed after NOTIFY_MAX_ATTEMPTS (3) tries."""
    channel_create(team=team, user=admin_user, name="Down", kind="webhook",
                   url=f"http://127.0.0.1:{closed_port}/hook", events=[events.RUN_FAILED])  # fmt: skip
    send_event(django_capture_on_commit_callbacks, team)
    assert run_queued(queued) == ["retry"]
    delivery = Delivery.objects.get()
    for expected in ("retry", "failed"):
        make_due(delivery)
        deliveries_sweep()
        assert run_queued(queued) == [expected]
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 3 and delivery.finished_at
    assert delivery.last_response == "Connection refused." and delivery.next_attempt_at is None
    assert [a.outcome for a in delivery.attempt_log.all()] == ["retry", "retry", "failed"]
    make_due(delivery)
    assert deliveries_sweep() == 0  # finished: never tried again


def test_giving_up_after_max_attempts_of_500s(webhook, receiver, queued, team, django_capture_on_commit_callbacks):
    """Three 500s: the delivery fails after the third and the receiver saw exactly three posts."""
    receiver.planned = [500, 500, 500, 500]
    send_event(django_capture_on_commit_callbacks, team)
    run_queued(queued)
    delivery = Delivery.objects.get()
    for _ in range(2):
        make_due(delivery)
        deliveries_sweep()
        run_queued(queued)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 3
    assert len(receiver.received) == 3


@pytest.mark.parametrize(("status", "outcome"), [(404, "failed"), (400, "failed"), (408, "retry"), (429, "retry")])
def test_client_errors_fail_at_once_except_408_and_429(
    webhook, receiver, queued, team, status, outcome, django_capture_on_commit_callbacks
):
    """4xx = failed without retry, except 408 (timeout) and 429 (rate limit)."""
    receiver.planned = [status]
    send_event(django_capture_on_commit_callbacks, team)
    assert run_queued(queued) == [outcome]
    assert Delivery.objects.get().last_status_code == status


def test_the_same_dedupe_key_notifies_once(webhook, receiver, queued, team, django_capture_on_commit_callbacks):
    """A second notify() with the same key stores nothing and sends nothing; another team's key is its own."""
    send_event(django_capture_on_commit_callbacks, team, dedupe_key="run-experiment-7-failed")
    send_event(django_capture_on_commit_callbacks, team, dedupe_key="run-experiment-7-failed")
    assert Event.objects.count() == 1 and len(queued) == 1
    send_event(django_capture_on_commit_callbacks, team)  # no key: not deduplicated
    assert Event.objects.count() == 2


def test_a_dedupe_key_is_per_team(team, other_team, django_capture_on_commit_callbacks):
    """Two teams may use the same key."""
    send_event(django_capture_on_commit_callbacks, team, dedupe_key="budget-80-2026-12")
    send_event(django_capture_on_commit_callbacks, other_team, dedupe_key="budget-80-2026-12")
    assert Event.objects.count() == 2


def test_a_rolled_back_transaction_sends_nothing(webhook, queued, team, django_capture_on_commit_callbacks):
    """notify() in a transaction that rolls back leaves no event and queues nothing."""
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        notify(team_id=team.pk, event=events.RUN_FAILED, title="x", text="y")
        raise RuntimeError
    assert Event.objects.count() == 0 and queued == []


def test_only_active_channels_carrying_the_event_get_it(
    webhook, team, admin_user, receiver, queued, django_capture_on_commit_callbacks
):
    """A switched-off channel and one not carrying the event get no delivery."""
    channel_create(team=team, user=admin_user, name="Off", kind="webhook", url=receiver.url,
                   events=[events.RUN_FAILED], active=False)  # fmt: skip
    channel_create(team=team, user=admin_user, name="Budget only", kind="webhook", url=receiver.url,
                   events=[events.BUDGET_100])  # fmt: skip
    send_event(django_capture_on_commit_callbacks, team)
    assert list(Delivery.objects.values_list("channel_name", flat=True)) == ["Ops hook"]


def test_unknown_events_are_refused(team):
    """notify() with an event outside EVENTS is a programming error."""
    with pytest.raises(ValueError, match="Unknown event"):
        notify(team_id=team.pk, event="run_exploded", title="x", text="y")


def test_a_claimed_delivery_is_not_sent_twice(webhook, receiver, queued, team, django_capture_on_commit_callbacks):
    """A second worker handed the same delivery finds it claimed (or done) and does nothing."""
    send_event(django_capture_on_commit_callbacks, team)
    delivery_id = queued[0]
    assert delivery_send(delivery_id) == "sent"
    assert delivery_send(delivery_id) is None
    Delivery.objects.filter(pk=delivery_id).update(
        status=Delivery.Status.PENDING, claimed_until=timezone.now() + timedelta(minutes=1)
    )
    assert delivery_send(delivery_id) is None
    assert len(receiver.received) == 1


def test_members_get_their_default_events_by_email(team, member, viewer, queued, django_capture_on_commit_callbacks):
    """Without a choice a member receives failures by e-mail (viewers too), not finished runs; no address, no mail."""
    member.email, viewer.email = "member@example.com", ""
    member.save(), viewer.save()
    send_event(django_capture_on_commit_callbacks, team)
    assert run_queued(queued) == ["sent"]
    (message,) = mail.outbox
    assert message.to == ["member@example.com"]
    assert message.subject == "[llmbench · Alpha] Experiment #7 failed"
    assert "Errors: 12" in message.body and "https://llmbench.example.com/experiments/7/" in message.body
    mail.outbox.clear()
    send_event(django_capture_on_commit_callbacks, team, event=events.RUN_FINISHED, title="done")
    assert queued == [] and mail.outbox == []


def test_a_members_choice_replaces_the_default(team, member, queued, django_capture_on_commit_callbacks):
    """A member who chose only finished runs gets those and no failures."""
    member.email = "member@example.com"
    member.save()
    preference_set(team=team, user=member, events=[events.RUN_FINISHED])
    send_event(django_capture_on_commit_callbacks, team)
    assert queued == []
    send_event(django_capture_on_commit_callbacks, team, event=events.RUN_FINISHED, title="done")
    run_queued(queued)
    assert [m.subject for m in mail.outbox] == ["[llmbench · Alpha] done"]


def test_an_email_channel_and_a_member_with_the_same_address_get_one_mail(
    team, admin_user, member, queued, django_capture_on_commit_callbacks
):
    """An e-mail channel's address is not sent twice when a member has it too; other teams' members get nothing."""
    member.email = "ops@example.com"
    member.save()
    outsider = UserFactory(email="outsider@example.com")
    MembershipFactory(user=outsider, role="admin")
    channel_create(team=team, user=admin_user, name="Ops list", kind="email", email="ops@example.com",
                   events=[events.RUN_FAILED])  # fmt: skip
    send_event(django_capture_on_commit_callbacks, team)
    run_queued(queued)
    assert [m.to for m in mail.outbox] == [["ops@example.com"]]
    assert Delivery.objects.get().channel_name == "Ops list"


def test_smtp_refusing_is_retried_then_failed(
    settings, team, member, closed_port, queued, django_capture_on_commit_callbacks
):
    """The SMTP backend against a closed port: each try is refused, retried, and failed after the last try."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", closed_port, 3
    member.email = "member@example.com"
    member.save()
    send_event(django_capture_on_commit_callbacks, team)
    assert run_queued(queued) == ["retry"]
    delivery = Delivery.objects.get()
    assert delivery.last_response == "The mail server refused the connection."
    for expected in ("retry", "failed"):
        make_due(delivery)
        deliveries_sweep()
        assert run_queued(queued) == [expected]
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 3


def test_a_test_send_reports_the_answer_at_once(webhook, receiver):
    """Send a test: one try now, its answer on the delivery, no retry even on a 500."""
    channel, _secret = webhook
    receiver.planned = [500]
    delivery = channel_test(channel=channel)
    assert delivery.status == Delivery.Status.FAILED and delivery.last_status_code == 500 and delivery.attempts == 1
    assert receiver.received[0].headers["X-Llmbench-Event"] == "test"
    assert channel_test(channel=channel).status == Delivery.Status.SENT


def test_a_deleted_channel_fails_its_waiting_deliveries(
    webhook, receiver, queued, team, django_capture_on_commit_callbacks
):
    """A delivery whose channel was deleted before its try fails (and keeps the channel's name)."""
    channel, _ = webhook
    send_event(django_capture_on_commit_callbacks, team)
    channel.delete()
    assert run_queued(queued) == ["failed"]
    delivery = Delivery.objects.get()
    assert delivery.channel_name == "Ops hook" and delivery.last_response == "The channel was deleted."


def test_an_address_refused_at_send_time_fails_without_retry(
    settings, webhook, queued, team, django_capture_on_commit_callbacks
):
    """A loopback webhook after NOTIFY_WEBHOOK_ALLOW_PRIVATE was switched off is refused, not retried."""
    send_event(django_capture_on_commit_callbacks, team)
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    assert run_queued(queued) == ["failed"]
    assert "not a public address" in Delivery.objects.get().last_response


def test_the_sweep_picks_up_a_delivery_lost_with_its_worker(webhook, queued, team, django_capture_on_commit_callbacks):
    """Queued more than 5 minutes ago and never tried: the sweep queues it again."""
    send_event(django_capture_on_commit_callbacks, team)
    queued.clear()  # the worker died with it
    assert deliveries_sweep() == 0
    Delivery.objects.update(queued_at=timezone.now() - timedelta(minutes=6))
    assert deliveries_sweep() == 1


def test_a_webhook_channel_gets_a_secret_and_an_email_channel_none(team, admin_user, receiver):
    """The secret is returned once in the clear and stored encrypted."""
    channel, secret = channel_create(team=team, user=admin_user, name="x", kind="webhook", url=receiver.url,
                                     events=[])  # fmt: skip
    assert secret.startswith("whsec_") and len(secret) > 40
    assert secret not in Channel.objects.get(pk=channel.pk).secret_encrypted
    assert Channel.objects.get(pk=channel.pk).secret() == secret
    mail_channel, no_secret = channel_create(team=team, user=admin_user, name="y", kind="email", email="a@b.example",
                                             events=[])  # fmt: skip
    assert no_secret == "" and mail_channel.secret_encrypted == ""


def test_a_migration_schedules_the_sweep_every_minute():
    """The every-minute django-q2 schedule that picks up due retries exists after migrating."""
    from django_q.models import Schedule

    schedule = Schedule.objects.get(func="apps.notifications.tasks.deliveries_sweep_task")
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 1 and schedule.repeats == -1


def test_the_sweep_task_queues_due_deliveries(webhook, queued, team, django_capture_on_commit_callbacks):
    """The scheduled task is the sweep: it answers how many it queued."""
    from apps.notifications.tasks import deliveries_sweep_task

    send_event(django_capture_on_commit_callbacks, team)
    queued.clear()
    Delivery.objects.update(queued_at=None)
    assert deliveries_sweep_task() == 1


def test_a_broker_failure_leaves_the_delivery_to_the_sweep(
    webhook, team, monkeypatch, django_capture_on_commit_callbacks
):
    """async_task raising on commit neither fails the caller nor loses the delivery: the sweep queues it."""

    def broken(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr("apps.notifications.services.async_task", broken)
    send_event(django_capture_on_commit_callbacks, team)
    assert Delivery.objects.get().queued_at is None
    queued: list[int] = []
    monkeypatch.setattr("apps.notifications.services.async_task", lambda func, *args, **kwargs: queued.extend(args))
    assert deliveries_sweep() == 1 and queued == [Delivery.objects.get().pk]


def test_rotating_the_encryption_keys_keeps_the_signing_secrets(settings, webhook):
    """channel_secrets_rotate re-encrypts under the new first key: the old key can then be dropped."""
    from cryptography.fernet import Fernet

    from apps.notifications.services import channel_secrets_rotate
    from llmbench import crypto

    channel, secret = webhook
    old_key = Fernet.generate_key().decode()
    settings.LLMBENCH_ENCRYPTION_KEYS = [old_key]
    crypto.reset_cache()
    try:
        channel.set_secret(secret)
        channel.save()
        settings.LLMBENCH_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]
        crypto.reset_cache()
        assert channel_secrets_rotate() == 1
        settings.LLMBENCH_ENCRYPTION_KEYS = settings.LLMBENCH_ENCRYPTION_KEYS[:1]
        crypto.reset_cache()
        assert Channel.objects.get(pk=channel.pk).secret() == secret
    finally:
        crypto.reset_cache()


def test_a_title_over_several_lines_makes_a_one_line_subject(team, member, queued, django_capture_on_commit_callbacks):
    """Newlines in a title (an error message) do not break the e-mail header."""
    member.email = "member@example.com"
    member.save()
    send_event(django_capture_on_commit_callbacks, team, title="Run failed:\nTraceback\r\n  line 3")
    assert run_queued(queued) == ["sent"]
    assert mail.outbox[0].subject == "[llmbench · Alpha] Run failed: Traceback line 3"
