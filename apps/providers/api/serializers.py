from django.conf import settings
from rest_framework import serializers

from apps.providers.engine.scrape import check_metrics_url
from apps.providers.engine.sim import check_sim_url
from apps.providers.models import ProviderEndpoint
from apps.providers.urlcheck import UrlRefused, check_base_url


class ProviderEndpointSerializer(serializers.ModelSerializer):
    """`api_key` is write-only; responses show `key_hint` (the last 4 characters) only."""

    api_key = serializers.CharField(write_only=True, required=False, allow_blank=True, trim_whitespace=True)
    key_hint = serializers.CharField(read_only=True)
    is_simulated = serializers.BooleanField(read_only=True)

    class Meta:
        model = ProviderEndpoint
        fields = [
            "id", "name", "kind", "base_url", "api_key", "key_hint", "is_simulated", "model_names",
            "requests_per_minute", "tokens_per_minute", "max_concurrency", "price_input_per_1m_usd",
            "price_output_per_1m_usd", "connect_timeout_s", "read_timeout_s", "total_timeout_s", "metrics_url",
            "gpu_metrics_url", "last_test_at", "last_test_ok", "last_test_message", "created_at",
        ]  # fmt: skip
        read_only_fields = ["last_test_at", "last_test_ok", "last_test_message", "created_at"]

    def validate_name(self, value: str) -> str:
        clash = ProviderEndpoint.objects.filter(team=self.context["request"].team, name=value.strip())
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError("An endpoint with this name already exists in the team.")
        return value.strip()

    def validate_model_names(self, value):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise serializers.ValidationError("A list of model names.")
        return value

    def _metrics_url(self, value: str) -> str:
        """A server or GPU metrics URL: empty (not scraped), or allowed by the same rules as a base URL."""
        value = value.strip()
        if value:
            try:
                check_metrics_url(value)
            except UrlRefused as exc:
                raise serializers.ValidationError(str(exc)) from None
            except ValueError as exc:  # urlsplit and the IDNA codec refuse some URLs before any rule applies
                raise serializers.ValidationError(f"Not a usable URL: {exc}.") from None
        return value

    def validate_metrics_url(self, value: str) -> str:
        return self._metrics_url(value)

    def validate_gpu_metrics_url(self, value: str) -> str:
        return self._metrics_url(value)

    def validate(self, attrs):
        kind = attrs.get("kind", getattr(self.instance, "kind", None))
        base_url = attrs.get("base_url", getattr(self.instance, "base_url", ""))
        if kind == "sim":
            try:
                check_sim_url(base_url, answer_key_dirs=tuple(settings.SIM_ANSWER_KEY_DIRS))
            except ValueError as exc:
                raise serializers.ValidationError({"base_url": str(exc)}) from None
        else:
            if not base_url:
                raise serializers.ValidationError({"base_url": "A base URL is required for this kind."})
            try:
                check_base_url(base_url)
            except UrlRefused as exc:
                raise serializers.ValidationError({"base_url": str(exc)}) from None
            except ValueError as exc:  # urlsplit and the IDNA codec refuse some URLs before any rule applies
                raise serializers.ValidationError({"base_url": f"Not a usable URL: {exc}."}) from None
        return attrs
