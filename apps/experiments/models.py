"""Test cases with an approval workflow; only approved versions enter suites and runs."""

import uuid

from django.conf import settings
from django.db import models

from apps.accounts.models import TeamOwned

EVALUATOR_KINDS = ["exact_match", "contains", "regex", "json_schema", "numeric", "llm_judge"]


class TestCase(TeamOwned):
    """One version of a test case. Editing an approved version makes a new pending version (same
    lineage); results keep pointing at the version they ran."""

    __test__ = False  # not a pytest class

    class Status(models.TextChoices):
        DRAFT = "draft"
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    lineage = models.UUIDField(default=uuid.uuid4, editable=False, db_index=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    is_current = models.BooleanField(default=True, editable=False, help_text="The latest version of its lineage.")
    title = models.CharField(max_length=200)
    system_prompt = models.TextField(blank=True)
    prompt = models.TextField()
    expected_output = models.TextField(blank=True)
    evaluator = models.CharField(max_length=20, choices=[(k, k) for k in EVALUATOR_KINDS], default="exact_match")
    evaluator_settings = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["title", "-version"]
        constraints = [models.UniqueConstraint(fields=["lineage", "version"], name="testcase_unique_version")]
        indexes = [models.Index(fields=["team", "status", "is_current"])]

    def __str__(self) -> str:
        return f"{self.title} v{self.version}"

    def last_approved(self) -> "TestCase | None":
        """The latest approved earlier version of the same test case."""
        return (
            TestCase.objects.filter(lineage=self.lineage, status=self.Status.APPROVED, version__lt=self.version)
            .order_by("-version")
            .first()
        )
