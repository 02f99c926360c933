"""Capacity search API bodies: the search as stored (with its progress on the detail), and the body that creates
one. Foreign keys are ids limited to the request's team; every other rule is services.capacity_validate's, so a
bad value is a 400 naming the field ("slo.objectives[0].max_ms")."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.capacity.engine.slo import describe_slo
from apps.capacity.models import CapacitySearch
from apps.capacity.services import CapacityInvalid, capacity_validate, progress_payload
from apps.hardware.models import Deployment, HardwareProfile
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant
from apps.workloads.models import WorkloadVersion
from llmbench.api import TeamScopedPrimaryKeyRelatedField

SETTINGS = [
    "space", "arrivals", "start_level", "max_level", "tolerance", "probe_duration_s", "warmup_s", "repetitions",
    "max_extra_trials", "max_probes", "shards", "seed", "prompt_tokens", "output_tokens",
]  # fmt: skip
ANSWER = [
    "result", "capacity", "capacity_low", "capacity_high", "capacity_rps", "goodput_rps", "output_tps",
    "output_tps_per_gpu", "output_tps_per_user", "cost_per_1m_output_usd",
]  # fmt: skip


class CapacitySearchSerializer(serializers.ModelSerializer):
    """A search as the list shows it: settings, status and, once found, the answer."""

    slo_text = serializers.SerializerMethodField()
    unit = serializers.CharField(read_only=True)

    class Meta:
        model = CapacitySearch
        fields = [
            "id", "name", "endpoint", "model", "variant", "hardware", "deployment", "workload_version", "slo",
            "slo_text", *SETTINGS, "unit", "status", "phase", "error", "cancel_requested", *ANSWER, "is_simulated",
            "sweep", "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_slo_text(self, search) -> str:
        return describe_slo(search.slo)


class CapacitySearchDetailSerializer(CapacitySearchSerializer):
    """A search with its progress: the probes judged so far, the one running, the bracket, the answer."""

    state = serializers.SerializerMethodField()

    class Meta(CapacitySearchSerializer.Meta):
        fields = [*CapacitySearchSerializer.Meta.fields, "state"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_state(self, search) -> dict:
        return progress_payload(search)


class TeamWorkloadVersionField(serializers.PrimaryKeyRelatedField):
    """A workload version of one of the request's team's workloads."""

    def get_queryset(self):
        return WorkloadVersion.objects.filter(workload__team=self.context["request"].team).select_related("workload")


class CapacitySearchCreateSerializer(serializers.Serializer):
    """What makes a search; what is left out takes its default."""

    name = serializers.CharField(max_length=200)
    endpoint = TeamScopedPrimaryKeyRelatedField(queryset=ProviderEndpoint.objects.all())
    model = serializers.CharField(max_length=200, allow_blank=True)
    variant = TeamScopedPrimaryKeyRelatedField(queryset=ModelVariant.objects.all())
    hardware = TeamScopedPrimaryKeyRelatedField(queryset=HardwareProfile.objects.all(), required=False,
                                                allow_null=True)  # fmt: skip
    deployment = TeamScopedPrimaryKeyRelatedField(queryset=Deployment.objects.all(), required=False,
                                                  allow_null=True)  # fmt: skip
    workload_version = TeamWorkloadVersionField(queryset=WorkloadVersion.objects.all(), required=False,
                                                 allow_null=True)  # fmt: skip
    slo = serializers.JSONField(help_text='{"objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": 500}], '
                                '"max_error_rate": 0.01, "attainment": null, "confidence": 0.95}')  # fmt: skip
    space = serializers.ChoiceField(choices=CapacitySearch.Space.choices, required=False)
    arrivals = serializers.ChoiceField(choices=CapacitySearch.Arrivals.choices, required=False)
    start_level = serializers.FloatField(required=False)
    max_level = serializers.FloatField(required=False)
    tolerance = serializers.FloatField(required=False)
    probe_duration_s = serializers.FloatField(required=False)
    warmup_s = serializers.FloatField(required=False)
    repetitions = serializers.IntegerField(required=False)
    max_extra_trials = serializers.IntegerField(required=False)
    max_probes = serializers.IntegerField(required=False)
    shards = serializers.IntegerField(required=False)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    prompt_tokens = serializers.IntegerField(required=False, min_value=1, max_value=200_000)
    output_tokens = serializers.IntegerField(required=False, min_value=1, max_value=200_000)

    def validate(self, attrs: dict) -> dict:
        try:
            cleaned = capacity_validate({**attrs, "team": self.context["request"].team})
        except CapacityInvalid as exc:
            raise serializers.ValidationError({field: [message] for field, message in exc.errors.items()}) from None
        cleaned.pop("team")
        return cleaned
