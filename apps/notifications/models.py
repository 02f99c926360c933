"""Notifications: a team's channels (e-mail, webhooks), members' choices, the events and each delivery."""

import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import TeamOwned
from apps.notifications.events import DEFAULT_MEMBER_EVENTS, event_words
from llmbench import crypto


class Channel(TeamOwned):
    """Where a team's events go: an e-mail address or a webhook (Slack, Teams or plain JSON), signed with a secret."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    class Format(models.TextChoices):
        SLACK = "slack", "Slack (text and blocks)"
        TEAMS = "teams", "Microsoft Teams (Adaptive Card)"
        GENERIC = "generic", "Plain JSON"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    url = models.CharField(max_length=500, blank=True, help_text="The webhook's address (webhooks only).")
    email = models.EmailField(blank=True, help_text="The address (e-mail channels only), e.g. a team list.")
    format = models.CharField(max_length=10, choices=Format.choices, default=Format.GENERIC, blank=True)
    secret_encrypted = models.TextField(blank=True, editable=False)
    events = models.JSONField(default=list, blank=True, help_text="The events this channel carries.")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="notify_channel_unique_per_team")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_webhook(self) -> bool:
        return self.kind == self.Kind.WEBHOOK

    @property
    def target(self) -> str:
        """Where it sends to, as logged and listed: a webhook's scheme and host only (a Slack or Teams webhook's
        path and query are its key)."""
        if self.is_webhook:
            parts = urlsplit(self.url)
            return f"{parts.scheme}://{parts.netloc}" + ("/…" if parts.path.strip("/") or parts.query else "")
        return self.email

    def event_labels(self) -> list[str]:
        return [event_words(event) for event in self.events]

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = crypto.encrypt(secret) if secret else ""

    def secret(self) -> str:
        """The signing secret, decrypted (never stored or logged in the clear)."""
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else ""


class Preference(TeamOwned):
    """The events one member of a team receives by e-mail (no row: DEFAULT_MEMBER_EVENTS)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    events = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="notify_preference_unique")]

    def __str__(self) -> str:
        return f"{self.user} in team {self.team_id}: {', '.join(self.events) or 'nothing'}"

    @staticmethod
    def default_events() -> list[str]:
        return list(DEFAULT_MEMBER_EVENTS)


class Event(TeamOwned):
    """Something a team is told about, once: a second notify() with the same dedupe key is a no-op."""

    event = models.CharField(max_length=32)
    title = models.CharField(max_length=300)
    text = models.TextField(blank=True)
    url = models.CharField(max_length=500, blank=True)
    facts = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "dedupe_key"], condition=~Q(dedupe_key=""), name="notify_event_dedupe_per_team"
            )
        ]
        indexes = [models.Index(fields=["team", "-created_at"], name="notify_event_team_at")]

    def __str__(self) -> str:
        return f"{self.event}: {self.title}"

    @property
    def event_label(self) -> str:
        return event_words(self.event)


class Delivery(TeamOwned):
    """One event sent to one channel or one member's address, with its attempts (up to NOTIFY_MAX_ATTEMPTS)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, help_text="X-Llmbench-Delivery.")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(Channel, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    channel_name = models.CharField(max_length=100, blank=True, help_text="The channel's name at the time.")
    kind = models.CharField(max_length=10, choices=Channel.Kind.choices)
    recipient = models.CharField(max_length=500, help_text="The e-mail address or the webhook (without its query).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=1)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="A worker is sending it until then.")
    queued_at = models.DateTimeField(null=True, blank=True, help_text="Last handed to the task queue.")
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_response = models.TextField(blank=True, help_text="The first 2 KB of the answer, or the error.")
    last_duration_ms = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="notify_delivery_team_at"),
            models.Index(fields=["status", "next_attempt_at"], name="notify_delivery_due"),
        ]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.event.event} → {self.recipient} ({self.status})"

    @property
    def where(self) -> str:
        """The channel's name, or "<address> (member)" for a member's own e-mail."""
        if self.channel_name:
            return self.channel_name
        return f"{self.recipient} (member)"


class DeliveryAttempt(models.Model):
    """One try of a delivery: its answer (status code and the first 2 KB) or the error, and how long it took."""

    class Outcome(models.TextChoices):
        SENT = "sent", "Sent"
        RETRY = "retry", "Failed, will retry"
        FAILED = "failed", "Failed"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response = models.TextField(blank=True)
    duration_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="notify_attempt_unique")]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}: {self.outcome}"
