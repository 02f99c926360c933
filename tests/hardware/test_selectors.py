"""Grid cells, comparisons with their significance tests, and run distributions."""

import numpy as np
import pytest
from scipy import stats

from apps.hardware.models import PerformanceRun
from apps.hardware.parsed import ParsedRun, ReportedSummary
from apps.hardware.selectors import compare_runs, cost_per_1m_output_usd, performance_grid, run_distributions
from apps.hardware.services import RunTarget, run_store
from tests.factories import HardwareProfileFactory, ModelVariantFactory
from tests.hardware.helpers import generated_samples, stored_run

pytestmark = pytest.mark.django_db


def test_grid_cells_average_the_matching_runs(team, other_team):
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team, hourly_cost_usd=3.6)
    first = stored_run(team, variant=variant, hardware=hardware, samples=generated_samples(30, seed=1))
    second = stored_run(team, variant=variant, hardware=hardware, samples=generated_samples(30, seed=2))
    stored_run(other_team)
    grid = performance_grid(team=team, metric="ttft_p50_ms")
    cell = grid.cells[(variant.pk, hardware.pk)]
    expected = np.mean([first.summary.metrics["ttft_ms"]["p50"], second.summary.metrics["ttft_ms"]["p50"]])
    assert cell.value == pytest.approx(expected) and cell.run_ids == sorted([first.pk, second.pk])
    assert len(grid.cells) == 1 and grid.higher_is_better is False


def test_grid_cost_per_million_output_tokens_uses_the_hourly_cost(team):
    hardware = HardwareProfileFactory(team=team, hourly_cost_usd=3.6)
    run = stored_run(team, hardware=hardware)
    grid = performance_grid(team=team, metric="cost_per_1m_output_usd")
    tps = run.summary.output_token_throughput_tps
    assert grid.cells[(run.variant_id, hardware.pk)].value == pytest.approx(3.6 / (tps * 3600) * 1e6)
    assert cost_per_1m_output_usd(None, tps) is None


def test_grid_honours_a_run_filter(team):
    stored_run(team, concurrency=8)
    kept = stored_run(team, concurrency=16)
    grid = performance_grid(team=team, metric="ttft_p95_ms", runs=PerformanceRun.objects.filter(concurrency=16))
    assert [c.run_ids for c in grid.cells.values()] == [[kept.pk]]


def test_compare_tests_each_latency_metric_with_mann_whitney(team):
    a = stored_run(team, samples=generated_samples(40, seed=1, ttft_ms=100))
    b = stored_run(team, samples=generated_samples(40, seed=2, ttft_ms=140))
    comparison = compare_runs(runs=[a, b])
    tests = {t.metric: t for t in comparison.significance[b.pk]}
    ttft_a = [s.ttft_ms for s in generated_samples(40, seed=1, ttft_ms=100) if not s.error_code]
    ttft_b = [s.ttft_ms for s in generated_samples(40, seed=2, ttft_ms=140) if not s.error_code]
    expected = stats.mannwhitneyu(ttft_a, ttft_b, alternative="two-sided")
    assert tests["ttft_ms"].p_value == pytest.approx(expected.pvalue) and tests["ttft_ms"].significant
    row = next(r for r in comparison.rows if r["key"] == "ttft_ms.p50")
    assert row["differences"][1] == pytest.approx(row["values"][1] - row["values"][0])


def test_compare_says_not_significant_for_the_same_distribution(team):
    a = stored_run(team, samples=generated_samples(40, seed=1))
    b = stored_run(team, samples=generated_samples(40, seed=1))
    assert all(not t.significant for t in compare_runs(runs=[a, b]).significance[b.pk])


def test_compare_says_summary_only_without_samples(team):
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)
    reported = ReportedSummary(metrics={"ttft_ms": {"p50": 90.0}}, output_token_throughput_tps=500.0)
    summary_run = run_store(team=team, parsed=ParsedRun(source_format="seed_csv", concurrency=4, reported=reported),
                            target=RunTarget(variant, hardware, None))  # fmt: skip
    sampled = stored_run(team)
    comparison = compare_runs(runs=[sampled, summary_run])
    assert {t.note for t in comparison.significance[summary_run.pk]} == {"summary only"}


def test_radar_scales_each_axis_to_the_best_run(team):
    a = stored_run(team, samples=generated_samples(30, seed=1, ttft_ms=100))
    b = stored_run(team, samples=generated_samples(30, seed=2, ttft_ms=200))
    comparison = compare_runs(runs=[a, b])
    ttft_axis = 0  # TTFT p50, lower is better: the faster run is at 1
    assert comparison.radar_values[0][ttft_axis] == pytest.approx(1.0)
    assert comparison.radar_values[1][ttft_axis] == pytest.approx(
        a.summary.metrics["ttft_ms"]["p50"] / b.summary.metrics["ttft_ms"]["p50"]
    )


def test_distributions_cover_successful_requests(team):
    run = stored_run(team, samples=generated_samples(30, failures=3))
    distributions = run_distributions(run=run)
    assert sum(distributions["ttft_ms"]["histogram"]["counts"]) == 27
    assert distributions["ttft_ms"]["cdf"]["x"][50] == pytest.approx(run.summary.metrics["ttft_ms"]["p50"])
    assert set(distributions) == {"ttft_ms", "itl_ms", "e2e_ms", "input_tokens", "output_tokens"}


def test_compare_tests_itl_on_one_mean_per_request_not_on_pooled_gaps(team):
    """The ITL test's U statistic and p-value equal scipy's Mann-Whitney U on the per-request mean gaps."""
    first, second = generated_samples(30, seed=1, gap_ms=10), generated_samples(30, seed=2, gap_ms=11)
    a, b = stored_run(team, samples=first), stored_run(team, samples=second)
    itl = next(t for t in compare_runs(runs=[a, b]).significance[b.pk] if t.metric == "itl_ms")
    means_a = [np.mean(s.itl_ms) for s in first if not s.error_code]
    means_b = [np.mean(s.itl_ms) for s in second if not s.error_code]
    expected = stats.mannwhitneyu(means_a, means_b, alternative="two-sided")
    assert itl.statistic == pytest.approx(expected.statistic) and itl.p_value == pytest.approx(expected.pvalue)
    assert (itl.n_first, itl.n_other) == (28, 28) and itl.statistic <= 28 * 28
    assert itl.label == "ITL (mean per request)"


def test_compare_uses_the_reported_mean_itl_when_a_request_has_no_gaps(team):
    """A source with only per-request mean ITL is tested on those means."""
    from apps.hardware.parsed import ParsedSample

    def samples(offset):
        return [ParsedSample(index=i, ttft_ms=50.0 + i, e2e_ms=500.0 + i, output_tokens=20, mean_itl_ms=offset + i)
                for i in range(10)]  # fmt: skip

    a, b = stored_run(team, samples=samples(10.0)), stored_run(team, samples=samples(30.0))
    itl = next(t for t in compare_runs(runs=[a, b]).significance[b.pk] if t.metric == "itl_ms")
    expected = stats.mannwhitneyu([10.0 + i for i in range(10)], [30.0 + i for i in range(10)])
    assert itl.statistic == pytest.approx(expected.statistic) and (itl.n_first, itl.n_other) == (10, 10)
