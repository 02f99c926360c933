"""Test cases with an approval workflow; only approved versions enter suites and runs."""

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.accounts.models import TeamOwned
from apps.experiments.validators import PromptLengthValidator

EVALUATOR_KINDS = ["exact_match", "contains", "regex", "json_schema", "numeric", "llm_judge"]
EVALUATOR_LABELS = {
    "exact_match": "Exact match", "contains": "Contains", "regex": "Regular expression",
    "json_schema": "JSON schema", "numeric": "Numeric answer", "llm_judge": "LLM judge",
}  # fmt: skip
QUALITY_COLUMNS = (
    "overall", "coherence", "completeness", "readability", "length_appropriateness", "creativity", "specificity",
)  # fmt: skip
PARAMETER_COLUMNS = ("temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty", "seed")
MAX_RESPONSES_PER_ITEM = 1000


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
    system_prompt = models.TextField(blank=True, validators=[PromptLengthValidator()])
    prompt = models.TextField(validators=[PromptLengthValidator()])
    expected_output = models.TextField(blank=True)
    evaluator = models.CharField(
        max_length=20, choices=[(k, EVALUATOR_LABELS[k]) for k in EVALUATOR_KINDS], default="exact_match"
    )
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


class Suite(TeamOwned):
    """A named, versioned set of approved test-case versions; publishing again makes version n+1."""

    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField(default=1)
    description = models.TextField(blank=True)
    test_cases = models.ManyToManyField(TestCase, related_name="suites")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["team", "name", "version"], name="suite_unique_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Experiment(TeamOwned):
    """A prompt or a set of approved test cases × targets × sampling parameters × N responses."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Kind(models.TextChoices):
        SINGLE = "single", "Experiment"
        BATCH = "batch", "Parameter sweep"  # run by apps.batches, one response set per parameter combination

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SINGLE, editable=False)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    favourite = models.BooleanField(default=False)
    archived = models.BooleanField(default=False)
    system_prompt = models.TextField(blank=True, validators=[PromptLengthValidator()])
    prompt = models.TextField(
        blank=True, help_text="Used when no test cases are chosen.", validators=[PromptLengthValidator()]
    )
    test_cases = models.ManyToManyField(TestCase, blank=True, related_name="experiments")
    suite = models.ForeignKey(Suite, on_delete=models.PROTECT, null=True, blank=True, related_name="experiments",
                              help_text="The suite version the experiment ran.")  # fmt: skip
    parameters = models.JSONField(default=dict, blank=True, help_text="temperature, top_p, max_tokens, penalties, seed")
    responses_per_item = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RESPONSES_PER_ITEM)],
        help_text=f"How many times each prompt or test case is asked of each target (1 to {MAX_RESPONSES_PER_ITEM:,}).",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class ExperimentTarget(models.Model):
    """An endpoint and the model asked there."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="targets")
    endpoint = models.ForeignKey("providers.ProviderEndpoint", on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=200)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.endpoint} · {self.model}"


class Response(models.Model):
    """One answer, stored and evaluated the moment it arrives; the unique key makes a rerun skip it."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="responses")
    target = models.ForeignKey(ExperimentTarget, on_delete=models.CASCADE, related_name="responses")
    test_case = models.ForeignKey(TestCase, on_delete=models.PROTECT, null=True, blank=True, related_name="responses")
    item_key = models.CharField(max_length=40, help_text='"prompt" or "tc:<test case id>": part of the unique key.')
    combination = models.PositiveIntegerField(default=0, help_text="A parameter sweep's combination (0 otherwise).")
    repetition = models.PositiveIntegerField(default=0)
    content = models.TextField(blank=True)
    parameters = models.JSONField(default=dict)
    input_tokens = models.PositiveIntegerField(null=True)
    output_tokens = models.PositiveIntegerField(null=True)
    ttft_ms = models.FloatField(null=True)
    latency_ms = models.FloatField(null=True)
    cost_usd = models.FloatField(null=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    passed = models.BooleanField(null=True)
    score = models.FloatField(null=True, help_text="0–1")
    evaluation = models.JSONField(default=dict, blank=True, help_text="The evaluator's detail.")
    evaluation_error = models.TextField(blank=True)
    quality = models.JSONField(default=dict, blank=True, help_text="Text-quality metrics, 0–100.")
    # The same figures as plain columns, for analytics that aggregate hundreds of thousands of
    # responses in the database (reading numbers out of JSON costs more than the aggregate).
    quality_overall = models.FloatField(null=True, editable=False)
    quality_coherence = models.FloatField(null=True, editable=False)
    quality_completeness = models.FloatField(null=True, editable=False)
    quality_readability = models.FloatField(null=True, editable=False)
    quality_length_appropriateness = models.FloatField(null=True, editable=False)
    quality_creativity = models.FloatField(null=True, editable=False)
    quality_specificity = models.FloatField(null=True, editable=False)
    temperature = models.FloatField(null=True, editable=False)
    top_p = models.FloatField(null=True, editable=False)
    max_tokens = models.PositiveIntegerField(null=True, editable=False)
    frequency_penalty = models.FloatField(null=True, editable=False)
    presence_penalty = models.FloatField(null=True, editable=False)
    seed = models.BigIntegerField(null=True, editable=False)
    is_simulated = models.BooleanField(
        default=False, db_index=True, help_text="From the built-in simulator (the sim provider) or generated demo data."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "target", "item_key", "combination", "repetition"], name="response_unique_item"
            )
        ]
        # Live pages read "this experiment's responses after id N".
        indexes = [
            models.Index(fields=["experiment", "id"], name="response_experiment_id"),
            models.Index(fields=["created_at"], name="response_created_at"),
        ]

    def __str__(self) -> str:
        return f"Response {self.pk}"

    def save(self, *args, **kwargs):
        self.copy_figures()
        super().save(*args, **kwargs)

    def copy_figures(self) -> None:
        """Copy the text-quality metrics and the sampling parameters into their columns."""
        quality, parameters = self.quality or {}, self.parameters or {}
        for metric in QUALITY_COLUMNS:
            setattr(self, f"quality_{metric}", quality.get(metric))
        for name in PARAMETER_COLUMNS:
            setattr(self, name, parameters.get(name))
