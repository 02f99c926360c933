"""Standard benchmarks measured on the team's own deployments (issue 15).

A suite is one uploaded benchmark file (GSM8K, MMLU, MMLU-Pro, ARC, HellaSwag, TruthfulQA MC1), versioned,
one `BenchmarkItem` per question (split "test"; few-shot examples, when uploaded, split "fewshot"), with its
task definition (prompt template, answer extraction, scoring) recorded in `task`. A run asks the suite's
items (all, or a seeded stratified subset) of one or more targets (endpoint + model, linked to a catalog
variant) and checkpoints every answer as a `BenchmarkAnswer`, keyed by (target, item). A finished full run
becomes a measured score of each target's variant (apps.scores.Score, origin "measured").
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.accounts.models import TeamOwned
from apps.providers.models import ProviderEndpoint
from apps.scores.models import Benchmark, ModelVariant


class Kind(models.TextChoices):
    GSM8K = "gsm8k", "GSM8K"
    MMLU = "mmlu", "MMLU"
    MMLU_PRO = "mmlu_pro", "MMLU-Pro"
    ARC = "arc", "ARC"
    HELLASWAG = "hellaswag", "HellaSwag"
    TRUTHFULQA_MC1 = "truthfulqa_mc1", "TruthfulQA MC1"


class Status(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


class BenchmarkSuite(TeamOwned):
    """One uploaded benchmark file; importing the same name again makes version n+1."""

    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField(default=1)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    benchmark = models.ForeignKey(
        Benchmark, on_delete=models.PROTECT, related_name="suites",
        help_text="The leaderboard column its measured scores go to (MMLU, GSM8K …).",
    )  # fmt: skip
    source_format = models.CharField(max_length=40, help_text='The layout detected, e.g. "mmlu-csv", "gsm8k-jsonl".')
    file_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, help_text="Of the test file (and the few-shot file after it).")
    item_count = models.PositiveIntegerField(default=0, help_text="Test items (few-shot examples not counted).")
    fewshot_count = models.PositiveIntegerField(default=0)
    subjects = models.JSONField(default=dict, blank=True, help_text="{subject or category: test items}")
    task = models.JSONField(default=dict, blank=True, help_text="Prompt template, extraction and scoring, as run.")
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name", "version"], name="benchmarksuite_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class BenchmarkItem(models.Model):
    """One question. `choices` is empty for GSM8K; `answer` is the correct letter ("A" …) for multiple
    choice, the final number (as written after ####) for GSM8K."""

    class Split(models.TextChoices):
        TEST = "test"
        FEWSHOT = "fewshot"

    suite = models.ForeignKey(BenchmarkSuite, on_delete=models.CASCADE, related_name="items")
    split = models.CharField(max_length=10, choices=Split.choices, default=Split.TEST)
    index = models.PositiveIntegerField(help_text="Position in its split, from 0, in file order.")
    source_id = models.CharField(max_length=100, blank=True, help_text="The file's own id (question_id …), if any.")
    subject = models.CharField(max_length=100, blank=True, help_text="Subject (MMLU) or category (MMLU-Pro).")
    question = models.TextField()
    choices = models.JSONField(default=list, blank=True)
    answer = models.CharField(max_length=100)
    rationale = models.TextField(blank=True, help_text="Worked solution (GSM8K answer, MMLU-Pro cot_content).")

    class Meta:
        ordering = ["suite", "split", "index"]
        constraints = [models.UniqueConstraint(fields=["suite", "split", "index"], name="benchmarkitem_unique_index")]

    def __str__(self) -> str:
        return f"{self.suite} #{self.index}"


class BenchmarkRun(TeamOwned):
    """A suite × targets × settings. Progress counters and the worker's lease live here."""

    name = models.CharField(max_length=200)
    suite = models.ForeignKey(BenchmarkSuite, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    shots = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(25)])
    temperature = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    max_tokens = models.PositiveIntegerField(default=1024, validators=[MinValueValidator(1)])
    concurrency = models.PositiveIntegerField(default=8, validators=[MinValueValidator(1), MaxValueValidator(256)])
    subset_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="Ask a seeded stratified subset of this many items (None: every item)."
    )
    subset_seed = models.PositiveIntegerField(default=0)
    item_count = models.PositiveIntegerField(default=0, help_text="Items asked of each target.")
    estimate = models.JSONField(default=dict, blank=True, help_text="Requests, tokens, cost and time, before start.")
    completed_answers = models.PositiveIntegerField(default=0)
    failed_answers = models.PositiveIntegerField(default=0, help_text="Requests that failed after retries.")
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    lease = models.CharField(max_length=32, blank=True, help_text="The chunk running the run now.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    recoveries = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def group_name(self) -> str:
        return f"benchmark-run-{self.pk}"


class BenchmarkTarget(models.Model):
    """An endpoint and the model asked there, and the catalog variant it serves."""

    run = models.ForeignKey(BenchmarkRun, on_delete=models.CASCADE, related_name="targets")
    endpoint = models.ForeignKey(ProviderEndpoint, on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=200)
    variant = models.ForeignKey(ModelVariant, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.endpoint} · {self.model}"


class BenchmarkAnswer(models.Model):
    """One item asked of one target: the response, the extracted answer ('' = none could be extracted)
    and whether it is correct. A failed request has `error_code` set and is not scored; a resumed run asks
    it again (the row is updated in place)."""

    run = models.ForeignKey(BenchmarkRun, on_delete=models.CASCADE, related_name="answers")
    target = models.ForeignKey(BenchmarkTarget, on_delete=models.CASCADE, related_name="answers")
    item = models.ForeignKey(BenchmarkItem, on_delete=models.PROTECT, related_name="+")
    content = models.TextField(blank=True)
    extracted = models.CharField(max_length=100, blank=True)
    correct = models.BooleanField(null=True, help_text="None when the request failed.")
    input_tokens = models.PositiveIntegerField(null=True)
    output_tokens = models.PositiveIntegerField(null=True)
    latency_ms = models.FloatField(null=True)
    cost_usd = models.FloatField(null=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["target", "item"], name="benchmarkanswer_unique_item")]
        indexes = [models.Index(fields=["run", "id"], name="benchmarkanswer_run_id")]

    def __str__(self) -> str:
        return f"Answer {self.pk}"

    @property
    def no_answer(self) -> bool:
        return not self.error_code and self.extracted == ""
