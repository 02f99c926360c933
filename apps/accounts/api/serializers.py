from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from apps.accounts.models import ApiToken, Membership
from apps.accounts.services import TOKEN_MAX_DAYS


class MembershipSerializer(serializers.ModelSerializer):
    team_id = serializers.IntegerField(source="team.id")
    team_name = serializers.CharField(source="team.name")
    team_slug = serializers.CharField(source="team.slug")

    class Meta:
        model = Membership
        fields = ["team_id", "team_name", "team_slug", "role"]


class ApiTokenSerializer(serializers.ModelSerializer):
    expires_in_days = serializers.IntegerField(
        write_only=True,
        required=False,
        allow_null=True,
        min_value=1,
        max_value=TOKEN_MAX_DAYS,
        help_text="The key stops working this many days from now. Left out or null: never.",
    )

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "key_prefix",
            "scope",
            "expires_in_days",
            "expires_at",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = ["key_prefix", "expires_at", "created_at", "last_used_at", "revoked_at"]


class IssuedTokenSerializer(ApiTokenSerializer):
    key = serializers.CharField(read_only=True, help_text="The key, shown this once.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "key"]


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    team = MembershipSerializer(help_text="The team this request acts in, and your role there.")
    teams = MembershipSerializer(many=True)
    token = ApiTokenSerializer(
        allow_null=True, help_text="The API token this request was made with; null for a browser session."
    )


class LoginSerializer(serializers.Serializer):
    """POST /api/v1/auth/login: a password sign-in that answers a new API token."""

    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    team = serializers.SlugField(
        max_length=50, required=False, help_text="The slug of the team the token acts in; default your first team."
    )
    name = serializers.CharField(max_length=100, required=False, default="API login", help_text="What the key is for.")
    expires_in_days = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=TOKEN_MAX_DAYS,
        help_text="The token's lifetime in days, at most API_LOGIN_TOKEN_DAYS (the default). 0 (never expires) "
        "only when API_LOGIN_TOKEN_DAYS is 0.",
    )
    scope = serializers.ChoiceField(choices=ApiToken.Scope.choices, default=ApiToken.Scope.FULL)


class SignedInSerializer(serializers.Serializer):
    """The answer of signing in or registering: the key once, its token, who and where it acts."""

    key = serializers.CharField(help_text="The API key, shown this once: send `Authorization: Token <key>`.")
    token = ApiTokenSerializer()
    username = serializers.CharField()
    team = MembershipSerializer()


class RegisterSerializer(serializers.Serializer):
    """POST /api/v1/auth/register (REGISTRATION_OPEN): a new account with a team of its own."""

    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    team_name = serializers.CharField(
        max_length=100, required=False, default="", help_text="Your team's name; default your username."
    )

    def validate_username(self, value: str) -> str:
        get_user_model().username_validator(value)
        if get_user_model().objects.filter(username__iexact=value).exists():
            raise serializers.ValidationError("This username is taken.")
        return value

    def validate_email(self, value: str) -> str:
        # Single sign-on matches accounts by e-mail: two accounts with one address would be ambiguous.
        if get_user_model().objects.filter(email__iexact=value).exists():
            raise serializers.ValidationError("An account with this e-mail address exists already.")
        return value

    def validate(self, attrs: dict) -> dict:
        user = get_user_model()(username=attrs["username"], email=attrs["email"])
        try:
            password_validation.validate_password(attrs["password"], user=user)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from None
        return attrs
