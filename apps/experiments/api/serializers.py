from rest_framework import serializers

from apps.experiments.models import EVALUATOR_KINDS, Experiment, TestCase


def full_update_data(data, model, fields) -> dict:
    """A PUT body as a full representation: every field it leaves out takes the model's default
    (empty for optional text); fields without one stay required."""
    body = {}
    for name in fields:
        field = model._meta.get_field(name)
        if field.has_default() or field.blank:
            body[name] = field.get_default()
    body.update({key: data[key] for key in data})
    return body


class TestCaseSerializer(serializers.ModelSerializer):
    # null until reviewed (reviewer), or once the user is deleted (both foreign keys are SET_NULL)
    author = serializers.CharField(source="author.username", read_only=True, default=None, allow_null=True)
    reviewer = serializers.CharField(source="reviewer.username", read_only=True, default=None, allow_null=True)
    submit = serializers.BooleanField(write_only=True, required=False, default=False)
    retired = serializers.SerializerMethodField(help_text="Deleted: no version of it is current, it is in no suite.")

    class Meta:
        model = TestCase
        fields = [
            "id", "lineage", "version", "is_current", "retired", "title", "system_prompt", "prompt", "expected_output",
            "evaluator", "evaluator_settings", "tags", "status", "author", "reviewer", "reviewed_at", "review_reason",
            "created_at", "submit",
        ]  # fmt: skip
        read_only_fields = ["lineage", "version", "is_current", "status", "reviewed_at", "review_reason", "created_at"]

    def get_retired(self, case) -> bool:
        if case.is_current:
            return False
        live = getattr(case, "lineage_live", None)  # annotated by the list
        if live is None:
            live = TestCase.objects.filter(lineage=case.lineage, is_current=True).exists()
        return not live

    def validate_evaluator(self, value: str) -> str:
        if value not in EVALUATOR_KINDS:
            raise serializers.ValidationError(f"One of: {', '.join(EVALUATOR_KINDS)}.")
        return value

    def validate_tags(self, value):
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise serializers.ValidationError("A list of strings.")
        return value

    def validate_evaluator_settings(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("An object of settings.")
        return value


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField()


class ParametersSerializer(serializers.Serializer):
    """Sampling parameters of an experiment, each optional and within the range every provider takes."""

    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, min_value=0, max_value=1)
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)  # as ExperimentForm
    frequency_penalty = serializers.FloatField(required=False, min_value=-2, max_value=2)
    presence_penalty = serializers.FloatField(required=False, min_value=-2, max_value=2)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1)

    def to_internal_value(self, data):
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(self.fields))):
            raise serializers.ValidationError(
                {name: [f"Not a sampling parameter (known: {', '.join(self.fields)})."] for name in unknown}
            )
        return dict(super().to_internal_value(data))


class ExperimentUpdateSerializer(serializers.ModelSerializer):
    """What PATCH and PUT may change: the description at any time, the setup (prompts, parameters,
    responses per item) until the experiment has started. The model's validators bound the prompts
    (settings.PROMPT_MAX_CHARS) and responses per item (at least 1)."""

    parameters = ParametersSerializer(required=False)

    class Meta:
        model = Experiment
        fields = [
            "name", "description", "tags", "favourite", "archived", "system_prompt", "prompt", "parameters",
            "responses_per_item",
        ]  # fmt: skip

    def validate_tags(self, value):
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise serializers.ValidationError("A list of strings.")
        return value

    def validate(self, attrs):
        experiment = self.instance
        if "prompt" in attrs and not attrs["prompt"].strip() and not experiment.test_cases.exists():
            raise serializers.ValidationError({"prompt": ["Give a prompt: this experiment has no test cases."]})
        return attrs


class ExperimentSerializer(serializers.ModelSerializer):
    targets = serializers.SerializerMethodField()

    class Meta:
        model = Experiment
        fields = [
            "id", "name", "kind", "description", "tags", "favourite", "archived", "system_prompt", "prompt", "test_cases",
            "parameters", "responses_per_item", "status", "error", "created_at", "started_at", "finished_at", "targets",
        ]  # fmt: skip
        read_only_fields = fields

    def get_targets(self, experiment) -> list[dict]:
        return [{"id": t.pk, "endpoint": t.endpoint_id, "model": t.model} for t in experiment.targets.all()]


class ResponseSerializer(serializers.ModelSerializer):
    class Meta:
        from apps.experiments.models import Response

        model = Response
        fields = [
            "id", "target", "test_case", "combination", "repetition", "content", "parameters", "input_tokens", "output_tokens",
            "ttft_ms", "latency_ms", "cost_usd", "error_code", "error_message", "passed", "score", "evaluation",
            "evaluation_error", "quality", "is_simulated", "created_at",
        ]  # fmt: skip


class TargetSummarySerializer(serializers.Serializer):
    """Documents GET /experiments/{id}/metrics: one row per target (selectors.TargetSummary)."""

    target_id = serializers.IntegerField()
    label = serializers.CharField(help_text='The target, with " (simulated)" for simulated endpoints.')
    name = serializers.CharField()
    endpoint_name = serializers.CharField()
    model = serializers.CharField()
    is_simulated = serializers.BooleanField()
    responses = serializers.IntegerField()
    errors = serializers.IntegerField()
    evaluated = serializers.IntegerField()
    passed = serializers.IntegerField()
    pass_rate = serializers.FloatField(allow_null=True, help_text="0–1; null before any response is evaluated.")
    pass_rate_ci = serializers.ListField(
        child=serializers.FloatField(), min_length=2, max_length=2, allow_null=True,
        help_text="Wilson 95% interval [low, high]; null when too few responses (pass_rate_ci_note says why).",
    )  # fmt: skip
    mean_score = serializers.FloatField(allow_null=True)
    mean_score_ci = serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2, allow_null=True)
    pass_rate_ci_note = serializers.CharField(allow_blank=True)
    mean_score_ci_note = serializers.CharField(allow_blank=True)
    quality = serializers.DictField(child=serializers.FloatField(), help_text="Mean of each quality metric, 0–100.")
    mean_latency_ms = serializers.FloatField(allow_null=True)
    mean_ttft_ms = serializers.FloatField(allow_null=True)
    cost_usd = serializers.FloatField()
