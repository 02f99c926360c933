from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.scores.models import ModelVariant
from apps.workloads.formats import FORMATS
from apps.workloads.models import Tokenizer, Workload, WorkloadDataset, WorkloadVersion
from llmbench.api import TeamScopedPrimaryKeyRelatedField

VERSIONED_FIELDS = ("spec", "dataset", "tokenizer")
SPEC_HELP = 'The workload spec ("llmbench.workload/1", docs/workloads.md); stored normalized, defaults filled in.'


class WorkloadVersionSerializer(serializers.ModelSerializer):
    """One immutable version: what runs were measured with."""

    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)

    class Meta:
        model = WorkloadVersion
        fields = ["number", "spec", "spec_sha256", "dataset", "tokenizer", "created_by", "created_at"]
        read_only_fields = fields


def _latest(workload: Workload) -> WorkloadVersion | None:
    prefetched = getattr(workload, "latest_versions", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return workload.versions.defer("preview").order_by("-number").first()


class WorkloadSerializer(serializers.ModelSerializer):
    """A workload: its name and state, and its latest version's spec, dataset and tokenizer (which PUT and
    PATCH replace; a change adds a version). Fields left out of a PUT or PATCH keep their values."""

    spec = serializers.JSONField(help_text=SPEC_HELP)
    dataset = TeamScopedPrimaryKeyRelatedField(
        queryset=WorkloadDataset.objects.defer("payload"),
        allow_null=True,
        required=False,
        help_text="An uploaded dataset (source dataset) or trace (source trace); null for synthetic.",
    )
    tokenizer = TeamScopedPrimaryKeyRelatedField(
        queryset=Tokenizer.objects.defer("content"),
        allow_null=True,
        required=False,
        help_text="An uploaded tokenizer.json for token-exact lengths; null to calibrate against the server.",
    )
    latest = serializers.SerializerMethodField()
    version_count = serializers.SerializerMethodField()

    class Meta:
        model = Workload
        fields = [
            "id", "name", "description", "archived", "spec", "dataset", "tokenizer", "latest", "version_count",
            "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["created_at", "updated_at"]

    def validate_name(self, value: str) -> str:
        clash = Workload.objects.filter(team=self.context["request"].team, name=value.strip())
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(f"A workload named {value.strip()!r} already exists in this team.")
        return value.strip()

    @extend_schema_field(WorkloadVersionSerializer(allow_null=True))
    def get_latest(self, workload: Workload):
        latest = _latest(workload)
        return WorkloadVersionSerializer(latest).data if latest is not None else None

    @extend_schema_field(OpenApiTypes.INT)
    def get_version_count(self, workload: Workload) -> int:
        count = getattr(workload, "version_count", None)
        return count if count is not None else workload.versions.count()

    @property
    def _readable_fields(self):
        # spec, dataset and tokenizer belong to the latest version: to_representation copies them from it.
        for field in super()._readable_fields:
            if field.field_name not in VERSIONED_FIELDS:
                yield field

    def to_representation(self, workload: Workload) -> dict:
        data = super().to_representation(workload)
        latest = data["latest"]
        data["spec"] = latest["spec"] if latest else None
        data["dataset"] = latest["dataset"] if latest else None
        data["tokenizer"] = latest["tokenizer"] if latest else None
        return data


class WorkloadPreviewRequestSerializer(serializers.Serializer):
    """An unsaved spec to preview (the editor)."""

    spec = serializers.JSONField(help_text=SPEC_HELP)
    dataset = TeamScopedPrimaryKeyRelatedField(
        queryset=WorkloadDataset.objects.defer("payload"), allow_null=True, required=False
    )
    tokenizer = TeamScopedPrimaryKeyRelatedField(
        queryset=Tokenizer.objects.defer("content"), allow_null=True, required=False
    )


class WorkloadDatasetSerializer(serializers.ModelSerializer):
    """An uploaded dataset or trace, parsed once (the content itself is never sent back)."""

    format_label = serializers.CharField(source="get_format_display", read_only=True)
    is_trace = serializers.BooleanField(read_only=True)
    version_count = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)

    class Meta:
        model = WorkloadDataset
        fields = [
            "id", "name", "format", "format_label", "is_trace", "original_filename", "sha256", "size_bytes",
            "row_count", "turn_count", "skipped", "notes", "stats", "version_count", "created_by", "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.INT)
    def get_version_count(self, dataset: WorkloadDataset) -> int:
        count = getattr(dataset, "version_count", None)
        return count if count is not None else dataset.versions.count()


class WorkloadDatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="ShareGPT JSON, OpenAI chat JSONL, prompts JSONL/CSV or a trace.")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, help_text="Default: file name.")
    format = serializers.ChoiceField(
        choices=list(FORMATS), required=False, allow_blank=True, help_text="Default: detected from the file."
    )


class TokenizerSerializer(serializers.ModelSerializer):
    """An uploaded tokenizer.json (the file itself is never sent back)."""

    version_count = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)

    class Meta:
        model = Tokenizer
        fields = [
            "id", "name", "variant", "sha256", "size_bytes", "vocab_size", "special_ids", "version_count",
            "created_by", "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.INT)
    def get_version_count(self, tokenizer: Tokenizer) -> int:
        count = getattr(tokenizer, "version_count", None)
        return count if count is not None else tokenizer.versions.count()


class TokenizerUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A Hugging Face tokenizer.json.")
    name = serializers.CharField(max_length=100)
    variant = TeamScopedPrimaryKeyRelatedField(
        queryset=ModelVariant.objects.all(), allow_null=True, required=False, help_text="The model it belongs to."
    )
