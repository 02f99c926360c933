"""NVIDIA AIPerf and GenAI-Perf results: the per-request records (profile_export.jsonl) and the
summary (profile_export_aiperf.json, GenAI-Perf's profile_export_genai_perf.json).

Both tools write each value with its unit; latencies come out in milliseconds whatever the file
says. What is read is described in docs/performance-formats.md."""

from datetime import UTC, datetime
from typing import Any

from apps.hardware.importers import (
    PerformanceFileError,
    _failed,
    _json,
    _present,
    _Reader,
    _reject,
)
from apps.hardware.parsed import ParsedRun, ParsedSample, ReportedSummary
from apps.providers.samples import PHASE_STEADY, PHASE_WARMUP
from llmbench.uploads import ErrorList

# A time in these units, times the factor, is milliseconds.
TO_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "sec": 1000.0, "seconds": 1000.0}
# Summary metric (first spelling found) → our metric, and whether its values are times.
SUMMARY_METRICS = {
    "ttft_ms": (("time_to_first_token", "ttft"), True),
    "e2e_ms": (("request_latency",), True),
    # AIPerf's and GenAI-Perf's "inter token latency" is (latency − TTFT) / (output tokens − 1): our TPOT.
    "tpot_ms": (("inter_token_latency",), True),
    "itl_ms": (("inter_chunk_latency",), True),
    "output_tps": (("output_token_throughput_per_user", "output_token_throughput_per_request"), False),
    "input_tokens": (("input_sequence_length", "num_input_token"), False),
    "output_tokens": (("output_sequence_length", "num_output_token", "output_token_count"), False),
}
SUMMARY_STATS = {"avg": "mean", "std": "stdev", "min": "min", "max": "max",
                 **{f"p{q}": f"p{q}" for q in (1, 5, 10, 25, 50, 75, 90, 95, 99)}}  # fmt: skip
SUMMARY_EXTRA = ("total_isl", "total_osl", "goodput", "request_goodput", "good_request_count")
# Where the input configuration keeps each setting: AIPerf, GenAI-Perf with a config file, older GenAI-Perf.
CONFIG_PATHS = {
    "model": ("endpoint.model_names", "model_names", "model"),
    "concurrency": ("loadgen.concurrency", "perf_analyzer.stimulus.concurrency", "concurrency"),
    "request_rate": ("loadgen.request_rate", "perf_analyzer.stimulus.request_rate", "request_rate"),
    "input_tokens": ("input.prompt.input_tokens.mean", "input.synthetic_tokens.mean", "synthetic_input_tokens_mean"),
    "output_tokens": ("input.prompt.output_tokens.mean", "input.output_tokens.mean", "output_tokens_mean"),
}


def is_record(doc: Any) -> bool:
    """One line of profile_export.jsonl: an object with its request's metadata and metrics."""
    return isinstance(doc, dict) and {"metadata", "metrics"} <= doc.keys()


def is_summary(doc: Any) -> bool:
    """A summary: metrics as {"unit", "avg", …} at the top (newer) or under `records` (older AIPerf)."""
    if not isinstance(doc, dict) or is_record(doc):
        return False
    metrics = doc.get("records") if isinstance(doc.get("records"), dict) else doc
    return any(isinstance(metrics.get(key), dict) and "unit" in metrics[key]
               for key in ("request_latency", "time_to_first_token", "request_throughput"))  # fmt: skip


def _first(r: _Reader, *paths: str) -> tuple[str, Any]:
    """(path, value) of the first of `paths` the source has (not null)."""
    for path in paths:
        value = r.get(path)
        if value is not None:
            return path, value
    return paths[0], None


def _time_scale(r: _Reader, where: str, unit: Any) -> float | None:
    """The factor from the file's unit of a time to milliseconds; an unknown unit is an error."""
    if unit is None:
        return 1.0  # AIPerf's display unit
    scale = TO_MS.get(str(unit).strip().lower())
    if scale is None:
        r.error(f"{where}.unit", f"{unit!r} is not a unit of time this importer knows ({', '.join(TO_MS)}).")
    return scale


# ---- per-request records ------------------------------------------------------------------------
def _record_value(r: _Reader, tag: str, *, time: bool) -> tuple[Any, float | None]:
    """(raw value, scale to our unit) of metrics.<tag>; the scale is None when the unit is bad."""
    metric = r.get(f"metrics.{tag}")
    if metric is None:
        return None, 1.0
    if not isinstance(metric, dict) or "value" not in metric:
        r.error(f"metrics.{tag}", 'is not {"value": …, "unit": …}.')
        return None, None
    scale = _time_scale(r, f"metrics.{tag}", metric.get("unit")) if time else 1.0
    return metric["value"], scale


def _record_time(r: _Reader, *tags: str) -> float | None:
    for tag in tags:
        value, scale = _record_value(r, tag, time=True)
        if value is not None:
            number = r.num(f"metrics.{tag}.value", value)
            return None if number is None or scale is None else number * scale
    return None


def _record_whole(r: _Reader, *tags: str) -> int | None:
    for tag in tags:
        value, _ = _record_value(r, tag, time=False)
        if value is not None:
            return r.whole(f"metrics.{tag}.value", value)
    return None


def _record_sample(r: _Reader, index: int) -> tuple[ParsedSample, str, float | int | None]:
    """The request as a sample, its benchmark phase and its start (ns since the epoch)."""
    metadata = r.get("metadata") if isinstance(r.get("metadata"), dict) else {}
    phase = str(metadata.get("benchmark_phase") or metadata.get("credit_phase") or "profiling")
    start_key = "metadata.request_start_ns" if metadata.get("request_start_ns") is not None else "metadata.timestamp_ns"
    start_ns: float | int | None = r.num(start_key)
    if start_ns is not None and isinstance(r.get(start_key), int):
        start_ns = r.get(start_key)  # exact: a float of an epoch in ns is off by a few hundred ns
    metrics = r.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        r.error("metrics", "is not an object.")
    known = {"input_tokens": _record_whole(r, "input_sequence_length", "error_isl")}
    error = r.get("error")
    if error is not None:
        detail = error if isinstance(error, dict) else {"message": error}
        code = detail.get("code")
        code = str(code) if code not in (None, "") else str(detail.get("type") or "error")
        message = ": ".join(str(detail[k]) for k in ("type", "message") if detail.get(k))
        return _failed(index, code, message, **known), phase, start_ns
    e2e = _record_time(r, "request_latency")
    if e2e is None and r.get("metrics.request_latency") is None:
        r.error("metrics.request_latency", "is missing: every successful request has its latency.")
    gaps_raw, gap_scale = _record_value(r, "inter_chunk_latency", time=True)
    gaps = None
    if gaps_raw is not None and gap_scale is not None:
        gaps = r.gaps("metrics.inter_chunk_latency.value", gaps_raw, gap_scale)
    sample = ParsedSample(
        index,
        ttft_ms=_record_time(r, "time_to_first_token", "ttft"),
        e2e_ms=e2e,
        itl_ms=gaps,
        mean_itl_ms=None if gaps is not None else _record_time(r, "inter_token_latency"),
        output_tokens=_record_whole(r, "output_sequence_length", "output_token_count"),
        **known,
    )
    return sample, phase, start_ns


def _records(text: str, errors: ErrorList) -> list[ParsedSample]:
    samples, phases, starts = [], [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        doc = _json(line, n)
        r = _Reader(f"line {n}", errors, doc)
        if not is_record(doc):
            r.error("record", "is not an AIPerf request record (an object with metadata and metrics).")
            continue
        sample, phase, start_ns = _record_sample(r, len(samples))
        samples.append(sample)
        phases.append(phase)
        starts.append(start_ns)
    if not samples and not errors.items:
        errors.add("file", "records", "holds no request records.")
    known = [s for s in starts if s is not None]
    for sample, start_ns in zip(samples, starts, strict=True):
        if start_ns is not None:
            sample.start_offset_ms = (start_ns - min(known)) / 1e6
    if "warmup" in phases:  # kept but marked, so the summary leaves the warm-up out
        for sample, phase in zip(samples, phases, strict=True):
            sample.phase = PHASE_WARMUP if phase == "warmup" else PHASE_STEADY
    return samples


# ---- summary ------------------------------------------------------------------------------------
def _summary_metric(r: _Reader, prefix: str, names: tuple[str, ...], time: bool) -> dict[str, float]:
    where, value = _first(r, *(f"{prefix}{name}" for name in names))
    if value is None:
        return {}
    if not isinstance(value, dict):
        r.error(where, 'is not {"unit": …, "avg": …}.')
        return {}
    scale = _time_scale(r, where, value.get("unit")) if time else 1.0
    if scale is None:
        return {}
    stats = _present({ours: r.num(f"{where}.{key}") for key, ours in SUMMARY_STATS.items()}, scale)
    if (count := r.whole(f"{where}.count")) is not None:
        stats["count"] = float(count)
    return stats


def _config(r: _Reader, setting: str) -> tuple[str, Any]:
    return _first(r, *(f"input_config.{path}" for path in CONFIG_PATHS[setting]))


def _summary(r: _Reader, run: ParsedRun) -> None:
    """Fill the run's reported summary, workload, model and tool from the summary file."""
    prefix = "records." if isinstance(r.get("records"), dict) else ""
    metrics = {}
    for ours, (names, time) in SUMMARY_METRICS.items():
        if stats := _summary_metric(r, prefix, names, time):
            metrics[ours] = stats
    completed = r.whole(f"{prefix}request_count.avg")
    errors = r.whole(f"{prefix}error_request_count.avg")
    if errors is None and isinstance(r.get("error_summary"), list):
        errors = sum(r.whole(f"error_summary[{i}].count", item.get("count") if isinstance(item, dict) else None) or 0
                     for i, item in enumerate(r.get("error_summary")))  # fmt: skip
    run.reported = ReportedSummary(
        metrics=metrics,
        request_count=None if completed is None else completed + (errors or 0),
        error_count=errors,
        request_throughput_rps=r.num(f"{prefix}request_throughput.avg"),
        output_token_throughput_tps=r.num(f"{prefix}output_token_throughput.avg"),
        input_tokens_mean=metrics.get("input_tokens", {}).get("mean"),
        output_tokens_mean=metrics.get("output_tokens", {}).get("mean"),
        extra=_present({key: r.num(f"{prefix}{key}.avg") for key in SUMMARY_EXTRA}),
    )
    run.duration_s = r.num(f"{prefix}benchmark_duration.avg")
    where, model = _config(r, "model")
    if isinstance(model, list):  # the first of the models benchmarked
        where, model = f"{where}[0]", model[0] if model else None
    run.model_name = r.text(where, model)
    where, concurrency = _config(r, "concurrency")
    run.concurrency = r.whole(where, concurrency, minimum=1)
    where, rate = _config(r, "request_rate")
    run.request_rate_rps = None if rate in (None, "inf", float("inf")) else r.num(where, rate)
    for setting, attribute in (("input_tokens", "input_tokens_target"), ("output_tokens", "output_tokens_target")):
        where, value = _config(r, setting)
        if value not in (None, -1):  # GenAI-Perf writes -1 for "not set"
            setattr(run, attribute, r.whole(where, value))
    run.started_at = _iso(r, "start_time")
    aiperf = prefix or any(r.get(key) is not None for key in (
        "aiperf_version", "schema_version", "input_config.endpoint.model_names", "input_config.loadgen"))  # fmt: skip
    run.tool = "aiperf" if aiperf else "genai-perf"
    run.tool_version = r.text("aiperf_version") if run.tool == "aiperf" else ""
    if r.get("was_cancelled") is True:
        run.notes = "The benchmark was stopped before it finished."


def _iso(r: _Reader, field_name: str) -> datetime | None:
    """An ISO 8601 time; the tools write local time without a zone, read as UTC (as vLLM's date)."""
    value = r.get(field_name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        r.error(field_name, f"{value!r} is not an ISO 8601 date and time.")
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---- entry point --------------------------------------------------------------------------------
def _kind(text: str) -> str:
    """The kind of a text: "records", "summary", or "" when it is neither."""
    stripped = text.strip()
    first_line = stripped.split("\n", 1)[0]
    if first_line.startswith("{") and first_line.rstrip().endswith("}") and is_record(_json(first_line)):
        return "records"
    if stripped.startswith("{"):
        return "summary" if is_summary(_json(stripped)) else ""
    return ""


def parse_aiperf(text: str, companion_text: str | None = None) -> list[ParsedRun]:
    """Read AIPerf / GenAI-Perf per-request records and/or their summary (either order): one run."""
    errors = ErrorList()
    texts = [text] + ([] if companion_text is None else [companion_text])
    if not any(t.strip() for t in texts):
        _reject("file", "file", "is empty.")
    kinds = [_kind(t) for t in texts]
    if "" in kinds:
        _reject("file", "file", "is neither AIPerf's per-request records (profile_export.jsonl) nor its summary "
                "(profile_export_aiperf.json, or GenAI-Perf's profile_export_genai_perf.json).")  # fmt: skip
    if len(set(kinds)) < len(kinds):
        _reject("file", "companion", "give one per-request records file and one summary file.")
    run = ParsedRun(source_format="aiperf", tool="aiperf")
    for kind, part in zip(kinds, texts, strict=True):
        if kind == "records":
            run.samples = _records(part, errors)
        else:
            _summary(_Reader("summary", errors, _json(part)), run)
    errors.raise_if_any(PerformanceFileError)
    return [run]
