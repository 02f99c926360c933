"""Benchmark suite and run API bodies: suites as stored (the detail adds the task definition and subjects), the
multipart body that imports one, its items; runs as stored (the detail adds the live progress and the results per
target), the body that creates one (and asks for an estimate), and the answers.

Foreign keys are ids limited to the request's team (another team's suite or endpoint is a 400 naming the field);
every other rule is the services' (apps.benchmarks.imports, apps.benchmarks.services), whose ValidationError
becomes a 400 naming the field through `service_errors`.
"""

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.utils import html

from apps.benchmarks.exports import target_figures
from apps.benchmarks.models import BenchmarkAnswer, BenchmarkItem, BenchmarkRun, BenchmarkSuite, BenchmarkTarget, Kind
from apps.benchmarks.selectors import progress_payload, run_results
from apps.benchmarks.services import TargetSpec
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant
from llmbench.api import TeamScopedPrimaryKeyRelatedField

MAX_FILES = 100  # an MMLU upload is one CSV per subject: 57 of them
MAX_TARGETS = 20


def service_errors(exc: DjangoValidationError, *, default_field: str = "non_field_errors") -> dict[str, list[str]]:
    """A service's ValidationError as a DRF 400 body: its fields as named (``__all__`` and a bare message list
    under `default_field`)."""
    if hasattr(exc, "error_dict"):
        return {
            (default_field if field == "__all__" else field): messages for field, messages in exc.message_dict.items()
        }
    return {default_field: exc.messages}


# --- suites -------------------------------------------------------------------------------------------------------


class BenchmarkSuiteSerializer(serializers.ModelSerializer):
    """A suite as the list shows it."""

    kind_label = serializers.CharField(source="get_kind_display", read_only=True)
    benchmark_name = serializers.CharField(source="benchmark.name", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = BenchmarkSuite
        fields = [
            "id", "name", "version", "kind", "kind_label", "benchmark", "benchmark_name", "source_format", "file_name",
            "sha256", "item_count", "fewshot_count", "description", "created_by", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class BenchmarkSuiteDetailSerializer(BenchmarkSuiteSerializer):
    """A suite with its task definition (prompt template, answer extraction, scoring) and items per subject."""

    subjects = serializers.DictField(child=serializers.IntegerField(), read_only=True,
                                     help_text="Test items per subject or category.")  # fmt: skip
    task = serializers.JSONField(read_only=True, help_text="Prompt template, answer extraction and scoring.")
    run_count = serializers.SerializerMethodField()

    class Meta(BenchmarkSuiteSerializer.Meta):
        fields = [*BenchmarkSuiteSerializer.Meta.fields, "subjects", "task", "run_count"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.INT)
    def get_run_count(self, suite: BenchmarkSuite) -> int:
        return suite.runs.count()


class UploadListField(serializers.ListField):
    """Files sent as repeated multipart parts named `files` (or `files[]`, as some clients name them)."""

    def get_value(self, dictionary):
        if html.is_html_input(dictionary):
            uploads = dictionary.getlist(self.field_name) + dictionary.getlist(f"{self.field_name}[]")
            return uploads or empty
        return super().get_value(dictionary)


def _files(help_text: str, **kwargs) -> UploadListField:
    return UploadListField(child=serializers.FileField(), max_length=MAX_FILES, help_text=help_text, **kwargs)


class BenchmarkSuiteImportSerializer(serializers.Serializer):
    """Multipart: the suite's name, its test file(s), optional few-shot file(s) and the kind (detected when left
    out)."""

    name = serializers.CharField(max_length=200, help_text="Importing a name again makes its next version.")
    kind = serializers.ChoiceField(choices=Kind.choices, required=False, allow_blank=True,
                                   help_text="Default: detected from the files.")  # fmt: skip
    files = _files("The test split: one file, or one per subject (MMLU CSV).", min_length=1)
    fewshot_files = _files("Few-shot examples (MMLU dev, MMLU-Pro validation).", required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)

    def _check_sizes(self, uploads: list) -> list:
        limit_mb = settings.MAX_UPLOAD_MB
        for upload in uploads:
            if upload.size > limit_mb * 1024 * 1024:
                raise serializers.ValidationError(f"{upload.name} is larger than {limit_mb} MB (MAX_UPLOAD_MB).")
        return uploads

    def validate_files(self, uploads: list) -> list:
        return self._check_sizes(uploads)

    def validate_fewshot_files(self, uploads: list) -> list:
        return self._check_sizes(uploads)

    def import_kwargs(self) -> dict:
        """Keyword arguments of imports.suite_import (files read as (name, bytes))."""
        data = self.validated_data
        return {
            "name": data["name"].strip(), "kind": data.get("kind") or None, "description": data.get("description", ""),
            "files": [(f.name or "upload", f.read()) for f in data["files"]],
            "fewshot_files": [(f.name or "fewshot", f.read()) for f in data.get("fewshot_files", [])],
        }  # fmt: skip


class BenchmarkItemSerializer(serializers.ModelSerializer):
    """One question with its choices and correct answer (the letter, or GSM8K's final number)."""

    class Meta:
        model = BenchmarkItem
        fields = ["id", "index", "split", "source_id", "subject", "question", "choices", "answer", "rationale"]
        read_only_fields = fields


# --- runs ---------------------------------------------------------------------------------------------------------


class BenchmarkTargetSerializer(serializers.ModelSerializer):
    """An endpoint and the model asked there, and the catalog variant it serves."""

    endpoint_name = serializers.CharField(source="endpoint.name", read_only=True)
    variant_name = serializers.SerializerMethodField()

    class Meta:
        model = BenchmarkTarget
        fields = ["id", "endpoint", "endpoint_name", "model", "variant", "variant_name"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_variant_name(self, target: BenchmarkTarget) -> str | None:
        return str(target.variant) if target.variant_id else None


class BenchmarkRunSerializer(serializers.ModelSerializer):
    """A run as the list shows it: suite, targets, settings, status and counters."""

    suite_name = serializers.CharField(source="suite.__str__", read_only=True)
    kind = serializers.ChoiceField(source="suite.kind", choices=Kind.choices, read_only=True)
    targets = BenchmarkTargetSerializer(many=True, read_only=True)
    estimate = serializers.JSONField(read_only=True, help_text="Requests, tokens, cost and time, before start.")
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = BenchmarkRun
        fields = [
            "id", "name", "suite", "suite_name", "kind", "targets", "status", "shots", "temperature", "max_tokens",
            "concurrency", "subset_size", "subset_seed", "item_count", "completed_answers", "failed_answers",
            "error", "cancel_requested", "estimate", "created_by", "created_at", "queued_at", "started_at",
            "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class AccuracySerializer(serializers.Serializer):
    """Accuracy over the scored items in percent (0–100): failed requests are not scored, no answer is wrong."""

    n = serializers.IntegerField(help_text="Items scored.")
    correct = serializers.IntegerField()
    no_answer = serializers.IntegerField(help_text="Responses whose answer could not be extracted (counted wrong).")
    accuracy_pct = serializers.FloatField(allow_null=True)
    ci_low_pct = serializers.FloatField(allow_null=True, help_text="Wilson 95% score interval.")
    ci_high_pct = serializers.FloatField(allow_null=True)
    stderr_pct = serializers.FloatField(allow_null=True, help_text="As lm-evaluation-harness: sample sd / √n.")
    no_answer_pct = serializers.FloatField(allow_null=True)


class SubjectAccuracySerializer(AccuracySerializer):
    subject = serializers.CharField()


class TargetResultSerializer(serializers.Serializer):
    """One target's results (exports.target_figures): the same figures as the page and the exports."""

    target_id = serializers.IntegerField()
    endpoint_id = serializers.IntegerField()
    endpoint = serializers.CharField()
    model = serializers.CharField()
    variant_id = serializers.IntegerField(allow_null=True)
    variant = serializers.CharField(allow_null=True)
    overall = AccuracySerializer()
    by_subject = SubjectAccuracySerializer(many=True)
    alternates = serializers.DictField(
        child=AccuracySerializer(), help_text="The same responses under another extraction (GSM8K flexible), by name."
    )
    failed = serializers.IntegerField(help_text="Requests that failed after retries (not scored).")
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_usd = serializers.FloatField(allow_null=True)
    mean_latency_ms = serializers.FloatField(allow_null=True)
    measured_score_id = serializers.IntegerField(allow_null=True, help_text="The measured score it published.")


class BenchmarkRunDetailSerializer(BenchmarkRunSerializer):
    """A run with its progress (as the progress stream sends it) and its results per target and subject."""

    progress = serializers.SerializerMethodField()
    results = serializers.SerializerMethodField()

    class Meta(BenchmarkRunSerializer.Meta):
        fields = [*BenchmarkRunSerializer.Meta.fields, "progress", "results"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_progress(self, run: BenchmarkRun) -> dict:
        return progress_payload(run)

    @extend_schema_field(TargetResultSerializer(many=True))
    def get_results(self, run: BenchmarkRun) -> list[dict]:
        return [target_figures(result) for result in run_results(run)]


class TargetSpecSerializer(serializers.Serializer):
    """One target of a new run: an endpoint of the team, the model asked there and (optionally) its variant."""

    endpoint = TeamScopedPrimaryKeyRelatedField(queryset=ProviderEndpoint.objects.all())
    model = serializers.CharField(max_length=200)
    variant = TeamScopedPrimaryKeyRelatedField(
        queryset=ModelVariant.objects.all(), required=False, allow_null=True,
        help_text="The catalog variant served; default: the one linked to this endpoint and model, if any.",
    )  # fmt: skip


class BenchmarkRunCreateSerializer(serializers.Serializer):
    """What makes a run; what is left out takes its default. `start: true` queues it at once."""

    suite = TeamScopedPrimaryKeyRelatedField(queryset=BenchmarkSuite.objects.all())
    targets = TargetSpecSerializer(many=True, min_length=1, max_length=MAX_TARGETS)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    shots = serializers.IntegerField(required=False, min_value=0, max_value=25, default=0)
    temperature = serializers.FloatField(required=False, min_value=0.0, max_value=2.0, default=0.0)
    max_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=200_000,
                                          default=None, help_text="Default: the benchmark's own.")  # fmt: skip
    concurrency = serializers.IntegerField(required=False, min_value=1, max_value=256, default=8)
    subset_size = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=10_000_000,
                                           default=None, help_text="A seeded stratified subset; default every item.")  # fmt: skip
    subset_seed = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1, default=0)
    start = serializers.BooleanField(required=False, default=False, write_only=True)

    def create_kwargs(self) -> dict:
        """Keyword arguments of services.benchmark_run_create (without team and user)."""
        data = dict(self.validated_data)
        data.pop("start", None)
        data["targets"] = [TargetSpec(endpoint=t["endpoint"], model=t["model"].strip(), variant=t.get("variant"))
                           for t in data["targets"]]  # fmt: skip
        return data


class TargetEstimateSerializer(serializers.Serializer):
    target = serializers.CharField()
    requests = serializers.IntegerField()
    latency_ms = serializers.FloatField(help_text="Expected per request.")
    basis = serializers.CharField(help_text="Where the latency comes from.")
    cost_usd = serializers.FloatField(allow_null=True)


class BenchmarkRunEstimateSerializer(serializers.Serializer):
    """What a run would ask, before it is stored: requests, tokens, cost (null without prices) and time."""

    item_count = serializers.IntegerField(help_text="Items asked of each target.")
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_usd = serializers.FloatField(allow_null=True, help_text="Null when no target's endpoint has prices.")
    duration_s = serializers.FloatField()
    per_target = TargetEstimateSerializer(many=True)
    assumptions = serializers.ListField(child=serializers.CharField())


class BenchmarkAnswerSerializer(serializers.ModelSerializer):
    """One item asked of one target: the response, the answer extracted and whether it is correct (null when
    the request failed: then `error_code` says why)."""

    item_index = serializers.IntegerField(source="item.index", read_only=True)
    subject = serializers.CharField(source="item.subject", read_only=True)
    question = serializers.CharField(source="item.question", read_only=True)
    correct_answer = serializers.CharField(source="item.answer", read_only=True)
    no_answer = serializers.BooleanField(read_only=True)

    class Meta:
        model = BenchmarkAnswer
        fields = [
            "id", "target", "item", "item_index", "subject", "question", "correct_answer", "extracted", "correct",
            "no_answer", "content", "error_code", "error_message", "input_tokens", "output_tokens", "latency_ms",
            "cost_usd", "created_at",
        ]  # fmt: skip
        read_only_fields = fields
