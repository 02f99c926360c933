"""Notifications (issue 17): record an event once, deliver it to the team's channels and to the members who chose
it, with retries; manage channels (secrets shown once) and members' choices.

Delivery: notify() stores the Event and one Delivery per channel or member address, and on commit queues
`apps.notifications.tasks.delivery_send(delivery_id)` per delivery (async_task: deliveries are not team runs, so
they bypass the fair queue). A try that fails for a passing reason (5xx, 408, 429, timeout, connection refused,
SMTP down) waits NOTIFY_RETRY_BASE_S, doubling each time, plus up to a quarter more at random, and is picked up by
the every-minute sweep (`apps.notifications.tasks.deliveries_sweep`, created by a migration) until
NOTIFY_MAX_ATTEMPTS tries were made. A worker claims a delivery (a conditional UPDATE) before each try, so two
workers never send one try twice."""

from __future__ import annotations

import json
import logging
import random
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from apps.accounts.models import Membership, Team
from apps.audit.services import record
from apps.notifications import formats, sending
from apps.notifications.events import EVENTS, TEST
from apps.notifications.models import Channel, Delivery, DeliveryAttempt, Event, Preference
from apps.notifications.urlcheck import UrlRefused, check_webhook_url
from llmbench import crypto

logger = logging.getLogger(__name__)

SEND_TASK = "apps.notifications.tasks.delivery_send"
TASK_GROUP = "notifications"
SECRET_PREFIX = "whsec_"
SWEEP_LIMIT = 500
REQUEUE_AFTER = timedelta(minutes=5)  # a queued try not taken by then was lost with its worker: queue it again


# --- Events -------------------------------------------------------------------------------------------------------


def _plain_facts(facts: dict[str, Any] | None) -> dict[str, Any]:
    """Facts as JSON holds them (times, decimals and the like as text)."""
    if not facts:
        return {}
    return json.loads(json.dumps({str(name): value for name, value in facts.items()}, default=str))


def preference_events(*, team_id: int, user_id: int) -> list[str]:
    """The events a member receives by e-mail: their choice, or the default."""
    chosen = Preference.objects.filter(team_id=team_id, user_id=user_id).values_list("events", flat=True).first()
    return list(chosen) if chosen is not None else Preference.default_events()


def _member_addresses(team_id: int, event: str) -> list[str]:
    """The e-mail addresses of the team's members who receive `event` (active users with an address)."""
    chosen = dict(Preference.objects.filter(team_id=team_id).values_list("user_id", "events"))
    defaults = Preference.default_events()
    members = Membership.objects.filter(team_id=team_id, user__is_active=True).exclude(user__email="")
    return [
        email
        for user_id, email in members.values_list("user_id", "user__email").order_by("user_id")
        if event in chosen.get(user_id, defaults)
    ]


def _queue(delivery_ids: list[int]) -> None:
    """Hand the deliveries to the workers once the transaction that made them commits."""

    def send() -> None:
        for delivery_id in delivery_ids:
            async_task(SEND_TASK, delivery_id, group=TASK_GROUP)
            # marked one by one: if the broker fails half-way, the sweep queues the rest within a minute
            Delivery.objects.filter(pk=delivery_id).update(queued_at=timezone.now())

    if delivery_ids:
        # robust: a broker that is down must not fail the request or task that raised the event
        transaction.on_commit(send, robust=True)


def notify(
    *,
    team_id: int,
    event: str,
    title: str,
    text: str,
    url: str = "",
    facts: dict[str, Any] | None = None,
    dedupe_key: str = "",
) -> None:
    """Record one event of `team_id` and deliver it to the channels and members that chose it.

    `event` is one of notifications.events.EVENTS; `dedupe_key` (when given) makes a second call with the same key
    a no-op. `url` may be a path (SITE_URL is put in front). Safe inside the caller's transaction: nothing is sent
    unless it commits."""
    if event not in EVENTS:
        raise ValueError(f"Unknown event {event!r}; one of {', '.join(EVENTS)}.")
    if not Team.objects.filter(pk=team_id).exists():
        return
    with transaction.atomic():
        try:
            with transaction.atomic():
                stored = Event.objects.create(
                    team_id=team_id,
                    event=event,
                    title=title[:300],
                    text=text,
                    url=url[:500],
                    facts=_plain_facts(facts),
                    dedupe_key=dedupe_key[:200],
                )
        except IntegrityError:
            if dedupe_key and Event.objects.filter(team_id=team_id, dedupe_key=dedupe_key[:200]).exists():
                return  # told already
            raise
        deliveries = _deliveries_for(stored)
        _queue([delivery.pk for delivery in deliveries])


def _deliveries_for(event: Event) -> list[Delivery]:
    now = timezone.now()
    common = {"team_id": event.team_id, "event": event, "next_attempt_at": now, "created_at": now,
              "max_attempts": settings.NOTIFY_MAX_ATTEMPTS}  # fmt: skip
    rows, addresses = [], set()
    for channel in Channel.objects.filter(team_id=event.team_id, active=True).order_by("pk"):
        if event.event not in channel.events:
            continue
        if channel.kind == Channel.Kind.EMAIL:
            if channel.email.lower() in addresses:
                continue
            addresses.add(channel.email.lower())
        rows.append(
            Delivery(channel=channel, channel_name=channel.name, kind=channel.kind, recipient=channel.target, **common)
        )
    for email in _member_addresses(event.team_id, event.event):
        if email.lower() not in addresses:
            addresses.add(email.lower())
            rows.append(Delivery(kind=Channel.Kind.EMAIL, recipient=email, **common))
    created = Delivery.objects.bulk_create(rows)
    if any(delivery.pk is None for delivery in created):  # a database that does not return ids
        created = list(Delivery.objects.filter(event=event))
    return created


# --- Sending --------------------------------------------------------------------------------------------------------


def retry_delay_s(attempt: int) -> float:
    """The wait after failed try number `attempt` (1, 2 …): NOTIFY_RETRY_BASE_S doubling, plus up to 25% jitter."""
    delay = settings.NOTIFY_RETRY_BASE_S * 2 ** (attempt - 1)
    return delay + random.uniform(0, delay / 4)


def _lease() -> timedelta:
    """How long a claim holds: longer than one try can take."""
    return timedelta(seconds=2 * max(settings.NOTIFY_TIMEOUT_S, settings.EMAIL_TIMEOUT or 0) + 30)


def _claim(delivery_id: int) -> bool:
    now = timezone.now()
    free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    due = Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING, next_attempt_at__lte=now)
    return bool(due.filter(free).update(claimed_until=now + _lease()))


def _send(delivery: Delivery) -> sending.AttemptResult:
    event = delivery.event
    if delivery.kind == Channel.Kind.WEBHOOK:
        channel = delivery.channel
        if channel is None:
            return sending.AttemptResult("failed", None, "The channel was deleted.", 0.0)
        try:
            secret = channel.secret()
        except Exception as exc:  # crypto.DecryptionFailed: the encryption keys changed without rotate_keys
            return sending.AttemptResult("failed", None, f"The channel's secret cannot be read: {exc}", 0.0)
        return sending.webhook_post(
            url=channel.url,
            secret=secret,
            event=event.event,
            delivery_key=str(delivery.key),
            body=formats.webhook_body(channel.format, event, str(delivery.key)),
        )
    return sending.email_send(
        to=delivery.recipient, subject=formats.email_subject(event), text=formats.email_text(event)
    )


def delivery_attempt(*, delivery_id: int) -> str | None:
    """Make the next try of a due delivery and record it; the outcome ("sent", "retry", "failed"), or None when the
    delivery is not due, already finished, or being sent by another worker."""
    if not _claim(delivery_id):
        return None
    delivery = Delivery.objects.select_related("event__team", "channel").get(pk=delivery_id)
    try:
        result = _send(delivery)
    except Exception as exc:  # a bug or an unforeseen library error: logged, tried again like a passing failure
        logger.exception("Notification delivery %s raised", delivery_id)
        result = sending.AttemptResult("retry", None, f"{type(exc).__name__}: {exc}"[:2048], 0.0)
    number = delivery.attempts + 1
    outcome = result.outcome
    if outcome == "retry" and number >= delivery.max_attempts:
        outcome = "failed"
    now = timezone.now()
    update: dict[str, Any] = {
        "attempts": number,
        "last_status_code": result.status_code,
        "last_response": result.response,
        "last_duration_ms": result.duration_ms,
        "claimed_until": None,
        "queued_at": None,  # the queued task is spent: the sweep queues the next try when it is due
    }
    if outcome == "sent":
        update |= {"status": Delivery.Status.SENT, "finished_at": now, "next_attempt_at": None}
    elif outcome == "failed":
        update |= {"status": Delivery.Status.FAILED, "finished_at": now, "next_attempt_at": None}
    else:
        update |= {"next_attempt_at": now + timedelta(seconds=retry_delay_s(number))}
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery_id=delivery_id,
            number=number,
            at=now,
            outcome=outcome,
            status_code=result.status_code,
            response=result.response,
            duration_ms=result.duration_ms,
        )
        Delivery.objects.filter(pk=delivery_id).update(**update)
    log = logger.info if outcome == "sent" else logger.warning
    log(
        "Notification delivery %s (%s to %s) try %s/%s: %s %s",
        delivery_id, delivery.event.event, delivery.recipient, number, delivery.max_attempts, outcome,
        result.status_code or result.response[:200],
    )  # fmt: skip
    return outcome


def deliveries_sweep() -> int:
    """Queue every delivery whose next try is due and that is not queued or being sent already; how many."""
    now = timezone.now()
    not_queued = Q(queued_at__isnull=True) | Q(queued_at__lt=now - REQUEUE_AFTER)
    free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    due = Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now).filter(not_queued, free)
    ids = list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:SWEEP_LIMIT])
    if ids:
        Delivery.objects.filter(pk__in=ids).update(queued_at=now)
        for delivery_id in ids:
            async_task(SEND_TASK, delivery_id, group=TASK_GROUP)
    return len(ids)


# --- Channels -------------------------------------------------------------------------------------------------------


def channel_errors(*, kind: str, url: str, email: str, fmt: str, events: list[str]) -> dict[str, str]:
    """What is wrong with a channel's settings, by field (empty: nothing). Shared by the form and the API."""
    errors: dict[str, str] = {}
    if kind not in Channel.Kind.values:
        errors["kind"] = "Choose e-mail or webhook."
    unknown = [event for event in events if event not in EVENTS]
    if unknown:
        errors["events"] = f"Unknown events: {', '.join(unknown)}. Choose from {', '.join(EVENTS)}."
    if kind == Channel.Kind.WEBHOOK:
        if not url:
            errors["url"] = "A webhook needs its address."
        else:
            try:
                check_webhook_url(url)
            except UrlRefused as exc:
                errors["url"] = str(exc)
        if fmt not in Channel.Format.values:
            errors["format"] = f"Choose one of: {', '.join(Channel.Format.values)}."
    elif kind == Channel.Kind.EMAIL and not email:
        errors["email"] = "An e-mail channel needs an address."
    return errors


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _summary(channel: Channel) -> dict[str, Any]:
    return {"name": channel.name, "kind": channel.kind, "target": channel.target, "format": channel.format,
            "events": list(channel.events), "active": channel.active}  # fmt: skip


@transaction.atomic
def channel_create(
    *,
    team: Team,
    user,
    name: str,
    kind: str,
    url: str = "",
    email: str = "",
    fmt: str = Channel.Format.GENERIC,
    events: list[str],
    active: bool = True,
) -> tuple[Channel, str]:
    """A new channel, and its signing secret in the clear (webhooks; "" for e-mail): shown once, never again."""
    webhook = kind == Channel.Kind.WEBHOOK
    channel = Channel(
        team=team,
        name=name,
        kind=kind,
        url=url if webhook else "",
        email="" if webhook else email,
        format=fmt if webhook else "",
        events=list(events),
        active=active,
        created_by=user if getattr(user, "pk", None) else None,
    )
    secret = _new_secret() if webhook else ""
    channel.set_secret(secret)
    channel.save()
    record(action="notification_channel.created", obj=channel, object_type="notification_channel",
           changes={name: [None, value] for name, value in _summary(channel).items()})  # fmt: skip
    return channel, secret


@transaction.atomic
def channel_update(*, channel: Channel, **fields: Any) -> tuple[Channel, str]:
    """Change a channel (name, url, email, fmt, events, active; not its kind). A channel that becomes a webhook
    without a secret gets one: returned in the clear, else ""."""
    before = _summary(channel)
    for name, value in fields.items():
        setattr(channel, "format" if name == "fmt" else name, value)
    if channel.is_webhook:
        channel.email = ""
    else:
        channel.url, channel.format = "", ""
    secret = ""
    if channel.is_webhook and not channel.secret_encrypted:
        secret = _new_secret()
        channel.set_secret(secret)
    channel.save()
    after = _summary(channel)
    changes = {name: [before[name], after[name]] for name in after if before[name] != after[name]}
    if changes:
        record(action="notification_channel.changed", obj=channel, object_type="notification_channel",
               changes=changes)  # fmt: skip
    return channel, secret


@transaction.atomic
def channel_rotate_secret(*, channel: Channel) -> str:
    """A new signing secret for a webhook channel, in the clear (shown once); the old one stops at once."""
    if not channel.is_webhook:
        raise ValueError("Only webhooks have a signing secret.")
    secret = _new_secret()
    channel.set_secret(secret)
    channel.save(update_fields=["secret_encrypted"])
    record(action="notification_channel.secret_rotated", obj=channel, object_type="notification_channel",
           changes={"secret": ["(changed)", "(changed)"]})  # fmt: skip
    return secret


@transaction.atomic
def channel_delete(*, channel: Channel) -> None:
    """Delete a channel; its deliveries stay in the log under its name."""
    record(action="notification_channel.deleted", obj=channel, object_type="notification_channel",
           changes={name: [value, None] for name, value in _summary(channel).items()})  # fmt: skip
    channel.delete()


@transaction.atomic
def channel_secrets_rotate() -> int:
    """Re-encrypt every webhook signing secret under the primary encryption key (manage.py rotate_keys); how many."""
    count = 0
    for channel in Channel.objects.exclude(secret_encrypted="").select_for_update():
        channel.secret_encrypted = crypto.rotate(channel.secret_encrypted)
        channel.save(update_fields=["secret_encrypted"])
        count += 1
    return count


def channel_test(*, channel: Channel) -> Delivery:
    """Send a test message to the channel now, once (no retries), and return the delivery with its answer."""
    now = timezone.now()
    with transaction.atomic():
        event = Event.objects.create(
            team_id=channel.team_id,
            event=TEST,
            title=f"Test message for the channel “{channel.name}”",
            text="If you can read this, llmbench can reach this channel.",
            url="/notifications/",
            facts={"Channel": channel.name},
        )
        delivery = Delivery.objects.create(
            team_id=channel.team_id, event=event, channel=channel, channel_name=channel.name, kind=channel.kind,
            recipient=channel.target, next_attempt_at=now, created_at=now, max_attempts=1,
        )  # fmt: skip
    delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


# --- Members' choices -----------------------------------------------------------------------------------------------


def preference_set(*, team: Team, user, events: list[str]) -> Preference:
    """Set which events `user` receives by e-mail in `team` (an empty list: none)."""
    unknown = [event for event in events if event not in EVENTS]
    if unknown:
        raise ValueError(f"Unknown events: {', '.join(unknown)}.")
    ordered = [event for event in EVENTS if event in set(events)]
    preference, _ = Preference.objects.update_or_create(team=team, user=user, defaults={"events": ordered})
    return preference
