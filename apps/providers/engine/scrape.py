"""Scrapes a server's Prometheus metrics (vLLM, SGLang, TGI; a DCGM exporter) every second while a
load step runs (docs/server-metrics.md).

`scrape_loop(session, urls, stop)` GETs every URL once per `interval_s` until `stop` is set, then once more
(so the counters cover the whole step), parses the text exposition format, and keeps the series the product
charts, under engine-neutral names (see SOURCES), as `ScrapedSeries`. A failed scrape is a None in every series
at that time and a line in `errors`, never an exception out of the loop.

It shares the event loop with the load generator, so it must never hold it up: one GET per URL per interval
with a timeout shorter than the interval, no backlog when a scrape runs late, and only the lines of the metrics
it maps reach the parser (a vLLM /metrics page is mostly histogram buckets nobody here reads).
"""

import asyncio
import contextlib
import math
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from apps.providers.urlcheck import check_base_url

# Engine-neutral name → (the engines' sample names, in order of preference; how label sets combine). The first
# name present in a scrape is used alone: vLLM versions in transition expose the old and the new name at once.
_VLLM_TTFT, _SGLANG_TTFT = "vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds"
_VLLM_QUEUE, _SGLANG_QUEUE, _TGI_QUEUE = (
    "vllm:request_queue_time_seconds", "sglang:queue_time_seconds", "tgi_request_queue_duration"
)  # fmt: skip
SOURCES: dict[str, tuple[tuple[str, ...], str]] = {
    "running": (("vllm:num_requests_running", "sglang:num_running_reqs", "tgi_batch_current_size"), "sum"),
    "waiting": (("vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size"), "sum"),
    # 0–1; the mean over engines (data-parallel ranks each report their own cache)
    "kv_cache_usage": (("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"), "mean"),
    # cumulative tokens looked up in / found in the prefix cache (vLLM V1); the hit rate is their deltas' ratio
    "prefix_cache_hits": (("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"), "sum"),
    "prefix_cache_queries": (("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"), "sum"),
    # a hit rate the engine computes itself (SGLang, vLLM V0), used when there are no counters
    "prefix_cache_hit_rate_reported": (("sglang:cache_hit_rate", "vllm:gpu_prefix_cache_hit_rate"), "mean"),
    # cumulative histogram sums (seconds) and counts: the reduction takes deltas over the run
    "server_ttft_sum_s": ((f"{_VLLM_TTFT}_sum", f"{_SGLANG_TTFT}_sum"), "sum"),
    "server_ttft_count": ((f"{_VLLM_TTFT}_count", f"{_SGLANG_TTFT}_count"), "sum"),
    "server_queue_sum_s": ((f"{_VLLM_QUEUE}_sum", f"{_SGLANG_QUEUE}_sum", f"{_TGI_QUEUE}_sum"), "sum"),
    "server_queue_count": ((f"{_VLLM_QUEUE}_count", f"{_SGLANG_QUEUE}_count", f"{_TGI_QUEUE}_count"), "sum"),
    # TGI has no token counter: its histogram of generated tokens per request sums to one
    "generation_tokens_total": (
        ("vllm:generation_tokens_total", "sglang:generation_tokens_total", "tgi_request_generated_tokens_sum"),
        "sum",
    ),
    # DCGM exporter, one sample per GPU (label gpu): utilisation is their mean, memory, power and energy their sum
    "gpu_utilization_pct": (("DCGM_FI_DEV_GPU_UTIL",), "mean"),
    "gpu_memory_used_mib": (("DCGM_FI_DEV_FB_USED",), "sum"),
    "gpu_power_w": (("DCGM_FI_DEV_POWER_USAGE",), "sum"),
    "gpu_energy_mj": (("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",), "sum"),
}
WANTED = frozenset(name for names, _ in SOURCES.values() for name in names)
ENGINE_PREFIXES = (("vllm:", "vllm"), ("sglang:", "sglang"), ("tgi_", "tgi"))
MAX_BODY_BYTES = 16 * 1024 * 1024  # a metrics page past this is not one
MAX_ERROR_LINES = 50  # then one line counting the rest: a dead exporter must not fill the row


@dataclass
class ScrapedSeries:
    t_s: list[float] = field(default_factory=list)  # seconds since the loop started, one per scrape
    metrics: dict[str, list[float | None]] = field(default_factory=dict)  # engine-neutral name -> value per scrape
    engine: str = ""  # "vllm" | "sglang" | "tgi" | "" — recognised from the metric names
    urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"t_s": self.t_s, "metrics": self.metrics, "engine": self.engine, "urls": self.urls,
                "errors": self.errors}  # fmt: skip


def parse_exposition(text: str) -> tuple[dict[str, float], str]:
    """The mapped values of one metrics page (engine-neutral names, label sets combined) and the engine its
    names belong to ("" when none). Lines of other metrics are dropped before the parser sees them."""
    kept = []
    for line in text.splitlines():
        if line and line[0] != "#" and line.partition("{")[0].partition(" ")[0] in WANTED:
            kept.append(line)
    by_name: dict[str, list[float]] = {}
    for family in text_string_to_metric_families("\n".join(kept) + "\n"):
        for sample in family.samples:
            if math.isfinite(sample.value):
                by_name.setdefault(sample.name, []).append(float(sample.value))
    values = {}
    for neutral, (names, combine) in SOURCES.items():
        found = next((by_name[name] for name in names if name in by_name), None)
        if found:
            values[neutral] = sum(found) if combine == "sum" else sum(found) / len(found)
    engine = next((engine for prefix, engine in ENGINE_PREFIXES if any(n.startswith(prefix) for n in by_name)), "")
    return values, engine


def shown_url(url: str) -> str:
    """The URL without any user:password part, for error lines that get stored and shown (no parsing: it must
    work on a URL that does not parse)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@", r"\1", url)


def check_metrics_url(url: str, *, must_resolve: bool = False) -> None:
    """Raise ValueError (UrlRefused with the rule broken) unless `url` may be scraped: the rules of a base URL
    (apps.providers.urlcheck), and a URL that parses, port included. Used by the forms, the API and the loop."""
    check_base_url(url, must_resolve=must_resolve)
    urlsplit(url).port  # noqa: B018 — reading it raises ValueError for a port out of range


async def _get(session: aiohttp.ClientSession, url: str, timeout_s: float) -> tuple[dict[str, float], str]:
    """One scrape of one URL: (values, engine); raises on any failure, with a message in words."""
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout_s), headers={"Accept": "text/plain"}
        ) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise ValueError(f"the page is over {MAX_BODY_BYTES // 1024 // 1024} MB")
    except TimeoutError:
        raise ValueError(f"no answer within {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise ValueError(f"could not connect ({type(exc).__name__})") from None
    try:
        return parse_exposition(body.decode("utf-8", errors="replace"))
    except ValueError as exc:  # prometheus_client's parser says what it could not read
        raise ValueError(f"not Prometheus text format ({str(exc)[:120]})") from None


class _Recorder:
    """Appends one scrape at a time, keeping every series as long as t_s, and derives the per-interval
    prefix-cache hit rate from the hit and query counters."""

    def __init__(self, series: ScrapedSeries):
        self.series = series
        self.previous_counters: tuple[float, float] | None = None
        self.failures = 0

    def error(self, t_s: float, url: str, message: str) -> None:
        self.failures += 1
        if self.failures <= MAX_ERROR_LINES:
            self.series.errors.append(f"{t_s:.1f} s, {shown_url(url)}: {message}")

    def append(self, t_s: float, values: dict[str, float]) -> None:
        values = dict(values)
        reported = values.pop("prefix_cache_hit_rate_reported", None)
        hits, queries = values.get("prefix_cache_hits"), values.get("prefix_cache_queries")
        if hits is not None and queries is not None:
            if self.previous_counters is not None:
                hit_delta, query_delta = hits - self.previous_counters[0], queries - self.previous_counters[1]
                # nothing looked up in the interval, or a counter went back (a restart): no rate for it
                if query_delta > 0 and 0 <= hit_delta <= query_delta:
                    values["prefix_cache_hit_rate"] = hit_delta / query_delta
            self.previous_counters = (hits, queries)
        elif reported is not None:
            values["prefix_cache_hit_rate"] = reported
        size = len(self.series.t_s)
        # the first scrape has no interval yet: its rate is None, and the series starts there all the same
        for name in [*values, *(["prefix_cache_hit_rate"] if "prefix_cache_queries" in values else [])]:
            self.series.metrics.setdefault(name, [None] * size)
        for name, column in self.series.metrics.items():
            column.append(values.get(name))
        self.series.t_s.append(round(t_s, 3))

    def finish(self) -> None:
        if self.failures > MAX_ERROR_LINES:
            self.series.errors.append(f"… and {self.failures - MAX_ERROR_LINES} more failed scrapes.")


async def _allowed(urls: list[str], recorder: _Recorder) -> list[str]:
    """The URLs the settings allow (the same rules as a base URL, resolved now, off the event loop)."""
    allowed = []
    for url in urls:
        try:
            await asyncio.to_thread(check_metrics_url, url, must_resolve=True)
        except ValueError as exc:  # UrlRefused, or a URL urlsplit or the IDNA codec cannot read
            recorder.error(0.0, url, f"not scraped: {exc}")
        else:
            allowed.append(url)
    return allowed


async def scrape_loop(
    session: aiohttp.ClientSession, urls: list[str], stop: asyncio.Event, interval_s: float = 1.0
) -> ScrapedSeries:
    series = ScrapedSeries(urls=[shown_url(url) for url in urls])
    recorder = _Recorder(series)
    loop = asyncio.get_running_loop()
    started = loop.time()  # the step's start: t_s lines up with its requests even when a host resolves slowly
    urls = await _allowed(list(urls), recorder)
    timeout_s = max(0.05, min(0.8 * interval_s, 2.0))
    tick = 0
    while urls:
        final = stop.is_set()  # the scrape after the step ends, so the counters cover all of it
        t_s = loop.time() - started
        answers = await asyncio.gather(*(_get(session, url, timeout_s) for url in urls), return_exceptions=True)
        values: dict[str, float] = {}
        for url, answer in zip(urls, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, ValueError):  # an unexpected error is still only a failed scrape
                    answer = ValueError(f"{type(answer).__name__}: {answer}")
                recorder.error(t_s, url, str(answer))
                continue
            page_values, engine = answer
            values.update(page_values)
            series.engine = series.engine or engine
        recorder.append(t_s, values)
        if final:
            break
        # The next tick on the grid; ticks a slow scrape overran are skipped, never caught up in a burst.
        tick = max(tick + 1, math.ceil((loop.time() - started) / interval_s))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, started + tick * interval_s - loop.time()))
    recorder.finish()
    return series
