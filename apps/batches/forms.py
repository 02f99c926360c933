from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator

from apps.batches.models import Batch, LoadSweep
from apps.batches.parameters import PARAMETERS, RangeError, expand_all, parse_text
from apps.batches.services import Estimate, batch_estimate
from apps.experiments.forms import ExperimentForm
from apps.experiments.models import Suite
from apps.hardware.models import Deployment, HardwareProfile
from apps.providers.engine.sim import MODELS as SIM_MODELS
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant
from apps.workloads.models import Workload

MAX_TOKENS = 200_000  # prompt or output tokens of a synthetic request
MAX_PROMPTS = 1000  # prompts of a load sweep to cycle through
MAX_SHARDS = 16  # worker processes one step may be split across
MAX_TRIALS = 10  # runs of each level


def sweep_bounds() -> tuple[tuple[str, float, float, str | None], ...]:
    """(field, minimum, maximum, the setting that holds the maximum) of the load sweep's numbers: zero is
    meaningless wherever the minimum is 1. Read per form, so a changed setting applies at once."""
    return (
        ("step_duration_s", 1.0, settings.LOAD_STEP_MAX_DURATION_S, "LOAD_STEP_MAX_DURATION_S"),
        ("step_request_count", 1, settings.LOAD_STEP_MAX_REQUESTS, "LOAD_STEP_MAX_REQUESTS"),
        ("prompt_tokens", 1, MAX_TOKENS, None), ("prompt_tokens_stdev", 0, MAX_TOKENS, None),
        ("output_tokens", 1, MAX_TOKENS, None), ("temperature", 0.0, 2.0, None), ("seed", 0, 2**31 - 1, None),
        ("warmup_requests", 0, settings.LOAD_STEP_MAX_REQUESTS, "LOAD_STEP_MAX_REQUESTS"),
        ("warmup_s", 0.0, settings.LOAD_STEP_MAX_DURATION_S, "LOAD_STEP_MAX_DURATION_S"),
        ("trials", 1, MAX_TRIALS, None), ("shards", 1, MAX_SHARDS, None),
    )  # fmt: skip


def _bound(field: forms.Field, low, high, setting: str | None = None) -> None:
    """Refuse a number outside [low, high] with a message naming both (and the setting that sets the
    maximum), and tell the browser too."""
    limit = f"{high:,}" + (f" (the {setting} setting)" if setting else "")
    field.validators += [
        MinValueValidator(low, message=f"At least {low:,}."),
        MaxValueValidator(high, message=f"At most {limit}."),
    ]
    field.widget.attrs.update(min=low, max=high)


def _prompt_too_long(text: str) -> str | None:
    limit = settings.PROMPT_MAX_CHARS
    if len(text or "") > limit:
        return (
            f"This is {len(text):,} characters long; the limit is {limit:,} characters (the PROMPT_MAX_CHARS "
            "setting). Shorten it."
        )
    return None


class LoadSweepForm(forms.ModelForm):
    """A load sweep; every choice is limited to the team, and the steps are a comma-separated list. With
    `picker` (the page) the endpoint and model are one choice of the team's "endpoint · model" pairs; the
    API gives `endpoint` (an id) and `model` instead."""

    target = forms.ChoiceField(
        label="Endpoint and model", help_text="The team's endpoints and the models configured on each; an endpoint "
        "appears once its model names are set on its page.",
    )  # fmt: skip

    levels = forms.CharField(help_text="Concurrency levels (e.g. 1,4,16,64) or request rates in req/s (e.g. 5,10,20).")
    prompts_text = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label="Prompts",
        help_text=f"Optional: one prompt per line instead of synthetic text (at most {MAX_PROMPTS:,} prompts, each "
        f"at most {settings.PROMPT_MAX_CHARS:,} characters).",
    )  # fmt: skip

    workload = forms.ModelChoiceField(
        queryset=Workload.objects.none(), required=False, label="Workload",
        help_text="The traffic to send (its latest version is fixed when the sweep is saved). Without one, the sweep "
        "sends quick synthetic text of the prompt and output lengths below (measured in words).",
    )  # fmt: skip

    class Meta:
        model = LoadSweep
        fields = [
            "name", "endpoint", "model", "variant", "hardware", "deployment", "mode", "arrivals", "levels",
            "step_duration_s", "step_request_count", "prompt_tokens", "prompt_tokens_stdev", "output_tokens",
            "ignore_eos", "temperature", "seed", "warmup_requests", "warmup_s", "trials", "shards",
        ]  # fmt: skip

    def __init__(self, *args, team, picker: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        for name, model in (("endpoint", ProviderEndpoint), ("variant", ModelVariant), ("hardware", HardwareProfile),
                            ("deployment", Deployment)):  # fmt: skip
            self.fields[name].queryset = model.objects.filter(team=team)
        self.endpoints, choices = endpoint_model_choices(team)
        if picker:
            self.fields["target"].choices = choices
            del self.fields["endpoint"], self.fields["model"]
            self.order_fields(["name", "target", "workload"])
        else:
            del self.fields["target"]
        self.fields["workload"].queryset = Workload.objects.filter(team=team, archived=False).order_by("name")
        for name in ("warmup_requests", "warmup_s", "trials", "shards"):  # left empty: no warm-up, once, one process
            self.fields[name].required = False
        for name, low, high, setting in sweep_bounds():
            _bound(self.fields[name], low, high, setting)
        labels = {"step_duration_s": "Seconds per step", "step_request_count": "Requests per step",
                  "prompt_tokens_stdev": "Prompt tokens, standard deviation",
                  "warmup_requests": "Warm-up requests per step", "warmup_s": "Warm-up seconds per step",
                  "ignore_eos": "Ignore end of sequence (always generate the output tokens)",
                  "trials": "Runs of each level", "shards": "Worker processes per step"}  # fmt: skip
        for name, label in labels.items():
            self.fields[name].label = label
        self.fields["trials"].help_text = (
            "How many times each level is run, one after the other (1 to 10): with two or more, the sweep page "
            "shows how much the figures vary between runs."
        )
        self.fields["shards"].help_text = (
            "Split each step across this many task workers (1 to 16), each sending an equal share of the load, "
            "started together and merged into one result: for loads one process cannot send. Needs as many free "
            "task workers, on machines with synchronised clocks."
        )

    def clean_target(self) -> tuple[ProviderEndpoint, str]:
        endpoint_id, _, model = self.cleaned_data["target"].partition(":")  # one of the team's own pairs
        return self.endpoints[int(endpoint_id)], model

    def clean_levels(self) -> list[float]:
        raw = self.cleaned_data["levels"]
        items = raw if isinstance(raw, list) else str(raw).split(",")
        try:
            levels = [float(str(v).strip()) for v in items if str(v).strip()]
        except ValueError:
            raise forms.ValidationError("Numbers separated by commas, e.g. 1,4,16.") from None
        max_steps = settings.LOAD_MAX_STEPS
        if not levels or len(levels) > max_steps or any(not v > 0 or v == float("inf") for v in levels):
            raise forms.ValidationError(f"Between 1 and {max_steps:,} numbers above 0 (the LOAD_MAX_STEPS setting).")
        return levels

    def clean_prompts_text(self) -> str:
        text = self.cleaned_data.get("prompts_text") or ""
        prompts = [p for p in text.splitlines() if p.strip()]
        if len(prompts) > MAX_PROMPTS:
            raise forms.ValidationError(f"{len(prompts):,} prompts; at most {MAX_PROMPTS:,}.")
        for number, prompt in enumerate(prompts, 1):
            if problem := _prompt_too_long(prompt.strip()):
                raise forms.ValidationError(f"Prompt {number}: {problem}")
        return text

    def clean(self):
        data = super().clean()
        if data.get("target"):
            data["endpoint"], data["model"] = data["target"]
        neither = data.get("step_duration_s") is None and data.get("step_request_count") is None
        if neither and "step_duration_s" not in self.errors and "step_request_count" not in self.errors:
            self.add_error("step_duration_s", "Give a duration or a request count per step.")
        levels = data.get("levels") or []
        if data.get("mode") == LoadSweep.Mode.CLOSED:
            if any(v != int(v) for v in levels):
                self.add_error("levels", "Concurrency levels are whole numbers.")
            elif any(v > settings.LOAD_MAX_CONCURRENCY for v in levels):
                self.add_error("levels", f"Concurrency levels of at most {settings.LOAD_MAX_CONCURRENCY:,} (the "
                               "LOAD_MAX_CONCURRENCY setting).")  # fmt: skip
        elif data.get("mode") == LoadSweep.Mode.OPEN and any(v > settings.LOAD_MAX_RATE_RPS for v in levels):
            self.add_error("levels", f"Request rates of at most {settings.LOAD_MAX_RATE_RPS:,} req/s (the "
                           "LOAD_MAX_RATE_RPS setting).")  # fmt: skip
        for name, empty in (("warmup_requests", 0), ("warmup_s", 0), ("trials", 1), ("shards", 1)):
            if data.get(name) is None and name not in self.errors:
                data[name] = empty
        self._check_shards(data, levels)
        workload = data.get("workload")
        if workload is not None:
            version = workload.latest
            if version is None:
                self.add_error("workload", "This workload has no version yet.")
            elif version.spec.get("source") == "trace" and data.get("mode") != LoadSweep.Mode.OPEN:
                self.add_error("mode", "A trace is replayed on its own clock: choose request rates (open loop); each "
                               "level is then a speed-up of the trace (1 = as recorded).")  # fmt: skip
            elif self.cleaned_data.get("prompts_text", "").strip():
                self.add_error("prompts_text", "Give either a workload or prompts, not both.")
        return data

    def _check_shards(self, data: dict, levels: list[float]) -> None:
        """Every shard must have something to send: a stream of its own at each level, a request of its own."""
        shards = data.get("shards")
        if not shards or shards == 1 or "shards" in self.errors:
            return
        if data.get("mode") == LoadSweep.Mode.CLOSED and levels and shards > min(levels):
            self.add_error("shards", f"{shards} worker processes need at least {shards} concurrent requests at every "
                           f"level; the smallest level is {min(levels):g}.")  # fmt: skip
        elif (count := data.get("step_request_count")) and shards > count:
            self.add_error("shards", f"{shards} worker processes need at least {shards} requests per step "
                           f"(this sweep has {count}).")  # fmt: skip

    def sweep_fields(self) -> dict:
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        data["prompts"] = [p.strip() for p in self.cleaned_data.get("prompts_text", "").splitlines() if p.strip()]
        workload = self.cleaned_data.get("workload")
        data["workload_version"] = workload.latest if workload is not None else None
        return data


def endpoint_model_choices(team) -> tuple[dict[int, ProviderEndpoint], list[tuple[str, list[tuple[str, str]]]]]:
    """The team's endpoints by id, and the "endpoint · model" options of the target picker grouped by
    endpoint (value "<endpoint id>:<model>"), from each endpoint's configured model names (a simulated
    endpoint without any: the simulator's models)."""
    endpoints = {e.pk: e for e in ProviderEndpoint.objects.filter(team=team).order_by("name")}
    groups = []
    for endpoint in endpoints.values():
        suffix = " (simulated)" if endpoint.is_simulated else ""
        names = [str(name).strip() for name in endpoint.model_names or [] if str(name).strip()]
        if not names and endpoint.is_simulated:  # the simulator serves its own models whatever is configured
            names = list(SIM_MODELS)
        options = [(f"{endpoint.pk}:{name}", f"{endpoint.name} · {name}{suffix}") for name in names]
        if options:
            groups.append((endpoint.name + suffix, options))
    return endpoints, groups


class BatchForm(ExperimentForm):
    """A parameter sweep: targets picked from the team's endpoints and their models (the API types them
    as `endpoint name: model` lines in `targets_text`), a prompt or approved test cases (or a suite),
    with each sampling parameter as a range (`0.1:1.0:0.1`), a list (`150, 300`) or one value; the API
    gives `parameter_ranges` in the seed format instead."""

    target_pairs = forms.MultipleChoiceField(
        required=False, label="Targets", widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="The team's endpoints and the models configured on each; hold Ctrl (⌘ on a Mac) to choose more "
        "than one. An endpoint appears once its model names are set on its page.",
    )  # fmt: skip
    targets_text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    temperature = forms.CharField(required=False, help_text="min:max:step, a list or one value, e.g. 0.1:1.0:0.1")
    top_p = forms.CharField(required=False, help_text="e.g. 0.8:1.0:0.05")
    max_tokens = forms.CharField(required=False, help_text="e.g. 150, 300, 500")
    frequency_penalty = forms.CharField(required=False)
    presence_penalty = forms.CharField(required=False)
    seed = forms.CharField(required=False)
    parameter_ranges = forms.JSONField(required=False, widget=forms.HiddenInput)
    suite = forms.ModelChoiceField(queryset=Suite.objects.none(), required=False,
                                   help_text="Its approved test cases, instead of choosing them.")  # fmt: skip
    concurrency = forms.IntegerField(initial=4, help_text="Requests in flight at once (the endpoint's own limit "
                                     "still applies).")  # fmt: skip
    objective = forms.ChoiceField(choices=Batch.Objective.choices, initial=Batch.Objective.OVERALL,
                                  help_text="The figure of the heatmap and of the best settings so far.")  # fmt: skip
    confirm = forms.BooleanField(required=False, label="Start even though it is over the team's limit")

    field_order = [
        "name", "description", "target_pairs", "targets_text", "system_prompt", "prompt", "test_cases", "suite", *PARAMETERS,
        "responses_per_item", "concurrency", "objective", "confirm",
    ]  # fmt: skip

    def __init__(self, *args, team, api: bool = False, **kwargs):
        super().__init__(*args, team=team, **kwargs)
        self.order_fields(self.field_order)
        self.endpoints, choices = endpoint_model_choices(team)
        self.fields["target_pairs"].choices = choices
        if api:  # the API types its targets
            del self.fields["target_pairs"]
        else:  # the page picks them, with a field per parameter; the API has a `parameter_ranges` object
            del self.fields["parameter_ranges"], self.fields["targets_text"]
        self.fields["suite"].queryset = Suite.objects.filter(team=team)
        self.fields["responses_per_item"].label = "Responses per combination"
        _bound(self.fields["responses_per_item"], 1, settings.SWEEP_MAX_RESPONSES_PER_COMBINATION,
               "SWEEP_MAX_RESPONSES_PER_COMBINATION")  # fmt: skip
        _bound(self.fields["concurrency"], 1, settings.SWEEP_MAX_CONCURRENCY, "SWEEP_MAX_CONCURRENCY")
        for name in ("description", "system_prompt"):
            self.fields[name].widget.attrs["rows"] = 2
        self.fields["prompt"].widget.attrs["rows"] = 4

    def clean_target_pairs(self) -> list[tuple[ProviderEndpoint, str]]:
        chosen = []
        for value in self.cleaned_data["target_pairs"]:  # only the team's own pairs are valid choices
            endpoint_id, _, model = value.partition(":")
            chosen.append((self.endpoints[int(endpoint_id)], model))
        return chosen

    def clean_targets_text(self) -> list[tuple[ProviderEndpoint, str]]:
        targets = []
        for number, line in enumerate((self.cleaned_data.get("targets_text") or "").splitlines(), 1):
            if not line.strip():
                continue
            name, sep, model = line.partition(":")
            if not sep or not model.strip():
                raise forms.ValidationError(f"Line {number}: write <endpoint name>: <model>.")
            endpoint = next((e for e in self.endpoints.values() if e.name == name.strip()), None)
            if endpoint is None:
                raise forms.ValidationError(f"Line {number}: no endpoint named {name.strip()!r} in this team.")
            targets.append((endpoint, model.strip()))
        if not targets:
            raise forms.ValidationError("At least one target.")
        return targets

    def targets(self) -> list[tuple[ProviderEndpoint, str]]:
        """The chosen (endpoint, model) pairs (the form must be valid)."""
        field = "target_pairs" if "target_pairs" in self.fields else "targets_text"
        return self.cleaned_data[field]

    def clean(self):
        data = forms.ModelForm.clean(self)
        self.clean_request_options(data)
        if "target_pairs" in self.fields and not data.get("target_pairs") and "target_pairs" not in self.errors:
            self.add_error("target_pairs", "Choose at least one target.")
        for name in ("prompt", "system_prompt"):
            if name not in self.errors and (problem := _prompt_too_long(data.get(name) or "")):
                self.add_error(name, problem)
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
            "targets": self.targets(), "repetitions": data["responses_per_item"],
            "parameter_ranges": data["ranges"], "concurrency": data["concurrency"], "objective": data["objective"],
            "request_options": self.request_options(),
        }  # fmt: skip

    def estimate(self) -> Estimate:
        """What the sweep would take (the form must be valid)."""
        data = self.cleaned_data
        return batch_estimate(team=self.team, targets=self.targets(), prompts=self.prompts(),
                              values=data["values"], repetitions=data["responses_per_item"],
                              concurrency=data["concurrency"])  # fmt: skip

    def prompts(self) -> list[str]:
        """The prompts the sweep will send (for the estimate before anything is stored)."""
        data = self.cleaned_data
        cases = list(data["suite"].test_cases.all()) if data.get("suite") else list(data.get("test_cases") or [])
        return [c.prompt for c in cases] or [data.get("prompt") or ""]
