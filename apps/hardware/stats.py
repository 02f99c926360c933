"""Run statistics with numpy: the definitions of docs/metrics.md, in one place.

* Failed requests are counted, never part of a latency statistic.
* Percentiles are numpy's default (linear interpolation); stdev is the sample stdev (ddof=1).
* TPOT = (E2E − TTFT) / (output tokens − 1), for successful requests with more than one token.
* ITL pools every inter-token gap of the successful requests when the source has them, else
  uses the per-request mean ITL the source reported.
* Per-request output tokens/s = output tokens / (E2E in seconds).
* Workload runs (issue 13): the top-level figures are over the steady window (phase None or steady);
  warm-up, ramp-up and drain samples only enter `whole_step`. Per-turn, session, reasoning and
  cached-token figures, and the requested vs delivered lengths, are defined in docs/metrics.md.
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


# The per-sample columns of a workload run, in the order of WorkloadColumns' fields.
WORKLOAD_FIELDS = (
    "session_index", "turn_index", "requested_input_tokens", "requested_output_tokens", "cached_tokens",
    "reasoning_tokens", "ttfot_ms", "phase",
)  # fmt: skip
PHASE_KEYS = {0: "steady", 1: "warmup", 2: "ramp", 3: "drain"}  # apps.providers.samples.PHASE_*
PHASE_STEADY, PHASE_WARMUP = 0, 1
TURN_PERCENTILES = (50, 90, 99)
# Keys of RunSummary.metrics that are not one metric's count … max (a workload run's other figures).
WORKLOAD_SUMMARY_KEYS = frozenset(
    {"whole_step", "by_turn", "sessions", "reasoning", "cached_tokens", "phases", "window_note"}
)


@dataclass
class WorkloadColumns:
    """The columns a workload run adds (NaN where a sample does not say); absent for imported runs."""

    session_index: np.ndarray
    turn_index: np.ndarray
    requested_input_tokens: np.ndarray
    requested_output_tokens: np.ndarray
    cached_tokens: np.ndarray
    reasoning_tokens: np.ndarray
    ttfot_ms: np.ndarray
    phase: np.ndarray

    def subset(self, mask: np.ndarray) -> "WorkloadColumns":
        return WorkloadColumns(*(getattr(self, name)[mask] for name in WORKLOAD_FIELDS))


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
    workload: WorkloadColumns | None = None  # None: no sample has any workload column

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> "SampleColumns":
        """From (error_code, ttft, e2e, in, out, mean_itl, itl array or None, start) tuples, optionally followed by
        the WORKLOAD_FIELDS values."""

        def column(i: int) -> np.ndarray:
            return np.array([np.nan if r[i] is None else r[i] for r in rows], dtype=float)

        workload = None
        if rows and len(rows[0]) > 8 and any(v is not None for r in rows for v in r[8:]):
            workload = WorkloadColumns(*(column(8 + i) for i in range(len(WORKLOAD_FIELDS))))
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
            workload=workload,
        )

    def subset(self, mask: np.ndarray) -> "SampleColumns":
        """The samples where `mask` is true, in order."""
        picked = np.flatnonzero(mask)
        return SampleColumns(
            ok=self.ok[mask],
            error_codes=[self.error_codes[i] for i in picked],
            ttft_ms=self.ttft_ms[mask],
            e2e_ms=self.e2e_ms[mask],
            input_tokens=self.input_tokens[mask],
            output_tokens=self.output_tokens[mask],
            mean_itl_ms=self.mean_itl_ms[mask],
            itl_gaps_ms=[self.itl_gaps_ms[i] for i in picked],
            start_offset_ms=self.start_offset_ms[mask],
            workload=None if self.workload is None else self.workload.subset(mask),
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
    """Every summary figure of a run from its samples (see the module docstring).

    Without phases (imported runs) every sample counts, as always. With phases the figures are over
    the steady window, and `metrics["whole_step"]` holds the same figures over every sample."""
    workload = columns.workload
    phase = None if workload is None else workload.phase
    if phase is None or not np.isfinite(phase).any():
        figures = _figures(columns, duration_s=duration_s, slo=slo)
        if workload is not None:
            figures.metrics.update(workload_figures(columns, sessions_from=columns))
        return figures

    steady, note = steady_window(phase)
    window = columns.subset(steady)
    # The window's own span when its samples are timed: a rate over the whole step's time would be diluted.
    window_duration_s = duration_s if steady.all() else _timed_span_s(window) or duration_s
    figures = _figures(window, duration_s=window_duration_s, slo=slo)
    whole = _figures(columns, duration_s=duration_s, slo=slo)
    figures.metrics.update(workload_figures(window, sessions_from=columns))
    figures.metrics["phases"] = {key: int(np.count_nonzero(phase == value)) for value, key in PHASE_KEYS.items()}
    figures.metrics["whole_step"] = {
        **whole.metrics,
        **workload_figures(columns, sessions_from=None),
        "request_count": whole.request_count,
        "error_count": whole.error_count,
        "errors_by_code": whole.errors_by_code,
        "duration_s": whole.duration_s,
        "request_throughput_rps": whole.request_throughput_rps,
        "output_token_throughput_tps": whole.output_token_throughput_tps,
        "total_token_throughput_tps": whole.total_token_throughput_tps,
        "goodput_rps": whole.goodput_rps,
    }
    if note:
        figures.metrics["window_note"] = note
    return figures


def steady_window(phase: np.ndarray) -> tuple[np.ndarray, str]:
    """Which samples the top-level figures use, and why when it is not the steady window: steady (or
    unclassified) samples; every sample after the warm-up when fewer than half of them are steady (a step
    short for its concurrency would rest on a request or two); all of them when every one was warm-up.
    `phase` holds PHASE_* values, NaN for unclassified samples."""
    steady = np.isnan(phase) | (phase == PHASE_STEADY)
    after_warmup = phase != PHASE_WARMUP
    if not after_warmup.any():
        return np.ones(
            phase.shape, dtype=bool
        ), "Every request was part of the warm-up; the figures are over all of them."
    if np.count_nonzero(steady) * 2 < np.count_nonzero(after_warmup):
        return after_warmup, (
            f"Only {np.count_nonzero(steady)} of the {np.count_nonzero(after_warmup)} requests after the warm-up ran "
            "in the steady window (the step is short for its concurrency); the figures are over all of them."
        )
    return steady, ""


def _timed_span_s(columns: SampleColumns) -> float | None:
    """From the first send to the last end of the timed samples, in seconds (None when none is timed)."""
    starts, ends = columns.start_offset_ms, columns.start_offset_ms + columns.e2e_ms
    timed = np.isfinite(starts) & np.isfinite(ends)
    if not timed.any():
        return None
    return float((np.max(ends[timed]) - np.min(starts[timed])) / 1000.0)


def _figures(
    columns: SampleColumns, *, duration_s: float | None, slo: dict[str, float | None] | None
) -> SummaryFigures:
    """The figures of one set of samples (the module docstring's definitions)."""
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
        duration_s = _timed_span_s(columns)
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


# --- workload figures (issue 13) ------------------------------------------------------------------


def _percentiles(values: np.ndarray, percentiles=TURN_PERCENTILES) -> dict[str, float | None]:
    """{"p50": …} of the finite values (numpy's default method); None each when there are none."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {f"p{p}": None for p in percentiles}
    return {f"p{p}": float(v) for p, v in zip(percentiles, np.percentile(values, percentiles), strict=True)}


def _mean(values: np.ndarray) -> float | None:
    """The mean of the finite values; None (never 0) when there are none."""
    values = values[np.isfinite(values)]
    return float(np.mean(values)) if values.size else None


def workload_figures(columns: SampleColumns, *, sessions_from: SampleColumns | None) -> dict:
    """by_turn, reasoning and cached_tokens over `columns`, and sessions over `sessions_from` (a session
    straddles the edges of the steady window, so it is judged on every sample of the step)."""
    workload = columns.workload
    if workload is None:
        return {}
    result: dict = {}
    ok = columns.ok
    if np.isfinite(workload.turn_index).any():
        result["by_turn"] = _by_turn(columns)
    sessions_workload = None if sessions_from is None else sessions_from.workload
    if sessions_workload is not None and np.isfinite(sessions_workload.session_index).any():
        result["sessions"] = _sessions(sessions_from)
    reasoning_tokens, ttfot = workload.reasoning_tokens[ok], workload.ttfot_ms[ok]
    ttft = columns.ttft_ms[ok]
    has_reasoning = (np.nan_to_num(reasoning_tokens) > 0).any()
    ttfot_differs = (np.isfinite(ttfot) & np.isfinite(ttft) & (ttfot != ttft)).any()
    if has_reasoning or ttfot_differs:
        result["reasoning"] = {
            "ttfot_ms": _percentiles(ttfot),
            "reasoning_tokens_mean": _mean(reasoning_tokens),
            "output_tokens_mean": _mean(columns.output_tokens[ok]),
        }
    cached = workload.cached_tokens[ok]
    reporting = np.isfinite(cached)
    inputs = columns.input_tokens[ok][reporting]
    input_total = float(np.nansum(inputs))
    result["cached_tokens"] = {
        "reported": int(reporting.sum()),
        "mean": _mean(cached),
        "share_of_input": float(cached[reporting].sum()) / input_total if input_total > 0 else None,
    }
    return result


def _by_turn(columns: SampleColumns) -> dict[str, dict]:
    turn = columns.workload.turn_index
    cached = columns.workload.cached_tokens
    result = {}
    for value in np.unique(turn[np.isfinite(turn)]):
        of_turn = turn == value
        good = of_turn & columns.ok
        result[str(int(value))] = {
            "count": int(of_turn.sum()),
            "failed": int((of_turn & ~columns.ok).sum()),
            "ttft_ms": _percentiles(columns.ttft_ms[good]),
            "e2e_ms": _percentiles(columns.e2e_ms[good]),
            "input_tokens_mean": _mean(columns.input_tokens[good]),
            "cached_tokens_mean": _mean(cached[good]),
        }
    return result


def _sessions(columns: SampleColumns) -> dict:
    session = columns.workload.session_index
    has_session = np.isfinite(session)
    ids = session[has_session]
    failed = ~columns.ok[has_session]
    starts = columns.start_offset_ms[has_session]
    ends = starts + columns.e2e_ms[has_session]
    unique, inverse, turns = np.unique(ids, return_inverse=True, return_counts=True)
    aborted = np.bincount(inverse, weights=failed.astype(float), minlength=unique.size) > 0
    # A session's duration: its first send to its last end, over the turns that carry both times.
    first = np.full(unique.size, np.inf)
    last = np.full(unique.size, -np.inf)
    timed_starts = np.isfinite(starts)
    np.minimum.at(first, inverse[timed_starts], starts[timed_starts])
    timed_ends = np.isfinite(ends)
    np.maximum.at(last, inverse[timed_ends], ends[timed_ends])
    duration_s = (last - first) / 1000.0
    return {
        "count": int(unique.size),
        "completed": int((~aborted).sum()),
        "aborted": int(aborted.sum()),
        "turns_mean": float(np.mean(turns)),
        "duration_s": _percentiles(np.where(np.isfinite(duration_s), duration_s, np.nan), (50, 90)),
    }


def _length_error(requested: np.ndarray, delivered: np.ndarray) -> dict | None:
    both = np.isfinite(requested) & np.isfinite(delivered) & (requested > 0)
    if not both.any():
        return None
    error_pct = (delivered[both] - requested[both]) / requested[both] * 100.0
    return {
        "n": int(both.sum()),
        "mean_signed_pct": float(np.mean(error_pct)),
        "p99_abs_pct": float(np.percentile(np.abs(error_pct), 99)),
    }


def length_report(columns: SampleColumns) -> dict | None:
    """Requested vs delivered lengths over the successful requests that carry both: the server's
    input_tokens against requested_input_tokens, output_tokens against requested_output_tokens."""
    workload = columns.workload
    if workload is None:
        return None
    ok = columns.ok
    report = {
        "input": _length_error(workload.requested_input_tokens[ok], columns.input_tokens[ok]),
        "output": _length_error(workload.requested_output_tokens[ok], columns.output_tokens[ok]),
    }
    return report if report["input"] or report["output"] else None
