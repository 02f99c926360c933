"""What every performance importer returns: runs with their per-request samples, in our units.

Importers only read files; they never touch the database. Times are milliseconds, token counts
are integers, and a failed request keeps its error code and never contributes latencies.
"""

from dataclasses import dataclass, field
from datetime import datetime

from apps.providers.samples import ParsedSample  # defined below hardware, re-exported here

__all__ = ["ParsedRun", "ParsedSample", "ReportedSummary"]


@dataclass
class ReportedSummary:
    """Aggregates a tool reported without per-request samples (seed CSV, LLMPerf summary).

    Each metric maps to a dict with any of: count, mean, stdev, min, p50, p90, p95, p99, max.
    """

    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # ttft_ms, itl_ms, tpot_ms, e2e_ms, output_tps
    request_count: int | None = None
    error_count: int | None = None
    request_throughput_rps: float | None = None
    output_token_throughput_tps: float | None = None
    input_tokens_mean: float | None = None
    output_tokens_mean: float | None = None
    extra: dict[str, float] = field(default_factory=dict)  # anything else worth keeping (token stdev, totals …)


@dataclass
class ParsedRun:
    """One benchmark run: its workload, what the file says about model and tool, and its data."""

    source_format: str  # seed_csv | llmbench_json | llmperf | vllm | guidellm
    row: int | str = "file"  # where in the file, for error messages
    model_name: str = ""
    quantization: str = ""
    provider: str = ""
    tool: str = ""
    tool_version: str = ""
    concurrency: int | None = None
    request_rate_rps: float | None = None  # None = closed loop / as fast as possible
    input_tokens_target: int | None = None
    output_tokens_target: int | None = None
    dataset: str = ""
    started_at: datetime | None = None
    duration_s: float | None = None  # wall time of the run, when the tool measured it
    name: str = ""
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    hardware: dict | None = None  # our JSON format may describe the hardware and deployment inline
    deployment: dict | None = None
    samples: list[ParsedSample] = field(default_factory=list)
    reported: ReportedSummary | None = None  # when there are no samples (or as a cross-check)
    # True when `samples` is a random subset of the requests (guidellm samples them): the stored
    # summary is then the tool's reported one, and the samples serve the histograms.
    samples_are_subset: bool = False
    # Produced by the built-in `sim` provider or generated demo data, not measured on a server.
    is_simulated: bool = False
    # Workloads (issue 13): the WorkloadVersion the runner measured with, and how it made the lengths
    # ({"method": "tokenizer" | "probe" | "estimated" | "words", ...}). None for imported runs.
    workload_version_id: int | None = None
    token_calibration: dict | None = None
    # Issue 14: the server's own metrics scraped during a live step (apps.providers.engine.scrape.ScrapedSeries
    # .as_dict()); stored as a ServerMetrics row with its reductions. None when not scraped.
    server_metrics: dict | None = None
