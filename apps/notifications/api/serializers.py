from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.notifications.events import EVENTS
from apps.notifications.models import Channel, Delivery, DeliveryAttempt
from apps.notifications.services import channel_errors


class ChannelSerializer(serializers.ModelSerializer):
    """A channel. `secret` (webhooks) appears only in the answer to its creation and to /rotate-secret."""

    events = serializers.ListField(
        child=serializers.ChoiceField(choices=list(EVENTS)), required=False, help_text="The events it carries."
    )
    format = serializers.ChoiceField(
        choices=Channel.Format.choices, required=False, allow_blank=True, help_text="Webhooks only (blank for e-mail)."
    )
    target = serializers.CharField(read_only=True, help_text="Where it sends (a webhook's host only).")
    has_secret = serializers.SerializerMethodField(help_text="A webhook signs each post with its secret.")

    class Meta:
        model = Channel
        fields = ["id", "name", "kind", "url", "email", "format", "events", "active", "target", "has_secret",
                  "created_at"]  # fmt: skip
        read_only_fields = ["created_at"]

    @extend_schema_field(serializers.BooleanField())
    def get_has_secret(self, channel: Channel) -> bool:
        return bool(channel.secret_encrypted)

    def validate_name(self, value: str) -> str:
        clash = Channel.objects.filter(team=self.context["request"].team, name=value.strip())
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError("A channel with this name already exists in the team.")
        return value.strip()

    def validate(self, attrs):
        if self.instance is not None and "kind" in attrs and attrs["kind"] != self.instance.kind:
            raise serializers.ValidationError({"kind": "A channel's kind cannot change; make a new channel."})
        current = self.instance
        kind = attrs.get("kind", getattr(current, "kind", None))
        if kind is None:
            raise serializers.ValidationError({"kind": "This field is required."})
        errors = channel_errors(
            kind=kind,
            url=attrs.get("url", getattr(current, "url", "")).strip(),
            email=attrs.get("email", getattr(current, "email", "")),
            fmt=attrs.get("format", getattr(current, "format", "") or Channel.Format.GENERIC),
            events=attrs.get("events", getattr(current, "events", [])),
        )
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class ChannelCreatedSerializer(ChannelSerializer):
    """The answer to creating a channel: a webhook's signing secret, this once."""

    secret = serializers.CharField(
        read_only=True, required=False, help_text="Webhooks: the signing secret, shown only in this answer."
    )

    class Meta(ChannelSerializer.Meta):
        fields = [*ChannelSerializer.Meta.fields, "secret"]


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "at", "outcome", "status_code", "response", "duration_ms"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    """One event sent to one channel or member address, with every try."""

    event = serializers.CharField(source="event.event", read_only=True)
    event_label = serializers.CharField(source="event.event_label", read_only=True)
    title = serializers.CharField(source="event.title", read_only=True)
    attempt_log = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id", "key", "event", "event_label", "title", "channel", "channel_name", "kind", "recipient", "status",
            "attempts", "max_attempts", "next_attempt_at", "last_status_code", "last_response", "last_duration_ms",
            "created_at", "finished_at", "attempt_log",
        ]  # fmt: skip
        read_only_fields = fields


class PreferenceSerializer(serializers.Serializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=list(EVENTS)), allow_empty=True,
        help_text="The events you receive by e-mail in this team.",
    )  # fmt: skip
    email = serializers.CharField(read_only=True, help_text="Where they go (empty: you receive none).")
    available = serializers.DictField(read_only=True, help_text="Every event and its words.")
