"""Read models of the performance pages and API: the grid and the comparison of runs."""

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as scipy_stats

from apps.accounts.models import Team
from apps.hardware.models import HardwareProfile, PerformanceRun, RequestSample, RunSummary
from apps.hardware.services import itl_from_bytes
from apps.hardware.stats import LATENCY_METRICS, per_request_output_tps, per_request_tpot_ms
from apps.scores.models import ModelVariant

# metric key → (label, unit, higher is better, figure of the summary; cost is derived)
GRID_METRICS = {
    "ttft_p50_ms": ("TTFT p50", "ms", False, "ttft_ms.p50"),
    "ttft_p95_ms": ("TTFT p95", "ms", False, "ttft_ms.p95"),
    "tpot_mean_ms": ("TPOT mean", "ms", False, "tpot_ms.mean"),
    "itl_p50_ms": ("ITL p50", "ms", False, "itl_ms.p50"),
    "e2e_p95_ms": ("E2E p95", "ms", False, "e2e_ms.p95"),
    "output_throughput_tps": ("Output tokens/s", "tok/s", True, "output_token_throughput_tps"),
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


@dataclass
class GridCell:
    value: float | None  # mean over the matching runs
    run_ids: list[int]


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

    @property
    def rows(self) -> list[tuple[dict, list[tuple[dict, GridCell | None]]]]:
        """(variant, [(hardware, cell or None) for each hardware column]) for templates."""
        return [(v, [(h, self.cells.get((v["id"], h["id"]))) for h in self.hardware]) for v in self.variants]

    def as_dict(self) -> dict:
        return {
            "metric": self.metric,
            "label": self.label,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "variants": self.variants,
            "hardware": self.hardware,
            "cells": [
                {"variant_id": v, "hardware_id": h, "value": c.value, "run_ids": c.run_ids}
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


def performance_grid(*, team: Team, metric: str, runs=None) -> Grid:
    """Model variants × hardware: each cell the mean figure of the matching runs (filter first)."""
    label, unit, higher, path = GRID_METRICS[metric]
    runs = (runs if runs is not None else PerformanceRun.objects.filter(team=team)).filter(hardware__isnull=False)
    rows = runs.values_list("pk", "variant_id", "hardware_id", _grid_value_field(metric), "hardware__hourly_cost_usd")
    values: dict[tuple[int, int], list[float]] = defaultdict(list)
    run_ids: dict[tuple[int, int], list[int]] = defaultdict(list)
    for run_id, variant_id, hardware_id, value, hourly_cost in rows:
        key = (variant_id, hardware_id)
        run_ids[key].append(run_id)
        if path is None:
            value = cost_per_1m_output_usd(hourly_cost, value)
        if isinstance(value, (int, float)):
            values[key].append(float(value))
    variant_names = {
        v.pk: str(v)
        for v in ModelVariant.objects.filter(pk__in={k[0] for k in run_ids}).only("model_name", "quantization")
    }
    hardware_names = dict(HardwareProfile.objects.filter(pk__in={k[1] for k in run_ids}).values_list("pk", "name"))
    cells = {
        key: GridCell(value=float(np.mean(values[key])) if values[key] else None, run_ids=sorted(ids))
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


@dataclass
class Significance:
    metric: str
    p_value: float | None  # Mann-Whitney U, two-sided, against the first run
    statistic: float | None
    note: str = ""  # "summary only" when a run has no samples

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


def _latency_samples(run: PerformanceRun) -> dict[str, np.ndarray] | None:
    """Per-request latencies of successful requests, for significance tests; None without samples."""
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
    gaps = [itl_from_bytes(r[3]) for r in rows if r[3] is not None]
    itl = np.concatenate(gaps) if gaps else np.array([r[4] for r in rows if r[4] is not None], dtype=float)
    return {
        "ttft_ms": ttft,
        "e2e_ms": e2e,
        "tpot_ms": per_request_tpot_ms(ttft, e2e, out),
        "itl_ms": itl,
        "output_tps": per_request_output_tps(e2e, out),
    }


def compare_runs(*, runs: list[PerformanceRun]) -> Comparison:
    """Every summary figure side by side, differences against the first run, a normalized radar,
    and per latency metric a Mann-Whitney U test on the per-request samples."""
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
            tests.append(Significance(metric, float(result.pvalue), float(result.statistic)))
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
    """Histogram and CDF of TTFT, ITL, E2E and tokens in/out over the successful requests."""
    rows = list(
        RequestSample.objects.filter(run=run, error_code="").values_list(
            "ttft_ms", "e2e_ms", "input_tokens", "output_tokens", "itl_ms", "mean_itl_ms"
        )
    )
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
            result[key] = {"label": label, "unit": unit, **distribution}
    return result
