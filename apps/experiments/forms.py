import json

from django import forms

from apps.experiments.evaluators import SettingsError, validate_settings
from apps.experiments.models import MAX_RESPONSES_PER_ITEM, Experiment, TestCase
from apps.experiments.selectors import runnable_test_cases
from apps.providers.engine.sim import MODELS as SIM_MODELS
from apps.providers.models import ProviderEndpoint
from llmbench.parsers import json_loads


def endpoint_models(endpoint: ProviderEndpoint) -> list[str]:
    """The model names configured on an endpoint; the simulator's own when a sim endpoint lists none."""
    names = [str(name) for name in endpoint.model_names or [] if str(name).strip()]
    if not names and endpoint.is_simulated:
        names = list(SIM_MODELS)
    return names


def target_choices(endpoints) -> list[tuple[str, list[tuple[str, str]]]]:
    """Options grouped by endpoint: value "<endpoint id>:<model>", label "endpoint · model"."""
    groups = []
    for endpoint in endpoints:
        suffix = " (simulated)" if endpoint.is_simulated else ""
        options = [
            (f"{endpoint.pk}:{model}", f"{endpoint.name} · {model}{suffix}") for model in endpoint_models(endpoint)
        ]
        if options:
            groups.append((endpoint.name + suffix, options))
    return groups


REQUEST_OPTION_FIELDS = (
    "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos", "stop_text", "response_format", "json_schema",
)  # fmt: skip


class ExperimentForm(forms.ModelForm):
    """Targets are picked from the team's endpoints and the model names configured on each (one select
    of "endpoint · model" pairs, which works without JavaScript); `targets_text` (one `endpoint name:
    model` per line) is the typed alternative the API and the sweep page send. Once clean,
    `cleaned_data["targets_text"]` holds every chosen target as (endpoint, model) pairs. (The picker is
    not called `targets`: the API's JSON uses that name for a list of {"endpoint", "model"} objects.)"""

    target_pairs = forms.MultipleChoiceField(
        required=False, label="Targets", widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="Endpoints of the team and the models configured on each. Hold Ctrl (⌘ on a Mac) to choose more "
        "than one. An endpoint with no model names is listed once they are added on its page.",
    )  # fmt: skip
    targets_text = forms.CharField(
        required=False, label="Targets (typed)", widget=forms.Textarea(attrs={"rows": 2}),
        help_text="One per line: <endpoint name>: <model>, e.g. Simulator: sim-small",
    )  # fmt: skip
    temperature = forms.FloatField(required=False, min_value=0, max_value=2, help_text="0 to 2.")
    top_p = forms.FloatField(required=False, min_value=0, max_value=1, label="Top p", help_text="0 to 1.")
    max_tokens = forms.IntegerField(required=False, min_value=1, max_value=1_000_000, label="Max tokens")
    frequency_penalty = forms.FloatField(required=False, min_value=-2, max_value=2, help_text="−2 to 2.")
    presence_penalty = forms.FloatField(required=False, min_value=-2, max_value=2, help_text="−2 to 2.")
    seed = forms.IntegerField(required=False, min_value=0, max_value=2**63 - 1)
    # Request options (issue 13): top-k, min-p, repetition penalty and min tokens reach OpenAI-compatible servers
    # only (vLLM, SGLang); stop and the response format every OpenAI-style server.
    top_k = forms.IntegerField(required=False, min_value=-1, max_value=1_000_000, label="Top k",
                               help_text="OpenAI-compatible servers; −1 for all tokens.")  # fmt: skip
    min_p = forms.FloatField(required=False, min_value=0, max_value=1, label="Min p",
                             help_text="OpenAI-compatible servers; 0 to 1.")  # fmt: skip
    repetition_penalty = forms.FloatField(required=False, min_value=0.01, max_value=10,
                                          help_text="OpenAI-compatible servers; 1 is none.")  # fmt: skip
    min_tokens = forms.IntegerField(required=False, min_value=0, max_value=1_000_000, label="Min tokens",
                                    help_text="OpenAI-compatible servers: at least this many output tokens.")  # fmt: skip
    ignore_eos = forms.BooleanField(required=False, label="Ignore end of sequence",
                                    help_text="OpenAI-compatible servers: always generate max tokens.")  # fmt: skip
    stop_text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Stop sequences",
                                help_text="One per line, at most 4.")  # fmt: skip
    response_format = forms.ChoiceField(
        required=False, label="Response format",
        choices=[("", "Free text"), ("json_object", "JSON (any object)"), ("json_schema", "JSON matching a schema")],
    )  # fmt: skip
    json_schema = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label="JSON schema",
        help_text='For "JSON matching a schema": {"name": "…", "schema": {…}} as the OpenAI API takes it.',
    )  # fmt: skip

    field_order = [
        "name", "description", "target_pairs", "targets_text", "test_cases", "system_prompt", "prompt",
        "responses_per_item", "temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty", "seed",
        *REQUEST_OPTION_FIELDS,
    ]  # fmt: skip

    class Meta:
        model = Experiment
        fields = ["name", "description", "system_prompt", "prompt", "test_cases", "responses_per_item"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2}), "system_prompt": forms.Textarea(attrs={"rows": 3})}
        help_texts = {"test_cases": "Approved test cases of the team; leave empty to ask the prompt below instead."}

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team
        self.fields["test_cases"].queryset = runnable_test_cases(team)
        self.fields["test_cases"].required = False
        self.fields["responses_per_item"].min_value = 1
        self.fields["responses_per_item"].widget.attrs.update(min=1, max=MAX_RESPONSES_PER_ITEM)
        self.endpoints = {e.pk: e for e in ProviderEndpoint.objects.filter(team=team).order_by("name")}
        self.fields["target_pairs"].choices = target_choices(self.endpoints.values())
        # The picked targets are cleaned before the typed ones, whatever order a subclass shows them in.
        order = [name for name in self.fields if name != "target_pairs"]
        order.insert(order.index("targets_text"), "target_pairs")
        self.fields = {name: self.fields[name] for name in order}

    def clean_target_pairs(self) -> list[tuple[ProviderEndpoint, str]]:
        chosen = []
        for value in self.cleaned_data["target_pairs"]:
            endpoint_id, _, model = value.partition(":")
            chosen.append((self.endpoints[int(endpoint_id)], model))  # the choices are the team's only
        return chosen

    def clean_targets_text(self) -> list[tuple[ProviderEndpoint, str]]:
        targets = list(self.cleaned_data.get("target_pairs") or [])
        for number, line in enumerate((self.cleaned_data["targets_text"] or "").splitlines(), 1):
            if not line.strip():
                continue
            name, sep, model = line.partition(":")
            endpoint = ProviderEndpoint.objects.filter(team=self.team, name=name.strip()).first()
            if not sep or not model.strip():
                raise forms.ValidationError(f"Line {number}: write <endpoint name>: <model>.")
            if endpoint is None:
                raise forms.ValidationError(f"Line {number}: no endpoint named {name.strip()!r} in this team.")
            if (endpoint, model.strip()) not in targets:
                targets.append((endpoint, model.strip()))
        if not targets and "target_pairs" not in self.errors:
            # On the field the caller used: the page's picker, or the typed list (API, sweep page).
            if "targets_text" in self.data:
                raise forms.ValidationError("At least one target.")
            self.add_error("target_pairs", "Choose at least one target.")
        return targets

    def clean_stop_text(self) -> list[str] | None:
        stops = [line for line in (self.cleaned_data.get("stop_text") or "").splitlines() if line.strip()]
        if len(stops) > 4:
            raise forms.ValidationError(f"{len(stops)} stop sequences; at most 4.")
        return stops or None

    def clean(self):
        data = super().clean()
        if not data.get("test_cases") and not (data.get("prompt") or "").strip():
            self.add_error("prompt", "Give a prompt or choose approved test cases.")
        self.clean_request_options(data)
        return data

    def clean_request_options(self, data: dict) -> None:
        """The response format as the API takes it, in `data["response_format_value"]` (errors on their field)."""
        kind, schema = data.get("response_format"), (data.get("json_schema") or "").strip()
        data["response_format_value"] = None
        if kind == "json_object":
            data["response_format_value"] = {"type": "json_object"}
        elif kind == "json_schema":
            try:
                parsed = json_loads(schema) if schema else None
            except ValueError as exc:
                self.add_error("json_schema", f"Not valid JSON: {exc}")
            else:
                if not isinstance(parsed, dict) or not isinstance(parsed.get("schema"), dict):
                    self.add_error("json_schema", 'Give an object with a "name" and a "schema" object.')
                else:
                    data["response_format_value"] = {"type": "json_schema", "json_schema": parsed}

    def request_options(self) -> dict:
        """The request options chosen (none left at their default), as GenerationRequest fields."""
        data = self.cleaned_data
        options = {
            k: data[k] for k in ("top_k", "min_p", "repetition_penalty", "min_tokens") if data.get(k) is not None
        }
        if data.get("ignore_eos"):
            options["ignore_eos"] = True
        if data.get("stop_text"):
            options["stop"] = data["stop_text"]
        if data.get("response_format_value"):
            options["response_format"] = data["response_format_value"]
        return options

    def create_kwargs(self) -> dict:
        data = self.cleaned_data
        names = ("temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty", "seed")
        parameters = {k: data[k] for k in names if data.get(k) is not None} | self.request_options()
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
            settings = json_loads(raw) if raw else {}
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
