"""Forms of the workload pages: the editor (a field per setting, building the spec) and the two uploads.

The editor never asks for JSON except a response format's schema: `WorkloadForm.clean()` builds the
"llmbench.workload/1" spec from its fields, validates it (apps.workloads.engine.spec) and puts every problem on
the field it belongs to, in words. `spec_initial()` is the reverse, for the edit page."""

import json
import math
import re
from pathlib import Path

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator

from apps.scores.models import ModelVariant
from apps.workloads.engine.spec import DEFAULTS, MAX_SEED, validate_spec
from apps.workloads.models import Tokenizer, Workload, WorkloadDataset

PREFIX_ROWS = 3  # shared-prefix buckets the editor offers (the API takes any number)
MAX_STOP = 4

TOKEN_DISTS = [
    ("fixed", "Fixed"),
    ("uniform", "Uniform between a minimum and a maximum"),
    ("normal", "Normal (mean and standard deviation)"),
    ("lognormal", "Lognormal (average, median ratio, maximum)"),
    ("empirical", "Empirical histogram (bin edges and weights)"),
]
SECONDS_DISTS = TOKEN_DISTS[:4]  # think time has no empirical histogram
DIST_PARAMS = {  # the parameters each distribution shows in the editor
    "fixed": ("value",),
    "uniform": ("min", "max"),
    "normal": ("mean", "stdev", "min", "max"),
    "lognormal": ("average", "median_ratio", "max"),
    "empirical": ("edges", "weights"),
}
# spec path prefix → the editor's field prefix of a distribution, and its words
DIST_GROUPS = {
    "input_tokens": ("input", "Input length (tokens)"),
    "output_tokens": ("output", "Output length (tokens)"),
    "sessions.turns": ("turns", "Turns per session"),
    "sessions.think_time_s": ("think", "Think time between turns (s)"),
}
SOURCE_CHOICES = [
    ("synthetic", "Synthetic: lengths drawn from distributions"),
    ("dataset", "Dataset: prompts and conversations from an uploaded file"),
    ("trace", "Trace: replay an uploaded trace on its own clock"),
]
# words for the setting names that can appear inside a validation message
WORDS = {
    "min_input_tokens": "the minimum input length",
    "max_input_tokens": "the maximum input length",
    "max_total_tokens": "the maximum total length",
    "min_output_tokens": "the minimum output length",
    "window_start_s": "the window start",
    "window_end_s": "the window end",
    "median_ratio": "the median ratio",
    "output_from": "output length from",
    "user_centric": "user-centric",
    "json_schema": "a JSON schema",
    "json_object": "JSON object",
    "turn_gap_s": "the turn gap",
    "max_turns": "the maximum turns",
}
FIELD_LABELS = {
    "seed": "Seed",
    "prefix.placement": "Shared prefix placement",
    "sessions.mode": "Session mode",
    "sessions.users": "Users",
    "sessions.turn_gap_s": "Turn gap per user (s)",
}


def _words(message: str) -> str:
    """A validation message with setting names turned into words, starting with a capital."""
    text = re.sub(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b", lambda m: WORDS.get(m[0], m[0].replace("_", " ")), message)
    text = text.strip()
    return text[:1].upper() + text[1:] if text else text


def _tidy(value):
    """A number as the spec stores it: 900 rather than 900.0 when it is whole."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _numbers(text: str) -> list:
    items = [item.strip() for item in (text or "").replace(";", ",").split(",") if item.strip()]
    return [_tidy(float(item)) for item in items]


def _bound(field: forms.Field, low=None, high=None) -> forms.Field:
    if low is not None:
        field.validators.append(MinValueValidator(low, message=f"At least {low:,}."))
        field.widget.attrs["min"] = low
    if high is not None:
        field.validators.append(MaxValueValidator(high, message=f"At most {high:,}."))
        field.widget.attrs["max"] = high
    return field


def _dist_fields(prefix: str, label: str, *, seconds: bool, unit: str) -> dict[str, forms.Field]:
    """The fields of one distribution: a kind and every parameter any kind needs (the page shows the kind's)."""
    whole = forms.FloatField if seconds else forms.IntegerField
    fields: dict[str, forms.Field] = {
        f"{prefix}_dist": forms.ChoiceField(
            label=f"{label}: distribution", choices=SECONDS_DISTS if seconds else TOKEN_DISTS, initial="fixed",
        ),
        f"{prefix}_value": _bound(whole(label=f"Value ({unit})", required=False), 0 if seconds else 1),
        f"{prefix}_min": _bound(whole(label=f"Minimum ({unit})", required=False), 0 if seconds else 1),
        f"{prefix}_max": _bound(whole(label=f"Maximum ({unit})", required=False), 0 if seconds else 1),
        f"{prefix}_mean": forms.FloatField(label=f"Mean ({unit})", required=False),
        f"{prefix}_stdev": _bound(forms.FloatField(label=f"Standard deviation ({unit})", required=False), 0),
        f"{prefix}_average": forms.FloatField(label=f"Average ({unit})", required=False),
        f"{prefix}_median_ratio": forms.FloatField(
            label="Median ÷ average", required=False,
            help_text="In (0, 1]: 1 means every draw is the average; lower means a longer tail.",
        ),
    }  # fmt: skip
    if not seconds:
        fields[f"{prefix}_edges"] = forms.CharField(
            label=f"Bin edges ({unit})", required=False, help_text="Comma-separated, rising, e.g. 1, 128, 512, 2048."
        )
        fields[f"{prefix}_weights"] = forms.CharField(
            label="Bin weights", required=False, help_text="One per bin (one fewer than the edges), e.g. 5, 3, 1."
        )
    for field in fields.values():
        field.widget.attrs["data-dist-group"] = prefix
    for name, field in fields.items():
        field.widget.attrs["data-param"] = name.removeprefix(f"{prefix}_")
    return fields


class WorkloadForm(forms.Form):
    """The workload editor: one field per setting of the spec, for any source."""

    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    source = forms.ChoiceField(choices=SOURCE_CHOICES, initial="synthetic", label="Where requests come from")
    seed = _bound(forms.IntegerField(initial=0, help_text="The same seed draws the same requests."), 0, MAX_SEED)
    tokenizer = forms.ModelChoiceField(
        queryset=Tokenizer.objects.none(), required=False, label="Tokenizer",
        empty_label="None: calibrate against the server at run time",
        help_text="With the model's tokenizer.json, input lengths are exact token counts.",
    )  # fmt: skip

    # dataset source
    dataset = forms.ModelChoiceField(queryset=WorkloadDataset.objects.none(), required=False, label="Dataset")
    dataset_sample = _bound(forms.IntegerField(label="Sample size (conversations)", required=False,
                                               initial=DEFAULTS["dataset"]["sample"]), 1, 100_000)  # fmt: skip
    dataset_min_input_tokens = _bound(forms.IntegerField(label="Shortest prompt kept (tokens)", required=False,
                                                         initial=DEFAULTS["dataset"]["min_input_tokens"]), 1)  # fmt: skip
    dataset_max_input_tokens = _bound(forms.IntegerField(label="Longest prompt kept (tokens)", required=False,
                                                         initial=DEFAULTS["dataset"]["max_input_tokens"]), 1)  # fmt: skip
    dataset_max_total_tokens = _bound(forms.IntegerField(label="Longest prompt + answer kept (tokens)",
                                                         required=False,
                                                         initial=DEFAULTS["dataset"]["max_total_tokens"]), 1)  # fmt: skip
    dataset_min_output_tokens = _bound(forms.IntegerField(label="Shortest answer kept (tokens)", required=False,
                                                          initial=DEFAULTS["dataset"]["min_output_tokens"]), 1)  # fmt: skip
    dataset_output_from = forms.ChoiceField(
        label="Output length from",
        choices=[("reference", "The reference answer in the file"), ("file", "The output length column of the file"),
                 ("distribution", "The output length distribution below")],
        initial="reference",
    )  # fmt: skip
    dataset_max_turns = _bound(forms.IntegerField(label="Most turns per conversation", required=False,
                                                  initial=DEFAULTS["dataset"]["max_turns"]), 1, 100)  # fmt: skip

    # trace source
    trace = forms.ModelChoiceField(queryset=WorkloadDataset.objects.none(), required=False, label="Trace")
    trace_speedup = _bound(forms.FloatField(label="Speed-up", initial=1.0, required=False,
                                            help_text="2 replays the trace twice as fast."), 0.01, 1000)  # fmt: skip
    trace_window_start_s = _bound(forms.FloatField(label="Window start (s into the trace)", initial=0.0,
                                                   required=False), 0)  # fmt: skip
    trace_window_end_s = forms.FloatField(label="Window end (s into the trace)", required=False,
                                          help_text="Empty: to the end of the trace.")  # fmt: skip
    trace_block_size = _bound(forms.IntegerField(label="Prefix block size (tokens)", initial=512, required=False,
                                                 help_text="Tokens per hash id (Mooncake: 512)."), 1)  # fmt: skip

    # shared prefixes (rows added in __init__), sessions
    prefix_placement = forms.ChoiceField(
        label="Shared prefix placement", initial="system",
        choices=[("system", "As a system message"), ("user", "At the start of the first user message")],
    )  # fmt: skip
    multi_turn = forms.BooleanField(
        required=False, label="Multi-turn sessions",
        help_text="Each turn carries the real previous responses (a dataset keeps its own conversations' turns).",
    )  # fmt: skip
    sessions_mode = forms.ChoiceField(
        label="Session mode", initial="concurrent",
        choices=[("concurrent", "Concurrent: the sweep level is sessions in flight"),
                 ("user_centric", "User-centric: a number of users, each with its own turn gap")],
    )  # fmt: skip
    sessions_users = _bound(forms.IntegerField(label="Users", required=False), 1, 10_000)
    sessions_turn_gap_s = _bound(forms.FloatField(label="Turn gap per user (s)", required=False), 0)

    # request options
    request_endpoint = forms.ChoiceField(
        label="Endpoint", initial="chat",
        choices=[("chat", "Chat completions (/v1/chat/completions)"), ("completions", "Completions (/v1/completions)")],
    )  # fmt: skip
    request_pin_output = forms.ChoiceField(
        label="Pin the output length", initial="ignore_eos",
        choices=[("none", "No: the model may stop early"), ("ignore_eos", "Ignore end of sequence"),
                 ("min_tokens", "Minimum tokens"), ("ignore_eos+min_tokens", "Both")],
    )  # fmt: skip
    request_stop = forms.CharField(
        label="Stop sequences", required=False, widget=forms.Textarea(attrs={"rows": 2}),
        help_text=f"One per line, at most {MAX_STOP}.",
    )  # fmt: skip
    request_response_format = forms.ChoiceField(
        label="Response format", initial="none",
        choices=[("none", "Free text"), ("json_object", "JSON object"), ("json_schema", "JSON matching a schema")],
    )  # fmt: skip
    request_json_schema = forms.CharField(
        label="JSON schema", required=False, widget=forms.Textarea(attrs={"rows": 4}),
        help_text='{"name": "answer", "schema": {...}}, or just the schema (it is then named "response").',
    )  # fmt: skip
    request_top_k = _bound(forms.IntegerField(label="Top-k", required=False, help_text="Empty: the server's."), -1)
    request_min_p = _bound(forms.FloatField(label="Min-p", required=False), 0, 1)
    request_repetition_penalty = _bound(forms.FloatField(label="Repetition penalty", required=False), 0, 10)

    def __init__(self, *args, team, workload=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.workload = workload
        initial = self.initial
        self.fields.update(_dist_fields("input", "Input length (tokens)", seconds=False, unit="tokens"))
        self.fields.update(_dist_fields("output", "Output length (tokens)", seconds=False, unit="tokens"))
        self.fields.update(_dist_fields("turns", "Turns per session", seconds=False, unit="turns"))
        self.fields.update(_dist_fields("think", "Think time between turns (s)", seconds=True, unit="s"))
        for key, value in {"input_dist": "fixed", "input_value": 512, "output_dist": "fixed", "output_value": 128,
                           "turns_dist": "uniform", "turns_min": 2, "turns_max": 6, "think_dist": "fixed",
                           "think_value": 0}.items():  # fmt: skip
            initial.setdefault(key, value)
        for i in range(1, PREFIX_ROWS + 1):
            self.fields[f"prefix_{i}_weight"] = _bound(forms.IntegerField(label=f"Prefix group {i}: weight",
                                                                          required=False), 1)  # fmt: skip
            self.fields[f"prefix_{i}_count"] = _bound(forms.IntegerField(label=f"Prefix group {i}: prefixes",
                                                                         required=False), 1)  # fmt: skip
            self.fields[f"prefix_{i}_tokens"] = _bound(forms.IntegerField(label=f"Prefix group {i}: length (tokens)",
                                                                          required=False), 1)  # fmt: skip
        for name, field in self.fields.items():
            # a choice the page hides (and so leaves out) falls back to its default; `source` is always there
            if isinstance(field, forms.ChoiceField) and not isinstance(field, forms.ModelChoiceField):
                field.required = name == "source"
        self.team = team
        self.fields["tokenizer"].queryset = Tokenizer.objects.filter(team=team)
        datasets = WorkloadDataset.objects.filter(team=team)
        self.fields["dataset"].queryset = datasets.exclude(format__in=WorkloadDataset.TRACE_FORMATS)
        self.fields["trace"].queryset = datasets.filter(format__in=WorkloadDataset.TRACE_FORMATS)
        self.spec: dict | None = None

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        taken = Workload.objects.filter(team=self.team, name=name)
        if self.workload is not None:
            taken = taken.exclude(pk=self.workload.pk)
        if taken.exists():
            raise forms.ValidationError("The team already has a workload of this name.")
        return name

    # --- building the spec ------------------------------------------------------------------------

    def _dist(self, prefix: str) -> dict:
        data = self.cleaned_data
        kind = data.get(f"{prefix}_dist")
        spec: dict = {"dist": kind}
        for param in DIST_PARAMS.get(kind, ()):
            value = data.get(f"{prefix}_{param}")
            if param in ("edges", "weights"):
                try:
                    spec[param] = _numbers(value)
                except ValueError:
                    self.add_error(f"{prefix}_{param}", "Numbers separated by commas, e.g. 1, 128, 512.")
                    spec[param] = []
            elif value is None or value == "":
                if kind == "fixed" or kind == "uniform" or param in ("mean", "stdev", "average", "median_ratio"):
                    spec[param] = None  # required: the spec's validation names it
            else:
                spec[param] = value if param == "median_ratio" else _tidy(value)
        for param in [p for p, v in spec.items() if v is None]:
            if f"{prefix}_{param}" not in self.errors:
                self.add_error(f"{prefix}_{param}", "Required for this distribution.")
            del spec[param]
        return spec

    def _prefix(self) -> dict | None:
        buckets = []
        data = self.cleaned_data
        for i in range(1, PREFIX_ROWS + 1):
            row = {key: data.get(f"prefix_{i}_{key}") for key in ("weight", "count", "tokens")}
            if all(v is None for v in row.values()):
                continue
            for key, value in row.items():
                if value is None:
                    self.add_error(f"prefix_{i}_{key}", "Give the weight, the number of prefixes and their length.")
            buckets.append({k: v for k, v in row.items() if v is not None})
        if not buckets:
            return None
        return {"buckets": buckets, "placement": data.get("prefix_placement") or "system"}

    def _sessions(self, source: str) -> dict:
        data = self.cleaned_data
        block: dict = {}
        if source == "synthetic":
            block["turns"] = self._dist("turns")
        block["think_time_s"] = self._dist("think")
        block["mode"] = data.get("sessions_mode") or "concurrent"
        if block["mode"] == "user_centric":
            block["users"] = data.get("sessions_users")
            block["turn_gap_s"] = data.get("sessions_turn_gap_s")
            if block["users"] is None:
                self.add_error("sessions_users", "Give the number of users in user-centric mode.")
            if block["turn_gap_s"] is None:
                self.add_error("sessions_turn_gap_s", "Give each user's gap between turns in user-centric mode.")
        return block

    def _request(self) -> dict:
        data = self.cleaned_data
        block: dict = {"endpoint": data.get("request_endpoint") or "chat",
                       "pin_output": data.get("request_pin_output") or "ignore_eos"}  # fmt: skip
        stops = [line for line in (data.get("request_stop") or "").splitlines() if line.strip()]
        if len(stops) > MAX_STOP:
            self.add_error("request_stop", f"{len(stops)} stop sequences; at most {MAX_STOP}.")
        block["stop"] = stops or None
        kind = data.get("request_response_format") or "none"
        block["response_format"] = None
        if kind == "json_object":
            block["response_format"] = {"type": "json_object"}
        elif kind == "json_schema":
            block["response_format"] = {"type": "json_schema", "json_schema": self._json_schema()}
        for key in ("top_k", "min_p", "repetition_penalty"):
            block[key] = data.get(f"request_{key}")
        return block

    def _json_schema(self) -> dict:
        text = (self.cleaned_data.get("request_json_schema") or "").strip()
        if not text:
            self.add_error("request_json_schema", "Give the JSON schema the answer must match.")
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            self.add_error("request_json_schema", f"Not valid JSON (line {exc.lineno}, column {exc.colno}).")
            return {}
        if not isinstance(value, dict):
            self.add_error("request_json_schema", "Must be a JSON object.")
            return {}
        return value if "schema" in value else {"name": "response", "schema": value}

    def build_spec(self) -> dict:
        """The spec the fields describe (blocks of other sources left out)."""
        data = self.cleaned_data
        source = data.get("source") or "synthetic"
        spec: dict = {"format": "llmbench.workload/1", "source": source, "seed": data.get("seed") or 0}
        if source == "synthetic":
            spec["input_tokens"] = self._dist("input")
            spec["output_tokens"] = self._dist("output")
        if source == "dataset":
            block = {key: data.get(f"dataset_{key}") for key in
                     ("sample", "min_input_tokens", "max_input_tokens", "max_total_tokens", "min_output_tokens",
                      "max_turns")}  # fmt: skip
            for key in ("sample", "max_turns"):
                if block[key] is None:
                    block[key] = DEFAULTS["dataset"][key]
            block["output_from"] = data.get("dataset_output_from") or "reference"
            block["multi_turn"] = bool(data.get("multi_turn"))
            spec["dataset"] = block
            if block["output_from"] == "distribution":
                spec["output_tokens"] = self._dist("output")
        if source in ("synthetic", "dataset"):
            if prefix := self._prefix():
                spec["prefix"] = prefix
            if data.get("multi_turn"):
                spec["sessions"] = self._sessions(source)
        if source == "trace":
            trace = {"speedup": data.get("trace_speedup"), "window_start_s": data.get("trace_window_start_s"),
                     "window_end_s": data.get("trace_window_end_s"), "block_size": data.get("trace_block_size")}  # fmt: skip
            for key in ("speedup", "window_start_s", "block_size"):
                if trace[key] is None:
                    trace[key] = DEFAULTS["trace"][key]
            spec["trace"] = trace
        spec["request"] = self._request()
        return spec

    def clean(self):
        data = super().clean()
        source = data.get("source")
        if source == "dataset" and not data.get("dataset") and "dataset" not in self.errors:
            self.add_error("dataset", "Choose a dataset (upload one on the datasets page).")
        if source == "trace" and not data.get("trace") and "trace" not in self.errors:
            self.add_error("trace", "Choose a trace (upload one on the datasets page).")
        if source:
            spec = self.build_spec()
            self.add_spec_errors(validate_spec(spec))
            self.spec = spec
        return data

    def service_kwargs(self) -> dict:
        """The spec, the file it reads and the tokenizer (the form must be valid)."""
        data = self.cleaned_data
        source = data["source"]
        dataset = data.get("dataset") if source == "dataset" else data.get("trace") if source == "trace" else None
        return {"spec": self.spec, "dataset": dataset, "tokenizer": data.get("tokenizer")}

    def add_spec_errors(self, errors: list[str]) -> None:
        """Put each "path: message" of the spec's validation on the field it is about, in words."""
        seen = set()
        for error in errors:
            path, _, message = error.partition(": ")
            field, words = self.field_for_path(path)
            text = _words(message or error)
            if not text.endswith("."):
                text += "."
            if (field, text) in seen:
                continue
            seen.add((field, text))
            if field and field in self.fields:
                if field not in self.errors:  # a field's own problem says it already
                    self.add_error(field, text)
            else:
                self.add_error(None, f"{words}: {text}" if words else text)

    def field_for_path(self, path: str) -> tuple[str | None, str]:
        """The editor field a spec path belongs to, and words for it ("input_tokens.max" → input_max)."""
        for spec_path, (prefix, label) in DIST_GROUPS.items():
            if path == spec_path or path.startswith(spec_path + "."):
                param = path[len(spec_path) + 1 :] or "dist"
                name = f"{prefix}_{param}"
                return (name if name in self.fields else f"{prefix}_dist"), label
        if match := re.fullmatch(r"prefix\.buckets\[(\d+)\]\.(\w+)", path):
            # the n-th bucket given: count the filled rows to find its row on the page
            filled = [i for i in range(1, PREFIX_ROWS + 1)
                      if any(self.cleaned_data.get(f"prefix_{i}_{k}") is not None for k in ("weight", "count", "tokens"))]  # fmt: skip
            index = int(match[1])
            if index < len(filled):
                return f"prefix_{filled[index]}_{match[2]}", f"Prefix group {filled[index]}"
            return None, "Shared prefixes"
        if path.startswith("prefix"):
            return ("prefix_placement" if path == "prefix.placement" else None), "Shared prefixes"
        if path.startswith("request.response_format"):
            return ("request_json_schema" if "json_schema" in path else "request_response_format"), "Response format"
        if path == "dataset" and self.cleaned_data.get("source") == "trace":
            return "trace", "Trace"
        block, _, key = path.partition(".")
        if block in ("dataset", "trace", "request", "sessions") and key:
            name = f"{block}_{key}"
            if block == "dataset" and key == "multi_turn":
                name = "multi_turn"
            if name in self.fields:
                return name, str(self.fields[name].label)
        if path in self.fields:
            return path, str(self.fields[path].label)
        return None, FIELD_LABELS.get(path, "")


def _dist_initial(prefix: str, spec: dict | None) -> dict:
    if not spec:
        return {}
    spec = dict(spec)
    if spec.get("dist") == "lognormal" and "sigma" in spec:
        # the editor speaks average and median ratio: median = e^μ, average = e^(μ + σ²/2)
        mu, sigma = spec.pop("mean"), spec.pop("sigma")
        spec["average"] = round(math.exp(mu + sigma * sigma / 2), 6)
        spec["median_ratio"] = round(math.exp(-sigma * sigma / 2), 6)
    out = {}
    for key, value in spec.items():
        if key == "dist":
            out[f"{prefix}_dist"] = value
        elif key in ("edges", "weights"):
            out[f"{prefix}_{key}"] = ", ".join(f"{v:g}" for v in value)
        else:
            out[f"{prefix}_{key}"] = value
    return out


def spec_initial(spec: dict) -> dict:
    """The editor's initial values for a stored spec (the reverse of WorkloadForm.build_spec)."""
    initial: dict = {"source": spec.get("source", "synthetic"), "seed": spec.get("seed", 0)}
    initial |= _dist_initial("input", spec.get("input_tokens"))
    initial |= _dist_initial("output", spec.get("output_tokens"))
    if prefix := spec.get("prefix"):
        initial["prefix_placement"] = prefix.get("placement", "system")
        for i, bucket in enumerate(prefix.get("buckets", [])[:PREFIX_ROWS], 1):
            for key in ("weight", "count", "tokens"):
                initial[f"prefix_{i}_{key}"] = bucket.get(key)
    if sessions := spec.get("sessions"):
        initial["multi_turn"] = True
        initial |= _dist_initial("turns", sessions.get("turns"))
        initial |= _dist_initial("think", sessions.get("think_time_s"))
        initial["sessions_mode"] = sessions.get("mode", "concurrent")
        initial["sessions_users"] = sessions.get("users")
        initial["sessions_turn_gap_s"] = sessions.get("turn_gap_s")
    if dataset := spec.get("dataset"):
        for key, value in dataset.items():
            if key == "multi_turn":
                initial["multi_turn"] = initial.get("multi_turn") or bool(value)
            else:
                initial[f"dataset_{key}"] = value
    for key, value in (spec.get("trace") or {}).items():
        initial[f"trace_{key}"] = value
    request = spec.get("request") or {}
    for key in ("endpoint", "pin_output", "top_k", "min_p", "repetition_penalty"):
        if key in request:
            initial[f"request_{key}"] = request[key]
    initial["request_stop"] = "\n".join(request.get("stop") or [])
    fmt = request.get("response_format")
    initial["request_response_format"] = fmt["type"] if fmt else "none"
    if fmt and fmt.get("json_schema"):
        initial["request_json_schema"] = json.dumps(fmt["json_schema"], indent=2)
    return initial


# --- uploads ------------------------------------------------------------------------------------------


def _too_big(upload, limit_mb: int, setting: str) -> None:
    if upload.size > limit_mb * 1024 * 1024:
        raise forms.ValidationError(f"The file is larger than {limit_mb:,} MB (the {setting} setting).")


class DatasetUploadForm(forms.Form):
    """A dataset or trace file; its format is detected from the name and content unless chosen."""

    file = forms.FileField(help_text="ShareGPT JSON, OpenAI chat JSON Lines, prompts (JSON Lines or CSV), or a "
                           "Mooncake, Azure or llmbench trace.")  # fmt: skip
    name = forms.CharField(max_length=200, required=False, help_text="Empty: the file's name.")
    format = forms.ChoiceField(
        choices=[("", "Detect from the file"), *WorkloadDataset.Format.choices], required=False, label="Format"
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        _too_big(upload, settings.WORKLOAD_MAX_UPLOAD_MB, "WORKLOAD_MAX_UPLOAD_MB")
        return upload

    def upload_kwargs(self) -> dict:
        upload = self.cleaned_data["file"]
        name = (self.cleaned_data.get("name") or "").strip() or Path(upload.name).name[:200]
        return {"name": name, "content": upload.read(), "filename": upload.name,
                "fmt": self.cleaned_data.get("format") or None}  # fmt: skip


class TokenizerUploadForm(forms.Form):
    """A Hugging Face tokenizer.json, optionally tied to one of the team's model variants."""

    file = forms.FileField(label="tokenizer.json", help_text="The model's Hugging Face tokenizer.json.")
    name = forms.CharField(max_length=100, help_text="e.g. Llama 3.1 8B.")
    variant = forms.ModelChoiceField(queryset=ModelVariant.objects.none(), required=False, label="Model variant",
                                     help_text="Optional: the model this tokenizer belongs to.")  # fmt: skip

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["variant"].queryset = ModelVariant.objects.filter(team=team)

    def clean_file(self):
        upload = self.cleaned_data["file"]
        _too_big(upload, settings.TOKENIZER_MAX_MB, "TOKENIZER_MAX_MB")
        return upload

    def upload_kwargs(self) -> dict:
        data = self.cleaned_data
        return {"name": data["name"].strip(), "content": data["file"].read(), "variant": data.get("variant")}
