"""The analysis of a sweep against scipy and numpy on a fixed dataset: means and intervals per
value, ANOVA and Kruskal-Wallis, correlations, the optimization (confidence, effect, recommended
range, best combination, weighted objectives) and insights, "not significant" answers included."""

import numpy as np
import pytest
from scipy import stats

from apps.batches import analysis as A

TEMPERATURES = [0.2, 0.6, 1.0, 1.4]
TOP_P = [0.5, 1.0]
REPS = 12


@pytest.fixture(scope="module")
def data():
    """Quality falls above temperature 0.6; top_p does nothing; latency grows with max tokens used."""
    rng = np.random.default_rng(7)
    temperature, top_p, quality, latency, passed = [], [], [], [], []
    for t in TEMPERATURES:
        for p in TOP_P:
            for _ in range(REPS):
                temperature.append(t)
                top_p.append(p)
                quality.append(80 - (25 * (t - 0.6) if t > 0.6 else 0) + rng.normal(0, 4))
                latency.append(400 + 100 * t + rng.normal(0, 30))
                passed.append(100.0 if rng.random() < (0.9 if t <= 0.6 else 0.5) else 0.0)
    parameters = {"temperature": np.array(temperature), "top_p": np.array(top_p)}
    metrics = {"overall": np.array(quality), "latency_ms": np.array(latency), "pass_rate": np.array(passed),
               "cost_usd": np.full(len(quality), 0.001)}  # fmt: skip
    return parameters, metrics


def korn_graubard(values, low=0.0, high=100.0):
    """Wilson's interval on the degrees-of-freedom-adjusted effective sample size, written out independently."""
    p = (values.mean() - low) / (high - low)
    z = stats.norm.ppf(0.975)
    n_eff = p * (1 - p) / ((values.std(ddof=1) / (high - low)) ** 2 / len(values))
    n_eff *= (z / stats.t.ppf(0.975, len(values) - 1)) ** 2
    centre = (p + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z / (1 + z * z / n_eff) * np.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff**2))
    return low + (high - low) * (centre - half), low + (high - low) * (centre + half)


def groups(parameters, metrics, name, metric):
    x, y = parameters[name], metrics[metric]
    return [y[x == v] for v in np.unique(x)]


def test_effects_match_scipy(data):
    parameters, metrics = data
    found = {(e.parameter, e.metric): e for e in A.effects(parameters, metrics)}
    temperature = found[("temperature", "overall")]
    expected = groups(parameters, metrics, "temperature", "overall")
    assert [v.value for v in temperature.values] == TEMPERATURES
    for figures, values in zip(temperature.values, expected, strict=True):
        low, high = korn_graubard(values)
        assert figures.n == len(values) and figures.mean == pytest.approx(values.mean())
        assert (figures.ci_low, figures.ci_high) == (pytest.approx(low), pytest.approx(high))
        # Close to Student t away from the bounds (12 values per group here).
        t_low, t_high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
        assert figures.ci_low == pytest.approx(t_low, abs=0.5) and figures.ci_high == pytest.approx(t_high, abs=0.5)
    assert temperature.anova_f == pytest.approx(stats.f_oneway(*expected).statistic)
    assert temperature.anova_p == pytest.approx(stats.f_oneway(*expected).pvalue)
    assert temperature.kruskal_h == pytest.approx(stats.kruskal(*expected).statistic)
    assert temperature.kruskal_p == pytest.approx(stats.kruskal(*expected).pvalue)
    assert temperature.significant and temperature.kruskal_p < 0.001


def test_a_parameter_without_effect_is_not_significant(data):
    parameters, metrics = data
    top_p = next(e for e in A.effects(parameters, metrics) if (e.parameter, e.metric) == ("top_p", "overall"))
    expected = stats.kruskal(*groups(parameters, metrics, "top_p", "overall"))
    assert expected.pvalue > 0.05
    assert top_p.kruskal_p == pytest.approx(expected.pvalue) and not top_p.significant


def test_pass_rates_get_wilson_intervals(data):
    parameters, metrics = data
    rates = next(e for e in A.effects(parameters, metrics) if (e.parameter, e.metric) == ("temperature", "pass_rate"))
    for figures, values in zip(rates.values, groups(parameters, metrics, "temperature", "pass_rate"), strict=True):
        ci = stats.binomtest(int((values == 100).sum()), len(values)).proportion_ci(0.95, method="wilson")
        assert figures.mean == pytest.approx(values.mean())
        assert (figures.ci_low, figures.ci_high) == (pytest.approx(100 * ci.low), pytest.approx(100 * ci.high))


def test_a_figure_that_never_varies_is_described_not_tested(data):
    parameters, metrics = data
    cost = next(e for e in A.effects(parameters, metrics) if (e.parameter, e.metric) == ("temperature", "cost_usd"))
    assert cost.kruskal_p is None and cost.anova_p is None and not cost.significant
    assert cost.note == "every result has the same value"


def test_correlations_match_scipy(data):
    parameters, metrics = data
    found = {(c.parameter, c.metric): c for c in A.correlations(parameters, metrics)}
    x, y = parameters["temperature"], metrics["latency_ms"]
    pearson, spearman = stats.pearsonr(x, y), stats.spearmanr(x, y)
    c = found[("temperature", "latency_ms")]
    assert (c.pearson_r, c.pearson_p) == (pytest.approx(pearson.statistic), pytest.approx(pearson.pvalue))
    assert (c.spearman_rho, c.spearman_p) == (pytest.approx(spearman.statistic), pytest.approx(spearman.pvalue))
    assert c.significant and c.strength == "strong" and c.n == len(x)
    assert ("temperature", "cost_usd") not in found  # a constant figure has no correlation
    null = found[("top_p", "overall")]
    assert null.spearman_p == pytest.approx(stats.spearmanr(parameters["top_p"], metrics["overall"]).pvalue)
    assert not null.significant


def test_optimization_of_a_quality_figure(data):
    parameters, metrics = data
    result = A.optimize(parameters, metrics, A.Objective("overall"))
    by_name = {o.parameter: o for o in result.optimal}
    y = metrics["overall"]
    assert result.batch_mean == pytest.approx(y.mean()) and result.n == len(y) and result.maximize
    temperature = by_name["temperature"]
    means = {v: y[parameters["temperature"] == v].mean() for v in TEMPERATURES}
    best = max(means, key=means.get)
    runner_up = sorted(means, key=means.get)[-2]
    assert temperature.value == best and temperature.runner_up == runner_up
    best_values = y[parameters["temperature"] == best]
    welch = stats.ttest_ind(best_values, y[parameters["temperature"] == runner_up], equal_var=False,
                            alternative="greater")  # fmt: skip
    assert temperature.confidence == pytest.approx(1 - welch.pvalue)
    assert temperature.effect_points == pytest.approx(means[best] - y.mean())
    assert temperature.effect_pct == pytest.approx((means[best] - y.mean()) / y.mean() * 100)
    low, _ = korn_graubard(best_values)
    assert temperature.ci_low == pytest.approx(low)
    within = [v for v in TEMPERATURES if means[v] >= low]
    assert temperature.recommended_range == (min(within), max(within)) and temperature.tested_range == (0.2, 1.4)
    assert 1.4 not in within  # the hot end is outside the recommended range
    # The best combination is the cell with the best mean.
    cells = {(t, p): y[(parameters["temperature"] == t) & (parameters["top_p"] == p)].mean() for t in TEMPERATURES
             for p in TOP_P}  # fmt: skip
    top = max(cells, key=cells.get)
    assert result.best_combination.parameters == {"temperature": top[0], "top_p": top[1]}
    assert result.best_combination.mean == pytest.approx(cells[top]) and result.best_combination.n == REPS


def test_latency_is_minimized(data):
    parameters, metrics = data
    result = A.optimize(parameters, metrics, A.Objective("latency_ms"))
    temperature = next(o for o in result.optimal if o.parameter == "temperature")
    assert not result.maximize and temperature.value == 0.2 and temperature.effect_points < 0
    y, x = metrics["latency_ms"], parameters["temperature"]
    welch = stats.ttest_ind(y[x == 0.2], y[x == 0.6], equal_var=False, alternative="less")
    assert temperature.confidence == pytest.approx(1 - welch.pvalue)


def test_a_weighted_objective_scales_and_inverts(data):
    parameters, metrics = data
    objective = A.Objective(weights=(("quality", 0.75), ("latency", 0.25), ("cost", 1.0)), quality_metric="overall")
    values, notes = A.objective_values(metrics, objective)
    q, lat = metrics["overall"], metrics["latency_ms"]
    expected = 100 * (0.75 * (q - q.min()) / np.ptp(q) + 0.25 * (1 - (lat - lat.min()) / np.ptp(lat))) / 1.0
    assert values == pytest.approx(expected) and notes == ["cost left out: it does not vary"]
    result = A.optimize(parameters, metrics, objective)
    assert (
        result.objective == "weighted"
        and result.unit == "points"
        and result.batch_mean == pytest.approx(expected.mean())
    )


def test_insights_cite_their_tests(data):
    parameters, metrics = data
    found = A.insights(parameters, metrics, objective=A.Objective("overall"))
    threshold = next(i for i in found if i.kind == "threshold" and i.metric == "overall")
    x, y = parameters["temperature"], metrics["overall"]
    cut = threshold.numbers["threshold"]
    p = stats.mannwhitneyu(y[x <= cut], y[x > cut], alternative="two-sided").pvalue
    assert threshold.parameter == "temperature" and threshold.numbers["p_adjusted"] == pytest.approx(min(1, 3 * p))
    drop = y[x <= cut].mean() - y[x > cut].mean()
    assert f"temperature above {cut:g} lowers overall quality by {drop:.1f} points" in threshold.text
    assert "p < 0.001" in threshold.text
    no_effect = next(i for i in found if i.kind == "no_effect")
    kruskal = stats.kruskal(*groups(parameters, metrics, "top_p", "overall"))
    assert no_effect.parameter == "top_p" and f"Kruskal-Wallis p = {kruskal.pvalue:.3f}" in no_effect.text
    assert not any(i.kind == "threshold" and i.parameter == "top_p" and i.metric == "overall" for i in found)
    best = next(i for i in found if i.kind == "best")
    assert "The highest mean overall quality" in best.text


def test_nothing_to_say_without_results():
    empty = {"temperature": np.array([])}
    result = A.optimize(empty, {"overall": np.array([])}, A.Objective("overall"))
    assert result.n == 0 and result.best_combination is None and result.notes
    assert A.insights(empty, {"overall": np.array([])}, objective=A.Objective("overall")) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_tests_match_scipys_mann_whitney_on_every_cut(seed):
    """The one-ranking shortcut gives scipy's p for each cut, large groups and small ones, ties or not."""
    rng = np.random.default_rng(seed)
    x = rng.choice([0.1, 0.2, 0.4, 0.5, 0.9, 1.3], 120)
    x[:3] = 2.0  # a group of 3 above the last cut: scipy's own test
    y = np.round(rng.normal(50 + 10 * x, 8), 0 if seed == 1 else 3)  # seed 1: many ties
    cuts = np.unique(x)[:-1]
    for threshold, (n1, n2, below, above, p) in zip(cuts, A._split_tests(x, y, cuts), strict=True):
        low, high = y[x <= threshold], y[x > threshold]
        assert (n1, n2) == (len(low), len(high))
        assert below == pytest.approx(low.mean()) and above == pytest.approx(high.mean())
        assert p == pytest.approx(stats.mannwhitneyu(low, high, alternative="two-sided").pvalue, rel=1e-9)


def test_many_values_try_at_most_max_cuts():
    levels = np.arange(100) / 10
    cuts = A._cuts(levels)
    assert len(cuts) == A.MAX_CUTS and cuts[0] == levels[0] and cuts[-1] == levels[-2]
    assert list(A._cuts(np.array([1.0, 2.0, 3.0]))) == [1.0, 2.0]


# --- intervals: inside what is possible, never zero-width, "not enough data" below 3 --------------------


@pytest.mark.parametrize(("k", "n"), [(0, 3), (1, 3), (3, 3), (0, 10), (7, 10), (10, 10), (1, 250), (249, 250)])
def test_wilson_bounds_are_scipys(k, n):
    """The Wilson formula, for whole counts, gives scipy.stats.binomtest's Wilson interval."""
    low, high = A.wilson_bounds(k / n, n)
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert (float(low), float(high)) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_a_bounded_mean_of_values_at_the_bounds_gets_wilsons_interval():
    """0/100 scores are pass/fail: their interval is scipy's Wilson interval of the passes."""
    values = np.array([100.0] * 7 + [0.0] * 3)
    ci = A.mean_interval("score", values)
    expected = stats.binomtest(7, 10).proportion_ci(0.95, method="wilson")
    assert (ci.low, ci.high) == (pytest.approx(100 * expected.low), pytest.approx(100 * expected.high))


def test_a_positive_mean_has_a_log_scale_interval():
    """Latency: exp of scipy's t interval of log(mean) with the delta-method standard error s/(mean·√n)."""
    values = np.array([120.0, 135.0, 150.0, 900.0, 140.0])
    ci = A.mean_interval("latency_ms", values)
    mean = values.mean()
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.log(mean), scale=stats.sem(values) / mean)
    assert (ci.low, ci.high) == (pytest.approx(np.exp(low)), pytest.approx(np.exp(high)))
    t_low, _ = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    assert t_low < 0 < ci.low  # Student t would have said a negative latency was possible


@pytest.mark.parametrize("metric", ["overall", "score", "pass_rate", "latency_ms", "cost_usd"])
@pytest.mark.parametrize("values", [[81.2], [81.2, 81.25], [0.0, 100.0]])
def test_fewer_than_three_values_are_not_enough_data(metric, values):
    """n = 1 or 2: no interval at all (the page said "CI 81.2–81.2, n=2")."""
    ci = A.mean_interval(metric, np.array(values))
    assert (ci.low, ci.high) == (None, None) and ci.note.startswith("not enough data")


@pytest.mark.parametrize("metric", ["overall", "latency_ms", "cost_usd"])
def test_equal_values_inside_the_range_have_no_zero_width_interval(metric):
    """All equal: nothing to estimate a spread from, so no interval rather than 81.2–81.2."""
    ci = A.mean_interval(metric, np.array([81.2, 81.2, 81.2, 81.2]))
    assert (ci.low, ci.high) == (None, None) and ci.note == "no spread: all 4 results are equal"


@pytest.mark.parametrize("value", [0.0, 100.0])
def test_equal_values_at_a_bound_keep_a_wilson_interval(value):
    """Three perfect scores: 100 is likely but not certain, so the interval is Wilson's, not 100–100."""
    for metric in ("score", "pass_rate"):
        ci = A.mean_interval(metric, np.array([value] * 3))
        assert ci.low < ci.high and ci.low >= 0 and ci.high <= 100
        assert (ci.low == 0) if value == 0 else (ci.high == pytest.approx(100))


ADVERSARIAL = [
    [100.0, 100.0, 0.0],
    [100.0] * 9 + [0.0],
    [0.0] * 9 + [100.0],
    [99.9, 100.0, 100.0, 100.0],
    [0.01, 0.0, 0.0, 0.0, 0.0],
    [50.0, 50.0, 50.0, 50.0, 51.0],
    [0.0, 0.0, 1e-9],
]


@pytest.mark.parametrize("values", ADVERSARIAL)
@pytest.mark.parametrize("metric", ["overall", "score", "pass_rate", "weighted"])
def test_no_bounded_interval_leaves_0_to_100(values, metric):
    """Outliers and values hugging a bound: the interval stays in 0–100 and holds the mean."""
    values = np.array(values)
    if metric == "pass_rate":
        values = np.where(values >= 50, 100.0, 0.0)
    ci = A.mean_interval(metric, values)
    assert ci.low is not None, ci.note
    assert 0.0 <= ci.low <= values.mean() + 1e-9 and values.mean() - 1e-9 <= ci.high <= 100.0


@pytest.mark.parametrize(
    "values", [[1.0, 1.0, 5000.0], [0.0, 0.0, 0.0, 0.002], [1e-6, 2e-6, 1e6], [40.0, 41.0, 43.0, 10_000.0]]
)
@pytest.mark.parametrize("metric", ["latency_ms", "ttft_ms", "cost_usd", "output_tokens"])
def test_no_positive_interval_reaches_zero(values, metric):
    """One huge outlier among tiny values: Student t would go below 0; the log-scale interval never does."""
    values = np.array(values)
    ci = A.mean_interval(metric, values)
    assert 0.0 < ci.low <= values.mean() <= ci.high


@pytest.mark.parametrize("seed", range(20))
def test_random_small_samples_stay_in_range(seed):
    """Many random small samples near the bounds: every bound of every figure stays possible."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 8))
    quality = np.clip(rng.normal(rng.choice([2.0, 50.0, 98.0]), 30, n), 0, 100)
    latency = rng.lognormal(5, 2, n)
    for metric, values, (low, high) in (("overall", quality, (0, 100)), ("latency_ms", latency, (0, np.inf))):
        ci = A.mean_interval(metric, values)
        if ci.low is not None:
            assert low <= ci.low <= ci.high <= high and (ci.low > 0 if metric == "latency_ms" else True)


def test_effects_say_not_enough_data_per_value():
    """A value with two results shows its mean and "not enough data", never a zero-width interval."""
    x = np.array([0.2, 0.2, 0.7, 0.7, 0.7])
    y = np.array([81.2, 81.2, 60.0, 70.0, 65.0])
    found = A.effect("temperature", x, "overall", y)
    few, enough = found.values
    assert (few.n, few.ci_low, few.ci_high) == (2, None, None) and few.ci_note.startswith("not enough data")
    assert enough.ci_low is not None and enough.ci_low < 65.0 < enough.ci_high


def test_best_combination_with_two_results_has_no_interval():
    """The optimization's best combination and best value with n = 2 have no interval and say so."""
    parameters = {"max_tokens": np.array([200.0, 200.0, 100.0, 100.0, 100.0])}
    metrics = {"overall": np.array([81.2, 81.25, 40.0, 42.0, 41.0])}
    result = A.optimize(parameters, metrics, A.Objective("overall"))
    best = result.best_combination
    assert best.parameters == {"max_tokens": 200.0} and best.ci_low is None and "not enough data" in best.ci_note
    (value,) = result.optimal
    assert value.ci_low is None and value.confidence is None and "not enough data" in value.reasoning
    sentence = next(
        i.text for i in A.insights(parameters, metrics, objective=A.Objective("overall")) if i.kind == "best"
    )
    assert "max_tokens 200." in sentence and "200.0" not in sentence and "n = 2: not enough data" in sentence
