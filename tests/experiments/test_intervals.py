"""Experiment intervals stay inside what a figure can be: the mean score's bootstrap interval is scipy's,
never leaves 0–1 on adversarial data, and fewer than three values give no interval, in words."""

import numpy as np
import pytest
from scipy import stats

from apps.experiments.selectors import (
    BCA_MAX_N,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    SCORE_BOUNDS,
    experiment_summary,
    interval_note,
    mean_interval,
)

ADVERSARIAL = [
    [0.0, 1.0, 0.0, 1.0],  # the case: a t interval gave −0.42–1.42
    [1.0, 1.0, 1.0],  # all equal on a bound
    [0.0, 0.0, 0.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],  # all equal in between
    [1.0] * 9 + [0.0],  # one outlier
    [0.0] * 9 + [1.0],
    [0.0] * 49 + [1.0],
    [0.98, 0.99, 1.0, 0.0],
    [0.0, 1.0, 1.0],
    [0.25, 0.5, 0.75, 1.0, 0.0, 0.3],
]


def scipy_bootstrap(values, method):
    result = stats.bootstrap(
        (np.asarray(values, dtype=float),), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, method=method,
        confidence_level=0.95, rng=np.random.default_rng(BOOTSTRAP_SEED),
    )  # fmt: skip
    return result.confidence_interval.low, result.confidence_interval.high


def test_the_mean_interval_is_scipys_bca_bootstrap():
    """The mean score's interval is scipy.stats.bootstrap (BCa, fixed seed) on the scores."""
    scores = [0.2, 0.9, 0.4, 0.7, 1.0, 0.0, 0.6, 0.8]
    assert mean_interval(scores, bounds=SCORE_BOUNDS) == pytest.approx(scipy_bootstrap(scores, "BCa"))
    assert mean_interval(scores) == mean_interval(scores)  # reproducible


def test_many_scores_use_the_percentile_bootstrap():
    """Above BCA_MAX_N values the percentile bootstrap of scipy is used (BCa's jackknife costs n²)."""
    scores = list(np.random.default_rng(3).random(BCA_MAX_N + 1))
    assert mean_interval(scores) == pytest.approx(scipy_bootstrap(scores, "percentile"))


@pytest.mark.parametrize("scores", ADVERSARIAL)
def test_no_interval_leaves_zero_to_one_on_adversarial_scores(scores):
    """On every adversarial sample the interval has width and both bounds lie in [0, 1], or there is none."""
    ci = mean_interval(scores, bounds=SCORE_BOUNDS)
    if ci is not None:
        low, high = ci
        assert 0.0 <= low < high <= 1.0
        assert low <= float(np.mean(scores)) <= high


def test_all_scores_on_a_bound_get_the_wilson_interval_of_n_out_of_n():
    """All 1 (or all 0): BCa cannot be computed; the interval is Wilson's for 5 of 5 (0 of 5)."""
    wilson = stats.binomtest(5, 5).proportion_ci(method="wilson")
    assert mean_interval([1.0] * 5, bounds=SCORE_BOUNDS) == pytest.approx((wilson.low, wilson.high))
    assert mean_interval([0.0] * 5, bounds=SCORE_BOUNDS) == pytest.approx((1 - wilson.high, 1 - wilson.low))


@pytest.mark.parametrize("scores", [[], [0.5], [0.0, 1.0], [0.5, 0.5]])
def test_fewer_than_three_scores_give_no_interval(scores):
    """n < 3 is not enough data: no interval at all, never a zero-width one."""
    assert mean_interval(scores, bounds=SCORE_BOUNDS) is None


def test_the_reason_for_no_interval_is_in_words():
    """The page says why a mean has no interval."""
    assert interval_note([0.5, 0.5]) == "not enough data (n = 2)"
    assert interval_note([0.5, 0.5, 0.5]) == "no interval: all 3 equal"
    assert interval_note([0.1, 0.5, 0.9]) == ""


def test_positive_figures_keep_positive_intervals():
    """A latency-like sample with one huge outlier keeps both bounds above zero (a t interval went negative)."""
    latencies = [40.0, 42.0, 41.0, 4000.0]
    t_low, _ = stats.t.interval(0.95, 3, loc=np.mean(latencies), scale=stats.sem(latencies))
    assert t_low < 0
    low, high = mean_interval(latencies)
    assert 40.0 <= low < high <= 4000.0


@pytest.mark.django_db
def test_a_target_with_two_evaluated_responses_has_no_intervals(team):
    """Two evaluated responses: pass rate and mean score are shown with "not enough data", no bounds."""
    from apps.experiments.models import Response
    from apps.experiments.services import experiment_create
    from apps.providers.models import ProviderEndpoint

    endpoint = ProviderEndpoint.objects.create(team=team, name="sim", kind="sim")
    experiment = experiment_create(team=team, user=None, name="e", targets=[(endpoint, "sim-small")], prompt="p")
    target = experiment.targets.get()
    for repetition, passed in enumerate((True, False)):
        Response.objects.create(experiment=experiment, target=target, item_key="prompt", repetition=repetition,
                                passed=passed, score=float(passed))  # fmt: skip
    (summary,) = experiment_summary(experiment)
    assert summary.pass_rate == 0.5 and summary.pass_rate_ci is None and summary.mean_score_ci is None
    assert summary.pass_rate_ci_note.startswith("not enough data") and summary.mean_score_ci_note.startswith("not")
