"""Forms shared by the score pages and the API: they validate query strings and uploads alike."""

import json

from django import forms
from django.conf import settings

from apps.scores.models import ModelVariant
from llmbench.parsers import json_loads


class ScoreImportForm(forms.Form):
    file = forms.FileField(help_text="CSV (long or wide) or lm-evaluation-harness results JSON.")
    format = forms.ChoiceField(
        choices=[("csv", "CSV (long or wide)"), ("lm_eval_json", "lm-evaluation-harness JSON")],
        initial="csv",
        required=False,
    )
    scale = forms.ChoiceField(
        choices=[
            ("auto", "Detect (all values ≤ 1 means fractions)"),
            ("fraction", "Fractions (0–1)"),
            ("percent", "Percent (0–100)"),
        ],
        initial="auto",
        required=False,
    )
    column_map = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": '{"Model": "model", "Quant": "quantization"}'}),
        help_text="Optional: JSON object renaming your columns to ours.",
    )
    model = forms.CharField(
        required=False, max_length=200, help_text="lm-eval JSON: the model (else read from the file)."
    )
    quantization = forms.CharField(required=False, max_length=32, help_text="lm-eval JSON: e.g. BF16, AWQ, Q4_K_M.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.MAX_UPLOAD_MB * 1024 * 1024:
            raise forms.ValidationError(f"The file is larger than {settings.MAX_UPLOAD_MB} MB.")
        return upload

    def clean_format(self):
        return self.cleaned_data["format"] or "csv"

    def clean_scale(self):
        return self.cleaned_data["scale"] or "auto"

    def clean_column_map(self):
        raw = self.cleaned_data["column_map"].strip()
        if not raw:
            return {}
        try:
            mapping = json_loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg}.") from None
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise forms.ValidationError('Expected an object of column names, e.g. {"Model": "model"}.')
        return mapping

    def import_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "content": data["file"].read(),
            "file_format": data["format"],
            "scale": data["scale"],
            "column_map": data["column_map"],
            "model_name": data["model"],
            "quantization": data["quantization"],
        }


class QuantizationQueryForm(forms.Form):
    """The quantization view's filter (a NUL character or an over-long value is a 400 naming `family`)."""

    family = forms.CharField(required=False, max_length=100)


class LeaderboardQueryForm(forms.Form):
    benchmark = forms.CharField(required=False, help_text="Comma-separated benchmark names.")
    family = forms.CharField(required=False)
    quantization = forms.CharField(required=False)
    sort = forms.CharField(required=False, help_text="'average', 'model' or a benchmark name.")
    order = forms.ChoiceField(choices=[("desc", "descending"), ("asc", "ascending")], required=False)

    def __init__(self, *args, benchmark_names: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.benchmark_names = benchmark_names

    def clean_benchmark(self):
        names = [n.strip() for n in self.cleaned_data["benchmark"].split(",") if n.strip()]
        known = {b.lower() for b in self.benchmark_names}
        unknown = [n for n in names if n.lower() not in known]
        if unknown:
            raise forms.ValidationError(f"Unknown benchmark: {', '.join(unknown)}.")
        return names

    def clean_sort(self):
        sort = self.cleaned_data["sort"].strip() or "average"
        if sort in ("average", "model"):
            return sort
        match = next((b for b in self.benchmark_names if b.lower() == sort.lower()), None)
        if match is None:
            raise forms.ValidationError(f"Cannot sort by {sort!r}: use 'average', 'model' or a benchmark name.")
        return match

    def selector_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "benchmark_names": data["benchmark"] or None,
            "family": data["family"].strip() or None,
            "quantization": data["quantization"].strip() or None,
            "sort": data["sort"],
            "descending": (data["order"] or ("asc" if data["sort"] == "model" else "desc")) == "desc",
        }


class ModelVariantForm(forms.ModelForm):
    class Meta:
        model = ModelVariant
        fields = ["model_name", "quantization", "family", "parameters_b", "url", "notes"]
