"""Performance uploads: parse, fill in what the file lacks from the form, check, then store."""

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from apps.accounts.models import Team
from apps.hardware.importers import PerformanceFileError, parse_performance_file
from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun
from apps.hardware.parsed import ParsedRun
from apps.hardware.services import RunTarget, run_store
from apps.scores.models import ModelVariant, normalize_quantization
from llmbench.uploads import ErrorList


@dataclass
class UploadOptions:
    """What the person uploading says; each value, when given, wins over the file's."""

    variant: ModelVariant | None = None
    model_name: str = ""
    quantization: str = ""
    hardware: HardwareProfile | None = None
    deployment: Deployment | None = None
    concurrency: int | None = None
    request_rate_rps: float | None = None
    duration_s: float | None = None
    name: str = ""
    tags: list[str] = field(default_factory=list)
    slo: dict[str, float | None] = field(default_factory=dict)


@dataclass
class PlannedRun:
    parsed: ParsedRun
    variant: ModelVariant  # unsaved when it is new
    hardware: HardwareProfile  # unsaved when it is new (described inline in our JSON format)
    deployment: Deployment | None


@dataclass
class PerformanceImportPlan:
    team: Team
    filename: str
    file_format: str
    runs: list[PlannedRun]
    options: UploadOptions

    @property
    def sample_count(self) -> int:
        return sum(len(r.parsed.samples) for r in self.runs)


def _variant(team: Team, parsed: ParsedRun, options: UploadOptions, errors: ErrorList) -> ModelVariant | None:
    if options.variant is not None:
        return options.variant
    model_name = (options.model_name or parsed.model_name).strip()
    quantization = normalize_quantization(options.quantization or parsed.quantization)
    if not model_name:
        errors.add(parsed.row, "model", "the file does not name the model: choose a model variant.")
    if not quantization:
        errors.add(parsed.row, "quantization", "the file does not say: give the quantization (e.g. BF16, AWQ).")
    if not model_name or not quantization:
        return None
    existing = ModelVariant.objects.filter(team=team, model_name=model_name, quantization=quantization).first()
    return existing or ModelVariant(team=team, model_name=model_name, quantization=quantization)


def _named(model, team: Team, spec: dict | None, defaults: dict):
    """An existing row of `model` by the name in `spec`, or an unsaved new one."""
    if not spec or not str(spec.get("name", "")).strip():
        return None
    name = str(spec["name"]).strip()[:100]
    existing = model.objects.filter(team=team, name=name).first()
    if existing:
        return existing
    fields = {k: v for k, v in spec.items() if k in defaults and v is not None}
    return model(team=team, name=name, **fields)


HARDWARE_FIELDS = {
    "accelerator": "", "accelerator_count": 1, "memory_per_device_gb": None, "interconnect": "", "cpu": "",
    "ram_gb": None, "hourly_cost_usd": None,
}  # fmt: skip
DEPLOYMENT_FIELDS = {
    "engine": "vllm", "engine_version": "", "tensor_parallel": 1, "pipeline_parallel": 1, "max_batch_size": None,
    "kv_cache_dtype": "", "settings": {},
}  # fmt: skip


def performance_import_plan(
    *,
    team: Team,
    content: bytes,
    filename: str = "",
    file_format: str | None = None,
    companion: bytes | None = None,
    options: UploadOptions,
) -> PerformanceImportPlan:
    """Parse and check an upload; raise PerformanceFileError naming every problem."""
    detected, runs = parse_performance_file(content, filename=filename, file_format=file_format, companion=companion)
    errors = ErrorList()
    planned = []
    for parsed in runs:
        if options.concurrency is not None:
            parsed.concurrency = options.concurrency
        if options.request_rate_rps is not None:
            parsed.request_rate_rps = options.request_rate_rps
        if options.duration_s is not None:
            parsed.duration_s = options.duration_s
        if options.name:
            parsed.name = options.name if len(runs) == 1 else f"{options.name} #{len(planned) + 1}"
        parsed.tags = sorted({*parsed.tags, *options.tags})
        variant = _variant(team, parsed, options, errors)
        hardware = options.hardware or _named(HardwareProfile, team, parsed.hardware, HARDWARE_FIELDS)
        if hardware is None:
            errors.add(parsed.row, "hardware", "the file does not say: choose the hardware this ran on.")
        deployment = options.deployment or _named(Deployment, team, parsed.deployment, DEPLOYMENT_FIELDS)
        if parsed.concurrency is None and parsed.request_rate_rps is None:
            errors.add(parsed.row, "concurrency", "the file gives neither concurrency nor request rate: give one.")
        if not parsed.samples and parsed.reported is None:
            errors.add(parsed.row, "samples", "the run has neither request samples nor a summary.")
        if variant is not None and hardware is not None:
            planned.append(PlannedRun(parsed, variant, hardware, deployment))
    errors.raise_if_any(PerformanceFileError)
    return PerformanceImportPlan(team, filename, detected, planned, options)


@transaction.atomic
def performance_import_apply(*, plan: PerformanceImportPlan, user: AbstractBaseUser | None) -> list[PerformanceRun]:
    """Store every planned run (creating new variants, hardware, deployments) in one transaction."""
    stored = []
    for item in plan.runs:
        for obj in (item.variant, item.hardware, item.deployment):
            if obj is not None and obj.pk is None:
                twin = type(obj).objects.filter(team=plan.team, **_identity(obj)).first()
                if twin is None:
                    obj.save()
                else:
                    obj.pk = twin.pk
        target = RunTarget(variant=item.variant, hardware=item.hardware, deployment=item.deployment)
        stored.append(
            run_store(
                team=plan.team,
                parsed=item.parsed,
                target=target,
                user=user,
                filename=plan.filename,
                slo=plan.options.slo,
            )
        )
    return stored


def _identity(obj) -> dict:
    if isinstance(obj, ModelVariant):
        return {"model_name": obj.model_name, "quantization": obj.quantization}
    return {"name": obj.name}
