"""The audit trail: one append-only row per security- or money-relevant action."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("The audit trail is append-only: entries cannot be changed.")

    def delete(self):
        raise PermissionError("The audit trail is append-only: entries cannot be deleted.")


class AuditEntry(models.Model):
    """Who did what to which object, when, from where, with a before/after summary (never a secret).

    Team and actor are plain references without a database constraint: deleting a team or a user keeps
    its entries (the labels say who it was)."""

    class Via(models.TextChoices):
        PAGE = "page", "Web page"
        API = "api", "API"
        ADMIN = "admin", "Admin site"
        SYSTEM = "system", "Background task or command"

    at = models.DateTimeField(default=timezone.now)
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    team_label = models.CharField(max_length=100, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=200, help_text="Username at the time, and the API token if one was used.")
    via = models.CharField(max_length=10, choices=Via.choices)
    action = models.CharField(max_length=64, help_text='What happened, e.g. "provider_endpoint.key_rotated".')
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(
        default=dict, blank=True, help_text='{"field": [before, after]}; secrets only as "(changed)".'
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["team", "-at"], name="audit_team_at"),
            models.Index(fields=["team", "action", "-at"], name="audit_team_action_at"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("The audit trail is append-only: entries cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The audit trail is append-only: entries cannot be deleted.")
