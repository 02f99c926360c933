import json

from django import forms

from apps.experiments.evaluators import SettingsError, validate_settings
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


class TestCaseForm(forms.ModelForm):
    """A test case; the evaluator's settings are JSON, checked by the evaluator itself."""

    __test__ = False
    tags_text = forms.CharField(required=False, label="Tags", help_text="Comma-separated.")
    settings_json = forms.CharField(
        required=False, label="Evaluator settings", widget=forms.Textarea(attrs={"rows": 3}),
        help_text='JSON, e.g. {"case_sensitive": true} or {"schema": {...}}; see docs/evaluators.md.',
    )  # fmt: skip

    class Meta:
        model = TestCase
        fields = ["title", "system_prompt", "prompt", "expected_output", "evaluator"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["tags_text"] = ", ".join(self.instance.tags)
            self.initial["settings_json"] = json.dumps(self.instance.evaluator_settings)

    def clean(self):
        data = super().clean()
        raw = (data.get("settings_json") or "").strip()
        try:
            settings = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            self.add_error("settings_json", f"Not valid JSON: {exc.msg}.")
            return data
        try:
            data["evaluator_settings"] = validate_settings(data.get("evaluator") or "exact_match", settings)
        except SettingsError as exc:
            self.add_error("settings_json", str(exc))
        data["tags"] = [t.strip() for t in (data.get("tags_text") or "").split(",") if t.strip()]
        return data

    def content(self) -> dict:
        data = self.cleaned_data
        return {name: data[name] for name in (*self.Meta.fields, "evaluator_settings", "tags")}
