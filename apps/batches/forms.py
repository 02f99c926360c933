from django import forms
from django.core.validators import MinValueValidator

from apps.batches.models import Batch, LoadSweep
from apps.batches.parameters import PARAMETERS, RangeError, expand_all, parse_text
from apps.batches.services import Estimate, batch_estimate
from apps.experiments.forms import ExperimentForm
from apps.experiments.models import Suite
from apps.hardware.models import Deployment, HardwareProfile
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant

MAX_STEPS = 20
MAX_BATCH_CONCURRENCY = 256


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


class BatchForm(ExperimentForm):
    """A parameter sweep: the experiment form's targets, prompt or approved test cases (or a
    suite), with each sampling parameter as a range (`0.1:1.0:0.1`), a list (`150, 300`) or one
    value; the API gives `parameter_ranges` in the seed format instead."""

    temperature = forms.CharField(required=False, help_text="min:max:step, a list or one value, e.g. 0.1:1.0:0.1")
    top_p = forms.CharField(required=False, help_text="e.g. 0.8:1.0:0.05")
    max_tokens = forms.CharField(required=False, help_text="e.g. 150, 300, 500")
    frequency_penalty = forms.CharField(required=False)
    presence_penalty = forms.CharField(required=False)
    seed = forms.CharField(required=False)
    parameter_ranges = forms.JSONField(required=False, widget=forms.HiddenInput)
    suite = forms.ModelChoiceField(queryset=Suite.objects.none(), required=False,
                                   help_text="Its approved test cases, instead of choosing them.")  # fmt: skip
    concurrency = forms.IntegerField(min_value=1, max_value=MAX_BATCH_CONCURRENCY, initial=4,
                                     help_text="Requests in flight at once (the endpoint's own limit still applies).")  # fmt: skip
    objective = forms.ChoiceField(choices=Batch.Objective.choices, initial=Batch.Objective.OVERALL,
                                  help_text="The figure of the heatmap and of the best settings so far.")  # fmt: skip
    confirm = forms.BooleanField(required=False, label="Start even though it is over the team's limit")

    field_order = [
        "name", "description", "targets_text", "system_prompt", "prompt", "test_cases", "suite", *PARAMETERS,
        "responses_per_item", "concurrency", "objective", "confirm",
    ]  # fmt: skip

    def __init__(self, *args, team, api: bool = False, **kwargs):
        super().__init__(*args, team=team, **kwargs)
        if not api:  # the page has a field per parameter; the API a `parameter_ranges` object
            del self.fields["parameter_ranges"]
        self.fields["suite"].queryset = Suite.objects.filter(team=team)
        self.fields["responses_per_item"].label = "Responses per combination"
        self.fields["responses_per_item"].min_value = 1
        self.fields["responses_per_item"].validators.append(MinValueValidator(1))
        for name in ("description", "system_prompt"):
            self.fields[name].widget.attrs["rows"] = 2
        self.fields["prompt"].widget.attrs["rows"] = 4

    def clean(self):
        data = forms.ModelForm.clean(self)
        if not data.get("test_cases") and not data.get("suite") and not (data.get("prompt") or "").strip():
            self.add_error("prompt", "Give a prompt, choose approved test cases or a suite.")
        if data.get("objective") in (Batch.Objective.SCORE, Batch.Objective.PASS_RATE) and not (
            data.get("test_cases") or data.get("suite")
        ):
            self.add_error("objective", "An evaluator's score or pass rate needs test cases; a prompt has none.")
        ranges = {}
        try:
            for name in PARAMETERS:
                spec = parse_text(name, data.get(name) or "")
                if spec is not None:
                    ranges[name] = spec
        except RangeError as exc:
            self.add_error(exc.field.split(".")[0].split("[")[0], exc.problem)
            return data
        from_text = bool(ranges) or "parameter_ranges" not in self.fields
        if not from_text:
            ranges = data.get("parameter_ranges") or {}
        elif not ranges:
            self.add_error("temperature", "Sweep at least one parameter, e.g. temperature 0.1:1.0:0.1.")
            return data
        try:
            data["values"], data["ranges"] = expand_all(ranges), ranges
        except RangeError as exc:
            name = exc.field.split(".")[0].split("[")[0]
            if not from_text:  # the API's JSON: the message carries the path inside it
                self.add_error("parameter_ranges", str(exc))
            else:
                self.add_error(name if name in PARAMETERS else None, exc.problem)
        return data

    def create_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"], "description": data["description"], "system_prompt": data["system_prompt"],
            "prompt": data["prompt"], "test_cases": list(data["test_cases"]), "suite": data.get("suite"),
            "targets": data["targets_text"], "repetitions": data["responses_per_item"],
            "parameter_ranges": data["ranges"], "concurrency": data["concurrency"], "objective": data["objective"],
        }  # fmt: skip

    def estimate(self) -> Estimate:
        """What the sweep would take (the form must be valid)."""
        data = self.cleaned_data
        return batch_estimate(team=self.team, targets=data["targets_text"], prompts=self.prompts(),
                              values=data["values"], repetitions=data["responses_per_item"],
                              concurrency=data["concurrency"])  # fmt: skip

    def prompts(self) -> list[str]:
        """The prompts the sweep will send (for the estimate before anything is stored)."""
        data = self.cleaned_data
        cases = list(data["suite"].test_cases.all()) if data.get("suite") else list(data.get("test_cases") or [])
        return [c.prompt for c in cases] or [data.get("prompt") or ""]
