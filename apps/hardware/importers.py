"""Parsers for performance result files: the seed CSV, our llmbench JSON, LLMPerf, vLLM and guidellm
(AIPerf / GenAI-Perf in import_aiperf.py, llama-bench in import_llamabench.py).

Each returns ParsedRun objects in our units (milliseconds, integer token counts) or raises
PerformanceFileError naming every bad row and field; none touches the database. What is read
from each format is described in docs/performance-formats.md.
"""

import csv
import io
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

from apps.hardware.models import Deployment
from apps.hardware.parsed import ParsedRun, ParsedSample, ReportedSummary
from llmbench.parsers import json_loads
from llmbench.uploads import ErrorList, FileRejected, RowError, decode_upload

FORMATS = ("seed_csv", "llmbench_json", "llmperf", "vllm", "guidellm", "aiperf", "llama_bench")
LLMBENCH_FORMAT = "llmbench.performance/1"
MAX_MESSAGE = 2000  # characters of an error message kept per request
MAX_CODE = 50  # RequestSample.error_code


class PerformanceFileError(FileRejected):
    """A performance result file that cannot be imported."""


def _reject(row: int | str, field_name: str, message: str) -> NoReturn:
    raise PerformanceFileError([RowError(row, field_name, message)])


def _dig(obj: Any, *keys: str) -> Any:
    """obj[k1][k2]…, or None as soon as a level is missing or not an object."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


_SOURCE: Any = object()  # default of the value arguments below: read the field from the source


class _Reader:
    """Typed values of one row or object, each problem added to `errors` under `row`.

    A field is read from `source` by its dotted path ("metrics.request_totals.total") unless its
    value is passed. `strict` (our own format) refuses numeric strings, and 4.0 as a whole number."""

    def __init__(self, row: int | str, errors: ErrorList, source: Any = None, *, strict: bool = False):
        self.row, self.errors, self.source, self.strict = row, errors, source, strict

    def error(self, field_name: str, message: str) -> None:
        self.errors.add(self.row, field_name, message)

    def get(self, field_name: str, value: Any = _SOURCE) -> Any:
        return _dig(self.source, *field_name.split(".")) if value is _SOURCE else value

    def num(self, field_name: str, value: Any = _SOURCE) -> float | None:
        """A finite number ≥ 0, None for null."""
        raw = self.get(field_name, value)
        if raw is None:
            return None
        try:
            if (
                isinstance(raw, bool)
                or not isinstance(raw, int | float | str)
                or (self.strict and isinstance(raw, str))
            ):
                raise ValueError
            number = float(raw)
        except (ValueError, OverflowError):
            self.error(field_name, f"{raw!r} is not a number.")
            return None
        if not math.isfinite(number) or number < 0:
            self.error(field_name, f"{raw!r} is {'not a finite number' if not math.isfinite(number) else 'negative'}.")
            return None
        return number

    def whole(self, field_name: str, value: Any = _SOURCE, *, minimum: int = 0) -> int | None:
        """A whole number ≥ minimum, None for null; unless strict, 4.0 and "4" are 4."""
        raw = self.get(field_name, value)
        number = self.num(field_name, raw)
        if number is None:
            return None
        if not number.is_integer() or (self.strict and not isinstance(raw, int)):
            self.error(field_name, f"{raw!r} is not a whole number.")
        elif number < minimum:
            self.error(field_name, f"{raw!r} is less than {minimum}.")
        else:
            return int(number)
        return None

    def ms(self, field_name: str, value: Any = _SOURCE) -> float | None:
        """Seconds in the file, milliseconds out."""
        seconds = self.num(field_name, value)
        return None if seconds is None else seconds * 1000.0

    def text(self, field_name: str, value: Any = _SOURCE) -> str:
        raw = self.get(field_name, value)
        if raw is None:
            return ""
        if not isinstance(raw, str):
            self.error(field_name, f"{raw!r} is not text.")
            return ""
        return raw.strip()

    def unix(self, field_name: str) -> datetime | None:
        seconds = self.num(field_name)
        if seconds is None:
            return None
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            self.error(field_name, f"{seconds!r} is not a Unix time.")
            return None

    def gaps(self, field_name: str, value: Any, scale: float) -> list[float]:
        """A list of inter-token gaps, each finite and ≥ 0, times `scale`."""
        if not isinstance(value, list):
            self.error(field_name, "is not a list of gaps.")
            return []
        gaps = [self.num(f"{field_name}[{j}]", gap) for j, gap in enumerate(value)]
        return [gap * scale for gap in gaps if gap is not None]


def _present(values: dict[str, float | int | None], scale: float = 1.0) -> dict[str, float]:
    return {k: float(v) * scale for k, v in values.items() if v is not None}


def _failed(index: int, code: str, message: Any, **known: Any) -> ParsedSample:
    """A failed request: its code and message, never latencies (tools write 0 for them)."""
    text = message if isinstance(message, str) else json.dumps(message, default=str)
    return ParsedSample(index=index, error_code=code[:MAX_CODE], error_message=text[:MAX_MESSAGE], **known)


def _rebase(samples: list[ParsedSample], origin: float | None = None) -> None:
    """Start times read in seconds → milliseconds from `origin` (default: the earliest)."""
    starts = [s.start_offset_ms for s in samples if s.start_offset_ms is not None]
    origin = min(starts, default=0.0) if origin is None else origin
    for sample in samples:
        if sample.start_offset_ms is not None:
            sample.start_offset_ms = (sample.start_offset_ms - origin) * 1000.0


def _json(text: str, line: int = 1) -> Any:
    try:
        return json_loads(text)
    except json.JSONDecodeError as exc:
        _reject(f"line {exc.lineno + line - 1}", "file", f"is not valid JSON ({exc.msg}).")


def _json_documents(text: str) -> list[Any]:
    """The objects of a JSON file: the items of a list, one object, or one per line (JSON Lines)."""
    try:
        doc = json_loads(text)
    except json.JSONDecodeError as exc:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if len(lines) < 2 or not lines[0][1].rstrip().endswith("}"):  # JSON Lines: one whole object a line
            _reject(f"line {exc.lineno}", "file", f"is not valid JSON ({exc.msg}).")
        return [_json(line, n) for n, line in lines]
    return doc if isinstance(doc, list) else [doc]


# ---- seed CSV (LLM Benchmark Modeling Tool) ------------------------------------------------------
SEED_LATENCIES = {"ttft": "ttft_ms", "e2e": "e2e_ms", "user_tps": "output_tps"}
SEED_STATS = ("mean", "stdev", "p05", "p50", "p80", "p95", "p99", "p999")
SEED_TOKENS = {"avg_len": "mean", "stdev_len": "stdev", "min_len": "min", "max_len": "max"}
SEED_EXTRA = (
    "input_total_tokens", "output_total_tokens", "per_gpu_num_gpus", "per_gpu_tps_mean", "per_gpu_tps_stdev",
    "acceptance_rate",
)  # fmt: skip
SEED_COLUMNS = frozenset(
    (
        "provider_name", "provider_model", "traffic_mode", "traffic_level", "hf_dataset_name",
        "summary_total_num_requests", "summary_num_failed_requests", "summary_total_elapsed_time_s",
        "summary_actual_qps", "summary_job_level_tps", *SEED_EXTRA,
        *(f"{side}_{suffix}" for side in ("input", "output") for suffix in SEED_TOKENS),
        *(f"{prefix}_{stat}" for prefix in SEED_LATENCIES for stat in (*SEED_STATS, "distribution")),
    )
)  # fmt: skip


def _seed_run(r: _Reader) -> ParsedRun:
    model = r.text("provider_model")
    if not model:
        r.error("provider_model", "is empty.")
    metrics: dict[str, dict[str, float]] = {}
    for side in ("input", "output"):
        if stats := _present({stat: r.num(f"{side}_{suffix}") for suffix, stat in SEED_TOKENS.items()}):
            metrics[f"{side}_tokens"] = stats
    for prefix, metric in SEED_LATENCIES.items():
        if stats := _present({stat: r.num(f"{prefix}_{stat}") for stat in SEED_STATS}):
            metrics[metric] = stats
    run = ParsedRun(
        source_format="seed_csv", row=r.row, tool="seed_csv", model_name=model, provider=r.text("provider_name"),
        dataset=r.text("hf_dataset_name"), duration_s=r.num("summary_total_elapsed_time_s"),
        reported=ReportedSummary(
            metrics=metrics, request_count=r.whole("summary_total_num_requests"),
            error_count=r.whole("summary_num_failed_requests"), request_throughput_rps=r.num("summary_actual_qps"),
            output_token_throughput_tps=r.num("summary_job_level_tps"),
            input_tokens_mean=metrics.get("input_tokens", {}).get("mean"),
            output_tokens_mean=metrics.get("output_tokens", {}).get("mean"),
            extra=_present({column: r.num(column) for column in SEED_EXTRA}),
        ),
    )  # fmt: skip
    mode = r.text("traffic_mode").lower()
    if mode == "qps":
        run.request_rate_rps = r.num("traffic_level")
    elif mode == "concurrency":
        run.concurrency = r.whole("traffic_level", minimum=1)
    elif mode:
        r.error("traffic_mode", f"{mode!r} is neither 'qps' nor 'concurrency'.")
    elif r.get("traffic_level") is not None:
        r.error("traffic_mode", "is empty, so traffic_level cannot be read.")
    return run


def parse_seed_csv(text: str) -> list[ParsedRun]:
    """Read the seed tool's CSV: one run (aggregates only) per row."""
    errors = ErrorList()
    reader = csv.reader(io.StringIO(text))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        _reject(1, "header", "the file is empty.")
    except csv.Error as exc:
        _reject(1, "header", f"is not valid CSV ({exc}).")
    for position, name in enumerate(header):
        if name not in SEED_COLUMNS:
            errors.add(1, name or "header", "unknown column for the seed CSV format.")
        elif name in header[:position]:
            errors.add(1, name, "appears twice in the header.")
    if "provider_model" not in header:
        errors.add(1, "provider_model", "required column is missing.")
    errors.raise_if_any(PerformanceFileError)
    runs, line = [], 1
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                errors.add(line, "row", f"has {len(cells)} cells; the header has {len(header)}.")
                continue
            record = {name: cell.strip() or None for name, cell in zip(header, cells, strict=True)}
            runs.append(_seed_run(_Reader(line, errors, record)))
    except csv.Error as exc:
        errors.add(line, "row", f"is not valid CSV ({exc}).")
    errors.raise_if_any(PerformanceFileError)
    if not runs:
        _reject("file", "rows", "no runs below the header.")
    return runs


# ---- llmbench JSON (ours) -----------------------------------------------------------------------
RUN_SCHEMA = {
    "name": "text", "model": "text", "quantization": "text", "provider": "text", "tool": "text",
    "tool_version": "text", "concurrency": "positive", "request_rate_rps": "number", "input_tokens_target": "whole",
    "output_tokens_target": "whole", "dataset": "text", "started_at": "time", "duration_s": "number", "tags": "tags",
    "notes": "text", "hardware": "caller", "deployment": "caller", "samples": "caller",
}  # fmt: skip
HARDWARE_SCHEMA = {
    "name": "text", "accelerator": "text", "accelerator_count": "positive", "memory_per_device_gb": "number",
    "interconnect": "text", "cpu": "text", "ram_gb": "number", "hourly_cost_usd": "number",
}  # fmt: skip
DEPLOYMENT_SCHEMA = {
    "name": "text", "engine": "text", "engine_version": "text", "tensor_parallel": "positive",
    "pipeline_parallel": "positive", "max_batch_size": "positive", "kv_cache_dtype": "text", "settings": "object",
}  # fmt: skip
SAMPLE_SCHEMA = {
    "index": "whole", "error_code": "text", "error_message": "text", "ttft_ms": "number", "e2e_ms": "number",
    "input_tokens": "whole", "output_tokens": "whole", "itl_ms": "gaps", "mean_itl_ms": "number",
    "start_offset_ms": "number",
}  # fmt: skip


def _typed(r: _Reader, raw: dict, schema: dict[str, str], prefix: str = "") -> dict[str, Any]:
    """The values of an object of our format by the schema's kinds (nulls left out); unknown keys are errors."""
    for key in raw:
        if key not in schema:
            r.error(f"{prefix}{key}", f"unknown key; expected one of: {', '.join(schema)}.")
    out: dict[str, Any] = {}
    for key, kind in schema.items():
        where, value = f"{prefix}{key}", raw.get(key)
        if value is None or kind == "caller":  # read by the caller
            continue
        if kind == "text":
            out[key] = r.text(where)
        elif kind in ("whole", "positive"):
            out[key] = r.whole(where, minimum=int(kind == "positive"))
        elif kind == "number":
            out[key] = r.num(where)
        elif kind == "gaps":
            out[key] = r.gaps(where, value, 1.0)
        elif kind == "time":
            try:
                moment = datetime.fromisoformat(value)
                out[key] = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            except (TypeError, ValueError):
                r.error(where, f"{value!r} is not an ISO 8601 date and time.")
        elif kind == "tags" and not (isinstance(value, list) and all(isinstance(t, str) for t in value)):
            r.error(where, "is not a list of strings.")
        elif kind == "object" and not isinstance(value, dict):
            r.error(where, "is not an object.")
        else:
            out[key] = value  # tags, settings
    return {key: value for key, value in out.items() if value is not None}


def _llmbench_inline(r: _Reader, prefix: str, schema: dict[str, str]) -> dict | None:
    """The run's inline hardware or deployment object; it must have a `name`."""
    raw = r.get(prefix)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        r.error(prefix, "is not an object.")
        return None
    out = _typed(r, raw, schema, f"{prefix}.")
    if not out.get("name"):
        r.error(f"{prefix}.name", "is required when the run describes its hardware or deployment.")
    if "engine" in out and out["engine"] not in Deployment.Engine.values:
        r.error(f"{prefix}.engine", f"{out['engine']!r} is not one of: {', '.join(Deployment.Engine.values)}.")
    return out


def _llmbench_sample(r: _Reader, position: int) -> ParsedSample | None:
    if not isinstance(r.source, dict):
        r.error("sample", "is not an object.")
        return None
    values = {"index": position, **_typed(r, r.source, SAMPLE_SCHEMA)}
    code, message = values.pop("error_code", ""), values.pop("error_message", "")
    if message and not code:
        r.error("error_message", "is set but error_code is empty: a failed request needs a code.")
    if code:
        known = {key: values.get(key) for key in ("input_tokens", "output_tokens", "start_offset_ms")}
        return _failed(values["index"], code, message, **known)
    return ParsedSample(**values)


def _llmbench_run(r: _Reader, errors: ErrorList) -> ParsedRun | None:
    if not isinstance(r.source, dict):
        r.error("run", "is not an object.")
        return None
    items = r.get("samples")
    if not isinstance(items, list) or not items:
        r.error("samples", "a non-empty list of requests is required.")
        items = []
    samples: list[ParsedSample] = []
    seen: dict[int, int] = {}
    for position, item in enumerate(items, 1):
        where = f"{r.row} sample {position}"
        sample = _llmbench_sample(_Reader(where, errors, item, strict=True), position - 1)
        if sample is not None and sample.index in seen:
            errors.add(where, "index", f"{sample.index} is also the index of sample {seen[sample.index]}.")
        elif sample is not None:
            seen[sample.index] = position
            samples.append(sample)
    values = _typed(r, r.source, RUN_SCHEMA)
    return ParsedRun(
        source_format="llmbench_json", row=r.row, model_name=values.pop("model", ""),
        tool=values.pop("tool", "") or "llmbench", samples=samples,
        hardware=_llmbench_inline(r, "hardware", HARDWARE_SCHEMA),
        deployment=_llmbench_inline(r, "deployment", DEPLOYMENT_SCHEMA), **values,
    )  # fmt: skip


def parse_llmbench_json(text: str) -> list[ParsedRun]:
    """Read our own format: {"format": "llmbench.performance/1", "runs": [...]} or a bare list of runs."""
    errors = ErrorList()
    doc = _json(text)
    if isinstance(doc, dict):
        _typed(_Reader("file", errors, doc), doc, {"format": "caller", "runs": "caller"})
        if doc.get("format") != LLMBENCH_FORMAT:
            errors.add("file", "format", f"{doc.get('format')!r} is not {LLMBENCH_FORMAT!r}.")
        doc = doc.get("runs")
    if not isinstance(doc, list) or not doc:
        errors.add("file", "runs", "a non-empty list of runs is required.")
        doc = []
    runs = [_llmbench_run(_Reader(f"run {n}", errors, raw, strict=True), errors) for n, raw in enumerate(doc, 1)]
    errors.raise_if_any(PerformanceFileError)
    return [run for run in runs if run is not None]


# ---- LLMPerf ----------------------------------------------------------------------------------
LLMPERF_METRICS = {
    "ttft_s": ("ttft_ms", 1000.0), "end_to_end_latency_s": ("e2e_ms", 1000.0),
    "inter_token_latency_s": ("itl_ms", 1000.0), "request_output_throughput_token_per_s": ("output_tps", 1.0),
    "number_input_tokens": ("input_tokens", 1.0), "number_output_tokens": ("output_tokens", 1.0),
}  # fmt: skip
LLMPERF_STATS = {
    "mean": "mean", "stddev": "stdev", "min": "min", "max": "max",
    **{f"quantiles_p{q}": f"p{q}" for q in (25, 50, 75, 90, 95, 99)},
}  # fmt: skip


def _llmperf_sample(r: _Reader, index: int) -> ParsedSample | None:
    if not isinstance(r.source, dict):
        r.error("request", "is not an object.")
        return None
    ttft, e2e = r.ms("ttft_s"), r.ms("end_to_end_latency_s")
    known = {
        "input_tokens": r.whole("number_input_tokens"),
        "output_tokens": r.whole("number_output_tokens"),
        "start_offset_ms": r.num("request_start_time"),  # seconds until _rebase
    }
    itl = r.get("inter_token_latency_s")
    if isinstance(itl, list):  # older clients: every gap
        gaps, mean_itl = r.gaps("inter_token_latency_s", itl, 1000.0), None
    else:  # upstream: a per-request mean that includes the TTFT
        gaps, mean_itl = None, r.ms("inter_token_latency_s")
    code, message = r.get("error_code"), r.get("error_msg") or ""
    # SageMaker-style clients write error_code -1 on success too: an empty message and a latency say it worked.
    if (code is not None or message) and not (code == -1 and not message and e2e):
        return _failed(index, "error" if code in (None, -1) else str(code), message, **known)
    for key in ("ttft_s", "end_to_end_latency_s"):
        if r.get(key) is None:
            r.error(key, "is missing.")
    return ParsedSample(index, ttft_ms=ttft, e2e_ms=e2e, itl_ms=gaps, mean_itl_ms=mean_itl, **known)


def _llmperf_summary(r: _Reader, run: ParsedRun) -> None:
    """Fill the run's workload and reported summary from a *_summary.json."""
    metrics: dict[str, dict[str, float]] = {}
    for name, (metric, scale) in LLMPERF_METRICS.items():
        if stats := _present({stat: r.num(f"results_{name}_{key}") for key, stat in LLMPERF_STATS.items()}, scale):
            metrics[metric] = stats
    per_minute = r.num("results_num_completed_requests_per_min")
    run.reported = ReportedSummary(
        metrics=metrics, request_count=r.whole("results_num_requests_started"),
        error_count=r.whole("results_number_errors"),
        request_throughput_rps=None if per_minute is None else per_minute / 60.0,
        output_token_throughput_tps=r.num("results_mean_output_throughput_token_per_s"),
        input_tokens_mean=metrics.get("input_tokens", {}).get("mean"),
        output_tokens_mean=metrics.get("output_tokens", {}).get("mean"),
        extra=_present({key: r.num(key) for key in ("stddev_input_tokens", "stddev_output_tokens")}),
    )  # fmt: skip
    run.model_name = r.text("model")
    run.concurrency = r.whole("num_concurrent_requests", minimum=1)
    run.input_tokens_target = r.whole("mean_input_tokens")
    run.output_tokens_target = r.whole("mean_output_tokens")
    run.started_at = r.unix("timestamp")


def parse_llmperf(text: str, summary_text: str | None = None) -> list[ParsedRun]:
    """Read LLMPerf's *_individual_responses.json and/or *_summary.json (the two texts in either order)."""
    errors = ErrorList()
    docs = [_json(text)] + ([] if summary_text is None else [_json(summary_text)])
    responses = [d for d in docs if isinstance(d, list)]
    summaries = [d for d in docs if isinstance(d, dict)]
    if len(responses) > 1 or len(summaries) > 1:
        _reject("file", "companion", "give one *_individual_responses.json and one *_summary.json.")
    if len(responses) + len(summaries) < len(docs):
        _reject("file", "file", "is neither LLMPerf's list of responses nor its summary object.")
    run = ParsedRun(source_format="llmperf", tool="llmperf")
    if responses:
        if not responses[0]:
            errors.add("file", "requests", "the list of responses is empty.")
        samples = [_llmperf_sample(_Reader(f"request {i + 1}", errors, raw), i) for i, raw in enumerate(responses[0])]
        run.samples = [s for s in samples if s is not None]
        _rebase(run.samples)
    if summaries:
        _llmperf_summary(_Reader("summary", errors, summaries[0]), run)
    errors.raise_if_any(PerformanceFileError)
    return [run]


# ---- vLLM benchmark_serving.py / vllm bench serve ------------------------------------------------
BURST_TAG = "burst"
VLLM_METRICS = {"ttft": "ttft_ms", "tpot": "tpot_ms", "itl": "itl_ms", "e2el": "e2e_ms"}
VLLM_STAT = re.compile(r"^(mean|median|std|p\d+(?:\.\d+)?)_(ttft|tpot|itl|e2el)_ms$")
VLLM_ARRAYS = ("ttfts", "itls", "latencies", "input_lens", "output_lens", "errors", "start_times")
VLLM_EXTRA = (
    "num_prompts", "burstiness", "total_input_tokens", "total_output_tokens", "total_token_throughput",
    "max_output_tokens_per_s", "max_concurrent_requests",
)  # fmt: skip


def _vllm_reported(r: _Reader, doc: dict) -> ReportedSummary:
    metrics: dict[str, dict[str, float]] = {}
    for key, value in doc.items():
        if (match := VLLM_STAT.match(key)) and (number := r.num(key, value)) is not None:
            stat = {"mean": "mean", "median": "p50", "std": "stdev"}.get(match[1], match[1])  # p99.9 stays "p99.9"
            metrics.setdefault(VLLM_METRICS[match[2]], {})[stat] = number
    completed, failed, prompts = r.whole("completed"), r.whole("failed"), r.whole("num_prompts")
    if failed is None and completed is not None and prompts is not None and prompts >= completed:
        failed = prompts - completed  # older versions: every prompt is sent, so the missing ones failed
    goodput = "request_goodput:" if "request_goodput:" in doc else "request_goodput"  # older: with a colon
    inputs, outputs = r.num("total_input_tokens"), r.num("total_output_tokens")
    return ReportedSummary(
        metrics=metrics, request_count=None if completed is None else completed + (failed or 0), error_count=failed,
        request_throughput_rps=r.num("request_throughput"), output_token_throughput_tps=r.num("output_throughput"),
        input_tokens_mean=inputs / completed if inputs is not None and completed else None,
        output_tokens_mean=outputs / completed if outputs is not None and completed else None,
        extra=_present({**{k: r.num(k) for k in VLLM_EXTRA}, "request_goodput": r.num(goodput, doc.get(goodput))}),
    )  # fmt: skip


def _vllm_samples(r: _Reader, doc: dict) -> list[ParsedSample]:
    """One sample per entry of the parallel per-request arrays (none without `ttfts`)."""
    arrays: dict[str, list] = {}
    for key in VLLM_ARRAYS:
        if isinstance(doc.get(key), list):
            arrays[key] = doc[key]
        elif doc.get(key) is not None:
            r.error(key, "is not a list.")
    if "ttfts" not in arrays:  # without --save-detailed newer versions keep `latencies` alone: no samples
        return []
    size = len(arrays["ttfts"])
    unequal = [key for key, values in arrays.items() if len(values) != size]
    for key in unequal:
        r.error(key, f"has {len(arrays[key])} entries; ttfts has {size}.")
    if unequal:
        return []

    def at(key: str, i: int) -> Any:
        return arrays[key][i] if key in arrays else None

    samples = []
    for i in range(size):
        ttft, e2e = r.ms(f"ttfts[{i}]", at("ttfts", i)), r.ms(f"latencies[{i}]", at("latencies", i))
        gaps = None if at("itls", i) is None else r.gaps(f"itls[{i}]", at("itls", i), 1000.0)
        known = {
            "input_tokens": r.whole(f"input_lens[{i}]", at("input_lens", i)),
            "output_tokens": r.whole(f"output_lens[{i}]", at("output_lens", i)),
            "start_offset_ms": r.num(f"start_times[{i}]", at("start_times", i)),  # seconds until _rebase
        }
        if message := at("errors", i):
            samples.append(_failed(i, "error", message, **known))
            continue
        if e2e is None and ttft is not None and gaps is not None:
            e2e = ttft + sum(gaps)  # older files have no latencies: vLLM's own plots do the same
        samples.append(ParsedSample(i, ttft_ms=ttft, e2e_ms=e2e, itl_ms=gaps, **known))
    _rebase(samples)  # start_times are perf_counter() readings: only differences mean anything
    return samples


def _vllm_run(r: _Reader, doc: dict) -> ParsedRun:
    for key in ("completed", "duration"):
        if key not in doc:
            r.error(key, "is missing: this is not a complete vLLM result.")
    rate = doc.get("request_rate")
    endless = rate == "inf" or rate == math.inf  # "inf" (newer) or Infinity: as fast as possible
    started_at = None
    if doc.get("date") is not None:
        try:
            started_at = datetime.strptime(doc["date"], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
        except (TypeError, ValueError):
            r.error("date", f"{doc['date']!r} is not a date of the form YYYYmmdd-HHMMSS.")
    run = ParsedRun(
        source_format="vllm", row=r.row, tool="vllm", model_name=r.text("model_id"), provider=r.text("backend"),
        name=r.text("label"), concurrency=r.whole("max_concurrency", minimum=1),
        request_rate_rps=None if endless else r.num("request_rate"),
        dataset=next((doc[k] for k in ("dataset_name", "dataset") if isinstance(doc.get(k), str)), ""),
        started_at=started_at, duration_s=r.num("duration"),
        samples=_vllm_samples(r, doc), reported=_vllm_reported(r, doc),
    )  # fmt: skip
    if endless and run.concurrency is None and doc.get("max_concurrency") is None:
        _vllm_burst(r, run)
    return run


def _vllm_burst(r: _Reader, run: ParsedRun) -> None:
    """`--request-rate inf` without `--max-concurrency` (vLLM's default) sends every prompt at once:
    a burst of num_prompts requests, read as concurrency = num_prompts and labelled "burst"."""
    prompts = r.whole("num_prompts", minimum=1)
    if prompts is None:
        prompts = len(run.samples) or (run.reported.request_count if run.reported else None)
    if not prompts:
        return  # nothing says how many: the upload form asks for a concurrency
    run.concurrency = prompts
    run.tags = sorted({*run.tags, BURST_TAG})
    note = (
        f"Burst: request rate inf with no max concurrency, so all {prompts:,} prompts were sent at once; "
        f"read as concurrency {prompts:,}."
    )
    run.notes = f"{run.notes}\n{note}".strip()


def parse_vllm(text: str) -> list[ParsedRun]:
    """Read a vLLM serving benchmark result: one JSON object, or several (JSON Lines, --append-result)."""
    errors = ErrorList()
    docs = _json_documents(text)
    if not docs:
        _reject("file", "file", "holds no benchmark result.")
    runs = []
    for n, doc in enumerate(docs, 1):
        if isinstance(doc, dict):
            runs.append(_vllm_run(_Reader(f"run {n}", errors, doc), doc))
        else:
            errors.add(f"run {n}", "result", "is not an object.")
    errors.raise_if_any(PerformanceFileError)
    return runs


# ---- guidellm -----------------------------------------------------------------------------------
GUIDELLM_METRICS = {
    "time_to_first_token_ms": ("ttft_ms", 1.0), "inter_token_latency_ms": ("itl_ms", 1.0),
    "time_per_output_token_ms": ("tpot_ms", 1.0), "request_latency": ("e2e_ms", 1000.0),
    "prompt_token_count": ("input_tokens", 1.0), "output_token_count": ("output_tokens", 1.0),
}  # fmt: skip
GUIDELLM_STATS = {"mean": "mean", "median": "p50", "std_dev": "stdev", "min": "min", "max": "max"}
GUIDELLM_PERCENTILES = ("p50", "p90", "p95", "p99")  # careful: guidellm's p01 is the 1st percentile, p001 the 0.1th
GUIDELLM_STATUSES = {"successful": "", "errored": "errored", "incomplete": "incomplete"}
TOKEN_TARGETS = re.compile(r"\b(prompt|output)_tokens\"?\s*[=:]\s*(\d+)")


def _guidellm_distribution(r: _Reader, where: str, scale: float) -> dict[str, float]:
    """A distribution summary in our stat names; {} when it is empty (guidellm writes zeros and count 0)."""
    count = r.whole(f"{where}.count")
    if not count:
        return {}
    stats = _present({ours: r.num(f"{where}.{key}") for key, ours in GUIDELLM_STATS.items()}, scale)
    stats.update(_present({key: r.num(f"{where}.percentiles.{key}") for key in GUIDELLM_PERCENTILES}, scale))
    return {"count": float(count), **stats}


def _guidellm_workload(r: _Reader, where: str) -> tuple[int | None, float | None]:
    """(concurrency, request rate) of the benchmark's scheduling strategy."""
    kind = r.get(f"{where}.type_")
    if kind == "synchronous":
        return 1, None
    if kind in ("concurrent", "throughput"):
        return r.whole(f"{where}.{'streams' if kind == 'concurrent' else 'max_concurrency'}", minimum=1), None
    if kind in ("constant", "poisson"):
        return None, r.num(f"{where}.rate")
    return None, None


def _guidellm_sample(r: _Reader, index: int, code: str) -> ParsedSample | None:
    if not isinstance(r.source, dict):
        r.error("request", "is not an object.")
        return None
    start_key = "request_start_time" if r.get("request_start_time") is not None else "start_time"  # 0.4 | 0.3
    start = r.num(start_key)
    known = {
        "input_tokens": r.whole("prompt_tokens"),
        "output_tokens": r.whole("output_tokens"),
        "start_offset_ms": r.num("info.timings.request_start") if start is None else start,  # Unix s until _rebase
    }
    ttft, e2e, itl = r.num("time_to_first_token_ms"), r.ms("request_latency"), r.num("inter_token_latency_ms")
    if code:
        return _failed(index, code, r.get("error") or r.get("info.error") or "", **known)
    return ParsedSample(index, ttft_ms=ttft, e2e_ms=e2e, mean_itl_ms=itl, **known)


def _guidellm_run(r: _Reader, version: str, errors: ErrorList) -> ParsedRun | None:
    if not isinstance(r.source, dict) or not isinstance(r.get("metrics"), dict):
        r.error("metrics", "is missing: a guidellm benchmark is an object with metrics.")
        return None
    if isinstance(r.get("config"), dict):  # 0.4 and later
        where, model, data = "config.strategy", "config.backend.model", r.get("config.requests.data")
    else:  # 0.2 / 0.3
        where, model, data = "args.strategy", "worker.backend_model", r.get("request_loader.data")
    concurrency, rate = _guidellm_workload(r, where)
    totals = "metrics.request_totals" if isinstance(r.get("metrics.request_totals"), dict) else "request_totals"
    count, errored, incomplete = (r.whole(f"{totals}.{key}") for key in ("total", "errored", "incomplete"))
    reported: dict[str, dict[str, float]] = {}
    for key, (metric, scale) in GUIDELLM_METRICS.items():
        if stats := _guidellm_distribution(r, f"metrics.{key}.successful", scale):
            reported[metric] = stats
    samples: list[ParsedSample] = []
    for status, code in GUIDELLM_STATUSES.items():
        items = r.get(f"requests.{status}") or []
        if not isinstance(items, list):
            r.error(f"requests.{status}", "is not a list.")
            continue
        for j, raw in enumerate(items):
            sample = _guidellm_sample(_Reader(f"{r.row} {status} request {j + 1}", errors, raw), len(samples), code)
            if sample is not None:
                samples.append(sample)
    started_at = r.unix("start_time")
    _rebase(samples, started_at.timestamp() if started_at else None)
    dataset = ", ".join(map(str, data)) if isinstance(data, list) else data if isinstance(data, str) else ""
    targets = {m[1]: int(m[2]) for m in TOKEN_TARGETS.finditer(dataset)}
    return ParsedRun(
        source_format="guidellm", row=r.row, tool="guidellm", tool_version=version, model_name=r.text(model),
        concurrency=concurrency, request_rate_rps=rate, dataset=dataset,
        input_tokens_target=targets.get("prompt"), output_tokens_target=targets.get("output"),
        started_at=started_at, duration_s=r.num("duration"), samples=samples,
        samples_are_subset=bool(samples) and count is not None and len(samples) < count,
        reported=ReportedSummary(
            metrics=reported, request_count=count,
            error_count=None if errored is None or incomplete is None else errored + incomplete,
            request_throughput_rps=r.num("metrics.requests_per_second.successful.mean"),
            output_token_throughput_tps=r.num("metrics.output_tokens_per_second.successful.mean"),
            input_tokens_mean=reported.get("input_tokens", {}).get("mean"),
            output_tokens_mean=reported.get("output_tokens", {}).get("mean"),
        ),
    )  # fmt: skip


def parse_guidellm(text: str) -> list[ParsedRun]:
    """Read a guidellm report (0.2/0.3 or 0.4+ shape): one run per benchmark."""
    errors = ErrorList()
    doc = _json(text)
    benchmarks = _dig(doc, "benchmarks")
    if not isinstance(benchmarks, list) or not benchmarks:
        _reject("file", "benchmarks", "a guidellm report has a non-empty list of benchmarks.")
    version = _dig(doc, "metadata", "guidellm_version")
    version = version if isinstance(version, str) else ""
    runs = [_guidellm_run(_Reader(f"benchmark {n}", errors, bm), version, errors) for n, bm in enumerate(benchmarks, 1)]
    errors.raise_if_any(PerformanceFileError)
    return [run for run in runs if run is not None]


# ---- detection and entry point ------------------------------------------------------------------
# AIPerf and llama-bench live in modules of their own that read with this one's helpers, so they are
# imported when first used (a module-level import would be circular).
def parse_aiperf(text: str, companion_text: str | None = None) -> list[ParsedRun]:
    from apps.hardware.import_aiperf import parse_aiperf

    return parse_aiperf(text, companion_text)


def parse_llama_bench(text: str) -> list[ParsedRun]:
    from apps.hardware.import_llamabench import parse_llama_bench

    return parse_llama_bench(text)


PARSERS: dict[str, Callable[[str], list[ParsedRun]]] = {
    "seed_csv": parse_seed_csv, "llmbench_json": parse_llmbench_json, "llmperf": parse_llmperf, "vllm": parse_vllm,
    "guidellm": parse_guidellm, "aiperf": parse_aiperf, "llama_bench": parse_llama_bench,
}  # fmt: skip
FILENAME_HINTS = (
    ("_individual_responses.json", "llmperf"), ("_summary.json", "llmperf"), ("profile_export.jsonl", "aiperf"),
    (".jsonl", "vllm"), (".csv", "seed_csv"),
)  # fmt: skip
COMPANIONS = ("llmperf", "aiperf")  # formats whose results come as two files


def _json_kind(item: Any) -> str | None:
    """The format a JSON object (or the first item of a JSON list) belongs to, when it is clear."""
    if not isinstance(item, dict):
        return None
    if str(item.get("format", "")).startswith("llmbench.performance") or "samples" in item:
        return "llmbench_json"
    first = item.get("benchmarks")
    first = first[0] if isinstance(first, list) and first else None
    if isinstance(first, dict) and (first.get("type_") == "generative_benchmark" or "metrics" in first):
        return "guidellm"
    if {"ttft_s", "end_to_end_latency_s"} <= item.keys():  # a request of *_individual_responses.json
        return "llmperf"
    if item.get("version") == "2023-08-31" or any(key.startswith("results_") for key in item):  # *_summary.json
        return "llmperf"
    if {"model_id", "request_throughput"} <= item.keys() and ("mean_ttft_ms" in item or "ttfts" in item):
        return "vllm"
    from apps.hardware import import_aiperf, import_llamabench

    if import_aiperf.is_record(item) or import_aiperf.is_summary(item):
        return "aiperf"
    if import_llamabench.is_row(item):
        return "llama_bench"
    return None


def detect_format(text: str, filename: str = "") -> str:
    """The format of a result file from its content; the file name decides only when the content cannot."""
    from apps.hardware import import_llamabench

    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        docs = _json_documents(stripped)
        found = _json_kind(docs[0]) if docs else None
    elif import_llamabench.is_markdown(stripped):
        found = "llama_bench"
    else:
        try:
            header = [name.strip() for name in next(csv.reader(io.StringIO(stripped)), [])]
        except csv.Error:
            header = []
        found = "seed_csv" if "provider_model" in header else None
        found = "llama_bench" if import_llamabench.is_csv_header(header) else found
    if found is None:
        found = next((fmt for suffix, fmt in FILENAME_HINTS if filename.lower().endswith(suffix)), None)
    if found is None:
        _reject("file", "format", f"is not a format this importer knows; choose one of: {', '.join(FORMATS)}.")
    return found


def parse_performance_file(
    content: bytes, *, filename: str = "", file_format: str | None = None, companion: bytes | None = None
) -> tuple[str, list[ParsedRun]]:
    """Decode, detect (unless `file_format` is given) and parse an upload; returns (format, runs).

    `companion` is the other file of an LLMPerf pair (*_summary.json and *_individual_responses.json)
    or an AIPerf pair (profile_export.jsonl and profile_export_aiperf.json), in either order."""
    if file_format and file_format not in FORMATS:
        _reject("file", "format", f"{file_format!r} is not one of: {', '.join(FORMATS)}.")
    text = decode_upload(content, PerformanceFileError)
    if not text.strip():
        _reject("file", "file", "is empty.")
    found = file_format or detect_format(text, filename)
    if companion is None:
        return found, PARSERS[found](text)
    if found not in COMPANIONS:
        _reject("file", "companion", "only LLMPerf and AIPerf results come as two files (requests and summary).")
    parse = parse_llmperf if found == "llmperf" else parse_aiperf
    return found, parse(text, decode_upload(companion, PerformanceFileError))
