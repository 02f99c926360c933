import functools

import orjson
from django.db import connections
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.hardware.models import (
    Deployment,
    HardwareProfile,
    PerformanceRun,
    RequestSample,
    RunSummary,
    ServerMetrics,
)
from apps.hardware.services import itl_from_bytes
from llmbench.db import prepared_cursor


class UniqueNameInTeamMixin:
    """`name` is unique within the request's team (the database says so too; this says it as a 400)."""

    def validate_name(self, value: str) -> str:
        model = self.Meta.model
        clash = model.objects.filter(team=self.context["request"].team, name=value.strip())
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(f"{model._meta.verbose_name} {value!r} already exists in this team.")
        return value.strip()


class HardwareProfileSerializer(UniqueNameInTeamMixin, serializers.ModelSerializer):
    class Meta:
        model = HardwareProfile
        fields = [
            "id", "name", "accelerator", "accelerator_count", "memory_per_device_gb", "interconnect", "cpu",
            "ram_gb", "hourly_cost_usd", "notes",
        ]  # fmt: skip


class DeploymentSerializer(UniqueNameInTeamMixin, serializers.ModelSerializer):
    class Meta:
        model = Deployment
        fields = [
            "id", "name", "engine", "engine_version", "tensor_parallel", "pipeline_parallel", "max_batch_size",
            "kv_cache_dtype", "settings", "notes",
        ]  # fmt: skip

    def validate_settings(self, value):
        # A form field holding the text `null` parses to None after DRF's null check, and the column is NOT NULL.
        if not isinstance(value, dict):
            raise serializers.ValidationError('An object of engine flags, e.g. {"enable_prefix_caching": true}.')
        return value


class RunSummarySerializer(serializers.ModelSerializer):
    error_rate = serializers.FloatField(read_only=True)

    class Meta:
        model = RunSummary
        fields = [
            "source", "request_count", "error_count", "error_rate", "errors_by_code", "metrics", "itl_source",
            "duration_s", "request_throughput_rps", "output_token_throughput_tps", "total_token_throughput_tps",
            "goodput_rps", "goodput_slo", "computed_at",
        ]  # fmt: skip


class PerformanceRunSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="variant.model_name", read_only=True)
    quantization = serializers.CharField(source="variant.quantization", read_only=True)
    # null for a run without hardware or deployment (both optional)
    hardware_name = serializers.CharField(source="hardware.name", read_only=True, default=None, allow_null=True)
    deployment_name = serializers.CharField(source="deployment.name", read_only=True, default=None, allow_null=True)
    summary = RunSummarySerializer(read_only=True)

    class Meta:
        model = PerformanceRun
        fields = [
            "id", "name", "variant", "model_name", "quantization", "hardware", "hardware_name", "deployment",
            "deployment_name", "concurrency", "request_rate_rps", "input_tokens_target", "output_tokens_target",
            "dataset", "tool", "tool_version", "source_format", "source_filename", "provider", "started_at",
            "duration_s", "tags", "notes", "is_simulated", "slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms", "created_at",
            "summary",
        ]  # fmt: skip
        read_only_fields = [
            f for f in fields if f not in ("name", "tags", "notes", "slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms")
        ]

    def validate_tags(self, value):
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise serializers.ValidationError("A list of strings.")
        return value

    def validate(self, attrs):
        for key in ("slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms"):
            if attrs.get(key) is not None and attrs[key] < 0:
                raise serializers.ValidationError({key: "Must not be negative."})
        return attrs


class RunWorkloadVersionSerializer(serializers.Serializer):
    """The workload version a run was measured with."""

    id = serializers.IntegerField()
    workload_id = serializers.IntegerField()
    workload_name = serializers.CharField(source="workload.name")
    number = serializers.IntegerField()


class ServerMetricsSerializer(serializers.ModelSerializer):
    """The server's own metrics over a run (docs/server-metrics.md): the reductions, the series, what was read."""

    class Meta:
        model = ServerMetrics
        fields = ["summary", "series", "sources"]


class PerformanceRunDetailSerializer(PerformanceRunSerializer):
    """One run (retrieve, PATCH): the list's fields, plus its workload version, how the request lengths were
    made and requested vs delivered lengths (docs/metrics.md), and the server's own metrics when they were
    scraped (docs/server-metrics.md; null otherwise). The list leaves them out."""

    workload_version = RunWorkloadVersionSerializer(read_only=True, allow_null=True)
    server_metrics = serializers.SerializerMethodField()

    class Meta(PerformanceRunSerializer.Meta):
        fields = [
            *PerformanceRunSerializer.Meta.fields[:-1], "workload_version", "token_calibration", "length_report",
            PerformanceRunSerializer.Meta.fields[-1], "server_metrics",
        ]  # fmt: skip
        read_only_fields = [*PerformanceRunSerializer.Meta.read_only_fields, "token_calibration", "length_report"]

    @extend_schema_field(ServerMetricsSerializer(allow_null=True))
    def get_server_metrics(self, run: PerformanceRun) -> dict | None:
        row = ServerMetrics.objects.filter(run=run).first()
        return None if row is None else ServerMetricsSerializer(row).data


# --- the run list, read-only: PerformanceRunSerializer's output from one values() query -------------
# The list is the API's most requested page. Through the ModelSerializer it built five model
# instances per run (run, variant, hardware, deployment, summary) and walked about thirty fields
# per row through DRF's generic attribute lookup; here each row is one dict from the database and
# the answer is built with the same formatting (tests/test_hot_paths.py holds the two equal).

_RUN_COLUMNS = [
    "id", "name", "variant", "variant__model_name", "variant__quantization", "hardware", "hardware__name",
    "deployment", "deployment__name", "concurrency", "request_rate_rps", "input_tokens_target",
    "output_tokens_target", "dataset", "tool", "tool_version", "source_format", "source_filename", "provider",
    "started_at", "duration_s", "tags", "notes", "is_simulated", "slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms",
    "created_at",
]  # fmt: skip
_SUMMARY_COLUMNS = [
    "id", "source", "request_count", "error_count", "errors_by_code", "metrics", "itl_source", "duration_s",
    "request_throughput_rps", "output_token_throughput_tps", "total_token_throughput_tps", "goodput_rps",
    "goodput_slo", "computed_at",
]  # fmt: skip
RUN_LIST_COLUMNS = _RUN_COLUMNS + [f"summary__{name}" for name in _SUMMARY_COLUMNS]


def run_list_rows(runs: QuerySet, *, metrics_as_json_text: bool = False) -> QuerySet:
    """`runs` as the dicts run_list_representation takes. With `metrics_as_json_text` each summary's
    metrics (most of a run's size) come as their stored JSON text, to be copied into an answer that
    llmbench.renderers.OrjsonRenderer writes instead of being decoded and encoded again."""
    if not metrics_as_json_text:
        return runs.values(*RUN_LIST_COLUMNS)
    columns = [name for name in RUN_LIST_COLUMNS if name != "summary__metrics"]
    return runs.values(*columns, summary_metrics_json=Cast("summary__metrics", TextField()))


# The ORM spent about a third of the unfiltered list's server CPU building the same two statements on
# every request (py-spy under bench/web.py). For a whole team's runs (the list without filters) they are
# compiled once per process, with the team's id their only parameter, and prepared once per connection
# (llmbench/db.py). tests/test_hot_paths.py holds the answer equal to the ORM path's.
_TEAM_PLACEHOLDER = -1


@functools.lru_cache(maxsize=128)
def _team_runs_statement(alias: str, as_text: bool, start: int | None, size: int | None):
    """(SQL, the row's column names, the selected expressions, the query) of the page of `size` runs
    from `start` of a team's runs, or of their count when start is None."""
    runs = PerformanceRun.objects.using(alias).filter(team_id=_TEAM_PLACEHOLDER)
    if start is None:
        sql, params = runs.order_by().values("pk").query.get_compiler(alias).as_sql()
        sql, names, expressions, query = f"SELECT COUNT(*) FROM ({sql}) counted", [], [], None
    else:
        query = run_list_rows(runs, metrics_as_json_text=as_text)[start : start + size].query
        compiler = query.get_compiler(alias)
        sql, params = compiler.as_sql()
        expressions = [expression for expression, _, _ in compiler.select]
        names = [*query.extra_select, *query.values_select, *query.annotation_select]
    if list(params) != [_TEAM_PLACEHOLDER]:  # the team must be the statement's only parameter
        raise AssertionError(f"unexpected parameters {params!r} in {sql}")
    return sql, names, expressions, query


class TeamRunRows:
    """run_list_rows of a whole team, as Django's Paginator takes them: count() and page slices."""

    def __init__(self, team_id: int, *, metrics_as_json_text: bool, page_size: int, alias: str = "default"):
        self.team_id, self.as_text, self.page_size, self.alias = team_id, metrics_as_json_text, page_size, alias

    def count(self) -> int:
        sql, _, _, _ = _team_runs_statement(self.alias, self.as_text, None, None)
        with prepared_cursor(connections[self.alias]) as cursor:
            cursor.execute(sql, [self.team_id])
            return cursor.fetchone()[0]

    def __getitem__(self, page: slice) -> list[dict]:
        # The Paginator ends the last page at the count; a page of page_size gives the same rows, so
        # one statement per page number serves every team.
        start = page.start or 0
        if page.step is not None or page.stop is None or page.stop - start > self.page_size:
            raise IndexError(f"pages of at most {self.page_size} runs only, not {page}")
        sql, names, expressions, query = _team_runs_statement(self.alias, self.as_text, start, self.page_size)
        connection = connections[self.alias]
        with prepared_cursor(connection) as cursor:
            cursor.execute(sql, [self.team_id])
            rows = cursor.fetchall()
        compiler = connection.ops.compiler("SQLCompiler")(query, connection, self.alias)
        converters = compiler.get_converters(expressions)  # JSON fields; SQLite's dates and booleans
        if converters:
            rows = compiler.apply_converters(rows, converters)
        return [dict(zip(names, row, strict=True)) for row in rows]


def _metrics(row: dict):
    if "summary__metrics" in row:
        return row["summary__metrics"]
    text = row["summary_metrics_json"]
    return None if text is None else orjson.Fragment(text)


def _float(value):
    return None if value is None else float(value)


def _int(value):
    return None if value is None else int(value)


def run_list_representation(rows) -> list[dict]:
    """PerformanceRunSerializer(many=True).data of runs read by run_list_rows (with their metrics as
    orjson.Fragment when read as JSON text)."""
    # DRF's own datetime formatting (ISO 8601 in the current time zone, "Z" for UTC), with the time
    # zone looked up once instead of once per value.
    datetime_field = serializers.DateTimeField(default_timezone=timezone.get_current_timezone())

    def _datetime(value):
        return datetime_field.to_representation(value) if value else None

    result = []
    for r in rows:
        item = {
            "id": r["id"], "name": r["name"], "variant": r["variant"], "model_name": r["variant__model_name"],
            "quantization": r["variant__quantization"], "hardware": r["hardware"],
            "hardware_name": r["hardware__name"], "deployment": r["deployment"],
            "deployment_name": r["deployment__name"], "concurrency": _int(r["concurrency"]),
            "request_rate_rps": _float(r["request_rate_rps"]), "input_tokens_target": _int(r["input_tokens_target"]),
            "output_tokens_target": _int(r["output_tokens_target"]), "dataset": r["dataset"], "tool": r["tool"],
            "tool_version": r["tool_version"], "source_format": r["source_format"],
            "source_filename": r["source_filename"], "provider": r["provider"],
            "started_at": _datetime(r["started_at"]), "duration_s": _float(r["duration_s"]), "tags": r["tags"],
            "notes": r["notes"], "is_simulated": bool(r["is_simulated"]), "slo_ttft_ms": _float(r["slo_ttft_ms"]),
            "slo_tpot_ms": _float(r["slo_tpot_ms"]), "slo_e2e_ms": _float(r["slo_e2e_ms"]),
            "created_at": _datetime(r["created_at"]),
        }  # fmt: skip
        item["summary"] = None  # a run without a summary (DRF reads the missing related row as None)
        if r["summary__id"] is not None:
            requests, errors = r["summary__request_count"], r["summary__error_count"]
            item["summary"] = {
                "source": r["summary__source"], "request_count": _int(requests), "error_count": _int(errors),
                "error_rate": (errors or 0) / requests if requests else None,  # RunSummary.error_rate
                "errors_by_code": r["summary__errors_by_code"], "metrics": _metrics(r),
                "itl_source": r["summary__itl_source"], "duration_s": _float(r["summary__duration_s"]),
                "request_throughput_rps": _float(r["summary__request_throughput_rps"]),
                "output_token_throughput_tps": _float(r["summary__output_token_throughput_tps"]),
                "total_token_throughput_tps": _float(r["summary__total_token_throughput_tps"]),
                "goodput_rps": _float(r["summary__goodput_rps"]), "goodput_slo": r["summary__goodput_slo"],
                "computed_at": _datetime(r["summary__computed_at"]),
            }  # fmt: skip
        result.append(item)
    return result


class RequestSampleSerializer(serializers.ModelSerializer):
    itl_ms = serializers.SerializerMethodField()

    class Meta:
        model = RequestSample
        fields = [
            "index", "error_code", "error_message", "ttft_ms", "e2e_ms", "input_tokens", "output_tokens",
            "mean_itl_ms", "itl_ms", "start_offset_ms", "session_index", "turn_index", "requested_input_tokens",
            "requested_output_tokens", "cached_tokens", "reasoning_tokens", "ttfot_ms", "phase",
        ]  # fmt: skip

    def get_itl_ms(self, sample) -> list[float] | None:
        gaps = itl_from_bytes(sample.itl_ms)
        return None if gaps is None else gaps.tolist()


class PerformanceUploadResultSerializer(serializers.Serializer):
    format = serializers.CharField()
    runs = PerformanceRunSerializer(many=True)
    samples = serializers.IntegerField()


class PredictRequestSerializer(serializers.Serializer):
    variant = serializers.IntegerField()
    hardware = serializers.IntegerField()
    input_tokens = serializers.FloatField(min_value=1)
    output_tokens = serializers.FloatField(min_value=1)
    concurrency = serializers.FloatField(min_value=1)


class ModelWithRunsSerializer(serializers.Serializer):
    """Documents GET /performance/models: a model variant that has runs."""

    id = serializers.IntegerField()
    model_name = serializers.CharField()
    quantization = serializers.CharField(allow_blank=True)
    run_count = serializers.IntegerField()


class ModelingConfigurationSerializer(serializers.Serializer):
    """Documents GET /performance/modeling/models: a model variant × hardware with runs (modeling_configurations)."""

    variant_id = serializers.IntegerField()
    variant = serializers.CharField()
    hardware_id = serializers.IntegerField()
    hardware = serializers.CharField()
    runs = serializers.IntegerField(help_text="Usable runs: with a concurrency and a summary.")
    enough_data = serializers.BooleanField(help_text="Enough usable runs for a prediction.")
