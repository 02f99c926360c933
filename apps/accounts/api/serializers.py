from rest_framework import serializers

from apps.accounts.models import ApiToken, Membership


class MembershipSerializer(serializers.ModelSerializer):
    team_id = serializers.IntegerField(source="team.id")
    team_name = serializers.CharField(source="team.name")
    team_slug = serializers.CharField(source="team.slug")

    class Meta:
        model = Membership
        fields = ["team_id", "team_name", "team_slug", "role"]


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    team = MembershipSerializer()
    teams = MembershipSerializer(many=True)


class ApiTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "key_prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = ["key_prefix", "created_at", "last_used_at", "revoked_at"]


class IssuedTokenSerializer(ApiTokenSerializer):
    key = serializers.CharField(read_only=True, help_text="The key, shown this once.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "key"]
