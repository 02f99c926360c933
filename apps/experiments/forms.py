from django import forms

from apps.experiments.models import Experiment, TestCase
from apps.providers.models import ProviderEndpoint


class ExperimentForm(forms.ModelForm):
    """One target per line as `endpoint name: model`; test cases from the team's approved ones."""

    targets_text = forms.CharField(
        label="Targets", widget=forms.Textarea(attrs={"rows": 2}),
        help_text="One per line: <endpoint name>: <model>, e.g. Simulator: sim-small",
    )  # fmt: skip
    temperature = forms.FloatField(required=False, min_value=0, max_value=2)
    top_p = forms.FloatField(required=False, min_value=0, max_value=1)
    max_tokens = forms.IntegerField(required=False, min_value=1)
    frequency_penalty = forms.FloatField(required=False, min_value=-2, max_value=2)
    presence_penalty = forms.FloatField(required=False, min_value=-2, max_value=2)
    seed = forms.IntegerField(required=False, min_value=0)

    class Meta:
        model = Experiment
        fields = ["name", "description", "system_prompt", "prompt", "test_cases", "responses_per_item"]

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team
        self.fields["test_cases"].queryset = TestCase.objects.filter(team=team, status=TestCase.Status.APPROVED)
        self.fields["test_cases"].required = False

    def clean_targets_text(self) -> list[tuple[ProviderEndpoint, str]]:
        targets = []
        for number, line in enumerate(self.cleaned_data["targets_text"].splitlines(), 1):
            if not line.strip():
                continue
            name, sep, model = line.partition(":")
            endpoint = ProviderEndpoint.objects.filter(team=self.team, name=name.strip()).first()
            if not sep or not model.strip():
                raise forms.ValidationError(f"Line {number}: write <endpoint name>: <model>.")
            if endpoint is None:
                raise forms.ValidationError(f"Line {number}: no endpoint named {name.strip()!r} in this team.")
            targets.append((endpoint, model.strip()))
        if not targets:
            raise forms.ValidationError("At least one target.")
        return targets

    def clean(self):
        data = super().clean()
        if not data.get("test_cases") and not (data.get("prompt") or "").strip():
            self.add_error("prompt", "Give a prompt or choose approved test cases.")
        return data

    def create_kwargs(self) -> dict:
        data = self.cleaned_data
        names = ("temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty", "seed")
        parameters = {k: data[k] for k in names if data.get(k) is not None}
        return {
            "name": data["name"], "description": data["description"], "system_prompt": data["system_prompt"],
            "prompt": data["prompt"], "test_cases": list(data["test_cases"]), "targets": data["targets_text"],
            "responses_per_item": data["responses_per_item"], "parameters": parameters,
        }  # fmt: skip
