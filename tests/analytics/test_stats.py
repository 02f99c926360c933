"""The analytics statistics against numpy and scipy computed from the raw values."""

import numpy as np
import pytest
from scipy import stats as sp

from apps.analytics import stats


def _moments(values):
    values = np.asarray(values, dtype=float)
    return len(values), float(values.sum()), float((values**2).sum())


def test_moments_give_numpys_mean_sd_and_scipys_t_interval():
    values = np.random.default_rng(1).normal(70, 9, 57).round(2)
    summary = stats.from_moments(*_moments(values))
    assert summary.n == 57
    assert summary.mean == pytest.approx(values.mean())
    assert summary.sd == pytest.approx(values.std(ddof=1))
    low, high = sp.t.interval(0.95, 56, loc=values.mean(), scale=sp.sem(values))
    assert (summary.ci_low, summary.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_moments_of_one_value_and_of_equal_values():
    assert stats.from_moments(1, 5.0, 25.0) == stats.Summary(1, 5.0, None, None, None)
    same = stats.from_moments(*_moments([73.1] * 40))
    assert same.sd == 0.0 and same.ci_low == same.ci_high == pytest.approx(73.1)
    assert stats.from_moments(0, None, None).mean is None


def test_pooled_moments_are_the_moments_of_the_union():
    a, b = [1.0, 2.5, 4.0], [10.0, 11.0]
    assert stats.pooled([_moments(a), _moments(b)]) == _moments(a + b)


def test_trend_is_linregress_and_improving_only_when_significant():
    days = list(range(10))
    rising = [60 + 2 * d + (0.5 if d % 2 else -0.5) for d in days]
    fit = stats.trend(days, rising)
    expected = sp.linregress(days, rising)
    assert fit.slope_per_day == pytest.approx(expected.slope) and fit.p_value == pytest.approx(expected.pvalue)
    assert fit.direction == "improving" and fit.improvement_per_week == pytest.approx(expected.slope * 7)
    assert stats.trend(days, [100 - v for v in rising]).direction == "declining"
    assert stats.trend(days, [100 - v for v in rising], higher_is_better=False).direction == "improving"


def test_trend_without_a_significant_slope_is_stable():
    days = list(range(8))
    noise = [70, 74, 69, 73, 71, 70, 74, 69]
    fit = stats.trend(days, noise)
    assert fit.p_value == pytest.approx(sp.linregress(days, noise).pvalue) and fit.p_value > 0.05
    assert fit.direction == "stable"
    assert stats.trend([0, 1], [1.0, 9.0]).direction == "stable"  # two periods claim nothing
    assert stats.trend([0, 1, 2], [5.0, 5.0, 5.0]).slope_per_day == 0.0


def test_holm_adjusts_step_down_and_stays_monotone():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005, None])
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → raised to 0.06 (monotone)
    assert adjusted == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06), pytest.approx(0.02), None]
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]


def test_mann_whitney_from_value_counts_is_scipys_on_the_values():
    a = np.array([55.0, 60.0, 60.0, 61.5, 70.0, 70.0, 70.0])
    b = np.array([40.0, 55.0, 58.0, 58.0, 59.0])
    va, ca = np.unique(a, return_counts=True)
    vb, cb = np.unique(b, return_counts=True)
    result = stats.mann_whitney_counts(va, ca, vb, cb)
    expected = sp.mannwhitneyu(a, b, alternative="two-sided")
    assert result.statistic == pytest.approx(expected.statistic) and result.p_value == pytest.approx(expected.pvalue)
    assert stats.mann_whitney_counts([1.0], [1], vb, cb).p_value is None  # too few on a side


def test_wilcoxon_paired_is_scipys():
    a, b = [0.8, 0.6, 0.9, 0.7, 0.75, 0.95, 0.5], [0.5, 0.6, 0.4, 0.65, 0.7, 0.6, 0.45]
    result = stats.wilcoxon_paired(a, b)
    expected = sp.wilcoxon(a, b)
    assert result.p_value == pytest.approx(expected.pvalue) and result.n == 7
    assert stats.wilcoxon_paired([1, 2], [1, 2]).p_value == 1.0


def test_welch_from_summaries_is_ttest_ind_on_the_values():
    rng = np.random.default_rng(3)
    a, b = rng.normal(10, 2, 40), rng.normal(11, 4, 25)
    result = stats.welch(stats.from_moments(*_moments(a)), stats.from_moments(*_moments(b)))
    expected = sp.ttest_ind(a, b, equal_var=False)
    assert result.statistic == pytest.approx(expected.statistic) and result.p_value == pytest.approx(expected.pvalue)


def test_welch_on_the_same_distribution_is_not_significant():
    rng = np.random.default_rng(4)
    a, b = rng.normal(10, 2, 30), rng.normal(10, 2, 30)
    result = stats.welch(stats.from_moments(*_moments(a)), stats.from_moments(*_moments(b)))
    assert result.p_value == pytest.approx(sp.ttest_ind(a, b, equal_var=False).pvalue) and result.p_value > 0.05


def test_fisher_is_scipys():
    result = stats.fisher(18, 20, 9, 20)
    assert result.p_value == pytest.approx(sp.fisher_exact([[18, 2], [9, 11]]).pvalue)
    assert stats.fisher(0, 0, 3, 4).p_value is None


def test_pareto_front_keeps_the_undominated():
    points = [(90, 100, 2.0), (80, 200, 1.0), (70, 90, 3.0), (90, 100, 2.0), (None, 300, 0.5)]
    assert stats.pareto_front(points, (True, True, False)) == [True, True, False, True, False]


def test_min_max_scales_best_to_one():
    assert stats.min_max([1.0, 3.0, None], higher_is_better=True) == [0.0, 1.0, None]
    assert stats.min_max([1.0, 3.0], higher_is_better=False) == [1.0, 0.0]
    assert stats.min_max([2.0, 2.0], higher_is_better=True) == [1.0, 1.0]
