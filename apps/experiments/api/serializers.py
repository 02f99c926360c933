from rest_framework import serializers

from apps.experiments.models import EVALUATOR_KINDS, TestCase


class TestCaseSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username", read_only=True, default=None)
    reviewer = serializers.CharField(source="reviewer.username", read_only=True, default=None)
    submit = serializers.BooleanField(write_only=True, required=False, default=False)

    class Meta:
        model = TestCase
        fields = [
            "id", "lineage", "version", "is_current", "title", "system_prompt", "prompt", "expected_output",
            "evaluator", "evaluator_settings", "tags", "status", "author", "reviewer", "reviewed_at", "review_reason",
            "created_at", "submit",
        ]  # fmt: skip
        read_only_fields = ["lineage", "version", "is_current", "status", "reviewed_at", "review_reason", "created_at"]

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


class ExperimentSerializer(serializers.ModelSerializer):
    targets = serializers.SerializerMethodField()

    class Meta:
        from apps.experiments.models import Experiment

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
            "evaluation_error", "quality", "created_at",
        ]  # fmt: skip
