from django import forms

from apps.batches.models import LoadSweep
from apps.hardware.models import Deployment, HardwareProfile
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant

MAX_STEPS = 20


class LoadSweepForm(forms.ModelForm):
    """A load sweep; every choice is limited to the team, and the steps are a comma-separated list."""

    levels = forms.CharField(help_text="Concurrency levels (e.g. 1,4,16,64) or request rates in req/s (e.g. 5,10,20).")
    prompts_text = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label="Prompts",
        help_text="Optional: one prompt per line instead of synthetic text.",
    )  # fmt: skip

    class Meta:
        model = LoadSweep
        fields = [
            "name", "endpoint", "model", "variant", "hardware", "deployment", "mode", "arrivals", "levels",
            "step_duration_s", "step_request_count", "prompt_tokens", "prompt_tokens_stdev", "output_tokens",
            "ignore_eos", "temperature", "seed",
        ]  # fmt: skip

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        for name, model in (("endpoint", ProviderEndpoint), ("variant", ModelVariant), ("hardware", HardwareProfile),
                            ("deployment", Deployment)):  # fmt: skip
            self.fields[name].queryset = model.objects.filter(team=team)

    def clean_levels(self) -> list[float]:
        raw = self.cleaned_data["levels"]
        items = raw if isinstance(raw, list) else str(raw).split(",")
        try:
            levels = [float(str(v).strip()) for v in items if str(v).strip()]
        except ValueError:
            raise forms.ValidationError("Numbers separated by commas, e.g. 1,4,16.") from None
        if not levels or len(levels) > MAX_STEPS or any(v <= 0 for v in levels):
            raise forms.ValidationError(f"Between 1 and {MAX_STEPS} positive numbers.")
        return levels

    def clean(self):
        data = super().clean()
        if data.get("step_duration_s") is None and data.get("step_request_count") is None:
            self.add_error("step_duration_s", "Give a duration or a request count per step.")
        if data.get("mode") == LoadSweep.Mode.CLOSED and any(v != int(v) for v in data.get("levels") or []):
            self.add_error("levels", "Concurrency levels are whole numbers.")
        return data

    def sweep_fields(self) -> dict:
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        data["prompts"] = [p.strip() for p in self.cleaned_data.get("prompts_text", "").splitlines() if p.strip()]
        return data
