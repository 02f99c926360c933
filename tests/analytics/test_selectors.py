"""Every analytics figure on the fixed dataset, recomputed here with numpy / scipy from the raw rows."""

from collections import defaultdict

import numpy as np
import pytest
from scipy import stats as sp

from apps.analytics import selectors
from apps.analytics.filters import FilterError, parse_filters
from apps.batches import analysis
from apps.batches.selectors import objective_from
from apps.experiments.models import Experiment, Response
from apps.hardware.models import PerformanceRun, RunSummary
from tests.factories import DeploymentFactory, HardwareProfileFactory, ModelVariantFactory, ScoreFactory

pytestmark = pytest.mark.django_db
ALL = parse_filters({"timeframe": "30d"})


def _bounded(values):
    """The 0-100 interval from the raw values: Wilson's score interval on the effective sample size
    p(1 - p) / Var(mean), written out here from its definition (Korn & Graubard)."""
    x = np.asarray(values, dtype=float) / 100
    p, n = x.mean(), len(x)
    n_eff = p * (1 - p) / (x.var() / n)
    z = sp.norm.ppf(0.975)
    centre = (p + z**2 / (2 * n_eff)) / (1 + z**2 / n_eff)
    half = z / (1 + z**2 / n_eff) * np.sqrt(p * (1 - p) / n_eff + z**2 / (4 * n_eff**2))
    return 100 * (centre - half), 100 * (centre + half)


def _wilson(passed, total):
    ci = sp.binomtest(passed, total).proportion_ci(method="wilson")
    return [100 * ci.low, 100 * ci.high]


def test_trend_points_are_the_daily_means_and_the_fit_is_linregress(dataset):
    result = selectors.quality_trends(dataset.team, ALL)
    by_day = defaultdict(list)
    for row in dataset.ok():
        by_day[row.day].append(row.overall)
    assert [p["n"] for p in result["points"]] == [len(by_day[d]) for d in sorted(by_day)]
    assert [p["errors"] for p in result["points"]] == [1] * len(by_day)
    for point, day in zip(result["points"], sorted(by_day), strict=True):
        assert point["mean"] == pytest.approx(np.mean(by_day[day]))
        assert point["sd"] == pytest.approx(np.std(by_day[day], ddof=1))
        assert (point["ci_low"], point["ci_high"]) == pytest.approx(_bounded(by_day[day]))
    means = [np.mean(by_day[d]) for d in sorted(by_day)]
    fit = sp.linregress(sorted(by_day), means)
    assert result["trend"]["slope_per_day"] == pytest.approx(fit.slope)
    assert result["trend"]["p_value"] == pytest.approx(fit.pvalue)
    assert result["trend"]["direction"] == "improving"  # alpha rises 2 points a day
    best_day = sorted(by_day)[int(np.argmax(means))]
    assert result["best_period"]["mean"] == pytest.approx(max(means))
    assert result["points"][best_day]["period"] == result["best_period"]["period"]


def test_a_flat_model_has_a_stable_trend(dataset):
    result = selectors.quality_trends(dataset.team, parse_filters({"model": "beta"}))
    by_day = defaultdict(list)
    for row in dataset.ok(model="beta"):
        by_day[row.day].append(row.overall)
    fit = sp.linregress(sorted(by_day), [np.mean(by_day[d]) for d in sorted(by_day)])
    assert result["trend"]["p_value"] == pytest.approx(fit.pvalue) and fit.pvalue > 0.05
    assert result["trend"]["direction"] == "stable"


def test_weekly_points_pool_the_days(dataset):
    result = selectors.quality_trends(dataset.team, parse_filters({"granularity": "week"}))
    assert sum(p["n"] for p in result["points"]) == len(dataset.ok())
    assert result["mean"] == pytest.approx(np.mean([r.overall for r in dataset.ok()]))


def test_breakdown_by_model_has_wilson_pass_rates_and_bounded_intervals(dataset):
    groups = {g["group"]: g for g in selectors.breakdown(dataset.team, ALL, "model")["groups"]}
    for model in ("alpha", "beta"):
        rows = dataset.ok(model=model)
        passed = sum(r.passed for r in rows)
        group = groups[model]
        assert group["errors"] == (10 if model == "beta" else 0)
        assert group["pass_rate"] == pytest.approx(100 * passed / len(rows))
        assert group["pass_rate_ci"] == pytest.approx(_wilson(passed, len(rows)))
        scores = [100 * r.score for r in rows]
        assert group["metrics"]["score"]["mean"] == pytest.approx(np.mean(scores))
        assert [group["metrics"]["score"]["ci_low"], group["metrics"]["score"]["ci_high"]] == pytest.approx(
            _bounded(scores)
        )
        assert group["metrics"]["coherence"]["mean"] == pytest.approx(np.mean([r.coherence for r in rows]))
        expected = np.bincount(
            np.minimum(np.floor(np.array([r.overall for r in rows]) / 10).astype(int), 9), minlength=10
        )
        assert group["histogram"] == expected.tolist()


def test_breakdown_by_tag_pools_its_test_cases(dataset):
    groups = {g["group"]: g for g in selectors.breakdown(dataset.team, ALL, "tag")["groups"]}
    assert set(groups) == {"math", "easy", "writing"}
    math = [r.overall for r in dataset.ok() if r.case in ("tc1", "tc2")]
    assert groups["math"]["metrics"]["overall"]["n"] == len(math)
    assert groups["math"]["metrics"]["overall"]["mean"] == pytest.approx(np.mean(math))
    assert groups["math"]["metrics"]["overall"]["sd"] == pytest.approx(np.std(math, ddof=1))
    assert groups["easy"]["responses"] == len([r for r in dataset.rows if r.case == "tc2"])


def test_breakdown_by_evaluator_and_test_case(dataset):
    evaluators = {g["group"]: g for g in selectors.breakdown(dataset.team, ALL, "evaluator")["groups"]}
    assert set(evaluators) == {"numeric", "exact_match", "contains"}
    assert evaluators["numeric"]["errors"] == 10  # the failed requests were on tc1
    cases = {g["group"]: g for g in selectors.breakdown(dataset.team, ALL, "test_case")["groups"]}
    haiku = [r.overall for r in dataset.ok(case="tc3")]
    assert cases["Haiku v1"]["metrics"]["overall"]["mean"] == pytest.approx(np.mean(haiku))


def _per_case_means(dataset, model):
    return [np.mean([100 * r.score for r in dataset.ok(model=model, case=c)]) for c in ("tc1", "tc2", "tc3")]


def test_model_comparison_pairs_shared_test_cases_with_wilcoxon(dataset):
    result = selectors.model_comparison(dataset.team, parse_filters({"metric": "score"}))
    targets = {t["model"]: t for t in result["targets"]}
    for model in ("alpha", "beta"):
        scores = [100 * r.score for r in dataset.ok(model=model)]
        assert targets[model]["mean"] == pytest.approx(np.mean(scores))
        assert [targets[model]["ci_low"], targets[model]["ci_high"]] == pytest.approx(_bounded(scores))
        assert targets[model]["mean_latency_ms"] == pytest.approx(
            np.mean([r.latency_ms for r in dataset.ok(model=model)])
        )
    (pair,) = result["pairs"]
    expected = sp.wilcoxon(_per_case_means(dataset, "alpha"), _per_case_means(dataset, "beta"))
    assert pair["test"] == "wilcoxon" and pair["shared_test_cases"] == 3
    assert pair["p_value"] == pytest.approx(expected.pvalue)
    # Three pairs of means: the smallest two-sided exact p is 0.25, so it cannot be significant.
    assert pair["p_holm"] == pytest.approx(expected.pvalue) and pair["significant"] is False


def test_model_comparison_without_shared_cases_uses_mann_whitney(dataset):
    # Keep only tc1 for alpha and tc3 for beta: no test case in common.
    Response.objects.filter(target__model="alpha").exclude(test_case=dataset.cases["tc1"]).delete()
    Response.objects.filter(target__model="beta").exclude(test_case=dataset.cases["tc3"]).delete()
    result = selectors.model_comparison(dataset.team, parse_filters({"metric": "overall"}))
    (pair,) = result["pairs"]
    a = [r.overall for r in dataset.ok(model="alpha", case="tc1")]
    b = [r.overall for r in dataset.ok(model="beta", case="tc3")]
    expected = sp.mannwhitneyu(a, b, alternative="two-sided")
    assert pair["test"] == "mann_whitney" and pair["n"] == len(a) + len(b)
    assert pair["p_value"] == pytest.approx(expected.pvalue)
    assert pair["significant"] == (expected.pvalue < 0.05)


def _arrays(rows):
    parameters = {"temperature": np.array([r.temperature for r in rows]), "top_p": np.array([r.top_p for r in rows])}
    metrics = {"overall": np.array([r.overall for r in rows])}
    return parameters, metrics


def test_parameter_optimization_and_correlation_over_everything(dataset):
    rows = dataset.ok()
    parameters, metrics = _arrays(rows)
    result = selectors.parameter_optimization(dataset.team, ALL, objective_from({}, "overall"))
    expected = analysis.optimize(parameters, metrics, objective_from({}, "overall"))
    assert result["n"] == len(rows) and result["sample"].startswith("all ")
    assert result["parameters"] == ["temperature", "top_p"]  # max_tokens never varies
    best = {o["parameter"]: o for o in result["optimal"]}
    assert best["temperature"]["value"] == 0.2  # alpha loses 8 points per unit of temperature
    assert best["temperature"]["mean"] == pytest.approx(
        next(o.mean for o in expected.optimal if o.parameter == "temperature")
    )
    correlations = {
        (c["parameter"], c["metric"]): c for c in selectors.parameter_correlation(dataset.team, ALL)["correlations"]
    }
    rho = sp.spearmanr(parameters["temperature"], metrics["overall"])
    r = sp.pearsonr(parameters["temperature"], metrics["overall"])
    assert correlations[("temperature", "overall")]["spearman_rho"] == pytest.approx(rho.statistic)
    assert correlations[("temperature", "overall")]["spearman_p"] == pytest.approx(rho.pvalue)
    assert correlations[("temperature", "overall")]["pearson_r"] == pytest.approx(r.statistic)
    top_p = correlations[("top_p", "overall")]
    assert top_p["spearman_p"] == pytest.approx(sp.spearmanr(parameters["top_p"], metrics["overall"]).pvalue)
    assert top_p["significant"] == (top_p["spearman_p"] < 0.05)


def test_parameter_sample_is_deterministic_and_said(dataset):
    first = selectors.parameter_observations(dataset.team, ALL, limit=50)
    again = selectors.parameter_observations(dataset.team, ALL, limit=50)
    assert first["n"] <= 50 and first["step"] == 3 and first["total"] == len(dataset.ok())
    assert np.array_equal(first["metrics"]["overall"], again["metrics"]["overall"])
    assert "sample of" in selectors._sample_note(first)


def test_parameter_insights_cite_their_numbers(dataset):
    result = selectors.parameter_insights(dataset.team, ALL, objective_from({}, "overall"))
    assert result["insights"] and all("n = " in i["text"] or i["kind"] == "no_effect" for i in result["insights"])


def test_quality_regression_flags_a_significant_drop_only(dataset):
    # beta in the second run: every answer fails.
    second = dataset.experiments["second run"]
    Response.objects.filter(experiment=second, target__model="beta", error_code="").update(passed=False, score=0.0)
    result = selectors.regressions(dataset.team)
    found = {(c["subject"], c["metric"]): c for c in result["comparisons"]}
    beta = found[("Lab · beta", "pass_rate")]
    first_rows = [r for r in dataset.ok(model="beta") if r.experiment == "first run"]
    second_rows = [r for r in dataset.ok(model="beta") if r.experiment == "second run"]
    passed_before = sum(r.passed for r in first_rows)
    expected = sp.fisher_exact([[0, len(second_rows)], [passed_before, len(first_rows) - passed_before]])
    assert beta["p_value"] == pytest.approx(expected.pvalue)
    assert beta["status"] == "regression" and beta["latest"] == "second run" and beta["previous"] == "first run"
    score = found[("Lab · beta", "mean_score")]
    welch = sp.ttest_ind([0.0] * len(second_rows), [100 * r.score for r in first_rows], equal_var=False)
    assert score["p_value"] == pytest.approx(welch.pvalue) and score["status"] == "regression"
    alpha = found[("Lab · alpha", "pass_rate")]
    a_before = [r for r in dataset.ok(model="alpha") if r.experiment == "first run"]
    a_after = [r for r in dataset.ok(model="alpha") if r.experiment == "second run"]
    expected = sp.fisher_exact([[sum(r.passed for r in a_after), len(a_after) - sum(r.passed for r in a_after)],
                                [sum(r.passed for r in a_before), len(a_before) - sum(r.passed for r in a_before)]])  # fmt: skip
    assert alpha["p_value"] == pytest.approx(expected.pvalue)
    assert alpha["status"] == ("no significant change" if alpha["p_holm"] >= 0.05 else alpha["status"])
    assert result["regressions"] >= 2


def _run(team, variant, hardware, deployment, *, ttft_mean, ttft_sd, n, p95, tps, created):
    run = PerformanceRun.objects.create(
        team=team, variant=variant, hardware=hardware, deployment=deployment, concurrency=8
    )
    PerformanceRun.objects.filter(pk=run.pk).update(created_at=created)
    metrics = {"ttft_ms": {"count": n, "mean": ttft_mean, "stdev": ttft_sd, "p95": p95},
               "tpot_ms": {"count": n, "mean": 20.0, "stdev": 2.0}, "output_tps": {"count": n, "mean": tps, "stdev": 5.0}}  # fmt: skip
    RunSummary.objects.create(run=run, source="samples", request_count=n, error_count=0, metrics=metrics,
                              output_token_throughput_tps=tps * 8)  # fmt: skip
    return run


def test_performance_regression_needs_a_significant_difference(team):
    from django.utils import timezone

    variant, hardware, deployment = (
        ModelVariantFactory(team=team),
        HardwareProfileFactory(team=team),
        DeploymentFactory(team=team),
    )
    now = timezone.now()
    _run(
        team,
        variant,
        hardware,
        deployment,
        ttft_mean=100,
        ttft_sd=10,
        n=200,
        p95=118,
        tps=50,
        created=now.replace(year=2025),
    )
    _run(team, variant, hardware, deployment, ttft_mean=130, ttft_sd=10, n=200, p95=150, tps=50.2, created=now)
    found = {c["metric"]: c for c in selectors.regressions(team)["comparisons"]}
    welch = sp.ttest_ind_from_stats(130, 10, 200, 100, 10, 200, equal_var=False)
    assert found["ttft_p95_ms"]["value"] == 150 and found["ttft_p95_ms"]["previous_value"] == 118
    assert (
        found["ttft_p95_ms"]["p_value"] == pytest.approx(welch.pvalue)
        and found["ttft_p95_ms"]["status"] == "regression"
    )
    throughput = sp.ttest_ind_from_stats(50.2, 5, 200, 50, 5, 200, equal_var=False)
    assert found["output_tps_mean"]["p_value"] == pytest.approx(throughput.pvalue)
    assert found["output_tps_mean"]["status"] == "no significant change"
    assert found["tpot_mean_ms"]["status"] == "no significant change"  # identical summaries


def test_leaderboard_weights_and_pareto_front(team):
    hardware = HardwareProfileFactory(team=team, hourly_cost_usd=3.6)
    fast, good, poor = (
        ModelVariantFactory(team=team, model_name=n, quantization="FP16") for n in ("fast", "good", "poor")
    )
    for variant, score, tps in ((fast, 60.0, 2000.0), (good, 80.0, 1000.0), (poor, 50.0, 500.0)):
        ScoreFactory(team=team, variant=variant, value_pct=score)
        run = PerformanceRun.objects.create(team=team, variant=variant, hardware=hardware)
        RunSummary.objects.create(run=run, source="samples", metrics={"ttft_ms": {"p50": 50.0}},
                                  output_token_throughput_tps=tps)  # fmt: skip
    result = selectors.leaderboard(team, ALL, {"quality": 1.0, "speed": 0.0, "cost": 0.0})
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["good"]["rank"] == 1 and rows["good"]["composite"] == pytest.approx(100.0)
    assert rows["fast"]["composite"] == pytest.approx(100 * (60 - 50) / (80 - 50))
    assert rows["fast"]["cost_per_1m_output_usd"] == pytest.approx(3.6 / (2000 * 3600) * 1e6)
    assert rows["good"]["pareto"] and rows["fast"]["pareto"] and not rows["poor"]["pareto"]
    speed = {r["model"]: r for r in selectors.leaderboard(team, ALL, {"speed": 1.0})["rows"]}
    assert speed["fast"]["rank"] == 1


def test_filters_scope_to_team_type_model_and_tag(dataset, other_dataset):
    groups = {g["group"] for g in selectors.breakdown(dataset.team, ALL, "model")["groups"]}
    assert groups == {"alpha", "beta"}  # never the other team's model
    Experiment.objects.filter(pk=dataset.experiments["first run"].pk).update(kind="batch")
    batch_only = selectors.quality_trends(dataset.team, parse_filters({"experiment_type": "batch"}))
    assert batch_only["n"] == len([r for r in dataset.ok() if r.experiment == "first run"])
    writing = selectors.quality_trends(dataset.team, parse_filters({"tag": "writing"}))
    assert writing["n"] == len(dataset.ok(case="tc3"))
    assert selectors.quality_trends(dataset.team, parse_filters({"timeframe": "7d"}))["n"] < len(dataset.ok())


@pytest.mark.parametrize(
    ("params", "field"),
    [({"timeframe": "2d"}, "timeframe"), ({"timeframe": "custom", "start": "2026-01-05"}, "end"),
     ({"timeframe": "custom", "start": "2026-01-05", "end": "2026-01-01"}, "end"),
     ({"timeframe": "custom", "start": "05/01/2026", "end": "2026-01-01"}, "start"),
     ({"granularity": "hour"}, "granularity"), ({"metric": "vibes"}, "metric"), ({"experiment_type": "x"}, "experiment_type")],
)  # fmt: skip
def test_bad_filters_name_their_field(params, field):
    with pytest.raises(FilterError) as error:
        parse_filters(params)
    assert error.value.field == field


def test_model_comparison_of_the_pass_rate_is_the_pass_rate(dataset):
    """metric=pass_rate compares pass rates (an annotation named `passed` once shadowed the field: a 500)."""
    result = selectors.model_comparison(dataset.team, parse_filters({"metric": "pass_rate"}))
    targets = {t["model"]: t for t in result["targets"]}
    for model in ("alpha", "beta"):
        rows = dataset.ok(model=model)
        assert targets[model]["mean"] == pytest.approx(100 * sum(r.passed for r in rows) / len(rows))
        assert targets[model]["mean"] == pytest.approx(targets[model]["pass_rate"])
    breakdown = selectors.breakdown(dataset.team, parse_filters({"metric": "pass_rate"}), "model")
    assert sum(sum(g["histogram"]) for g in breakdown["groups"]) == len(dataset.ok())


def test_the_parameter_sample_is_the_rows_whose_id_is_a_multiple_of_k(dataset):
    """With more rows than the limit, the sample is exactly the successful responses whose id is a multiple of
    k = ⌈total / limit⌉ (looked up by key on PostgreSQL, by a modulo on SQLite: the same rows)."""
    ok = Response.objects.filter(experiment__team=dataset.team, error_code="").order_by("id")
    total = ok.count()
    data = selectors.parameter_observations(dataset.team, ALL, limit=25)
    step = -(-total // 25)
    expected = [r.latency_ms for r in ok if r.id % step == 0]
    assert data["step"] == step and data["total"] == total
    assert data["metrics"]["latency_ms"].tolist() == pytest.approx(expected)
