"""Workloads (issue 13): the traffic a load test sends, named, versioned and owned by a team.

A run stores the WorkloadVersion it was measured with; versions are never edited, so a run always says
exactly what it sent. Uploaded datasets and tokenizers are stored compressed in the database (one backup
holds everything) and parsed once on upload."""

from django.conf import settings
from django.db import models

from apps.accounts.models import TeamOwned


class Tokenizer(TeamOwned):
    """A Hugging Face `tokenizer.json` a team uploaded, for token-exact lengths of one model."""

    name = models.CharField(max_length=100)
    variant = models.ForeignKey(
        "scores.ModelVariant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    content = models.BinaryField(help_text="zlib-compressed tokenizer.json.")
    sha256 = models.CharField(max_length=64, help_text="Of the uncompressed file.")
    size_bytes = models.PositiveBigIntegerField()
    vocab_size = models.PositiveIntegerField()
    special_ids = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="tokenizer_name_unique_per_team"),
            models.UniqueConstraint(fields=["team", "sha256"], name="tokenizer_sha_unique_per_team"),
        ]

    def __str__(self) -> str:
        return self.name


class WorkloadDataset(TeamOwned):
    """An uploaded dataset or trace, validated and normalized once (docs/workload-formats.md)."""

    class Format(models.TextChoices):
        SHAREGPT = "sharegpt", "ShareGPT JSON"
        OPENAI_CHAT = "openai_chat", "OpenAI chat JSON Lines"
        PROMPTS_JSONL = "prompts_jsonl", "Prompts, JSON Lines"
        PROMPTS_CSV = "prompts_csv", "Prompts, CSV"
        MOONCAKE = "mooncake", "Mooncake trace JSON Lines"
        AZURE = "azure_csv", "Azure LLM inference trace CSV"
        LLMBENCH_TRACE = "llmbench_trace", "llmbench trace JSON Lines"

    TRACE_FORMATS = (Format.MOONCAKE, Format.AZURE, Format.LLMBENCH_TRACE)

    name = models.CharField(max_length=200)
    format = models.CharField(max_length=20, choices=Format.choices)
    original_filename = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, help_text="Of the uploaded file.")
    size_bytes = models.PositiveBigIntegerField()
    row_count = models.PositiveIntegerField(help_text="Conversations (datasets) or requests (traces) kept.")
    turn_count = models.PositiveIntegerField(default=0, help_text="User turns over all conversations.")
    payload = models.BinaryField(help_text="zlib-compressed normalized content (apps.workloads.storage).")
    skipped = models.JSONField(default=dict, blank=True, help_text="Items skipped, by reason.")
    notes = models.JSONField(default=list, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["team", "sha256"], name="dataset_sha_unique_per_team")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_trace(self) -> bool:
        return self.format in self.TRACE_FORMATS


class Workload(TeamOwned):
    """A named description of traffic. Editing it adds a version; runs keep the version they used."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    archived = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="workload_name_unique_per_team")]

    def __str__(self) -> str:
        return self.name

    @property
    def latest(self) -> "WorkloadVersion | None":
        return self.versions.order_by("-number").first()


class WorkloadVersion(models.Model):
    """One immutable version of a workload: its spec ("llmbench.workload/1") and the files it names."""

    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    spec = models.JSONField()
    spec_sha256 = models.CharField(max_length=64)
    dataset = models.ForeignKey(
        WorkloadDataset, null=True, blank=True, on_delete=models.PROTECT, related_name="versions"
    )
    tokenizer = models.ForeignKey(Tokenizer, null=True, blank=True, on_delete=models.PROTECT, related_name="versions")
    preview = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workload", "-number"]
        constraints = [models.UniqueConstraint(fields=["workload", "number"], name="workload_version_unique")]

    def __str__(self) -> str:
        return f"{self.workload.name} v{self.number}"
