"""Forms of the benchmark pages: importing a suite (several files at once), a new run with its target rows
(endpoint · model picked from the team's endpoints, the catalog variant it serves), and the filters of the list and
answers pages. Every rule of a run is services.benchmark_run_create's; its problems are shown next to the field
(or the target row) they concern. The list filters are apps.benchmarks.filters', shared with the API."""

import re
from itertools import zip_longest

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from apps.benchmarks.models import BenchmarkSuite, Kind
from apps.benchmarks.services import TargetSpec
from apps.providers.engine.sim import MODELS as SIM_MODELS
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant, ServedVariant

# A service problem about a target row: "targets[1].model", "targets.1", "targets[0]" …
TARGET_PROBLEM = re.compile(r"^targets?(?:\[(\d+)\]|\.(\d+))?(?:\.(\w+))?$")
TARGET_FIELD_WORDS = {"endpoint": "Endpoint: ", "model": "Model: ", "variant": "Variant: "}


def sentence(message: str) -> str:
    """A service message as a sentence: it ends with a full stop. (Its first word is left alone: it may be an
    endpoint's name.)"""
    message = str(message).strip()
    return message + ("" if message.endswith((".", "?", "!")) else ".")


def endpoint_model_choices(team) -> tuple[dict[int, ProviderEndpoint], list[tuple[str, list[tuple[str, str]]]]]:
    """The team's endpoints by id, and the "endpoint · model" options of a target row grouped by endpoint (value
    "<endpoint id>:<model>"), from each endpoint's model names (a simulated endpoint without any: the simulator's).
    The load-sweep form's picker, which this app, below batches, cannot import."""
    endpoints = {e.pk: e for e in ProviderEndpoint.objects.filter(team=team).order_by("name")}
    groups = []
    for endpoint in endpoints.values():
        suffix = " (simulated)" if endpoint.is_simulated else ""
        names = [str(name).strip() for name in endpoint.model_names or [] if str(name).strip()]
        if not names and endpoint.is_simulated:
            names = list(SIM_MODELS)
        options = [(f"{endpoint.pk}:{name}", f"{endpoint.name} · {name}{suffix}") for name in names]
        if options:
            groups.append((endpoint.name + suffix, options))
    return endpoints, groups


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one input; each is checked against MAX_UPLOAD_MB."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        files = data if isinstance(data, list | tuple) else [data] if data else []
        if not files:
            single(None, initial)  # "This field is required." when it is
            return []
        limit = settings.MAX_UPLOAD_MB * 1024 * 1024
        for upload in files:
            if upload.size > limit:
                raise ValidationError(f"{upload.name} is larger than {settings.MAX_UPLOAD_MB} MB.")
        return [single(upload, initial) for upload in files]


class SuiteImportForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="Importing a name again makes its next version.")
    kind = forms.ChoiceField(
        choices=[("", "Detect from the files"), *Kind.choices], required=False, label="Benchmark",
        help_text="Which benchmark the files hold; detected from their columns unless you choose.",
    )  # fmt: skip
    files = MultipleFileField(
        label="Test files",
        help_text="One or more files of the same benchmark: GSM8K JSON Lines; MMLU per-subject CSV (no header) or "
        "Parquet/JSON; MMLU-Pro Parquet/JSON; ARC or HellaSwag JSON Lines; TruthfulQA MC1 JSON.",
    )
    fewshot_files = MultipleFileField(
        required=False, label="Few-shot files",
        help_text="Optional: the worked examples asked before each question (MMLU-Pro's validation split, MMLU's "
        "dev CSVs …).",
    )  # fmt: skip
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def import_kwargs(self) -> dict:
        """The arguments of imports.suite_import (the form must be valid)."""
        data = self.cleaned_data
        return {
            "name": data["name"].strip(),
            "kind": data["kind"] or None,
            "files": [(f.name, f.read()) for f in data["files"]],
            "fewshot_files": [(f.name, f.read()) for f in data["fewshot_files"] or []],
            "description": data["description"],
        }


class RunForm(forms.Form):
    """A new run: the suite, one or more target rows (lists `target` and `variant`), and the settings."""

    suite = forms.ModelChoiceField(queryset=BenchmarkSuite.objects.none(), label="Benchmark suite")
    name = forms.CharField(max_length=200, required=False, help_text="Blank: the suite and the date.")
    shots = forms.IntegerField(
        initial=0, min_value=0, max_value=25, label="Worked examples (shots)",
        help_text="Asked before each question, taken from the suite's few-shot files (same subject first).",
    )  # fmt: skip
    temperature = forms.FloatField(initial=0.0, min_value=0.0, max_value=2.0,
                                   help_text="0 as the reference evaluations do.")  # fmt: skip
    max_tokens = forms.IntegerField(
        required=False, min_value=1, max_value=200_000, label="Most output tokens",
        help_text="Per answer. Blank: the benchmark's default (room for a worked solution where it asks for one).",
    )  # fmt: skip
    concurrency = forms.IntegerField(initial=8, min_value=1, max_value=256,
                                     help_text="Requests in flight at once, all targets together.")  # fmt: skip
    subset_size = forms.IntegerField(
        required=False, min_value=1, label="Subset size",
        help_text="Optional: ask a stratified sample of this many items (every subject in proportion) for a quick "
        "check. Its interval is wider, and it does not become a measured score.",
    )  # fmt: skip
    subset_seed = forms.IntegerField(initial=0, min_value=0, max_value=2**31 - 1, label="Subset seed")

    def __init__(self, data=None, *, team, suite: BenchmarkSuite | None = None):
        super().__init__(data, initial={"suite": suite} if suite else None)
        self.team = team
        self.fields["suite"].queryset = BenchmarkSuite.objects.filter(team=team)
        self.endpoints, self.target_choices = endpoint_model_choices(team)
        self.variants = {v.pk: v for v in ModelVariant.objects.filter(team=team)}
        self.served = {
            f"{s.endpoint_id}:{s.model}": s.variant_id
            for s in ServedVariant.objects.filter(team=team).only("endpoint_id", "model", "variant_id")
        }
        self.target_rows = self._rows(data)
        self.target_errors: list[str] = []

    def _rows(self, data) -> list[dict]:
        if data is None:
            return [{"target": "", "variant": "", "errors": []}]
        rows = zip_longest(data.getlist("target"), data.getlist("variant"), fillvalue="")
        return [{"target": t.strip(), "variant": v.strip(), "errors": []} for t, v in rows if t.strip() or v.strip()]

    @property
    def variant_choices(self) -> list[tuple[int, str]]:
        return [(pk, str(v)) for pk, v in sorted(self.variants.items(), key=lambda item: str(item[1]))]

    def _targets(self) -> list[dict]:
        """The rows as (endpoint, model, variant), problems written on their row."""
        if not self.target_rows:
            self.target_errors.append("Choose at least one endpoint and model to ask.")
        specs, seen = [], set()
        for row in self.target_rows:
            endpoint_id, _, model = row["target"].partition(":")
            endpoint = self.endpoints.get(int(endpoint_id)) if endpoint_id.isdigit() else None
            if endpoint is None or not model:
                row["errors"].append("Choose one of the team's endpoints and a model it serves.")
                continue
            variant = None
            if row["variant"]:
                variant = self.variants.get(int(row["variant"])) if row["variant"].isdigit() else None
                if variant is None:
                    row["errors"].append("Choose one of the team's model variants.")
                    continue
            if row["target"] in seen:
                row["errors"].append("This endpoint and model are asked twice.")
                continue
            seen.add(row["target"])
            specs.append(TargetSpec(endpoint=endpoint, model=model, variant=variant))
        return specs

    def clean(self):
        data = super().clean()
        data["targets"] = self._targets()
        return data

    def is_valid(self) -> bool:
        return super().is_valid() and not self.target_errors and not any(r["errors"] for r in self.target_rows)

    def create_kwargs(self) -> dict:
        """The arguments of services.benchmark_run_create (the form must be valid)."""
        data = self.cleaned_data
        return {
            "suite": data["suite"], "targets": data["targets"], "name": data["name"].strip(), "shots": data["shots"],
            "temperature": data["temperature"], "max_tokens": data["max_tokens"], "concurrency": data["concurrency"],
            "subset_size": data["subset_size"], "subset_seed": data["subset_seed"],
        }  # fmt: skip

    def show_problems(self, error: ValidationError) -> None:
        """A service's ValidationError, each message next to the field or target row it names."""
        problems = error.message_dict if hasattr(error, "error_dict") else {"__all__": error.messages}
        for key, messages in problems.items():
            for message in messages:
                row = TARGET_PROBLEM.match(key)
                if key in self.fields:
                    self.add_error(key, sentence(message))
                elif key in ("endpoint", "model", "variant") and len(self.target_rows) == 1:
                    self.target_rows[0]["errors"].append(TARGET_FIELD_WORDS[key] + sentence(message))
                elif row and (row.group(1) or row.group(2)):
                    index = int(row.group(1) or row.group(2))
                    words = TARGET_FIELD_WORDS.get(row.group(3) or "", "")
                    if index < len(self.target_rows):
                        self.target_rows[index]["errors"].append(words + sentence(message))
                    else:
                        self.target_errors.append(sentence(message))
                elif row or key in ("endpoint", "model", "variant"):
                    self.target_errors.append(sentence(message))
                else:
                    self.add_error(None, sentence(message))

    @property
    def setting_fields(self) -> list:
        return [self[name] for name in ("shots", "temperature", "max_tokens", "concurrency")]

    @property
    def subset_fields(self) -> list:
        return [self[name] for name in ("subset_size", "subset_seed")]
