from rest_framework import serializers

from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun, RequestSample, RunSummary
from apps.hardware.services import itl_from_bytes


class UniqueNameInTeamMixin:
    """`name` is unique within the request's team (the database says so too; this says it as a 400)."""

    def validate_name(self, value: str) -> str:
        model = self.Meta.model
        clash = model.objects.filter(team=self.context["request"].team, name=value.strip())
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(f"{model._meta.verbose_name} {value!r} already exists in this team.")
        return value.strip()


class HardwareProfileSerializer(UniqueNameInTeamMixin, serializers.ModelSerializer):
    class Meta:
        model = HardwareProfile
        fields = [
            "id", "name", "accelerator", "accelerator_count", "memory_per_device_gb", "interconnect", "cpu",
            "ram_gb", "hourly_cost_usd", "notes",
        ]  # fmt: skip


class DeploymentSerializer(UniqueNameInTeamMixin, serializers.ModelSerializer):
    class Meta:
        model = Deployment
        fields = [
            "id", "name", "engine", "engine_version", "tensor_parallel", "pipeline_parallel", "max_batch_size",
            "kv_cache_dtype", "settings", "notes",
        ]  # fmt: skip


class RunSummarySerializer(serializers.ModelSerializer):
    error_rate = serializers.FloatField(read_only=True)

    class Meta:
        model = RunSummary
        fields = [
            "source", "request_count", "error_count", "error_rate", "errors_by_code", "metrics", "itl_source",
            "duration_s", "request_throughput_rps", "output_token_throughput_tps", "total_token_throughput_tps",
            "goodput_rps", "goodput_slo", "computed_at",
        ]  # fmt: skip


class PerformanceRunSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="variant.model_name", read_only=True)
    quantization = serializers.CharField(source="variant.quantization", read_only=True)
    hardware_name = serializers.CharField(source="hardware.name", read_only=True, default=None)
    deployment_name = serializers.CharField(source="deployment.name", read_only=True, default=None)
    summary = RunSummarySerializer(read_only=True)

    class Meta:
        model = PerformanceRun
        fields = [
            "id", "name", "variant", "model_name", "quantization", "hardware", "hardware_name", "deployment",
            "deployment_name", "concurrency", "request_rate_rps", "input_tokens_target", "output_tokens_target",
            "dataset", "tool", "tool_version", "source_format", "source_filename", "provider", "started_at",
            "duration_s", "tags", "notes", "is_simulated", "slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms", "created_at",
            "summary",
        ]  # fmt: skip
        read_only_fields = [
            f for f in fields if f not in ("name", "tags", "notes", "slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms")
        ]

    def validate_tags(self, value):
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise serializers.ValidationError("A list of strings.")
        return value

    def validate(self, attrs):
        for key in ("slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms"):
            if attrs.get(key) is not None and attrs[key] < 0:
                raise serializers.ValidationError({key: "Must not be negative."})
        return attrs


class RequestSampleSerializer(serializers.ModelSerializer):
    itl_ms = serializers.SerializerMethodField()

    class Meta:
        model = RequestSample
        fields = [
            "index", "error_code", "error_message", "ttft_ms", "e2e_ms", "input_tokens", "output_tokens",
            "mean_itl_ms", "itl_ms", "start_offset_ms",
        ]  # fmt: skip

    def get_itl_ms(self, sample) -> list[float] | None:
        gaps = itl_from_bytes(sample.itl_ms)
        return None if gaps is None else gaps.tolist()


class PerformanceUploadResultSerializer(serializers.Serializer):
    format = serializers.CharField()
    runs = PerformanceRunSerializer(many=True)
    samples = serializers.IntegerField()


class PredictRequestSerializer(serializers.Serializer):
    variant = serializers.IntegerField()
    hardware = serializers.IntegerField()
    input_tokens = serializers.FloatField(min_value=1)
    output_tokens = serializers.FloatField(min_value=1)
    concurrency = serializers.FloatField(min_value=1)
