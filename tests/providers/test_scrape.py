"""The server-metrics scraper: each engine's exposition format to engine-neutral series, the per-interval prefix-cache
hit rate, one read per interval against real HTTP servers, and failures that become gaps and error lines."""

import asyncio
import itertools
import statistics
import time

import aiohttp
import pytest

from apps.providers.engine import scrape
from apps.providers.engine.scrape import parse_exposition, scrape_loop, shown_url
from tests.providers.dcgm_exporter import Gpu, MetricsServer, dcgm_exporter, dcgm_text


def histogram(name: str, labels: str, total: float, count: float) -> list[str]:
    """A Prometheus histogram as engines write it: buckets, then sum and count."""
    return [
        f"# HELP {name} A histogram.", f"# TYPE {name} histogram",
        *(f'{name}_bucket{{{labels},le="{le}"}} {count}' for le in ("0.01", "0.1", "1.0", "+Inf")),
        f"{name}_sum{{{labels}}} {total}", f"{name}_count{{{labels}}} {count}",
    ]  # fmt: skip


def vllm_text(*, running=3, waiting=1, kv=0.25, hits=40, queries=100, ttft_sum=1.5, ttft_count=10, tokens=500,
              old_names=False) -> str:  # fmt: skip
    """vLLM's /metrics with two engines (data-parallel ranks), each reporting half of the counters."""
    usage = "vllm:gpu_cache_usage_perc" if old_names else "vllm:kv_cache_usage_perc"
    prefix = "vllm:gpu_prefix_cache" if old_names else "vllm:prefix_cache"
    lines = ["# HELP python_gc_objects_collected_total Objects collected.", 'python_gc_objects_collected_total{generation="0"} 7']  # fmt: skip
    for engine in ("0", "1"):
        labels = f'engine="{engine}",model_name="meta-llama/Llama-3.1-8B-Instruct"'
        lines += [
            f"vllm:num_requests_running{{{labels}}} {running / 2}", f"vllm:num_requests_waiting{{{labels}}} {waiting / 2}",
            f"{usage}{{{labels}}} {kv}", f"{prefix}_hits_total{{{labels}}} {hits / 2}",
            f"{prefix}_queries_total{{{labels}}} {queries / 2}", f"vllm:generation_tokens_total{{{labels}}} {tokens / 2}",
            *histogram("vllm:time_to_first_token_seconds", labels, ttft_sum / 2, ttft_count / 2),
            *histogram("vllm:e2e_request_latency_seconds", labels, 99.0, 10),
        ]  # fmt: skip
    return "\n".join(lines) + "\n"


class TestParsing:
    def test_vllm_maps_to_neutral_names_summing_engines(self):
        """Requests and counters add up over vLLM's engines; the KV-cache usage is their mean; the engine is named."""
        values, engine = parse_exposition(vllm_text())
        assert engine == "vllm"
        assert values == {
            "running": 3.0, "waiting": 1.0, "kv_cache_usage": 0.25, "prefix_cache_hits": 40.0,
            "prefix_cache_queries": 100.0, "generation_tokens_total": 500.0, "server_ttft_sum_s": 1.5,
            "server_ttft_count": 10.0,
        }  # fmt: skip

    def test_vllm_old_names_are_read_and_a_transition_release_is_not_counted_twice(self):
        """vllm:gpu_cache_usage_perc and the gpu_prefix_cache counters are read; when old and new names both appear
        the new one alone counts."""
        old, _ = parse_exposition(vllm_text(old_names=True, kv=0.5))
        assert old["kv_cache_usage"] == 0.5 and old["prefix_cache_hits"] == 40.0
        both, _ = parse_exposition(vllm_text(kv=0.25, hits=40) + vllm_text(old_names=True, kv=0.9, hits=90))
        assert both["kv_cache_usage"] == 0.25 and both["prefix_cache_hits"] == 40.0

    def test_only_mapped_lines_reach_the_parser(self, monkeypatch):
        """Histogram buckets and other families are dropped before parsing (parse cost stays low)."""
        seen = []
        original = scrape.text_string_to_metric_families
        monkeypatch.setattr(scrape, "text_string_to_metric_families", lambda text: seen.append(text) or original(text))
        parse_exposition(vllm_text())
        assert "_bucket" not in seen[0] and "e2e_request" not in seen[0] and "python_gc" not in seen[0]
        assert "vllm:time_to_first_token_seconds_sum" in seen[0]

    def test_sglang(self):
        name = 'model_name="meta-llama/Llama-3.1-8B-Instruct"'
        text = "\n".join([
            "# TYPE sglang:num_running_reqs gauge", f"sglang:num_running_reqs{{{name}}} 12.0",
            f"sglang:num_queue_reqs{{{name}}} 4.0", f"sglang:token_usage{{{name}}} 0.28",
            f"sglang:cache_hit_rate{{{name}}} 0.0075", f"sglang:generation_tokens_total{{{name}}} 7.557572e+06",
            *histogram("sglang:time_to_first_token_seconds", name, 2.35e6, 1e6),
        ]) + "\n"  # fmt: skip
        values, engine = parse_exposition(text)
        assert engine == "sglang"
        assert values == {
            "running": 12.0, "waiting": 4.0, "kv_cache_usage": 0.28, "prefix_cache_hit_rate_reported": 0.0075,
            "generation_tokens_total": 7557572.0, "server_ttft_sum_s": 2.35e6, "server_ttft_count": 1e6,
        }  # fmt: skip

    def test_tgi(self):
        """TGI's batch is what runs and its queue what waits; its generated-tokens histogram sums to a token count."""
        text = "\n".join([
            "tgi_batch_current_size 8", "tgi_queue_size 3", "tgi_batch_current_max_tokens 4096",
            *histogram("tgi_request_generated_tokens", 'x="1"', 1234, 20),
            *histogram("tgi_request_queue_duration", 'x="1"', 0.5, 20),
        ]) + "\n"  # fmt: skip
        values, engine = parse_exposition(text)
        assert engine == "tgi"
        assert values == {"running": 8.0, "waiting": 3.0, "generation_tokens_total": 1234.0,
                          "server_queue_sum_s": 0.5, "server_queue_count": 20.0}  # fmt: skip

    def test_dcgm_averages_utilisation_and_adds_memory_power_and_energy(self):
        gpus = {0: Gpu(80, 40_000, 300, 5_000_000), 1: Gpu(60, 30_000, 200, 7_000_000)}
        values, engine = parse_exposition(dcgm_text(gpus))
        assert engine == ""
        assert values == {"gpu_utilization_pct": 70.0, "gpu_memory_used_mib": 70_000.0, "gpu_power_w": 500.0,
                          "gpu_energy_mj": 12_000_000.0}  # fmt: skip

    def test_nan_samples_are_left_out(self):
        values, _ = parse_exposition("vllm:num_requests_running 2\nvllm:kv_cache_usage_perc NaN\n")
        assert values == {"running": 2.0}

    def test_shown_urls_never_carry_credentials(self):
        assert shown_url("http://user:secret@10.0.0.5:9400/metrics") == "http://10.0.0.5:9400/metrics"
        assert shown_url("http://10.0.0.5/metrics") == "http://10.0.0.5/metrics"


def scrape_for(servers: list[MetricsServer], seconds: float, interval_s: float = 0.1, urls=None,
               during=None) -> scrape.ScrapedSeries:  # fmt: skip
    """Start the servers, scrape `urls()` (the servers' by default) for `seconds`, calling `during(elapsed_s)` every
    10 ms, then stop."""

    async def go():
        for server in servers:
            await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                stop = asyncio.Event()
                targets = urls() if urls else [s.url for s in servers]
                task = asyncio.create_task(scrape_loop(session, targets, stop, interval_s))
                started = time.monotonic()
                while (elapsed := time.monotonic() - started) < seconds:
                    if during is not None:
                        during(elapsed)
                    await asyncio.sleep(0.01)
                stop.set()
                return await asyncio.wait_for(task, 2.0)
        finally:
            for server in servers:
                await server.close()

    return asyncio.run(go())


class TestLoop:
    def test_one_read_per_interval_of_every_url_merged_into_one_series(self):
        """Each URL is read once per interval, plus once after the stop; both pages land in the same points."""
        engine = MetricsServer(lambda: vllm_text())
        gpus = dcgm_exporter({0: Gpu(50, 1000, 250)})
        series = scrape_for([engine, gpus], seconds=1.1, interval_s=0.2)  # reads at 0, 0.2 … 1.0, then at the stop
        assert 5 <= len(series.t_s) <= 8 and len(engine.hits) == len(gpus.hits) == len(series.t_s)
        gaps = [b - a for a, b in itertools.pairwise(series.t_s[:-1])]
        assert statistics.median(gaps) == pytest.approx(0.2, abs=0.02) and all(0.1 < g < 0.45 for g in gaps)
        assert series.engine == "vllm" and series.errors == []
        assert series.metrics["gpu_power_w"] == [250.0] * len(series.t_s)
        assert series.metrics["running"] == [3.0] * len(series.t_s)
        assert all(len(column) == len(series.t_s) for column in series.metrics.values())

    def test_the_prefix_cache_hit_rate_is_per_interval_from_the_counter_deltas(self):
        """Hits/queries growing by 30/40 then 0/0 then 10/100 between reads: 0.75, no rate, 0.1."""
        steps = iter([(0, 0), (30, 40), (30, 40), (40, 140)])
        state = {"now": next(steps)}
        server = MetricsServer(lambda: vllm_text(hits=state["now"][0], queries=state["now"][1]))
        original = server._metrics

        async def advance(request):  # each read sees the next counters
            response = await original(request)
            state["now"] = next(steps, state["now"])
            return response

        server._metrics = advance
        series = scrape_for([server], seconds=0.45)
        rates = series.metrics["prefix_cache_hit_rate"]
        assert rates[:4] == [None, pytest.approx(0.75), None, pytest.approx(0.1)]
        assert series.metrics["prefix_cache_queries"][:4] == [0.0, 40.0, 40.0, 140.0]

    def test_a_failed_read_is_a_gap_and_an_error_line_never_an_exception(self):
        """503s while the server is down become None in every series and one line each; the loop carries on."""
        server = MetricsServer(lambda: vllm_text())
        series = scrape_for(
            [server], seconds=0.8, during=lambda t: setattr(server, "status", 503 if 0.15 < t < 0.55 else 200)
        )
        running = series.metrics["running"]
        gaps = [i for i, v in enumerate(running) if v is None]
        assert 2 <= len(gaps) <= 5 and running[0] == 3.0 and running[-1] == 3.0
        assert len(series.errors) == len(gaps) and all("HTTP 503" in line for line in series.errors)
        assert all(series.metrics["kv_cache_usage"][i] is None for i in gaps)

    def test_an_unreachable_exporter_leaves_the_engines_series_whole(self):
        """Nothing listening at the GPU URL: every read of it fails with a line; the engine's series has no gap."""
        engine = MetricsServer(lambda: vllm_text())

        series = scrape_for([engine], seconds=0.25, urls=lambda: [engine.url, "http://127.0.0.1:9/metrics"])
        assert None not in series.metrics["running"] and "gpu_power_w" not in series.metrics
        assert len(series.errors) == len(series.t_s)
        assert all("127.0.0.1:9/metrics: could not connect" in line for line in series.errors)

    def test_a_slow_server_never_holds_the_loop(self):
        """A server slower than the interval times out within it: the loop stops promptly and says why."""
        slow = MetricsServer(lambda: vllm_text(), delay_s=5.0)
        started = time.monotonic()
        series = scrape_for([slow], seconds=0.5, interval_s=0.2)
        assert time.monotonic() - started < 1.5
        assert series.errors and all("no answer within 0.16 s" in line for line in series.errors)
        assert series.metrics == {} and 3 <= len(series.t_s) <= 5

    def test_refused_urls_are_not_read(self, settings):
        """A cloud metadata address or a host off the allow list is never requested; the reason is kept."""
        settings.PROVIDER_URL_ALLOWLIST = ["10.0.0.0/8"]
        server = MetricsServer(lambda: vllm_text())
        series = scrape_for([server], seconds=0.2, urls=None)
        assert server.hits == [] and series.t_s == []
        assert "not scraped" in series.errors[0] and "allow list" in series.errors[0]
        series = asyncio.run(_scrape_once(["http://169.254.169.254/metrics", "http://[10.0.0.5/metrics"]))
        assert "Cloud metadata" in series.errors[0] and "Invalid IPv6 URL" in series.errors[1]


async def _scrape_once(urls: list[str]) -> scrape.ScrapedSeries:
    stop = asyncio.Event()
    stop.set()
    async with aiohttp.ClientSession() as session:
        return await scrape_loop(session, urls, stop)
