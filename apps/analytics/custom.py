"""The custom export: an entity, filters, the fields wanted and a format, as one table streamed from the
database (values_list + iterator, never the whole table in memory)."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime

from apps.analytics.filters import FilterError, parse_filters, parse_include_simulated, responses
from apps.experiments.models import Experiment
from apps.hardware.models import PerformanceRun, RequestSample
from apps.scores.models import Score
from llmbench.exports import Table

FORMATS = ("csv", "json", "xlsx")


@dataclass(frozen=True)
class Entity:
    fields: dict[str, str]  # exported name → ORM path
    default: tuple[str, ...]
    order: str = "id"


ENTITIES: dict[str, Entity] = {
    "responses": Entity(
        {
            "id": "id", "experiment_id": "experiment_id", "experiment": "experiment__name",
            "experiment_type": "experiment__kind", "endpoint": "target__endpoint__name", "model": "target__model",
            "test_case": "test_case__title", "test_case_version": "test_case__version", "combination": "combination",
            "repetition": "repetition", "temperature": "temperature", "top_p": "top_p", "max_tokens": "max_tokens",
            "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty", "seed": "seed",
            "content": "content", "input_tokens": "input_tokens", "output_tokens": "output_tokens",
            "ttft_ms": "ttft_ms", "latency_ms": "latency_ms", "cost_usd": "cost_usd", "error_code": "error_code",
            "passed": "passed", "score": "score", "quality_overall": "quality_overall",
            "quality_coherence": "quality_coherence", "quality_completeness": "quality_completeness",
            "quality_readability": "quality_readability", "simulated": "is_simulated", "created_at": "created_at",
        },
        ("id", "experiment", "endpoint", "model", "test_case", "temperature", "top_p", "max_tokens", "passed", "score",
         "quality_overall", "latency_ms", "cost_usd", "error_code", "created_at"),
    ),
    "experiments": Entity(
        {"id": "id", "name": "name", "kind": "kind", "status": "status", "responses_per_item": "responses_per_item",
         "created_at": "created_at", "started_at": "started_at", "finished_at": "finished_at", "error": "error"},
        ("id", "name", "kind", "status", "created_at", "finished_at"),
    ),
    "runs": Entity(
        {"id": "id", "name": "name", "model": "variant__model_name", "quantization": "variant__quantization",
         "hardware": "hardware__name", "deployment": "deployment__name", "concurrency": "concurrency",
         "request_rate_rps": "request_rate_rps", "tool": "tool", "started_at": "started_at",
         "request_count": "summary__request_count", "error_count": "summary__error_count",
         "request_throughput_rps": "summary__request_throughput_rps",
         "output_token_throughput_tps": "summary__output_token_throughput_tps", "simulated": "is_simulated",
         "created_at": "created_at"},
        ("id", "name", "model", "quantization", "hardware", "deployment", "concurrency", "request_count",
         "output_token_throughput_tps", "created_at"),
    ),
    "samples": Entity(
        {"run_id": "run_id", "index": "index", "error_code": "error_code", "ttft_ms": "ttft_ms", "e2e_ms": "e2e_ms",
         "input_tokens": "input_tokens", "output_tokens": "output_tokens", "mean_itl_ms": "mean_itl_ms",
         "start_offset_ms": "start_offset_ms", "simulated": "run__is_simulated"},
        ("run_id", "index", "error_code", "ttft_ms", "e2e_ms", "output_tokens", "mean_itl_ms"),
        order="run_id",
    ),
    "scores": Entity(
        {"id": "id", "model": "variant__model_name", "quantization": "variant__quantization",
         "benchmark": "benchmark__name", "value_pct": "value_pct", "stderr_pct": "stderr_pct", "n_shot": "n_shot",
         "source": "source", "evaluated_at": "evaluated_at", "origin": "origin", "ci_low_pct": "ci_low_pct",
         "ci_high_pct": "ci_high_pct", "n_items": "n_items"},
        # A variant may have an imported and a measured score of one benchmark: the origin tells the rows apart.
        ("model", "quantization", "benchmark", "origin", "value_pct", "stderr_pct", "n_shot"),
    ),
}  # fmt: skip


class CustomExportError(ValueError):
    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass
class CustomExport:
    entity: str
    fields: list[str]
    format: str
    table: Table
    filters: dict


def _since(filters: dict, name: str) -> datetime | None:
    raw = filters.get(name)
    if raw in (None, ""):
        return None
    value = parse_datetime(str(raw)) if isinstance(raw, str) else None
    if value is None:
        raise CustomExportError(f"filters.{name}", f"an ISO 8601 date-time, not {raw!r}")
    return value


def _int_list(filters: dict, name: str) -> list[int] | None:
    raw = filters.get(name)
    if raw is None:
        return None
    values = raw if isinstance(raw, list) else [raw]
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError):
        raise CustomExportError(f"filters.{name}", "an id or a list of ids") from None


def _include_simulated(team, filters: dict) -> bool:
    try:
        return parse_include_simulated(filters, team)
    except FilterError as exc:
        raise CustomExportError(f"filters.{exc.field}", exc.problem) from None


def _queryset(team, entity: str, filters: dict) -> QuerySet:
    """The entity's rows in the filters; simulated results (responses, runs and their samples) only with
    `include_simulated` (default: the team's `show_simulated`), as in every analytics view."""
    include_simulated = _include_simulated(team, filters)
    if entity == "responses":
        try:
            query = {k: v for k, v in filters.items() if k in ("timeframe", "start", "end", "experiment_type",
                                                               "model", "tag", "include_simulated")}  # fmt: skip
            query = query | {"timeframe": filters.get("timeframe") or "90d"}
            rows = responses(team, parse_filters(query, team=team))
        except FilterError as exc:
            raise CustomExportError(f"filters.{exc.field}", exc.problem) from None
        if (ids := _int_list(filters, "experiment")) is not None:
            rows = rows.filter(experiment_id__in=ids)
        return rows
    if entity == "experiments":
        rows = Experiment.objects.filter(team=team)
        if kind := filters.get("experiment_type"):
            if kind not in ("single", "batch"):
                raise CustomExportError("filters.experiment_type", "single or batch")
            rows = rows.filter(kind=kind)
        if (since := _since(filters, "since")) is not None:
            rows = rows.filter(created_at__gte=since)
        return rows
    if entity in ("runs", "samples"):
        runs = PerformanceRun.objects.filter(team=team)
        if not include_simulated:
            runs = runs.filter(is_simulated=False)
        if (ids := _int_list(filters, "run")) is not None:
            runs = runs.filter(pk__in=ids)
        if model := filters.get("model"):
            runs = runs.filter(variant__model_name=model)
        if (since := _since(filters, "since")) is not None:
            runs = runs.filter(created_at__gte=since)
        if entity == "runs":
            return runs
        return RequestSample.objects.filter(run__in=runs.values("pk")).order_by("run_id", "index")
    return Score.objects.filter(team=team)


def custom_export(team, body) -> CustomExport:
    """Validate a custom export request (`entity`, `fields`, `filters`, `format`); every problem names its field."""
    if not isinstance(body, dict):
        raise CustomExportError("body", "a JSON object")
    entity_name = body.get("entity")
    if entity_name not in ENTITIES:
        raise CustomExportError("entity", f"one of {', '.join(ENTITIES)}")
    entity = ENTITIES[entity_name]
    fmt = body.get("format") or "csv"
    if fmt not in FORMATS:
        raise CustomExportError("format", f"one of {', '.join(FORMATS)}")
    filters = {} if body.get("filters") is None else body["filters"]
    if not isinstance(filters, dict):
        raise CustomExportError("filters", "a JSON object")
    fields = body.get("fields") or list(entity.default)
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise CustomExportError("fields", "a list of field names")
    unknown = [f for f in fields if f not in entity.fields]
    if unknown:
        raise CustomExportError("fields", f"unknown for {entity_name}: {', '.join(unknown)}; "
                                          f"one of {', '.join(entity.fields)}")  # fmt: skip
    if not body.get("fields") and "simulated" in entity.fields and _include_simulated(team, filters):
        fields.append("simulated")  # simulated rows may be in it: every line says whether it is one
    rows = _queryset(team, entity_name, filters)
    paths = [entity.fields[f] for f in fields]
    ordered = rows.order_by(*(["run_id", "index"] if entity_name == "samples" else ["id"]))

    def produce() -> Iterator[tuple]:
        yield from ordered.values_list(*paths).iterator(chunk_size=5000)

    return CustomExport(entity_name, fields, fmt, Table(entity_name, fields, produce()), filters)
