"""The start-a-gate form and the saved-check form: the rules are services.config_clean's; its problems are shown next
to the field they concern."""

from django import forms

from apps.gates.models import GateCheck, Kind
from apps.providers.models import ProviderEndpoint

MAX_ID = 2**63 - 1
CRITERIA_HELP = (
    "One per line, e.g. “pass_rate >= 0.9”, “p95_ttft_ms <= 400 ms”, “no significant regression at p < 0.05” "
    "(needs a baseline run). See the CI gates guide for each run kind's figures."
)


class _ConfigForm(forms.Form):
    kind = forms.ChoiceField(choices=[("", "—"), *list(Kind.choices)], required=False, label="Run kind")
    run = forms.IntegerField(min_value=1, max_value=MAX_ID, required=False, label="Run to repeat",
                             help_text="Its number, as in the run page's address (e.g. 12 in /experiments/12/).")  # fmt: skip
    endpoint = forms.ModelChoiceField(queryset=ProviderEndpoint.objects.none(), required=False,
                                      label="Run against this endpoint instead",
                                      help_text="The change under test (optional).")  # fmt: skip
    model = forms.CharField(max_length=200, required=False, label="Ask this model instead",
                            help_text="The change under test (optional): the model name sent to the endpoint.")  # fmt: skip
    criteria = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, label="Criteria",
                               help_text=CRITERIA_HELP)  # fmt: skip
    baseline = forms.IntegerField(min_value=1, max_value=MAX_ID, required=False, label="Baseline run",
                                  help_text="A completed run of the same kind the regression test compares with.")  # fmt: skip
    alpha = forms.FloatField(min_value=0.0001, max_value=0.5, required=False, initial=0.05,
                             label="Significance level", help_text="For “no significant regression”; 0.05 by default.")  # fmt: skip

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = ProviderEndpoint.objects.filter(team=team).order_by("name")

    def criteria_lines(self) -> list[str]:
        return [line.strip() for line in (self.cleaned_data.get("criteria") or "").splitlines() if line.strip()]

    def add_service_errors(self, errors: dict[str, list[str]]) -> None:
        for field, messages in errors.items():
            for message in messages:
                self.add_error(field if field in self.fields else None, message)


class GateStartForm(_ConfigForm):
    check = forms.ModelChoiceField(queryset=GateCheck.objects.none(), required=False, label="Saved check",
                                   to_field_name="name",
                                   help_text="Start a saved check; the fields below, when filled, replace its own.")  # fmt: skip
    name = forms.CharField(max_length=200, required=False, label="Name (optional)")

    field_order = ["check", "name", "kind", "run", "endpoint", "model", "criteria", "baseline", "alpha"]

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, team=team, **kwargs)
        self.fields["check"].queryset = GateCheck.objects.filter(team=team)


class GateCheckForm(_ConfigForm):
    name = forms.SlugField(max_length=100, label="Name", help_text="Letters, digits, - and _: what a pipeline names.")
    description = forms.CharField(max_length=300, required=False, label="Description")

    field_order = ["name", "description", "kind", "run", "endpoint", "model", "criteria", "baseline", "alpha"]
