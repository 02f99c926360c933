"""Run statistics with numpy: the definitions of docs/metrics.md, in one place.

* Failed requests are counted, never part of a latency statistic.
* Percentiles are numpy's default (linear interpolation); stdev is the sample stdev (ddof=1).
* TPOT = (E2E − TTFT) / (output tokens − 1), for successful requests with more than one token.
* ITL pools every inter-token gap of the successful requests when the source has them, else
  uses the per-request mean ITL the source reported.
* Per-request output tokens/s = output tokens / (E2E in seconds).
"""

from dataclasses import dataclass, field

import numpy as np

PERCENTILES = (50, 90, 95, 99)
LATENCY_METRICS = ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms")
ALL_METRICS = (*LATENCY_METRICS, "output_tps", "input_tokens", "output_tokens")


def describe(values: np.ndarray) -> dict[str, float | int | None]:
    """count, mean, sample stdev, min, p50, p90, p95, p99, max of finite values."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    count = int(values.size)
    if count == 0:
        return {"count": 0}
    p50, p90, p95, p99 = (float(v) for v in np.percentile(values, PERCENTILES))
    return {
        "count": count,
        "mean": float(np.mean(values)),
        "stdev": float(np.std(values, ddof=1)) if count > 1 else None,
        "min": float(np.min(values)),
        "p50": p50,
        "p90": p90,
        "p95": p95,
        "p99": p99,
        "max": float(np.max(values)),
    }


@dataclass
class SampleColumns:
    """A run's samples as numpy columns (NaN where a value is missing)."""

    ok: np.ndarray  # bool
    error_codes: list[str]
    ttft_ms: np.ndarray
    e2e_ms: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    mean_itl_ms: np.ndarray
    itl_gaps_ms: list[np.ndarray | None]
    start_offset_ms: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> "SampleColumns":
        """From (error_code, ttft, e2e, in, out, mean_itl, itl array or None, start) tuples."""

        def column(i: int) -> np.ndarray:
            return np.array([np.nan if r[i] is None else r[i] for r in rows], dtype=float)

        return cls(
            ok=np.array([not r[0] for r in rows], dtype=bool),
            error_codes=[r[0] for r in rows],
            ttft_ms=column(1),
            e2e_ms=column(2),
            input_tokens=column(3),
            output_tokens=column(4),
            mean_itl_ms=column(5),
            itl_gaps_ms=[r[6] for r in rows],
            start_offset_ms=column(7),
        )


@dataclass
class SummaryFigures:
    request_count: int
    error_count: int
    errors_by_code: dict[str, int]
    metrics: dict[str, dict]
    itl_source: str
    duration_s: float | None
    request_throughput_rps: float | None
    output_token_throughput_tps: float | None
    total_token_throughput_tps: float | None
    goodput_rps: float | None
    goodput_slo: dict[str, float] = field(default_factory=dict)


def per_request_tpot_ms(ttft: np.ndarray, e2e: np.ndarray, out: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = (e2e - ttft) / (out - 1)
    return np.where(out > 1, tpot, np.nan)


def per_request_output_tps(e2e: np.ndarray, out: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        tps = out / (e2e / 1000.0)
    return np.where(e2e > 0, tps, np.nan)


def summarize(
    columns: SampleColumns,
    *,
    duration_s: float | None = None,
    slo: dict[str, float | None] | None = None,
) -> SummaryFigures:
    """Every summary figure of a run from its samples (see the module docstring)."""
    ok = columns.ok
    errors: dict[str, int] = {}
    for code in columns.error_codes:
        if code:
            errors[code] = errors.get(code, 0) + 1

    ttft, e2e, out = columns.ttft_ms[ok], columns.e2e_ms[ok], columns.output_tokens[ok]
    tpot = per_request_tpot_ms(ttft, e2e, out)
    tps = per_request_output_tps(e2e, out)
    gaps = [g for g, good in zip(columns.itl_gaps_ms, ok, strict=True) if good and g is not None and len(g)]
    if gaps:
        itl, itl_source = np.concatenate(gaps), "pooled gaps"
    elif np.isfinite(columns.mean_itl_ms[ok]).any():
        itl, itl_source = columns.mean_itl_ms[ok], "request means"
    else:
        itl, itl_source = np.array([]), ""

    metrics = {
        "ttft_ms": describe(ttft),
        "itl_ms": describe(itl),
        "tpot_ms": describe(tpot),
        "e2e_ms": describe(e2e),
        "output_tps": describe(tps),
        "input_tokens": describe(columns.input_tokens[ok]),
        "output_tokens": describe(out),
    }

    if duration_s is None:
        starts, ends = columns.start_offset_ms, columns.start_offset_ms + columns.e2e_ms
        timed = np.isfinite(starts) & np.isfinite(ends)
        if timed.any():
            duration_s = float((np.max(ends[timed]) - np.min(starts[timed])) / 1000.0)
    rate = None
    if duration_s and duration_s > 0:

        def rate(amount: float) -> float:
            return float(amount) / duration_s

    completed = int(ok.sum())
    out_total = float(np.nansum(out))
    in_total = float(np.nansum(columns.input_tokens[ok]))

    slo = {k: v for k, v in (slo or {}).items() if v is not None}
    goodput = None
    if slo and rate:
        good = np.ones(completed, dtype=bool)
        # A one-token answer has no TPOT to violate; a missing TTFT or E2E fails its SLO.
        limits = {"ttft_ms": (ttft, np.inf), "tpot_ms": (tpot, 0.0), "e2e_ms": (e2e, np.inf)}
        for name, limit in slo.items():
            values, missing = limits[name]
            good &= np.nan_to_num(values, nan=missing) <= limit
        goodput = rate(good.sum())

    return SummaryFigures(
        request_count=len(columns.error_codes),
        error_count=len(columns.error_codes) - completed,
        errors_by_code=errors,
        metrics=metrics,
        itl_source=itl_source,
        duration_s=duration_s,
        request_throughput_rps=rate(completed) if rate else None,
        output_token_throughput_tps=rate(out_total) if rate else None,
        total_token_throughput_tps=rate(out_total + in_total) if rate else None,
        goodput_rps=goodput,
        goodput_slo=slo,
    )
