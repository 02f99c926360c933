"""The new-search form: the load sweep form's endpoint · model, variant, hardware and deployment choosers, the
SLO built from rows (metric, percentile, most milliseconds), and the search space. Every rule is
services.capacity_validate's; its problems are shown next to the field (or the SLO row) they concern."""

import re
from itertools import zip_longest

from django import forms

from apps.batches.forms import endpoint_model_choices
from apps.capacity.engine.slo import CONFIDENCES, METRICS, PERCENTILES
from apps.capacity.models import CapacitySearch
from apps.capacity.services import CapacityInvalid, capacity_validate
from apps.hardware.models import Deployment, HardwareProfile
from apps.scores.models import ModelVariant
from apps.workloads.models import Workload

METRIC_CHOICES = [(key, f"{short} ({words})") for key, (short, words) in METRICS.items()]
PERCENTILE_CHOICES = [(str(p), f"p{p}") for p in PERCENTILES]
DEFAULT_OBJECTIVES = [
    {"metric": "ttft_ms", "percentile": "95", "max_ms": "500"},
    {"metric": "tpot_ms", "percentile": "95", "max_ms": "50"},
]
# Where a problem the service names is shown: its field on this form.
FIELD_OF = {
    "endpoint": "target", "model": "target", "tolerance": "tolerance_pct", "slo.max_error_rate": "max_error_rate_pct",
    "slo.attainment": "attainment_pct", "slo.confidence": "confidence", "workload_version": "workload",
}  # fmt: skip
ROW_PROBLEM = re.compile(r"^slo\.objectives\[(\d+)\](?:\.(\w+))?$")


def sentence(message: str) -> str:
    """A service message ("must be …") as the page shows it ("Must be ….")."""
    message = message.strip()
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


class CapacitySearchForm(forms.Form):
    name = forms.CharField(max_length=200)
    target = forms.ChoiceField(
        label="Endpoint and model", help_text="The team's endpoints and the models configured on each.",
    )  # fmt: skip
    variant = forms.ModelChoiceField(queryset=ModelVariant.objects.none(), label="Model variant",
                                     help_text="What the results are stored as.")  # fmt: skip
    hardware = forms.ModelChoiceField(queryset=HardwareProfile.objects.none(), required=False,
                                      help_text="Its hourly cost gives the cost per 1M output tokens.")  # fmt: skip
    deployment = forms.ModelChoiceField(queryset=Deployment.objects.none(), required=False,
                                        label="Deployment (engine)")  # fmt: skip
    workload = forms.ModelChoiceField(
        queryset=Workload.objects.none(), required=False, label="Workload",
        help_text="The traffic to send (its latest version). Without one, synthetic prompts of the lengths below.",
    )  # fmt: skip
    prompt_tokens = forms.IntegerField(initial=256, min_value=1, max_value=200_000, label="Prompt tokens")
    output_tokens = forms.IntegerField(initial=128, min_value=1, max_value=200_000, label="Output tokens")
    max_error_rate_pct = forms.FloatField(initial=1, min_value=0, label="Most failed requests (%)",
                                          help_text="A level with more failed requests misses the SLO.")  # fmt: skip
    attainment_pct = forms.FloatField(
        required=False, min_value=0, max_value=100, label="Share of requests meeting all of them (%)",
        help_text="Optional: e.g. 95 means 95% of all requests (failed ones count as missing) meet every threshold.",
    )  # fmt: skip
    confidence = forms.TypedChoiceField(
        choices=[(str(c), f"{c:.0%}") for c in CONFIDENCES], coerce=float, initial="0.95",
        help_text="How sure the judge must be that a level meets or misses the SLO.",
    )  # fmt: skip
    space = forms.ChoiceField(choices=CapacitySearch.Space.choices, initial=CapacitySearch.Space.RATE,
                              label="Search over")  # fmt: skip
    arrivals = forms.ChoiceField(choices=CapacitySearch.Arrivals.choices, initial=CapacitySearch.Arrivals.POISSON,
                                 label="Arrivals (request rate)")  # fmt: skip
    start_level = forms.FloatField(initial=1, label="First level",
                                   help_text="Requests per second, or concurrent requests.")  # fmt: skip
    max_level = forms.FloatField(initial=1024, label="Highest level", help_text="The search does not probe past it.")
    tolerance_pct = forms.FloatField(initial=5, label="Tolerance (%)",
                                     help_text="Bisect until the bracket is this narrow, as a share of capacity.")  # fmt: skip
    probe_duration_s = forms.FloatField(initial=30, label="Seconds per probe")
    warmup_s = forms.FloatField(initial=0, label="Warm-up seconds per probe",
                                help_text="Sent first and left out of the judgement.")  # fmt: skip
    repetitions = forms.IntegerField(initial=1, label="Trials per level")
    max_extra_trials = forms.IntegerField(initial=2, label="Extra trials of an undecided level")
    max_probes = forms.IntegerField(initial=24, label="Probe budget", help_text="Probes (trials) the search may use.")
    shards = forms.IntegerField(initial=1, label="Worker processes per probe")
    seed = forms.IntegerField(initial=0, min_value=0, max_value=2**31 - 1)

    def __init__(self, data=None, *, team):
        super().__init__(data)
        self.team = team
        for name, model in (("variant", ModelVariant), ("hardware", HardwareProfile), ("deployment", Deployment)):
            self.fields[name].queryset = model.objects.filter(team=team)
        self.fields["workload"].queryset = Workload.objects.filter(team=team, archived=False).order_by("name")
        self.endpoints, self.fields["target"].choices = endpoint_model_choices(team)
        self.objective_rows = self._rows(data)
        self.slo_errors: list[str] = []
        self.cleaned_fields: dict = {}

    @staticmethod
    def _rows(data) -> list[dict]:
        if data is None:
            return [dict(row, errors=[]) for row in DEFAULT_OBJECTIVES]
        columns = [data.getlist(f"objective_{name}") for name in ("metric", "percentile", "max_ms")]
        return [
            {"metric": m, "percentile": p, "max_ms": x.strip(), "errors": []}
            for m, p, x in zip_longest(*columns, fillvalue="")
        ]

    def _slo(self, data: dict) -> dict:
        objectives = []
        for row in self.objective_rows:
            percentile = int(row["percentile"]) if row["percentile"].isdigit() else row["percentile"]
            try:
                max_ms: float | str = float(row["max_ms"])
            except ValueError:
                max_ms = row["max_ms"]
            objectives.append({"metric": row["metric"], "percentile": percentile, "max_ms": max_ms})
        slo = {"objectives": objectives, "confidence": data.get("confidence")}
        if data.get("max_error_rate_pct") is not None:
            slo["max_error_rate"] = data["max_error_rate_pct"] / 100
        if data.get("attainment_pct") is not None:
            slo["attainment"] = data["attainment_pct"] / 100
        return slo

    def clean(self):
        data = super().clean()
        fields = {"team": self.team, "slo": self._slo(data)}
        if data.get("target"):
            endpoint_id, _, model = data["target"].partition(":")  # one of the team's own pairs
            fields["endpoint"], fields["model"] = self.endpoints[int(endpoint_id)], model
        workload = data.get("workload")
        if workload is not None:
            fields["workload_version"] = workload.latest
            if fields["workload_version"] is None:
                self.add_error("workload", "This workload has no version yet.")
        for name in ("variant", "hardware", "deployment", "prompt_tokens", "output_tokens", "space", "arrivals",
                     "start_level", "max_level", "probe_duration_s", "warmup_s", "repetitions", "max_extra_trials",
                     "max_probes", "shards", "seed"):  # fmt: skip
            if data.get(name) is not None:
                fields[name] = data[name]
        if data.get("tolerance_pct") is not None:
            fields["tolerance"] = data["tolerance_pct"] / 100
        try:
            self.cleaned_fields = capacity_validate(fields)
        except CapacityInvalid as exc:
            self._show(exc.errors)
        return data

    def _show(self, errors: dict[str, str]) -> None:
        for path, message in errors.items():
            row = ROW_PROBLEM.match(path)
            if row and int(row.group(1)) < len(self.objective_rows):
                what = {"metric": "Metric: ", "percentile": "Percentile: ", "max_ms": "Most milliseconds: "}
                self.objective_rows[int(row.group(1))]["errors"].append(
                    what.get(row.group(2) or "", "") + sentence(message)
                )
                continue
            field = FIELD_OF.get(path, path)
            if path.startswith("slo") and field not in self.fields:
                self.slo_errors.append(sentence(message))
            elif field in self.fields and field not in self.errors:
                self.add_error(field, sentence(message))
            elif field not in self.fields:
                self.add_error(None, sentence(message))

    def _bound(self, names: str) -> list:
        return [self[name] for name in names.split()]

    @property
    def measure_fields(self) -> list:
        return self._bound("name target variant hardware deployment workload prompt_tokens output_tokens")

    @property
    def slo_fields(self) -> list:
        return self._bound("max_error_rate_pct attainment_pct confidence")

    @property
    def search_fields(self) -> list:
        return self._bound("space arrivals start_level max_level tolerance_pct probe_duration_s warmup_s repetitions "
                           "max_extra_trials max_probes shards seed")  # fmt: skip

    def is_valid(self) -> bool:
        return super().is_valid() and not self.slo_errors and not any(r["errors"] for r in self.objective_rows)

    def create_kwargs(self) -> dict:
        """The fields for services.capacity_create (the form must be valid)."""
        fields = dict(self.cleaned_fields)
        fields.pop("team")
        fields["name"] = self.cleaned_data["name"]
        return fields
