from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.gates.models import Gate, GateCheck, Kind
from apps.gates.services import gate_url, run_link

MAX_ID = 2**63 - 1


class RunLinkSerializer(serializers.Serializer):
    kind = serializers.CharField()
    id = serializers.IntegerField()
    title = serializers.CharField()
    url = serializers.CharField(help_text="The run's page (absolute when SITE_URL is set).")
    state = serializers.CharField(help_text="pending, running, completed, failed or cancelled.")


class GateSerializer(serializers.ModelSerializer):
    check = serializers.CharField(source="saved_check.name", default=None, read_only=True, allow_null=True,
                                  help_text="The saved check started, if one was.")  # fmt: skip
    kind_label = serializers.CharField(source="get_kind_display", read_only=True)
    template_run = serializers.IntegerField(source="template_run_id", read_only=True)
    baseline_run = serializers.IntegerField(source="baseline_run_id", read_only=True, allow_null=True)
    endpoint = serializers.IntegerField(source="endpoint_id", read_only=True, allow_null=True)
    run = serializers.SerializerMethodField(help_text="The run this gate started.")
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    passed = serializers.SerializerMethodField(help_text="true / false once judged; null while waiting or on error.")
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True, allow_null=True)
    url = serializers.SerializerMethodField(help_text="The gate's page.")
    results = serializers.JSONField(
        read_only=True,
        help_text="One per criterion: text, kind (threshold | regression), figure, label, unit, value, interval "
        "[low, high], operator, threshold, test, p_value, passed, detail; a regression criterion lists its "
        "comparisons (figure, baseline, current, test, p_value, verdict).",
    )

    class Meta:
        model = Gate
        fields = [
            "id", "name", "check", "kind", "kind_label", "template_run", "endpoint", "model", "criteria",
            "baseline_run", "alpha", "run", "status", "status_label", "passed", "reason", "results", "created_by",
            "created_at", "finished_at", "url",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(RunLinkSerializer(allow_null=True))
    def get_run(self, gate: Gate):
        return run_link(gate)

    @extend_schema_field(serializers.BooleanField(allow_null=True))
    def get_passed(self, gate: Gate):
        return {"passed": True, "failed": False}.get(gate.status)

    @extend_schema_field(serializers.CharField())
    def get_url(self, gate: Gate) -> str:
        return gate_url(gate, absolute=True)


class GateCreateSerializer(serializers.Serializer):
    check = serializers.CharField(required=False, max_length=100, help_text="A saved check's name.")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    kind = serializers.ChoiceField(choices=Kind.choices, required=False, help_text="Without a check: the run kind.")
    run = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID,
                                   help_text="Without a check: the run repeated (its configuration).")  # fmt: skip
    endpoint = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_ID,
                                        help_text="The change under test: run against this endpoint.")  # fmt: skip
    model = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                  help_text="The change under test: ask this model.")  # fmt: skip
    criteria = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=20,
        help_text='e.g. ["pass_rate >= 0.9", "p95_ttft_ms <= 400 ms", "no significant regression at p < 0.05"]',
    )  # fmt: skip
    baseline = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_ID,
                                        help_text="The pinned baseline run (same kind, completed).")  # fmt: skip
    alpha = serializers.FloatField(required=False, min_value=0.0001, max_value=0.5,
                                   help_text="Significance level of regression criteria (default 0.05).")  # fmt: skip


class GateCheckSerializer(serializers.ModelSerializer):
    run = serializers.IntegerField(source="template_run_id", min_value=1, max_value=MAX_ID)
    baseline = serializers.IntegerField(source="baseline_run_id", required=False, allow_null=True, min_value=1,
                                        max_value=MAX_ID)  # fmt: skip
    endpoint = serializers.IntegerField(source="endpoint_id", required=False, allow_null=True, min_value=1,
                                        max_value=MAX_ID)  # fmt: skip
    criteria = serializers.ListField(child=serializers.CharField(max_length=200), max_length=20)
    alpha = serializers.FloatField(required=False, min_value=0.0001, max_value=0.5)
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=300)
    kind_label = serializers.CharField(source="get_kind_display", read_only=True)

    class Meta:
        model = GateCheck
        fields = ["id", "name", "description", "kind", "kind_label", "run", "endpoint", "model", "criteria",
                  "baseline", "alpha", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["id", "created_at", "updated_at"]
        # uniqueness per team is checked by the service (the team is not in the body)
        validators: list = []
