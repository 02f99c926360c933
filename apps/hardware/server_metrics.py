"""Reductions of a server's own metrics over a run (docs/server-metrics.md): means and maxima of the gauges,
the server's mean TTFT from its histogram, energy, tokens per joule, and whether the client's and the server's
TTFT disagree by more than 10 %.

Counters (histogram sums and counts, token and energy totals) are cumulative since the server started: a figure
over the run is their increase between the first and the last scrape. A counter that goes down was reset (the
server restarted), and its value after the drop is what it counted since, as Prometheus' increase() reads it.
"""

import numpy as np

from apps.hardware.stats import SampleColumns

GAUGES = (
    "running", "waiting", "kv_cache_usage", "prefix_cache_hit_rate", "gpu_utilization_pct", "gpu_memory_used_mib",
    "gpu_power_w",
)  # fmt: skip
TTFT_DISAGREEMENT_LIMIT = 0.10  # |client − server| / server above this is flagged


def _column(values: list | None) -> np.ndarray:
    """A series as floats, NaN where a scrape failed or the metric was missing."""
    return np.array([np.nan if v is None else v for v in values or []], dtype=float)


def counter_increase(values: list | None) -> float | None:
    """How much a cumulative counter grew over the known points; None with fewer than two."""
    known = _column(values)
    known = known[np.isfinite(known)]
    if known.size < 2:
        return None
    steps = np.diff(known)
    return float(np.where(steps >= 0, steps, known[1:]).sum())


def _energy_j(t_s: np.ndarray, metrics: dict, duration_s: float | None) -> tuple[float | None, str]:
    """Energy over the run in joules and how it was found: the GPUs' energy counter when the exporter has it,
    else the power draw integrated over time (trapezoids between scrapes)."""
    counter_mj = counter_increase(metrics.get("gpu_energy_mj"))
    if counter_mj is not None:
        return counter_mj / 1000.0, "energy counter"
    power = _column(metrics.get("gpu_power_w"))
    known = np.isfinite(power)
    if known.sum() >= 2:
        return float(np.trapezoid(power[known], t_s[known])), "power over time"
    if known.sum() == 1 and duration_s:
        return float(power[known][0] * duration_s), "one power reading × duration"
    return None, ""


def ttft_disagreement(client_ms: float | None, server_ms: float | None) -> dict | None:
    """The client's and the server's mean TTFT side by side; flagged when they differ by more than 10 % of the
    server's. None when either is unknown."""
    if client_ms is None or server_ms is None or not server_ms > 0:
        return None
    return {
        "client_ms": client_ms,
        "server_ms": server_ms,
        "ratio": client_ms / server_ms,
        "flagged": abs(client_ms - server_ms) / server_ms > TTFT_DISAGREEMENT_LIMIT,
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def summarize_server_metrics(
    series: dict, *, client_ttft_ms_mean: float | None, output_tokens: float | None, duration_s: float | None
) -> dict:
    """The run's server figures from its scraped series ({"t_s": [...], "metrics": {name: [...]}})."""
    t_s = np.array(series.get("t_s") or [], dtype=float)
    metrics = series.get("metrics") or {}
    gauges = {}
    for name in GAUGES:
        values = _column(metrics.get(name))
        if np.isfinite(values).any():
            gauges[name] = {"mean": float(np.nanmean(values)), "max": float(np.nanmax(values))}
    ttft_sum_s, ttft_count = (
        counter_increase(metrics.get("server_ttft_sum_s")),
        counter_increase(metrics.get("server_ttft_count")),
    )
    queue_sum_s, queue_count = (
        counter_increase(metrics.get("server_queue_sum_s")),
        counter_increase(metrics.get("server_queue_count")),
    )
    server_ttft_ms = _ratio(ttft_sum_s, ttft_count)
    server_ttft_ms = None if server_ttft_ms is None else server_ttft_ms * 1000.0
    queue_ms = _ratio(queue_sum_s, queue_count)
    # Over the run, the hit rate is the ratio of the counters' increases (a mean of per-second rates would weigh
    # a quiet second like a busy one); an engine without counters gives its own rate, averaged.
    hit_rate = _ratio(
        counter_increase(metrics.get("prefix_cache_hits")), counter_increase(metrics.get("prefix_cache_queries"))
    )
    if hit_rate is None and "prefix_cache_hit_rate" in gauges and "prefix_cache_queries" not in metrics:
        hit_rate = gauges["prefix_cache_hit_rate"]["mean"]
    energy_j, energy_source = _energy_j(t_s, metrics, duration_s)
    failed = sum(1 for i in range(t_s.size) if all(column[i] is None for column in metrics.values()))
    return {
        "points": int(t_s.size),
        "failed_points": failed,
        "gauges": gauges,
        "client_ttft_mean_ms": client_ttft_ms_mean,
        "server_ttft_mean_ms": server_ttft_ms,
        "server_ttft_requests": None if ttft_count is None else round(ttft_count),
        "server_queue_mean_ms": None if queue_ms is None else queue_ms * 1000.0,
        "prefix_cache_hit_rate": hit_rate,
        "server_generation_tokens": counter_increase(metrics.get("generation_tokens_total")),
        "energy_j": energy_j,
        "energy_source": energy_source,
        "output_tokens": output_tokens,
        "tokens_per_joule": _ratio(output_tokens, energy_j) if energy_j is not None and energy_j > 0 else None,
        "ttft_disagreement": ttft_disagreement(client_ttft_ms_mean, server_ttft_ms),
    }


def client_figures(columns: SampleColumns | None) -> tuple[float | None, float | None]:
    """The client's side over the same window as the scrape (the whole step): the mean TTFT and the output tokens
    of the successful requests. Failed requests stay out, as they do of every latency figure."""
    if columns is None:
        return None, None
    ttft, tokens = columns.ttft_ms[columns.ok], columns.output_tokens[columns.ok]
    ttft, tokens = ttft[np.isfinite(ttft)], tokens[np.isfinite(tokens)]
    return (float(ttft.mean()) if ttft.size else None), (float(tokens.sum()) if tokens.size else None)


def server_metrics_row(scraped: dict, *, columns: SampleColumns | None, duration_s: float | None) -> dict:
    """The fields of a ServerMetrics row from a ScrapedSeries.as_dict(): series, summary, sources."""
    series = {"t_s": scraped.get("t_s") or [], "metrics": scraped.get("metrics") or {}}
    client_ttft_ms, output_tokens = client_figures(columns)
    summary = summarize_server_metrics(
        series, client_ttft_ms_mean=client_ttft_ms, output_tokens=output_tokens, duration_s=duration_s
    )
    summary["engine"] = scraped.get("engine", "")
    sources = {key: scraped.get(key, default) for key, default in (("urls", []), ("engine", ""), ("errors", []))}
    return {"series": series, "summary": summary, "sources": sources}
