"""Read models of the performance pages and API: the grid, the comparison of runs, a run's workload figures and its
server metrics."""

import itertools
import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count
from django.urls import reverse
from django.utils.safestring import mark_safe
from scipy import stats as scipy_stats

from apps.accounts.models import Team
from apps.hardware.models import PerformanceRun, RequestSample, RunSummary, ServerMetrics
from apps.hardware.services import itl_from_bytes
from apps.hardware.stats import (
    LATENCY_METRICS,
    per_request_output_tps,
    per_request_tpot_ms,
    steady_window,
)
from apps.scores.models import ModelVariant
from llmbench import svg
from llmbench.humanize import number_text

# metric key → (label, unit, higher is better, figure of the summary; cost is derived)
GRID_METRICS = {
    "ttft_p50_ms": ("TTFT p50", "ms", False, "ttft_ms.p50"),
    "ttft_p95_ms": ("TTFT p95", "ms", False, "ttft_ms.p95"),
    "tpot_mean_ms": ("TPOT mean", "ms", False, "tpot_ms.mean"),
    "itl_p50_ms": ("ITL p50", "ms", False, "itl_ms.p50"),
    "e2e_p95_ms": ("E2E p95", "ms", False, "e2e_ms.p95"),
    "output_throughput_tps": ("Output tokens/s", "tok/s", True, "output_token_throughput_tps"),
    "prompt_throughput_tps": ("Prompt tokens/s", "tok/s", True, "prompt_tps.mean"),
    "request_throughput_rps": ("Requests/s", "req/s", True, "request_throughput_rps"),
    "cost_per_1m_output_usd": ("Cost per 1M output tokens", "USD", False, None),
}


def compare_figure(summary: RunSummary | None, key: str) -> float | None:
    """A figure of a stored summary: "metric.stat" (ttft_ms.p95) or a summary field."""
    if summary is None:
        return None
    if "." in key:
        metric, stat = key.split(".")
        return summary.stat(metric, stat)
    if key == "error_rate":
        return summary.error_rate
    return getattr(summary, key)


def cost_per_1m_output_usd(hourly_cost_usd: float | None, output_tps: float | None) -> float | None:
    """What a million output tokens cost at the run's output token throughput."""
    if not hourly_cost_usd or not output_tps:
        return None
    return hourly_cost_usd / (output_tps * 3600.0) * 1_000_000


def summary_figure(summary: RunSummary | None, hourly_cost_usd: float | None, metric: str) -> float | None:
    """One grid figure of a run, from its stored summary."""
    path = GRID_METRICS[metric][3]
    if path is None:
        return cost_per_1m_output_usd(hourly_cost_usd, summary.output_token_throughput_tps if summary else None)
    return compare_figure(summary, path)


@dataclass(frozen=True)
class Workload:
    """What a run asked of the server: its concurrency or request rate and its token targets.

    A grid cell shows one workload: averaging TTFT at concurrency 1 with TTFT at 64 says nothing."""

    concurrency: int | None
    request_rate_rps: float | None
    input_tokens: int | None
    output_tokens: int | None

    KEY = re.compile(r"^(?:c(?P<c>\d+))?(?:-?r(?P<r>\d+(?:\.\d+)?))?(?:-?in(?P<i>\d+))?(?:-?out(?P<o>\d+))?$")

    @property
    def key(self) -> str:
        """The URL form: c16-in256-out128, r2.5-in512-out128 (a missing part is left out); "any" when empty."""
        parts = []
        if self.concurrency is not None:
            parts.append(f"c{self.concurrency}")
        if self.request_rate_rps is not None:
            parts.append(f"r{self.request_rate_rps:.10g}")
        if self.input_tokens is not None:
            parts.append(f"in{self.input_tokens}")
        if self.output_tokens is not None:
            parts.append(f"out{self.output_tokens}")
        return "-".join(parts) or "any"

    @classmethod
    def from_key(cls, key: str) -> "Workload":
        """The workload of a key; ValueError when it is not one."""
        if key == "any":
            return cls(None, None, None, None)
        match = cls.KEY.match(key)
        if not key or match is None:
            raise ValueError(key)
        number = match["r"]
        return cls(
            concurrency=int(match["c"]) if match["c"] else None,
            request_rate_rps=float(number) if number else None,
            input_tokens=int(match["i"]) if match["i"] else None,
            output_tokens=int(match["o"]) if match["o"] else None,
        )

    @property
    def label(self) -> str:
        """In words: "concurrency 16, 256 input / 128 output tokens"."""
        load = []
        if self.concurrency is not None:
            load.append(f"concurrency {number_text(self.concurrency)}")
        if self.request_rate_rps is not None:
            load.append(f"{number_text(self.request_rate_rps)} requests/s")
        tokens = (
            f"{number_text(self.input_tokens)} input / {number_text(self.output_tokens)} output tokens"
            if self.input_tokens is not None or self.output_tokens is not None
            else "token lengths not recorded"
        )
        return f"{' at '.join(load) or 'load not recorded'}, {tokens}"

    def filter(self, runs):
        """`runs` of exactly this workload (a missing part matches runs that lack it too)."""
        fields = {
            "concurrency": self.concurrency,
            "input_tokens_target": self.input_tokens,
            "output_tokens_target": self.output_tokens,
        }
        runs = runs.filter(**{name if value is not None else f"{name}__isnull": True if value is None else value
                              for name, value in fields.items()})  # fmt: skip
        rate = self.request_rate_rps
        if rate is None:
            return runs.filter(request_rate_rps__isnull=True)
        # The key carries 10 significant digits of a float column: match within that precision.
        return runs.filter(request_rate_rps__gte=rate * (1 - 1e-9), request_rate_rps__lte=rate * (1 + 1e-9))

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "label": self.label,
            "concurrency": self.concurrency,
            "request_rate_rps": self.request_rate_rps,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


WORKLOAD_FIELDS = ("concurrency", "request_rate_rps", "input_tokens_target", "output_tokens_target")


def grid_workloads(runs) -> list[tuple[Workload, int]]:
    """Every workload of `runs` (with hardware) and its number of runs, the most common first."""
    counts = runs.filter(hardware__isnull=False).order_by().values_list(*WORKLOAD_FIELDS).annotate(n=Count("pk"))
    workloads = [(Workload(*row[:4]), row[4]) for row in counts]

    def order(item: tuple[Workload, int]):
        w, n = item
        return (-n, *((v is not None, v or 0) for v in (w.concurrency, w.request_rate_rps, w.input_tokens,
                                                         w.output_tokens)))  # fmt: skip

    return sorted(workloads, key=order)


@dataclass
class GridCell:
    value: float | None  # mean over the matching runs
    run_ids: list[int]
    simulated: bool = False  # some of its runs are simulated (only when simulated runs are included)


@dataclass
class Grid:
    metric: str
    label: str
    unit: str
    higher_is_better: bool
    variants: list[dict]  # {"id", "name"}
    hardware: list[dict]  # {"id", "name"}
    cells: dict[tuple[int, int], GridCell]
    value_range: tuple[float, float] | None
    workload: Workload | None = None  # the one workload every cell shows; None when there are no runs
    workload_runs: int = 0
    workloads: list[tuple[Workload, int]] = field(default_factory=list)  # every workload of the filtered runs
    workload_chosen: bool = False  # False: the default, the most common workload
    include_simulated: bool = False

    @property
    def rows(self) -> list[tuple[dict, list[tuple[dict, GridCell | None]]]]:
        """(variant, [(hardware, cell or None) for each hardware column]) for templates."""
        return [(v, [(h, self.cells.get((v["id"], h["id"]))) for h in self.hardware]) for v in self.variants]

    @property
    def total_runs(self) -> int:
        return sum(n for _, n in self.workloads)

    def as_dict(self) -> dict:
        return {
            "metric": self.metric,
            "label": self.label,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "include_simulated": self.include_simulated,
            "workload": None
            if self.workload is None
            else {**self.workload.as_dict(), "run_count": self.workload_runs, "default": not self.workload_chosen},
            "workloads": [{**w.as_dict(), "run_count": n} for w, n in self.workloads],
            "variants": self.variants,
            "hardware": self.hardware,
            "cells": [
                {"variant_id": v, "hardware_id": h, "value": c.value, "run_ids": c.run_ids, "simulated": c.simulated}
                for (v, h), c in self.cells.items()
            ],
        }


def _grid_value_field(metric: str) -> str:
    """The summary column (or JSON key path) a grid metric reads; the database extracts it, so
    2,000 runs do not mean 2,000 decoded JSON documents."""
    path = GRID_METRICS[metric][3] or "output_token_throughput_tps"
    if "." in path:
        name, stat = path.split(".")
        return f"summary__metrics__{name}__{stat}"
    return f"summary__{path}"


def performance_grid(
    *, team: Team, metric: str, runs=None, workload: Workload | None = None, include_simulated: bool = False
) -> Grid:
    """Model variants × hardware for one workload: each cell the mean figure of the matching runs.

    `runs` are already filtered (engine, quantization …); simulated runs are left out unless
    `include_simulated`; `workload` None means the most common workload of those runs."""
    label, unit, higher, path = GRID_METRICS[metric]
    runs = (runs if runs is not None else PerformanceRun.objects.filter(team=team)).filter(hardware__isnull=False)
    if not include_simulated:
        runs = runs.filter(is_simulated=False)
    workloads = grid_workloads(runs)
    chosen = workload is not None
    if workload is None and workloads:
        workload = workloads[0][0]
    if workload is not None:
        runs = workload.filter(runs)
    # One query for the cells and the names of their rows and columns.
    rows = runs.values_list(
        "pk", "variant_id", "hardware_id", _grid_value_field(metric), "hardware__hourly_cost_usd", "is_simulated",
        "variant__model_name", "variant__quantization", "hardware__name",
    )  # fmt: skip
    values: dict[tuple[int, int], list[float]] = defaultdict(list)
    run_ids: dict[tuple[int, int], list[int]] = defaultdict(list)
    simulated: set[tuple[int, int]] = set()
    variant_names: dict[int, str] = {}
    hardware_names: dict[int, str] = {}
    for run_id, variant_id, hardware_id, value, hourly_cost, is_simulated, model, quantization, box in rows:
        key = (variant_id, hardware_id)
        run_ids[key].append(run_id)
        if variant_id not in variant_names:
            variant_names[variant_id] = str(ModelVariant(model_name=model, quantization=quantization))
        hardware_names[hardware_id] = box
        if is_simulated:
            simulated.add(key)
        if path is None:
            value = cost_per_1m_output_usd(hourly_cost, value)
        if isinstance(value, (int, float)):
            values[key].append(float(value))
    cells = {
        key: GridCell(
            value=float(np.mean(values[key])) if values[key] else None, run_ids=sorted(ids), simulated=key in simulated
        )
        for key, ids in run_ids.items()
    }
    present = [c.value for c in cells.values() if c.value is not None]
    return Grid(
        metric=metric,
        label=label,
        unit=unit,
        higher_is_better=higher,
        variants=[{"id": k, "name": v} for k, v in sorted(variant_names.items(), key=lambda kv: kv[1].lower())],
        hardware=[{"id": k, "name": v} for k, v in sorted(hardware_names.items(), key=lambda kv: kv[1].lower())],
        cells=cells,
        value_range=(min(present), max(present)) if present else None,
        workload=workload,
        workload_runs=sum(len(ids) for ids in run_ids.values()),
        workloads=workloads,
        workload_chosen=chosen,
        include_simulated=include_simulated,
    )


# --- comparison ---------------------------------------------------------------------------

COMPARE_FIGURES = [
    # (key, label, unit, higher is better)
    ("ttft_ms.p50", "TTFT p50", "ms", False),
    ("ttft_ms.p95", "TTFT p95", "ms", False),
    ("ttft_ms.p99", "TTFT p99", "ms", False),
    ("itl_ms.p50", "ITL p50", "ms", False),
    ("itl_ms.p95", "ITL p95", "ms", False),
    ("tpot_ms.mean", "TPOT mean", "ms", False),
    ("tpot_ms.p95", "TPOT p95", "ms", False),
    ("e2e_ms.p50", "E2E p50", "ms", False),
    ("e2e_ms.p95", "E2E p95", "ms", False),
    ("output_tps.mean", "Output tokens/s per request", "tok/s", True),
    ("request_throughput_rps", "Request throughput", "req/s", True),
    ("output_token_throughput_tps", "Output token throughput", "tok/s", True),
    ("goodput_rps", "Goodput", "req/s", True),
    ("error_rate", "Error rate", "", False),
]
RADAR_FIGURES = ["ttft_ms.p50", "tpot_ms.mean", "e2e_ms.p95", "output_token_throughput_tps", "request_throughput_rps"]


SIGNIFICANCE_LABELS = {
    "ttft_ms": "TTFT",
    "itl_ms": "ITL (mean per request)",
    "tpot_ms": "TPOT",
    "e2e_ms": "E2E latency",
    "output_tps": "Output tokens/s per request",
}
SIGNIFICANCE_METHOD = (
    "Mann-Whitney U, two-sided, against the first run, on one value per successful request (for ITL the "
    "mean of that request's gaps: gaps of one request are not independent); significant when p < 0.05."
)


@dataclass
class Significance:
    metric: str
    p_value: float | None  # Mann-Whitney U, two-sided, against the first run
    statistic: float | None
    note: str = ""  # "summary only" when a run has no samples
    n_first: int = 0  # requests of the first run in the test
    n_other: int = 0  # requests of this run in the test

    @property
    def label(self) -> str:
        return SIGNIFICANCE_LABELS.get(self.metric, self.metric)

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < 0.05


@dataclass
class Comparison:
    runs: list[PerformanceRun]
    rows: list[dict]  # {"key", "label", "unit", "values": [..], "differences": [..], "differences_pct": [..]}
    radar: list[dict]  # {"name", "max"} indicators and per run normalized values
    radar_values: list[list[float | None]]
    significance: dict[int, list[Significance]] = field(default_factory=dict)  # run id → per metric


def per_request_mean_itl_ms(rows: list[tuple]) -> np.ndarray:
    """One ITL per request: the mean of its gaps, else the mean the tool reported, else NaN.

    The gaps of one request are not independent observations (they share its batch, its prompt
    and its position in the queue), so tests between runs never pool them."""
    reported = np.array([r[4] for r in rows], dtype=float)  # None → NaN
    raw = [bytes(r[3]) if r[3] is not None else b"" for r in rows]
    counts = np.array([len(b) // 8 for b in raw])
    has_gaps = counts > 0
    if not has_gaps.any():
        return reported
    # Every request's gaps in one array, summed per request with one reduceat (no loop over requests).
    gaps = np.frombuffer(b"".join(raw), dtype="<f8")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[has_gaps]
    means = reported.copy()
    means[has_gaps] = np.add.reduceat(gaps, starts) / counts[has_gaps]
    return means


def _latency_samples(run: PerformanceRun) -> dict[str, np.ndarray] | None:
    """One value per successful request and metric (ITL: the request's mean gap), for the
    significance tests; None without samples."""
    rows = list(
        RequestSample.objects.filter(run=run, error_code="").values_list(
            "ttft_ms", "e2e_ms", "output_tokens", "itl_ms", "mean_itl_ms"
        )
    )
    if not rows:
        return None
    ttft = np.array([np.nan if r[0] is None else r[0] for r in rows], dtype=float)
    e2e = np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=float)
    out = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=float)
    return {
        "ttft_ms": ttft,
        "e2e_ms": e2e,
        "tpot_ms": per_request_tpot_ms(ttft, e2e, out),
        "itl_ms": per_request_mean_itl_ms(rows),
        "output_tps": per_request_output_tps(e2e, out),
    }


def simulated_left_out(runs: list[PerformanceRun], include_simulated: bool) -> str:
    """Why these runs cannot be compared while simulated runs are left out ("" when they can)."""
    simulated = [f"#{run.pk}" for run in runs if run.is_simulated]
    if include_simulated or not simulated:
        return ""
    return (
        f"Run {', '.join(simulated)} {'is' if len(simulated) == 1 else 'are'} simulated (built-in simulator or demo "
        f"data): include simulated results to compare {'it' if len(simulated) == 1 else 'them'} with measurements."
    )


def compare_runs(*, runs: list[PerformanceRun]) -> Comparison:
    """Every summary figure side by side, differences against the first run, a normalized radar,
    and per latency metric a Mann-Whitney U test on one value per request (see SIGNIFICANCE_METHOD)."""
    summaries = [getattr(run, "summary", None) for run in runs]
    rows = []
    for key, label, unit, higher in COMPARE_FIGURES:
        values = [compare_figure(s, key) for s in summaries]
        base = values[0]
        differences = [None if v is None or base is None else v - base for v in values]
        pct = [None if d is None or not base else d / base * 100 for d in differences]
        rows.append(
            {"key": key, "label": label, "unit": unit, "higher_is_better": higher, "values": values,
             "differences": differences, "differences_pct": pct}
        )  # fmt: skip

    # Radar: each axis scaled 0–1 by the best run, inverted for lower-is-better figures, so that
    # further out is always better.
    indicators, radar_values = [], [[] for _ in runs]
    for key in RADAR_FIGURES:
        row = next(r for r in rows if r["key"] == key)
        present = [v for v in row["values"] if v is not None and v > 0]
        indicators.append({"name": row["label"], "max": 1})
        for i, value in enumerate(row["values"]):
            if value is None or value <= 0 or not present:
                radar_values[i].append(None)
            elif row["higher_is_better"]:
                radar_values[i].append(value / max(present))
            else:
                radar_values[i].append(min(present) / value)

    significance: dict[int, list[Significance]] = {}
    base_samples = _latency_samples(runs[0])
    for run in runs[1:]:
        other = _latency_samples(run)
        tests = []
        for metric in (*LATENCY_METRICS, "output_tps"):
            if base_samples is None or other is None:
                tests.append(Significance(metric, None, None, "summary only"))
                continue
            a, b = base_samples[metric], other[metric]
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            if a.size == 0 or b.size == 0:
                tests.append(Significance(metric, None, None, "no data"))
                continue
            result = scipy_stats.mannwhitneyu(a, b, alternative="two-sided")
            tests.append(Significance(metric, float(result.pvalue), float(result.statistic), "", a.size, b.size))
        significance[run.pk] = tests
    return Comparison(runs=runs, rows=rows, radar=indicators, radar_values=radar_values, significance=significance)


# --- distributions of one run -----------------------------------------------------------------

HISTOGRAM_BINS = 30
CDF_POINTS = 101


def _distribution(values: np.ndarray) -> dict | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    quantiles = np.linspace(0, 100, CDF_POINTS)
    return {
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        "cdf": {"x": np.percentile(values, quantiles).tolist(), "p": (quantiles / 100).tolist()},
    }


def run_distributions(*, run: PerformanceRun) -> dict[str, dict]:
    """Histogram and CDF of TTFT, ITL, E2E and tokens in/out over the successful requests of the steady window
    (every successful request when no sample has a phase, or none of them is steady: as stats.summarize)."""
    rows = list(
        RequestSample.objects.filter(run=run).values_list(
            "ttft_ms", "e2e_ms", "input_tokens", "output_tokens", "itl_ms", "mean_itl_ms", "phase", "error_code"
        )
    )
    if any(r[6] is not None for r in rows):  # the summary's own window (failed requests count towards it)
        mask, _ = steady_window(np.array([np.nan if r[6] is None else r[6] for r in rows], dtype=float))
        rows = [r for r, keep in zip(rows, mask, strict=True) if keep]
    rows = [r for r in rows if r[7] == ""]
    if not rows:
        return {}

    def column(i: int) -> np.ndarray:
        return np.array([np.nan if r[i] is None else r[i] for r in rows], dtype=float)

    gaps = [itl_from_bytes(r[4]) for r in rows if r[4] is not None]
    itl = np.concatenate(gaps) if gaps else column(5)
    series = {
        "ttft_ms": ("TTFT", "ms", column(0)),
        "itl_ms": ("ITL", "ms", itl),
        "e2e_ms": ("E2E latency", "ms", column(1)),
        "input_tokens": ("Input tokens", "tokens", column(2)),
        "output_tokens": ("Output tokens", "tokens", column(3)),
    }
    result = {}
    for key, (label, unit, values) in series.items():
        distribution = _distribution(values)
        if distribution is not None:
            result[key] = {"label": label, "unit": unit, "requests": len(rows), **distribution}
    return result


# --- a run's workload figures (issue 13) ------------------------------------------------------


def workload_url(workload_id: int) -> str:
    """The workload's page."""
    return reverse("workloads:detail", args=[workload_id])


def token_calibration_text(calibration: dict | None) -> str:
    """How a run's request lengths were made, in a sentence ("" when the run does not say)."""
    if not calibration:
        return ""
    method = calibration.get("method")
    if method == "tokenizer":
        name = calibration.get("tokenizer")
        return f"Counted exactly with the model's tokenizer{f' ({name})' if name else ''}."
    if method == "probe":
        per_word, overhead = calibration.get("tokens_per_word"), calibration.get("overhead_tokens")
        text = "Calibrated: a short probe fitted the server's own prompt token counts against words"
        if per_word is not None:
            text += f" ({number_text(per_word)} tokens per word"
            text += f", {number_text(overhead)} tokens of overhead)" if overhead is not None else ")"
        return text + "."
    if method == "estimated":
        return "Estimated at about four characters per token: the server reported no token counts to calibrate with."
    if method == "words":
        return "Measured in words, not tokens (a workload from before token-exact lengths)."
    return f"Made by the method {method!r}."


def _length_rows(report: dict | None) -> list[dict]:
    rows = []
    for key, label in (("input", "Input tokens (prompt)"), ("output", "Output tokens")):
        figures = (report or {}).get(key)
        if figures:
            rows.append({"label": label, **figures})
    return rows


def _turn_rows(by_turn: dict | None) -> list[dict]:
    if not by_turn:
        return []
    return [{"turn": int(turn) + 1, **figures} for turn, figures in sorted(by_turn.items(), key=lambda i: int(i[0]))]


def run_workload_figures(*, run: PerformanceRun) -> dict:
    """What the run detail shows about the workload: its name and version, how lengths were made,
    requested vs delivered lengths, per-turn, session, reasoning and cached-token figures, the phases
    and the whole-step figures. Keys with nothing to show are None or empty (an imported run: all)."""
    summary = getattr(run, "summary", None)
    metrics = summary.metrics if summary is not None else {}
    version = run.workload_version if run.workload_version_id else None
    whole = metrics.get("whole_step")
    return {
        "workload": None
        if version is None
        else {
            "name": version.workload.name,
            "number": version.number,
            "url": workload_url(version.workload_id),
        },
        "calibration": token_calibration_text(run.token_calibration),
        "lengths": _length_rows(run.length_report),
        "by_turn": _turn_rows(metrics.get("by_turn")),
        "sessions": metrics.get("sessions"),
        "reasoning": metrics.get("reasoning"),
        "cached_tokens": metrics.get("cached_tokens"),
        "phases": metrics.get("phases"),
        "window_note": metrics.get("window_note", ""),
        "whole_step": whole,
    }


# --- a run's server metrics (issue 14) ---------------------------------------------------------

ENGINE_NAMES = {"vllm": "vLLM", "sglang": "SGLang", "tgi": "TGI"}


def _points(t_s: list[float], values: list | None, scale: float = 1.0) -> list[tuple[float, float | None]]:
    return [(t, None if v is None else v * scale) for t, v in zip(t_s, values or [], strict=False)]


def _per_interval(t_s: list[float], numerator: list | None, denominator: list | None = None, scale: float = 1.0):
    """A counter's increase from one read to the next that worked, over the time between them or over another
    counter's increase (histogram sum over count: the mean of what the interval observed). A point is None where
    the counter went back (a restart) or the denominator did not move."""
    known = [i for i in range(min(len(t_s), len(numerator or []))) if numerator[i] is not None]
    if denominator is not None:
        known = [i for i in known if i < len(denominator) and denominator[i] is not None]
    points = []
    for j, i in itertools.pairwise(known):
        step = numerator[i] - numerator[j]
        below = t_s[i] - t_s[j] if denominator is None else denominator[i] - denominator[j]
        points.append((t_s[i], step / below * scale if step >= 0 and below > 0 else None))
    return points


def _server_charts(t_s: list[float], m: dict, client_ttft_ms: float | None) -> list[dict]:
    """The charts of the run page: (caption, SVG), those with nothing to draw left out."""
    ttft = _per_interval(t_s, m.get("server_ttft_sum_s"), m.get("server_ttft_count"), 1000.0)
    client = [(t_s[0], client_ttft_ms), (t_s[-1], client_ttft_ms)] if client_ttft_ms is not None and ttft else []
    charts = [
        ("Requests on the server", "requests",
         [("Running", _points(t_s, m.get("running"))), ("Waiting", _points(t_s, m.get("waiting")))]),
        ("KV cache in use", "%", [("KV cache in use", _points(t_s, m.get("kv_cache_usage"), 100.0))]),
        ("Prefix-cache hit rate, per second", "%",
         [("Hit rate", _points(t_s, m.get("prefix_cache_hit_rate"), 100.0))]),
        ("Time to first token, server's mean per second vs the client's mean", "ms",
         [("Server", ttft), ("Client (whole step)", client)]),
        ("Tokens generated per second, as the server counts them", "tok/s",
         [("Generated", _per_interval(t_s, m.get("generation_tokens_total")))]),
        ("GPU utilisation", "%", [("Mean over GPUs", _points(t_s, m.get("gpu_utilization_pct")))]),
        ("GPU power draw", "W", [("All GPUs", _points(t_s, m.get("gpu_power_w")))]),
        ("GPU memory in use", "MiB", [("All GPUs", _points(t_s, m.get("gpu_memory_used_mib")))]),
    ]  # fmt: skip
    drawn = []
    for caption, unit, lines in charts:
        if any(y is not None for _, points in lines for _, y in points):
            series = [svg.Series(name, points) for name, points in lines if points]
            chart = svg.line_chart(series, width=560, height=240, x_label="seconds into the run", y_label=unit)
            drawn.append({"caption": caption, "svg": mark_safe(chart)})  # llmbench.svg escapes every label
    return drawn


def run_server_metrics(*, run: PerformanceRun) -> dict | None:
    """What the run page shows of the server's own metrics: the figures over the run, the charts, whether the
    client's and the server's TTFT disagree, and the scrape errors. None when nothing was scraped."""
    row = ServerMetrics.objects.filter(run=run).first()
    if row is None:
        return None
    summary, t_s, metrics = row.summary, row.series.get("t_s") or [], row.series.get("metrics") or {}
    disagreement = summary.get("ttft_disagreement")
    if disagreement:
        disagreement = {**disagreement, "difference_pct": abs(disagreement["ratio"] - 1.0) * 100.0}
    gauges = summary.get("gauges") or {}
    return {
        "summary": summary,
        "gauges": gauges,
        "engine": ENGINE_NAMES.get(summary.get("engine") or row.sources.get("engine", ""), ""),
        "kv_cache_pct": {k: v * 100.0 for k, v in gauges["kv_cache_usage"].items()} if "kv_cache_usage" in gauges
        else None,
        "prefix_cache_hit_pct": None if summary.get("prefix_cache_hit_rate") is None
        else summary["prefix_cache_hit_rate"] * 100.0,
        "disagreement": disagreement,
        "errors": row.sources.get("errors") or [],
        "charts": _server_charts(t_s, metrics, summary.get("client_ttft_mean_ms")) if t_s else [],
    }  # fmt: skip
