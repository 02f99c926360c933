"""Teams, memberships with roles, and hashed API tokens."""

import hashlib

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone


class Team(models.Model):
    """A workspace: every domain row belongs to exactly one team."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    is_demo = models.BooleanField(default=False, help_text="Holds generated demo data.")
    batch_confirm_requests = models.PositiveIntegerField(
        default=1000, help_text="A parameter sweep making more requests than this needs confirmation to start."
    )
    batch_confirm_cost_usd = models.FloatField(
        null=True, blank=True, help_text="A parameter sweep estimated to cost more than this needs confirmation."
    )
    monthly_budget_usd = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="What the team means to spend on provider requests per calendar month (UTC); the dashboard "
        "warns when 80% is spent and again at 100%. Empty: no budget.",
    )  # fmt: skip
    monthly_budget_hard_limit = models.BooleanField(
        default=False,
        help_text="Make the monthly budget a hard limit: a run whose estimated cost is more than what is left is "
        "refused before it starts, and a running one stops when this month's metered cost reaches the budget "
        "(what finished is kept).",
    )
    show_simulated = models.BooleanField(
        default=False,
        help_text="Include simulated results (the built-in simulator, generated demo data) in grids, predictions, "
        "comparisons, regressions, analytics and leaderboards by default. Each page and API call can still "
        "switch them on or off with include_simulated.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in a team: viewer reads, member creates and runs, admin manages."""

    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer"
        MEMBER = "member", "Member"
        ADMIN = "admin", "Admin"

    RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2}

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="membership_unique_user_team")]
        ordering = ["team__name"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    def has_role(self, role: str) -> bool:
        """True when this membership's role is `role` or above it."""
        return self.RANK[self.Role(self.role)] >= self.RANK[self.Role(role)]


class TeamOwned(models.Model):
    """Abstract base of every domain model: the row belongs to one team."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")

    class Meta:
        abstract = True


def token_hash(key: str) -> str:
    """SHA-256 of a token key. Keys are 256-bit random, so a fast hash is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    """A personal API key acting within one team; only its hash is stored."""

    PREFIX = "llmb_"

    class Scope(models.TextChoices):
        FULL = "full", "Read and write (the user's role)"
        READ = "read", "Read only"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_prefix = models.CharField(max_length=16, help_text="The first characters, to recognise a key.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="After this the key is refused. Empty: never.")
    scope = models.CharField(
        max_length=8, choices=Scope.choices, default=Scope.FULL, help_text="Read only: GET, HEAD and OPTIONS calls."
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired
