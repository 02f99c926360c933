"""The analytics statistics against numpy and scipy computed from the raw values."""

import numpy as np
import pytest
from scipy import stats as sp

from apps.analytics import stats


def _moments(values):
    values = np.asarray(values, dtype=float)
    return len(values), float(values.sum()), float((values**2).sum())


def test_moments_give_numpys_mean_and_sd():
    """The mean and sample standard deviation from count, sum and sum of squares are numpy's."""
    values = np.random.default_rng(1).normal(70, 9, 57).round(2)
    summary = stats.from_moments(*_moments(values))
    assert summary.n == 57 and summary.enough_data
    assert summary.mean == pytest.approx(values.mean())
    assert summary.sd == pytest.approx(values.std(ddof=1))


def test_bounded_interval_of_values_at_the_bounds_is_scipys_wilson():
    """Scores that are all 0 or 100 get exactly Wilson's interval (scipy.stats.binomtest) × 100."""
    for passed, total in ((7, 10), (0, 5), (5, 5), (1, 3), (123, 400)):
        values = [100.0] * passed + [0.0] * (total - passed)
        summary = stats.from_moments(*_moments(values))
        ci = sp.binomtest(passed, total).proportion_ci(method="wilson")
        assert (summary.ci_low, summary.ci_high) == (pytest.approx(100 * ci.low), pytest.approx(100 * ci.high))


def test_bounded_interval_agrees_with_scipys_bootstrap_on_many_values():
    """On 400 values well inside the range the interval matches scipy.stats.bootstrap (and Student t)."""
    values = np.random.default_rng(5).normal(70, 9, 400).clip(0, 100).round(2)
    summary = stats.from_moments(*_moments(values))
    boot = sp.bootstrap((values,), np.mean, confidence_level=0.95, random_state=np.random.default_rng(6))
    width = boot.confidence_interval.high - boot.confidence_interval.low
    assert summary.ci_low == pytest.approx(boot.confidence_interval.low, abs=0.1 * width)
    assert summary.ci_high == pytest.approx(boot.confidence_interval.high, abs=0.1 * width)
    low, high = sp.t.interval(0.95, 399, loc=values.mean(), scale=sp.sem(values))
    assert (summary.ci_low, summary.ci_high) == (
        pytest.approx(low, abs=0.02 * width),
        pytest.approx(high, abs=0.02 * width),
    )


ADVERSARIAL = {
    "two values": [0.0, 100.0],
    "three values at the edges": [0.0, 0.0, 100.0],
    "all equal inside": [73.1] * 40,
    "all at the top": [100.0] * 3,
    "all at the bottom": [0.0] * 4,
    "one outlier near the top": [99.0] * 20 + [0.0],
    "one outlier near the bottom": [1.0] * 20 + [100.0],
    "a mean of 0.5 (the issue's 0.500, -0.075 to 1.075)": [0.0, 100.0, 50.0, 50.0],
}


@pytest.mark.parametrize("values", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_no_bounded_interval_leaves_0_to_100(values):
    """On adversarial data (n = 2, all equal, one outlier) the interval of a 0-100 figure stays in 0-100."""
    summary = stats.from_moments(*_moments(values))
    if len(values) < stats.MIN_N:
        assert (summary.ci_low, summary.ci_high, summary.enough_data) == (None, None, False)
        return
    assert 0.0 <= summary.ci_low <= summary.mean <= summary.ci_high <= 100.0


@pytest.mark.parametrize("values", [[0.5, 4335.0, 80.0], [12.0] * 5, [3.0, 3.1, 900.0, 2.9], [1e-3, 5e-3, 2e-3]],
                         ids=["skewed", "all equal", "one outlier", "tiny costs"])  # fmt: skip
def test_no_positive_interval_reaches_zero(values):
    """Latency, throughput and cost intervals (log scale) stay above 0 and contain the mean."""
    summary = stats.positive_from_moments(*_moments(values))
    assert 0.0 < summary.ci_low <= summary.mean <= summary.ci_high


def test_positive_interval_is_the_t_interval_of_the_log_of_the_mean():
    """The log-scale interval is mean ×/÷ exp(t · sd / (mean · √n)), with scipy's t quantile."""
    values = np.random.default_rng(8).gamma(4, 80, 30)
    summary = stats.positive_from_moments(*_moments(values))
    half = sp.t.ppf(0.975, 29) * values.std(ddof=1) / (values.mean() * np.sqrt(30))
    assert summary.ci_low == pytest.approx(values.mean() * np.exp(-half))
    assert summary.ci_high == pytest.approx(values.mean() * np.exp(half))


def test_fewer_than_three_values_are_not_enough_data():
    """One or two values give a mean but no interval, and say so."""
    assert stats.from_moments(1, 5.0, 25.0) == stats.Summary(1, 5.0, None, None, None, False)
    assert stats.from_moments(*_moments([40.0, 60.0])).ci_low is None
    assert stats.positive_from_moments(*_moments([40.0, 60.0])).enough_data is False
    assert stats.pass_rate_interval(2, 2) is None and stats.pass_rate_interval(3, 3) is not None
    assert stats.from_moments(0, None, None).mean is None


def test_equal_values_inside_the_range_have_no_spread():
    """Forty equal values: the interval is the value itself (no rounding noise), inside the range."""
    same = stats.from_moments(*_moments([73.1] * 40))
    assert same.sd == 0.0 and same.ci_low == same.ci_high == pytest.approx(73.1)


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
    assert stats.trend([0, 1, 2], [5.0, 5.0, 5.0]).slope_per_day == 0.0


def test_a_trend_over_fewer_than_three_periods_is_not_enough_data():
    """One or two periods are "not enough data", never "stable"."""
    for days, means in (([0], [70.0]), ([0, 1], [1.0, 9.0]), ([0, 1], [5.0, 5.0])):
        fit = stats.trend(days, means)
        assert fit.direction == "not enough data" and fit.enough_data is False and fit.slope_per_day is None


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


def test_pass_rate_interval_is_scipys_wilson():
    """The pass-rate interval (in percent) is scipy.stats.binomtest(…).proportion_ci(method="wilson")."""
    for passed, total in ((0, 3), (3, 3), (7, 10), (123, 400), (9_999, 10_000)):
        ci = sp.binomtest(passed, total).proportion_ci(method="wilson")
        assert stats.pass_rate_interval(passed, total) == (pytest.approx(100 * ci.low), pytest.approx(100 * ci.high))


def test_many_wilcoxon_tests_at_once_are_scipys_one_by_one():
    """Batched Wilcoxon tests give scipy.stats.wilcoxon's result for every pair: exact, with ties and zeros
    (asymptotic), small with ties (permutation), long (asymptotic), all equal and too short."""
    rng = np.random.default_rng(12)
    pairs = [(rng.normal(50, 10, 40), rng.normal(55, 10, 40)) for _ in range(5)]  # exact
    pairs += [(rng.choice([0.0, 50.0, 100.0], 40), rng.choice([0.0, 50.0, 100.0], 40)) for _ in range(4)]  # ties
    pairs += [(rng.choice([0.0, 1.0], 8), rng.choice([0.0, 1.0, 2.0], 8))]  # n ≤ 13 with ties
    pairs += [(rng.normal(0, 1, 60), rng.normal(0.3, 1, 60)), (rng.normal(0, 1, 7), rng.normal(1, 1, 7))]
    pairs += [([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]), ([1.0], [2.0])]
    batched = stats.wilcoxon_paired_many(pairs)
    assert batched == [stats.wilcoxon_paired(a, b) for a, b in pairs]
    for (a, b), result in zip(pairs[:-2], batched[:-2], strict=True):
        expected = sp.wilcoxon(a, b)
        assert result.p_value == pytest.approx(expected.pvalue) and result.statistic == pytest.approx(
            expected.statistic
        )
