"""Forms of the performance pages, also used by the API to validate uploads and queries."""

from django import forms
from django.conf import settings

from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun
from apps.hardware.selectors import GRID_METRICS, Workload
from apps.hardware.uploads import UploadOptions
from apps.scores.models import ModelVariant

FORMAT_CHOICES = [
    ("", "Detect from the content"),
    ("seed_csv", "Benchmark CSV (one row per run, aggregates)"),
    ("llmbench_json", "llmbench JSON (runs with samples)"),
    ("llmperf", "LLMPerf individual responses / summary JSON"),
    ("vllm", "vLLM benchmark_serving / vllm bench serve JSON"),
    ("guidellm", "guidellm benchmarks report JSON"),
    ("aiperf", "AIPerf / GenAI-Perf records or summary"),
    ("llama_bench", "llama.cpp llama-bench (json, jsonl, csv, md)"),
]


class TeamChoiceMixin:
    """Model choices limited to the team; another team's id is an invalid choice."""

    team_fields: dict[str, type] = {}

    def scope_choices(self, team) -> None:
        for name, model in self.team_fields.items():
            self.fields[name].queryset = model.objects.filter(team=team)


class PerformanceUploadForm(TeamChoiceMixin, forms.Form):
    team_fields = {"variant": ModelVariant, "hardware": HardwareProfile, "deployment": Deployment}

    file = forms.FileField()
    format = forms.ChoiceField(choices=FORMAT_CHOICES, required=False)
    summary_file = forms.FileField(required=False, help_text="LLMPerf or AIPerf: the summary beside the requests.")
    variant = forms.ModelChoiceField(ModelVariant.objects.none(), required=False, help_text="Or name it below.")
    model_name = forms.CharField(required=False, max_length=200, label="Model (if not chosen above)")
    quantization = forms.CharField(required=False, max_length=32)
    hardware = forms.ModelChoiceField(HardwareProfile.objects.none(), required=False)
    deployment = forms.ModelChoiceField(Deployment.objects.none(), required=False)
    concurrency = forms.IntegerField(required=False, min_value=1)
    request_rate_rps = forms.FloatField(required=False, min_value=0.0, label="Request rate (req/s)")
    duration_s = forms.FloatField(required=False, min_value=0.0, label="Duration (s)")
    name = forms.CharField(required=False, max_length=200)
    tags = forms.CharField(required=False, help_text="Comma-separated.")
    slo_ttft_ms = forms.FloatField(required=False, min_value=0.0, label="SLO TTFT (ms)")
    slo_tpot_ms = forms.FloatField(required=False, min_value=0.0, label="SLO TPOT (ms)")
    slo_e2e_ms = forms.FloatField(required=False, min_value=0.0, label="SLO E2E (ms)")

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.scope_choices(team)

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.MAX_UPLOAD_MB * 1024 * 1024:
            raise forms.ValidationError(f"The file is larger than {settings.MAX_UPLOAD_MB} MB.")
        return upload

    def options(self) -> UploadOptions:
        data = self.cleaned_data
        return UploadOptions(
            variant=data["variant"],
            model_name=data["model_name"].strip(),
            quantization=data["quantization"].strip(),
            hardware=data["hardware"],
            deployment=data["deployment"],
            concurrency=data["concurrency"],
            request_rate_rps=data["request_rate_rps"],
            duration_s=data["duration_s"],
            name=data["name"].strip(),
            tags=[t.strip() for t in data["tags"].split(",") if t.strip()],
            slo={"ttft_ms": data["slo_ttft_ms"], "tpot_ms": data["slo_tpot_ms"], "e2e_ms": data["slo_e2e_ms"]},
        )

    def plan_kwargs(self) -> dict:
        upload, companion = self.cleaned_data["file"], self.cleaned_data["summary_file"]
        return {
            "content": upload.read(),
            "companion": companion.read() if companion else None,
            "filename": upload.name,
            "file_format": self.cleaned_data["format"] or None,
            "options": self.options(),
        }


class GridQueryForm(forms.Form):
    metric = forms.ChoiceField(choices=[(k, v[0]) for k, v in GRID_METRICS.items()], required=False)
    workload = forms.CharField(
        required=False,
        max_length=100,
        help_text="One workload, e.g. c16-in256-out128 or r2.5-in512-out128; empty: the most common one.",
    )

    def clean_metric(self):
        return self.cleaned_data["metric"] or "ttft_p50_ms"

    def clean_workload(self) -> Workload | None:
        key = self.cleaned_data["workload"].strip()
        if not key:
            return None
        try:
            return Workload.from_key(key)
        except ValueError:
            raise forms.ValidationError(
                "Not a workload: write c<concurrency> and/or r<requests per second>, then in<input tokens> and "
                "out<output tokens>, joined by dashes (c16-in256-out128)."
            ) from None


class CompareQueryForm(forms.Form):
    runs = forms.CharField(help_text="Two to four run ids, comma-separated.")

    def clean_runs(self):
        raw = [p.strip() for p in self.cleaned_data["runs"].split(",") if p.strip()]
        try:
            ids = [int(p) for p in raw]
        except ValueError:
            raise forms.ValidationError("Run ids are whole numbers, comma-separated.") from None
        ids = list(dict.fromkeys(ids))
        if not 2 <= len(ids) <= 4:
            raise forms.ValidationError("Choose two to four different runs.")
        return ids


class PredictForm(TeamChoiceMixin, forms.Form):
    team_fields = {"variant": ModelVariant, "hardware": HardwareProfile}

    variant = forms.ModelChoiceField(ModelVariant.objects.none())
    hardware = forms.ModelChoiceField(HardwareProfile.objects.none())
    input_tokens = forms.FloatField(min_value=1)
    output_tokens = forms.FloatField(min_value=1)
    concurrency = forms.FloatField(min_value=1)

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.scope_choices(team)


class RunSloForm(forms.ModelForm):
    class Meta:
        model = PerformanceRun
        fields = ["slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms"]
        labels = {"slo_ttft_ms": "TTFT ≤ (ms)", "slo_tpot_ms": "TPOT ≤ (ms)", "slo_e2e_ms": "E2E ≤ (ms)"}
