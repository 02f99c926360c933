"""Server-side metrics of a run: the reductions (gauges, server TTFT from its histogram, energy, tokens per joule,
the 10 % TTFT disagreement flag), storing them with the run, the run page and API, and load sweeps end to end
against mockllm's /metrics, a DCGM exporter and an engine whose metrics disagree with the client."""

import itertools
import re
import statistics
from contextlib import contextmanager

import numpy as np
import pytest
from aiohttp import web
from django.test import Client
from django.urls import reverse
from prometheus_client import generate_latest

from apps.batches.models import LoadSweep, Status
from apps.batches.runner import run_sweep
from apps.batches.services import sweep_create
from apps.hardware.models import PerformanceRun, ServerMetrics
from apps.hardware.server_metrics import counter_increase, summarize_server_metrics, ttft_disagreement
from apps.providers.engine.scrape import ScrapedSeries
from apps.providers.mockllm import REGISTRY_KEY, MockProfile, make_app
from apps.providers.models import ProviderEndpoint
from tests.factories import HardwareProfileFactory, ModelVariantFactory
from tests.hardware.helpers import generated_samples, stored_run
from tests.providers.dcgm_exporter import Gpu, MetricsServer, dcgm_exporter
from tests.threaded import running_in_thread

T = [0.0, 1.0, 2.0, 3.0]


def summarize(metrics: dict, t_s=T, client=None, tokens=None, duration=3.0) -> dict:
    return summarize_server_metrics(
        {"t_s": t_s, "metrics": metrics}, client_ttft_ms_mean=client, output_tokens=tokens, duration_s=duration
    )


class TestReduction:
    def test_gauges_are_means_and_maxima_over_the_reads_that_worked(self):
        s = summarize({"running": [2, None, 4, 6], "kv_cache_usage": [0.1, 0.2, None, 0.6], "waiting": [None] * 4})
        assert s["gauges"]["running"] == {"mean": 4.0, "max": 6.0}
        assert s["gauges"]["kv_cache_usage"] == {"mean": pytest.approx(0.3), "max": 0.6}
        assert "waiting" not in s["gauges"] and s["points"] == 4 and s["failed_points"] == 0

    def test_a_read_where_everything_failed_is_counted(self):
        assert summarize({"running": [1, None, 1, 1], "gpu_power_w": [5, None, 5, None]})["failed_points"] == 1

    def test_counters_increase_across_a_reset_as_prometheus_reads_them(self):
        """100 → 150, restart, 20 → 50: an increase of 50 + 20 + 30; gaps are skipped."""
        assert counter_increase([100, 150, None, 20, 50]) == 100.0
        assert counter_increase([7, None]) is None and counter_increase(None) is None

    def test_server_ttft_is_the_histograms_sum_over_count_deltas_over_the_run(self):
        """The histogram held 10 s over 100 requests before the run and 13 s over 120 after: 3 s / 20 = 150 ms."""
        s = summarize({"server_ttft_sum_s": [10.0, 11.0, None, 13.0], "server_ttft_count": [100, 110, None, 120]},
                      client=160.0)  # fmt: skip
        assert s["server_ttft_mean_ms"] == pytest.approx(150.0) and s["server_ttft_requests"] == 20
        assert s["ttft_disagreement"] == {"client_ms": 160.0, "server_ms": pytest.approx(150.0),
                                          "ratio": pytest.approx(160 / 150), "flagged": False}  # fmt: skip

    @pytest.mark.parametrize(
        ("client_ms", "flagged"), [(110.0, False), (110.01, True), (90.0, False), (89.99, True), (100.0, False)]
    )
    def test_the_flag_is_a_difference_of_more_than_10_percent_of_the_server(self, client_ms, flagged):
        result = ttft_disagreement(client_ms, 100.0)
        assert result["flagged"] is flagged and result["ratio"] == pytest.approx(client_ms / 100.0)

    def test_no_disagreement_without_both_sides(self):
        assert ttft_disagreement(None, 100.0) is None and ttft_disagreement(100.0, None) is None
        assert ttft_disagreement(100.0, 0.0) is None
        assert summarize({"running": [1, 1, 1, 1]}, client=100.0)["ttft_disagreement"] is None

    def test_energy_is_the_power_integrated_by_trapezoids_and_tokens_per_joule_follow(self):
        """100 W → 200 W over 1 s, then 200 W → 300 W over 2 s (a failed read between): 150 + 500 = 650 J."""
        s = summarize({"gpu_power_w": [100.0, 200.0, None, 300.0]}, tokens=1300)
        assert s["energy_j"] == pytest.approx(650.0) and s["energy_source"] == "power over time"
        assert s["tokens_per_joule"] == pytest.approx(2.0)
        assert s["energy_j"] == pytest.approx(np.trapezoid([100, 200, 300], [0, 1, 3]))

    def test_the_energy_counter_wins_over_the_power_when_the_exporter_has_it(self):
        s = summarize({"gpu_power_w": [1.0] * 4, "gpu_energy_mj": [5e6, 5.4e6, 5.8e6, 6.3e6]}, tokens=260)
        assert s["energy_j"] == pytest.approx(1300.0) and s["energy_source"] == "energy counter"
        assert s["tokens_per_joule"] == pytest.approx(0.2)

    def test_one_power_reading_lasts_the_runs_duration(self):
        s = summarize({"gpu_power_w": [None, 400.0, None, None]}, tokens=100, duration=2.5)
        assert s["energy_j"] == pytest.approx(1000.0) and s["tokens_per_joule"] == pytest.approx(0.1)

    def test_without_power_there_is_no_tokens_per_joule(self):
        s = summarize({"running": [1, 2, 3, 4]}, tokens=1000)
        assert s["energy_j"] is None and s["tokens_per_joule"] is None

    def test_the_runs_prefix_cache_hit_rate_is_the_ratio_of_the_counters_increases(self):
        """A quiet second (1 of 2 hit) does not weigh like a busy one (10 of 100): 11/102 over the run."""
        s = summarize({"prefix_cache_hits": [0, 1, 11, 11], "prefix_cache_queries": [0, 2, 102, 102],
                       "prefix_cache_hit_rate": [None, 0.5, 0.1, None]})  # fmt: skip
        assert s["prefix_cache_hit_rate"] == pytest.approx(11 / 102)
        assert summarize({"prefix_cache_hit_rate": [0.2, 0.4, None, 0.6]})["prefix_cache_hit_rate"] == (
            pytest.approx(0.4)
        )


def scraped(**metrics) -> dict:
    """A ScrapedSeries as the runner hands it to ParsedRun, four reads a second apart."""
    return ScrapedSeries(t_s=T, metrics=metrics, engine="vllm", urls=["http://10.0.0.5:8000/metrics"],
                         errors=["1.0 s, http://10.0.0.5:9400/metrics: HTTP 503"]).as_dict()  # fmt: skip


def honest(client_ttft_ms: float = 100.0) -> dict:
    """A vLLM server whose TTFT histogram matches the client's mean, and two GPUs at 500 W."""
    return scraped(
        running=[0, 4, 4, 0], waiting=[0, 1, 0, 0], kv_cache_usage=[0.0, 0.5, 0.25, 0.0],
        server_ttft_sum_s=[1.0, 1.0 + 24 * client_ttft_ms / 1000 / 2, None, 1.0 + 48 * client_ttft_ms / 1000],
        server_ttft_count=[10, 34, None, 58], generation_tokens_total=[0, 500, 900, 1200],
        gpu_power_w=[500.0, 500.0, 500.0, 500.0], gpu_utilization_pct=[10, 90, 80, 5],
        gpu_memory_used_mib=[70000] * 4,
    )  # fmt: skip


@pytest.mark.django_db
class TestStoring:
    def test_run_store_keeps_the_series_and_reduces_them_against_the_clients_samples(self, team):
        samples = generated_samples(50, ttft_ms=100.0)  # 48 succeed, 2 fail
        run = stored_run(team, samples=samples, duration_s=3.0, server_metrics=honest())
        row = ServerMetrics.objects.get(run=run)
        ok = [s for s in samples if not s.error_code]
        client_ms, tokens = np.mean([s.ttft_ms for s in ok]), sum(s.output_tokens for s in ok)
        assert row.series["t_s"] == T and row.series["metrics"]["running"] == [0, 4, 4, 0]
        assert row.sources == {"urls": ["http://10.0.0.5:8000/metrics"], "engine": "vllm",
                               "errors": ["1.0 s, http://10.0.0.5:9400/metrics: HTTP 503"]}  # fmt: skip
        summary = row.summary
        assert summary["client_ttft_mean_ms"] == pytest.approx(client_ms)
        assert summary["output_tokens"] == tokens and summary["energy_j"] == pytest.approx(1500.0)
        assert summary["tokens_per_joule"] == pytest.approx(tokens / 1500.0)
        assert summary["server_ttft_requests"] == 48 and summary["server_ttft_mean_ms"] == pytest.approx(100.0)
        assert summary["ttft_disagreement"] == {"client_ms": pytest.approx(client_ms), "server_ms": pytest.approx(100.0),
                                                "ratio": pytest.approx(client_ms / 100.0), "flagged": False}  # fmt: skip

    def test_a_run_without_scraped_metrics_has_no_row(self, team):
        assert not ServerMetrics.objects.filter(run=stored_run(team)).exists()

    def test_the_row_is_stored_with_the_run_or_not_at_all(self, team, monkeypatch):
        """A failure while reducing the series leaves no half-stored run behind."""

        def broken(*args, **kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr("apps.hardware.services.server_metrics_row", broken)
        with pytest.raises(RuntimeError):
            stored_run(team, server_metrics=honest())
        assert not PerformanceRun.objects.exists()

    def test_a_scrape_that_failed_throughout_is_stored_with_its_errors(self, team):
        run = stored_run(team, server_metrics=scraped())
        row = ServerMetrics.objects.get(run=run)
        assert row.summary["points"] == 4 and row.summary["tokens_per_joule"] is None
        assert row.sources["errors"]


def page(client, run) -> str:
    return client.get(reverse("hardware:run", args=[run.pk])).content.decode()


@pytest.mark.django_db
class TestRunPage:
    def test_the_server_section_charts_the_series_and_shows_tokens_per_joule(self, viewer_client, team):
        run = stored_run(team, samples=generated_samples(50, ttft_ms=100.0), server_metrics=honest())
        html = page(viewer_client, run)
        charts = re.search(r'<div class="chart-grid" id="server-charts">(.*?)</div>', html, re.S).group(1)
        captions = re.findall(r"<figcaption>(.*?)</figcaption>", charts)
        assert captions == [
            "Requests on the server", "KV cache in use", "Time to first token, server&#x27;s mean per second vs the client&#x27;s mean",
            "Tokens generated per second, as the server counts them", "GPU utilisation", "GPU power draw",
            "GPU memory in use",
        ]  # fmt: skip
        assert charts.count("<svg") == 7
        assert 'id="tokens-per-joule"' in html and "Tokens per joule" in html and "power over time" in html
        assert 'id="ttft-disagreement"' not in html
        assert "What the server reported" in html and "(vLLM)" in html and "Reads that failed" in html
        for field_name in ("kv_cache_usage", "gpu_power_w", "server_ttft", "tokens_per_joule"):
            assert field_name not in html.replace('id="tokens-per-joule"', "")

    def test_a_disagreement_over_10_percent_is_a_visible_warning(self, viewer_client, team):
        run = stored_run(team, samples=generated_samples(50, ttft_ms=100.0), server_metrics=honest(60.0))
        html = page(viewer_client, run)
        warning = re.search(r'<div class="message warning" role="alert" id="ttft-disagreement">(.*?)</div>', html, re.S)
        assert warning and "Client and server disagree on time to first token" in warning.group(1)
        assert "60.0 ms" in warning.group(1)

    def test_without_power_there_is_no_tokens_per_joule_figure(self, viewer_client, team):
        run = stored_run(team, server_metrics=scraped(running=[1, 2, 3, 2]))
        html = page(viewer_client, run)
        assert "Requests on the server" in html and 'id="tokens-per-joule"' not in html and "GPU power" not in html

    def test_urls_that_could_never_be_read_say_so_with_the_reasons(self, viewer_client, team):
        unread = ScrapedSeries(urls=["http://169.254.169.254/metrics"],
                               errors=["0.0 s, http://169.254.169.254/metrics: not scraped: Cloud metadata …"])  # fmt: skip
        html = page(viewer_client, stored_run(team, server_metrics=unread.as_dict()))
        assert 'id="server-metrics-unread"' in html and "not scraped: Cloud metadata" in html
        assert 'id="server-charts"' not in html

    def test_a_run_without_server_metrics_has_no_section(self, viewer_client, team):
        assert 'id="server-metrics"' not in page(viewer_client, stored_run(team))

    def test_anonymous_is_redirected_and_another_team_gets_404(self, viewer_client, team, other_team):
        run = stored_run(team, server_metrics=honest())
        assert Client().get(reverse("hardware:run", args=[run.pk])).status_code == 302
        theirs = stored_run(other_team, server_metrics=honest())
        assert viewer_client.get(reverse("hardware:run", args=[theirs.pk])).status_code == 404


@pytest.mark.django_db
class TestApi:
    URL = "/api/v1/performance/runs"

    def test_the_detail_has_the_summary_and_series(self, viewer_api, team):
        run = stored_run(team, server_metrics=honest())
        body = viewer_api.get(f"{self.URL}/{run.pk}").json()
        server = body["server_metrics"]
        assert server["series"]["metrics"]["gpu_power_w"] == [500.0] * 4 and server["series"]["t_s"] == T
        assert server["summary"]["energy_j"] == pytest.approx(1500.0) and server["sources"]["engine"] == "vllm"

    def test_a_run_without_them_says_null_and_the_list_leaves_them_out(self, viewer_api, team):
        plain = stored_run(team)
        stored_run(team, server_metrics=honest())
        assert viewer_api.get(f"{self.URL}/{plain.pk}").json()["server_metrics"] is None
        assert all("server_metrics" not in row for row in viewer_api.get(self.URL).json()["results"])

    def test_anonymous_is_401_and_another_teams_run_is_404(self, anon_api, viewer_api, other_team):
        run = stored_run(other_team, server_metrics=honest())
        assert viewer_api.get(f"{self.URL}/{run.pk}").status_code == 404
        assert anon_api.get(f"{self.URL}/{run.pk}").status_code == 401


# --- end to end: a load sweep scraping mockllm's /metrics and a DCGM exporter ------------------------------------

PROFILE = MockProfile(ttft_ms=200, itl_ms=10, output_tokens=12)
GPUS = {0: Gpu(utilization_pct=80, memory_used_mib=40_000, power_w=300), 1: Gpu(60, 30_000, 200)}


@contextmanager
def serving(*, halve_ttft: bool = False):
    """mockllm, a DCGM exporter and, with `halve_ttft`, an engine metrics page reporting half mockllm's TTFT sum,
    in a thread: yields (base URL, engine metrics URL, GPU metrics URL)."""
    app = make_app(PROFILE)

    def halved() -> str:
        text = generate_latest(app[REGISTRY_KEY]).decode()
        return re.sub(
            r"^(vllm:time_to_first_token_seconds_sum\S*) (\S+)$",
            lambda m: f"{m.group(1)} {float(m.group(2)) / 2}",
            text,
            flags=re.M,
        )

    exporter, lying = dcgm_exporter(GPUS), MetricsServer(halved)

    async def start():
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        await exporter.start()
        await lying.start()
        return runner

    async def stop(runner):
        await exporter.close()
        await lying.close()
        await runner.cleanup()

    with running_in_thread(start, stop) as runner:
        root = f"http://127.0.0.1:{runner.addresses[0][1]}"
        yield f"{root}/v1", (lying.url if halve_ttft else f"{root}/metrics"), exporter.url


def sweep_against(team, base_url: str, metrics_url: str, gpu_metrics_url: str) -> PerformanceRun:
    endpoint = ProviderEndpoint.objects.create(
        team=team, name=f"lab {ProviderEndpoint.objects.count()}", kind="openai_compatible", base_url=base_url,
        model_names=["mock"], metrics_url=metrics_url, gpu_metrics_url=gpu_metrics_url,
    )  # fmt: skip
    sweep = sweep_create(
        team=team, user=None, name="sweep", endpoint=endpoint, model="mock", variant=ModelVariantFactory(team=team),
        hardware=HardwareProfileFactory(team=team), mode="closed", levels=[2], step_duration_s=3.0,
        prompt_tokens=20, output_tokens=12,
    )  # fmt: skip
    assert run_sweep(sweep.pk) == Status.COMPLETED, LoadSweep.objects.get(pk=sweep.pk).error
    return sweep.steps.get().run


@pytest.mark.django_db(transaction=True)
class TestEndToEnd:
    def test_a_sweep_step_stores_a_point_a_second_and_the_page_charts_it(self, team, member_client):
        """mockllm's own /metrics and two GPUs at 500 W: the step's reads land about a second apart, the server's
        TTFT covers exactly the step's requests and agrees with the client's, and tokens per joule is output tokens
        over 500 W × the time read."""
        with serving() as (base_url, metrics_url, gpu_metrics_url):
            run = sweep_against(team, base_url, metrics_url, gpu_metrics_url)
        row = ServerMetrics.objects.get(run=run)
        t_s, metrics, summary = row.series["t_s"], row.series["metrics"], row.summary
        assert 4 <= len(t_s) <= 6, t_s
        gaps = [b - a for a, b in itertools.pairwise(t_s[:-1])]  # the last read is at the stop, off the grid
        assert statistics.median(gaps) == pytest.approx(1.0, abs=0.05) and all(0.5 < g < 1.5 for g in gaps), t_s
        assert row.sources["engine"] == "vllm" and row.sources["errors"] == []
        assert metrics["gpu_power_w"] == [500.0] * len(t_s) and metrics["gpu_utilization_pct"] == [70.0] * len(t_s)
        assert max(metrics["running"]) == 2 and metrics["running"][-1] == 0
        samples = run.samples.all()  # the whole step: the scrape covers its ramp-up too
        assert all(sample.error_code == "" for sample in samples)
        assert summary["server_ttft_requests"] == len(samples)
        assert summary["server_ttft_mean_ms"] == pytest.approx(200.0, rel=0.05)
        assert summary["ttft_disagreement"]["flagged"] is False
        assert summary["server_generation_tokens"] == summary["output_tokens"] == 12 * len(samples)
        assert summary["energy_j"] == pytest.approx(500.0 * (t_s[-1] - t_s[0]))
        assert summary["tokens_per_joule"] == pytest.approx(12 * len(samples) / summary["energy_j"])
        html = page(member_client, run)
        assert 'id="server-charts"' in html and "GPU power draw" in html and 'id="tokens-per-joule"' in html
        assert 'id="ttft-disagreement"' not in html

    def test_a_server_reporting_half_the_clients_ttft_is_flagged(self, team, member_client):
        with serving(halve_ttft=True) as (base_url, metrics_url, gpu_metrics_url):
            run = sweep_against(team, base_url, metrics_url, gpu_metrics_url)
        disagreement = ServerMetrics.objects.get(run=run).summary["ttft_disagreement"]
        assert disagreement["flagged"] is True and disagreement["ratio"] == pytest.approx(2.0, rel=0.1)
        assert 'id="ttft-disagreement"' in page(member_client, run)
