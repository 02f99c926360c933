from django import forms

from apps.providers.models import ProviderEndpoint


class EndpointForm(forms.ModelForm):
    """The key field is write-only: it is never rendered back, and left empty keeps the stored key."""

    api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave empty to keep the stored key.",
    )
    remove_api_key = forms.BooleanField(required=False, label="Remove the stored key")
    model_names = forms.CharField(required=False, help_text="Comma-separated; filled by “Test connection”.")

    class Meta:
        model = ProviderEndpoint
        fields = [
            "name", "kind", "base_url", "model_names", "requests_per_minute", "tokens_per_minute", "max_concurrency",
            "price_input_per_1m_usd", "price_output_per_1m_usd", "connect_timeout_s", "read_timeout_s",
            "total_timeout_s",
        ]  # fmt: skip

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team
        if self.instance.pk:
            self.initial["model_names"] = ", ".join(self.instance.model_names)
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
        if data.get("kind") and data["kind"] != "sim" and not data.get("base_url"):
            self.add_error("base_url", "A base URL is required for this kind.")
        return data

    def new_api_key(self) -> str | None:
        """None keeps the stored key, "" removes it."""
        if self.cleaned_data.get("remove_api_key"):
            return ""
        return self.cleaned_data.get("api_key") or None
