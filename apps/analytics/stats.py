"""Statistics of the analytics, pure numpy/scipy over figures the database has already aggregated.

The database sums (count, Σx, Σx²) per group, since SQLite has no standard deviation; the mean and
sample standard deviation follow from those moments exactly. Every interval stays inside what the
quantity can be, by construction (never by clipping):

* bounded figures (the 0–100 quality scale): a Wilson score interval on the effective sample size
  (Korn & Graubard), so the bounds stay inside 0–100 and 0/100 data get exactly Wilson's interval;
* pass rates: Wilson's score interval (scipy.stats.binomtest(…).proportion_ci's figures, tested against it);
* positive figures (latency, throughput, cost): a log-scale interval of the mean, mean ×/÷ exp(half
  width), which can never reach 0.

Below MIN_N values there is not enough data: the bounds are None and `enough_data` is False. Tests
that need every value (Mann-Whitney) get them back from value counts.
"""

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy import stats

from apps.batches.analysis import ALPHA
from apps.experiments.selectors import wilson_interval

__all__ = ["ALPHA", "wilson_interval"]

MIN_N = 3  # fewer values than this are "not enough data": no interval, no trend
CONFIDENCE = 0.95


@dataclass
class Summary:
    """Mean, sample standard deviation and 95% interval of n values (None where undefined); `enough_data`
    is False below MIN_N values, where no interval is given."""

    n: int
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    enough_data: bool = False


def _mean_sd(n: int, total: float | None, total_sq: float | None) -> tuple[float | None, float | None]:
    """The mean and sample standard deviation (numpy's mean and std(ddof=1)) from the moments."""
    if not n:
        return None, None
    mean = float(total) / n
    if n < 2:
        return mean, None
    variance = max((float(total_sq) - n * mean * mean) / (n - 1), 0.0)  # rounding can dip below 0
    sd = math.sqrt(variance)
    if sd < 1e-9 * max(1.0, abs(mean)):  # every value the same (up to rounding of the sums)
        sd = 0.0
    return mean, sd


def wilson_bounds(proportion: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval of a proportion for a (possibly fractional) number of trials n; for whole
    counts the same figures as scipy.stats.binomtest(k, n).proportion_ci(method="wilson")."""
    z = stats.norm.ppf((1 + confidence) / 2)
    p = min(max(proportion, 0.0), 1.0)  # a mean of bounded values, off by a rounding error at most
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(centre - half, 0.0), min(centre + half, 1.0)  # the max/min only absorb the last bit of rounding


def bounded_interval(mean: float, sd: float, n: int, *, low: float = 0.0, high: float = 100.0,
                     confidence: float = CONFIDENCE) -> tuple[float, float]:  # fmt: skip
    """The interval of the mean of n values that lie in [low, high]: Wilson's score interval on the
    effective sample size n_eff = p(1 − p) / Var(p̂), p̂ the mean rescaled to 0–1 and Var(p̂) = σ² / n with
    σ² the variance of the values with ddof = 0 (Korn & Graubard 1998). It stays inside [low, high], is
    Wilson's interval for values all at a bound (0/100 data: n_eff = n) and approaches Student t for many
    values. Bounded values have σ² ≤ p(1 − p), so n_eff ≥ n."""
    width = high - low
    p = min(max((mean - low) / width, 0.0), 1.0)
    variance_of_mean = (sd / width) ** 2 * (n - 1) / n / n
    if 0 < p < 1 and variance_of_mean == 0:
        return mean, mean  # every value the same, inside the range
    n_eff = p * (1 - p) / variance_of_mean if 0 < p < 1 else float(n)
    lo, hi = wilson_bounds(p, n_eff, confidence)
    return low + width * lo, low + width * hi


def positive_interval(mean: float, sd: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The interval of the mean of n positive values on the log scale (delta method): mean ×/÷
    exp(t · sd / (mean · √n)), t of n − 1 degrees of freedom. Never reaches 0; None for a mean ≤ 0."""
    if mean <= 0:
        return None
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * sd / (mean * math.sqrt(n))
    return mean * math.exp(-half), mean * math.exp(half)


def from_moments(n: int, total: float | None, total_sq: float | None, *, low: float = 0.0,
                 high: float = 100.0) -> Summary:  # fmt: skip
    """The summary of n values in [low, high] (the 0–100 quality scale by default) from their sum and sum
    of squares, with the bounded interval."""
    mean, sd = _mean_sd(n, total, total_sq)
    if n < MIN_N:
        return Summary(n, mean, sd, None, None, False)
    ci_low, ci_high = bounded_interval(mean, sd, n, low=low, high=high)
    return Summary(n, mean, sd, ci_low, ci_high, True)


def positive_from_moments(n: int, total: float | None, total_sq: float | None) -> Summary:
    """The summary of n positive values (latency, throughput, cost) with the log-scale interval."""
    mean, sd = _mean_sd(n, total, total_sq)
    if n < MIN_N:
        return Summary(n, mean, sd, None, None, False)
    interval = positive_interval(mean, sd, n)
    return Summary(n, mean, sd, *(interval or (None, None)), interval is not None)


def pass_rate_interval(passed: int, total: int) -> tuple[float, float] | None:
    """Wilson's interval of a pass rate in percent (scipy's binomtest(…).proportion_ci(method="wilson") figures,
    without the p-value binomtest computes first: a millisecond per group); None below MIN_N evaluated."""
    if total < MIN_N:
        return None
    low, high = wilson_bounds(passed / total, total)
    return 100 * low, 100 * high


def pooled(parts: list[tuple[int, float, float]]) -> tuple[int, float, float]:
    """Moments of the union of groups: counts and sums add."""
    return sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts)


# --- trends ---------------------------------------------------------------------------------------

NOT_ENOUGH_DATA = "not enough data"


@dataclass
class Trend:
    """A least-squares line through the period means (x in days)."""

    points: int
    slope_per_day: float | None
    intercept: float | None
    r: float | None
    p_value: float | None
    direction: str  # improving | declining | stable | not enough data
    improvement_per_week: float | None  # slope × 7, in the metric's unit
    note: str = ""
    enough_data: bool = True


def trend(days: list[float], means: list[float], *, higher_is_better: bool = True) -> Trend:
    """scipy.stats.linregress on (day, mean); the direction is "stable" unless p < 0.05, and "not enough
    data" below MIN_N periods (no line is fitted)."""
    if len(days) < MIN_N:
        return Trend(len(days), None, None, None, None, NOT_ENOUGH_DATA, None,
                     f"fewer than {MIN_N} periods: no trend is claimed", enough_data=False)  # fmt: skip
    x, y = np.asarray(days, dtype=float), np.asarray(means, dtype=float)
    if np.ptp(y) == 0:
        return Trend(len(days), 0.0, float(y[0]), None, None, "stable", 0.0, "every period has the same mean")
    fit = stats.linregress(x, y)
    direction = "stable"
    if fit.pvalue < ALPHA:
        better = fit.slope > 0 if higher_is_better else fit.slope < 0
        direction = "improving" if better else "declining"
    return Trend(len(days), float(fit.slope), float(fit.intercept), float(fit.rvalue), float(fit.pvalue),
                 direction, float(fit.slope) * 7)  # fmt: skip


# --- tests ----------------------------------------------------------------------------------------


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, made monotone, capped at 1); None stays None."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    adjusted: list[float | None] = [None] * len(p_values)
    m, running = len(present), 0.0
    for rank, (p, index) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


@dataclass
class TestResult:
    test: str  # wilcoxon | mann_whitney | welch | fisher | none
    statistic: float | None
    p_value: float | None
    n: int  # pairs for a paired test, else both sizes added
    note: str = ""


def _finite_result(name: str, statistic, p_value, n: int, note: str = "") -> TestResult:
    statistic, p_value = float(statistic), float(p_value)
    if math.isnan(p_value):
        return TestResult(name, None, None, n, note or "the test is undefined for these values")
    return TestResult(name, statistic, p_value, n, note)


def mann_whitney_counts(values_a, counts_a, values_b, counts_b) -> TestResult:
    """Two-sided Mann-Whitney U on two samples given as distinct values with their counts."""
    a = np.repeat(np.asarray(values_a, dtype=float), np.asarray(counts_a, dtype=np.int64))
    b = np.repeat(np.asarray(values_b, dtype=float), np.asarray(counts_b, dtype=np.int64))
    if len(a) < 2 or len(b) < 2:
        return TestResult("mann_whitney", None, None, len(a) + len(b), "fewer than 2 values on a side")
    if np.ptp(np.concatenate([a, b])) == 0:
        return TestResult("mann_whitney", None, 1.0, len(a) + len(b), "every value is the same")
    result = stats.mannwhitneyu(a, b, alternative="two-sided")
    return _finite_result("mann_whitney", result.statistic, result.pvalue, len(a) + len(b))


def wilcoxon_paired(a, b) -> TestResult:
    """Two-sided Wilcoxon signed-rank test on paired values (zero differences dropped, scipy's default)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2:
        return TestResult("wilcoxon", None, None, len(a), "fewer than 2 pairs")
    if np.all(a == b):
        return TestResult("wilcoxon", None, 1.0, len(a), "every pair is the same")
    with np.errstate(all="ignore"):
        result = stats.wilcoxon(a, b)
    return _finite_result("wilcoxon", result.statistic, result.pvalue, len(a))


def _wilcoxon_method(differences: np.ndarray) -> str | None:
    """The method scipy.stats.wilcoxon(method="auto") picks for these differences: "exact" without ties or
    zeros up to 50 pairs, "asymptotic" above 50 or with ties or zeros above 13; None for the rest (a
    permutation test, left to the single call)."""
    n = len(differences)
    if n > 50:
        return "asymptotic"
    magnitudes = np.abs(differences[differences != 0])
    if len(magnitudes) == n and len(np.unique(magnitudes)) == n:
        return "exact"
    return "asymptotic" if n > 13 else None


def wilcoxon_paired_many(pairs: list[tuple]) -> list[TestResult]:
    """wilcoxon_paired on many (a, b) pairs at once, with the same results: pairs of equal length for which
    scipy would choose the same method go to one vectorised scipy.stats.wilcoxon call with that method
    (the per-call overhead, ~1.5 ms, is most of the time of a comparison of twelve targets)."""
    results: list[TestResult | None] = [None] * len(pairs)
    batches: dict = defaultdict(list)
    for index, (a, b) in enumerate(pairs):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        method = _wilcoxon_method(a - b) if len(a) >= 2 and not np.all(a == b) else None
        if method is None:
            results[index] = wilcoxon_paired(a, b)
        else:
            batches[(len(a), method)].append((index, a - b))
    for (n, method), members in batches.items():
        with np.errstate(all="ignore"):
            found = stats.wilcoxon(np.array([d for _, d in members]), method=method, axis=1)
        for (index, _), statistic, p_value in zip(members, np.atleast_1d(found.statistic),
                                                  np.atleast_1d(found.pvalue), strict=True):  # fmt: skip
            results[index] = _finite_result("wilcoxon", statistic, p_value, n)
    return results


def welch(first: Summary, second: Summary) -> TestResult:
    """Welch's t test from two summaries (scipy.stats.ttest_ind_from_stats, unequal variances)."""
    n = first.n + second.n
    if first.n < 2 or second.n < 2 or first.sd is None or second.sd is None:
        return TestResult("welch", None, None, n, "fewer than 2 values on a side")
    if first.sd == 0 and second.sd == 0:
        return TestResult("welch", None, None if first.mean == second.mean else 0.0, n, "no variation on either side")
    with np.errstate(all="ignore"):
        result = stats.ttest_ind_from_stats(first.mean, first.sd, first.n, second.mean, second.sd, second.n,
                                            equal_var=False)  # fmt: skip
    return _finite_result("welch", result.statistic, result.pvalue, n)


def fisher(passed_a: int, total_a: int, passed_b: int, total_b: int) -> TestResult:
    """Two-sided Fisher exact test of two pass rates."""
    if not total_a or not total_b:
        return TestResult("fisher", None, None, total_a + total_b, "no evaluated responses on a side")
    table = [[passed_a, total_a - passed_a], [passed_b, total_b - passed_b]]
    result = stats.fisher_exact(table)
    return _finite_result("fisher", result.statistic if np.isfinite(result.statistic) else np.inf, result.pvalue,
                          total_a + total_b)  # fmt: skip


# --- leaderboard ----------------------------------------------------------------------------------


def pareto_front(points: list[tuple[float | None, ...]], maximize: tuple[bool, ...]) -> list[bool]:
    """Which points no other point dominates (at least as good on every axis, better on one).
    A point missing an axis is never on the front."""
    signed = []
    for point in points:
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in point):
            signed.append(None)
        else:
            signed.append(tuple(v if up else -v for v, up in zip(point, maximize, strict=True)))
    front = []
    for i, a in enumerate(signed):
        if a is None:
            front.append(False)
            continue
        dominated = any(
            b is not None and j != i and all(y >= x for x, y in zip(a, b, strict=True)) and any(y > x for x, y in zip(a, b, strict=True))
            for j, b in enumerate(signed)
        )  # fmt: skip
        front.append(not dominated)
    return front


def min_max(values: list[float | None], *, higher_is_better: bool) -> list[float | None]:
    """Each value scaled to 0–1 over the values present (1 = best); all equal → 1."""
    present = [v for v in values if v is not None]
    if not present:
        return [None] * len(values)
    low, high = min(present), max(present)
    out = []
    for v in values:
        if v is None:
            out.append(None)
        elif high == low:
            out.append(1.0)
        else:
            scaled = (v - low) / (high - low)
            out.append(scaled if higher_is_better else 1.0 - scaled)
    return out
