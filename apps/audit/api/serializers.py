from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.audit.catalog import action_words, object_type_words
from apps.audit.models import AuditEntry


class AuditEntrySerializer(serializers.ModelSerializer):
    action_label = serializers.SerializerMethodField(help_text="The action in words.")
    object_type_label = serializers.SerializerMethodField(help_text="The object type in words.")
    team = serializers.CharField(source="team_label", read_only=True, help_text="The team's name at the time.")
    actor = serializers.CharField(
        source="actor_label",
        read_only=True,
        help_text="Username at the time, and the API token used (name and prefix).",
    )
    actor_id = serializers.IntegerField(read_only=True, allow_null=True, help_text="The user's id; null: system.")
    changes = serializers.JSONField(
        read_only=True, help_text='{"field": [before, after]}; secrets never appear (a provider key only as its hint).'
    )

    class Meta:
        model = AuditEntry
        fields = [
            "id", "at", "team", "actor", "actor_id", "via", "action", "action_label", "object_type",
            "object_type_label", "object_id", "object_repr", "changes", "ip", "request_id",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_action_label(self, entry: AuditEntry) -> str:
        return action_words(entry.action)

    @extend_schema_field(serializers.CharField())
    def get_object_type_label(self, entry: AuditEntry) -> str:
        return object_type_words(entry.object_type) if entry.object_type else ""
