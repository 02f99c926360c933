"""Accuracy, Wilson interval, lm-eval's standard error, per-subject figures and stratified subsets."""

import math
from collections import Counter

import numpy as np
import pytest
from scipy.stats import binomtest

from apps.benchmarks.engine import stats


@pytest.mark.parametrize(("correct", "n"), [(0, 1), (1, 1), (0, 10), (10, 10), (7, 10), (80, 100), (6100, 12032)])
@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99])
def test_wilson_interval_matches_scipy(correct, n, confidence):
    """The interval is scipy's Wilson interval (binomtest(...).proportion_ci(method="wilson")), inside [0, 1]."""
    result = stats.accuracy(correct, n, confidence=confidence)
    expected = binomtest(correct, n).proportion_ci(confidence_level=confidence, method="wilson")
    assert result.ci_low == pytest.approx(expected.low, abs=1e-12)
    assert result.ci_high == pytest.approx(expected.high, abs=1e-12)
    assert 0.0 <= result.ci_low <= result.accuracy <= result.ci_high <= 1.0


def test_interval_touches_the_bounds_exactly_at_0_and_100_percent():
    """0 of n has a lower bound of exactly 0 and n of n an upper bound of exactly 1, never past them."""
    assert stats.accuracy(0, 7).ci_low == 0.0
    assert stats.accuracy(7, 7).ci_high == 1.0
    assert stats.accuracy(7, 7).ci_low < 1.0


@pytest.mark.parametrize(("correct", "n"), [(0, 2), (1, 2), (7, 10), (803, 1319), (12000, 12000)])
def test_stderr_is_lm_eval_sample_stdev_over_root_n(correct, n):
    """stderr = numpy std (ddof=1) of the 0/1 outcomes / √n, as lm-eval's mean_stderr."""
    outcomes = np.array([1.0] * correct + [0.0] * (n - correct))
    assert stats.accuracy(correct, n).stderr == pytest.approx(outcomes.std(ddof=1) / math.sqrt(n), abs=1e-15)


def test_nothing_scored_has_no_figures():
    """n = 0: accuracy, interval and stderr are None; one item has no stderr."""
    empty = stats.accuracy(0, 0)
    assert (empty.accuracy, empty.ci_low, empty.ci_high, empty.stderr, empty.no_answer_rate) == (None,) * 5
    one = stats.accuracy(1, 1)
    assert one.accuracy == 1.0 and one.stderr is None


def test_accuracy_counts_and_no_answer_rate():
    """Counts are kept; the no-answer rate is over scored items."""
    result = stats.accuracy(60, 80, 8)
    assert (result.n, result.correct, result.no_answer, result.accuracy) == (80, 60, 8, 0.75)
    assert result.no_answer_rate == 0.1


@pytest.mark.parametrize(("correct", "n", "no_answer"), [(5, 4, 0), (-1, 4, 0), (2, 4, 3), (0, -1, 0)])
def test_impossible_counts_are_refused(correct, n, no_answer):
    """More correct than scored, negative counts, or more no-answers than wrong answers raise ValueError."""
    with pytest.raises(ValueError):
        stats.accuracy(correct, n, no_answer)


def test_accuracy_by_subject():
    """One figure per subject, in name order, counting correct and no-answer items."""
    subjects = ["math", "law", "math", "math", "law"]
    correct = [True, False, False, True, True]
    no_answer = [False, True, True, False, False]
    result = dict(stats.accuracy_by_subject(subjects, correct, no_answer))
    assert list(result) == ["law", "math"]
    assert (result["math"].n, result["math"].correct, result["math"].no_answer) == (3, 2, 1)
    assert (result["law"].n, result["law"].correct, result["law"].no_answer) == (2, 1, 1)
    with pytest.raises(ValueError):
        stats.accuracy_by_subject(["a"], [True, False], [False])


SUBJECTS = ["law"] * 50 + ["math"] * 30 + ["art"] * 15 + ["rare"] * 5


def test_subset_is_proportional_by_largest_remainder():
    """20 of (50, 30, 15, 5): one each first, then 16 by largest remainder over (49, 29, 14, 4)."""
    assert stats.subset_allocation({"law": 50, "math": 30, "art": 15, "rare": 5}, 20) == {
        "law": 1 + 8, "math": 1 + 5, "art": 1 + 2, "rare": 1 + 1,
    }  # fmt: skip
    indices = stats.stratified_subset(SUBJECTS, 20, seed=3)
    assert Counter(SUBJECTS[i] for i in indices) == {"law": 9, "math": 6, "art": 3, "rare": 2}


def test_subset_is_sorted_seeded_and_deterministic():
    """Same seed → same sorted indices; another seed → another draw of the same size."""
    first = stats.stratified_subset(SUBJECTS, 25, seed=7)
    assert first == stats.stratified_subset(SUBJECTS, 25, seed=7)
    assert first == sorted(set(first)) and len(first) == 25
    assert stats.stratified_subset(SUBJECTS, 25, seed=8) != first
    assert all(0 <= i < len(SUBJECTS) for i in first)


def test_subset_keeps_every_subject_while_size_allows():
    """With as many places as subjects, each subject has one; with fewer, the largest subjects go first."""
    assert Counter(SUBJECTS[i] for i in stats.stratified_subset(SUBJECTS, 4, seed=0)) == {
        "law": 1, "math": 1, "art": 1, "rare": 1,
    }  # fmt: skip
    assert {SUBJECTS[i] for i in stats.stratified_subset(SUBJECTS, 2, seed=0)} == {"law", "math"}


def test_subset_never_asks_more_than_a_subject_has():
    """A subject with a single item gives at most that item, whatever the size."""
    subjects = ["big"] * 98 + ["one"] + ["two"] * 1
    for size in range(1, 100):
        indices = stats.stratified_subset(subjects, size, seed=size)
        assert len(indices) == size and len(set(indices)) == size


def test_subset_of_at_least_all_items_is_all_items():
    """size ≥ n gives every index in order; size 0 gives none."""
    assert stats.stratified_subset(SUBJECTS, 100, seed=1) == list(range(100))
    assert stats.stratified_subset(SUBJECTS, 500, seed=1) == list(range(100))
    assert stats.stratified_subset(SUBJECTS, 0, seed=1) == []
    assert stats.stratified_subset([], 5, seed=1) == []
