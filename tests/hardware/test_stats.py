"""Every summary figure equals numpy's on the same samples; failed requests stay out."""

import numpy as np
import pytest

from apps.hardware.models import RunSummary
from apps.hardware.services import run_update_slo
from tests.hardware.helpers import generated_samples, stored_run

pytestmark = pytest.mark.django_db


def expected(samples):
    ok = [s for s in samples if not s.error_code]
    ttft = np.array([s.ttft_ms for s in ok])
    e2e = np.array([s.e2e_ms for s in ok])
    out = np.array([s.output_tokens for s in ok], dtype=float)
    return {
        "ttft_ms": ttft,
        "e2e_ms": e2e,
        "tpot_ms": (e2e - ttft) / (out - 1),
        "itl_ms": np.concatenate([s.itl_ms for s in ok]),
        "output_tps": out / (e2e / 1000),
        "output_tokens": out,
    }


def test_every_figure_equals_numpy_on_the_same_samples(team):
    samples = generated_samples(60, seed=3)
    summary = stored_run(team, samples=samples).summary
    for metric, values in expected(samples).items():
        stats = summary.metrics[metric]
        assert stats["count"] == values.size
        assert stats["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert stats["stdev"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
        assert stats["min"] == np.min(values) and stats["max"] == np.max(values)
        for p in (50, 90, 95, 99):
            assert stats[f"p{p}"] == pytest.approx(np.percentile(values, p), rel=1e-12), (metric, p)


def test_failed_requests_are_counted_but_never_in_latencies(team):
    samples = generated_samples(20, failures=5)
    summary = stored_run(team, samples=samples).summary
    assert (summary.request_count, summary.error_count, summary.errors_by_code) == (20, 5, {"429": 5})
    assert summary.metrics["ttft_ms"]["count"] == 15
    assert summary.error_rate == 0.25


def test_throughput_comes_from_the_wall_time_of_the_run(team):
    samples = generated_samples(10, failures=0)
    summary = stored_run(team, samples=samples).summary
    ends = [s.start_offset_ms + s.e2e_ms for s in samples]
    duration_s = (max(ends) - min(s.start_offset_ms for s in samples)) / 1000
    assert summary.duration_s == pytest.approx(duration_s)
    assert summary.request_throughput_rps == pytest.approx(10 / duration_s)
    assert summary.output_token_throughput_tps == pytest.approx(sum(s.output_tokens for s in samples) / duration_s)


def test_a_duration_from_the_tool_wins(team):
    summary = stored_run(team, duration_s=20.0, samples=generated_samples(10, failures=0)).summary
    assert summary.duration_s == 20.0 and summary.request_throughput_rps == pytest.approx(0.5)


def test_itl_falls_back_to_request_means_when_there_are_no_gaps(team):
    samples = generated_samples(10, failures=0)
    for s in samples:
        s.mean_itl_ms, s.itl_ms = float(np.mean(s.itl_ms)), None
    summary = stored_run(team, samples=samples).summary
    assert summary.itl_source == "request means"
    assert summary.metrics["itl_ms"]["mean"] == pytest.approx(np.mean([s.mean_itl_ms for s in samples]))


def test_goodput_counts_requests_within_every_slo_and_recomputes(team):
    samples = generated_samples(40, failures=0)
    run = stored_run(team, samples=samples)
    assert run.summary.goodput_rps is None
    ttft_limit = float(np.median([s.ttft_ms for s in samples]))
    summary = run_update_slo(run=run, ttft_ms=ttft_limit, tpot_ms=None, e2e_ms=None)
    within = sum(s.ttft_ms <= ttft_limit for s in samples)
    assert summary.goodput_rps == pytest.approx(within / summary.duration_s)
    assert summary.goodput_slo == {"ttft_ms": ttft_limit}
    assert RunSummary.objects.get(run=run).goodput_rps == summary.goodput_rps


def test_itl_gaps_survive_storage_exactly(team):
    from apps.hardware.models import RequestSample
    from apps.hardware.services import itl_from_bytes

    samples = generated_samples(3, failures=0)
    run = stored_run(team, samples=samples)
    stored = RequestSample.objects.get(run=run, index=1)
    assert itl_from_bytes(stored.itl_ms).tolist() == samples[1].itl_ms
