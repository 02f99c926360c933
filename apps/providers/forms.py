from django import forms
from django.conf import settings

from apps.providers.engine.scrape import check_metrics_url
from apps.providers.engine.sim import check_sim_url
from apps.providers.models import KIND_LABELS, ProviderEndpoint
from apps.providers.urlcheck import UrlRefused

METRICS_URL_FIELDS = ("metrics_url", "gpu_metrics_url")  # scraped during load steps (docs/server-metrics.md)


class EndpointForm(forms.ModelForm):
    """The key field is write-only: it is never rendered back, and left empty keeps the stored key."""

    api_key = forms.CharField(
        required=False,
        label="API key",
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave empty to keep the stored key.",
    )
    remove_api_key = forms.BooleanField(required=False, label="Remove the stored key")
    model_names = forms.CharField(
        required=False, label="Model names", help_text="Comma-separated; filled by “Test connection”."
    )

    class Meta:
        model = ProviderEndpoint
        fields = [
            "name", "kind", "base_url", "model_names", "requests_per_minute", "tokens_per_minute", "max_concurrency",
            "price_input_per_1m_usd", "price_output_per_1m_usd", "connect_timeout_s", "read_timeout_s",
            "total_timeout_s", "metrics_url", "gpu_metrics_url",
        ]  # fmt: skip
        labels = {
            "base_url": "Base URL", "requests_per_minute": "Requests per minute", "tokens_per_minute": "Tokens per minute",
            "max_concurrency": "Requests at once (at most)", "price_input_per_1m_usd": "Input price (USD per 1M tokens)",
            "price_output_per_1m_usd": "Output price (USD per 1M tokens)", "connect_timeout_s": "Connect timeout (s)",
            "read_timeout_s": "Read timeout (s)", "total_timeout_s": "Total timeout (s)",
            "metrics_url": "Server metrics URL (optional)", "gpu_metrics_url": "GPU metrics URL (optional)",
        }  # fmt: skip

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team
        self.fields["kind"].choices = [("", "Choose a kind"), *((k.value, label) for k, label in KIND_LABELS.items())]
        # A list is shown as the comma-separated text the field takes (a new endpoint's [] as nothing).
        self.initial["model_names"] = ", ".join(self.instance.model_names or [])
        if self.instance.pk:
            self.fields["api_key"].help_text = (
                f"Stored key {self.instance.key_hint}; leave empty to keep it."
                if self.instance.key_hint
                else "No key stored."
            )

    def clean_model_names(self) -> list[str]:
        return [n.strip() for n in self.cleaned_data["model_names"].split(",") if n.strip()]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        clash = ProviderEndpoint.objects.filter(team=self.team, name=name).exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("An endpoint with this name already exists in the team.")
        return name

    def clean(self):
        data = super().clean()
        for name in METRICS_URL_FIELDS:  # the same rules as a base URL; empty: not scraped
            if data.get(name):
                try:
                    check_metrics_url(data[name])
                except UrlRefused as exc:
                    self.add_error(name, str(exc))
                except ValueError as exc:  # urlsplit and the IDNA codec refuse some URLs before any rule applies
                    self.add_error(name, f"Not a usable URL: {exc}.")
        if data.get("kind") == "sim":
            try:
                check_sim_url(data.get("base_url", ""), answer_key_dirs=tuple(settings.SIM_ANSWER_KEY_DIRS))
            except ValueError as exc:
                self.add_error("base_url", str(exc))
        elif data.get("kind") and not data.get("base_url"):
            self.add_error("base_url", "A base URL is required for this kind.")
        return data

    def new_api_key(self) -> str | None:
        """None keeps the stored key, "" removes it."""
        if self.cleaned_data.get("remove_api_key"):
            return ""
        return self.cleaned_data.get("api_key") or None
