"""Simulated results (the sim provider, demo data) stay out of every analytics figure unless asked for,
and every group, row and pair they enter says so."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.analytics import selectors
from apps.analytics.custom import CustomExportError, custom_export
from apps.analytics.filters import FilterError, parse_filters
from apps.batches.selectors import objective_from
from apps.experiments.models import Experiment, ExperimentTarget, Response
from apps.hardware.models import PerformanceRun, RunSummary
from apps.providers.models import ProviderEndpoint
from tests.factories import HardwareProfileFactory, ModelVariantFactory, ScoreFactory

pytestmark = pytest.mark.django_db
MEASURED = parse_filters({"timeframe": "30d"})
WITH_SIMULATED = parse_filters({"timeframe": "30d", "include_simulated": "1"})
SIM_MODEL = "sim-small"


@pytest.fixture
def simulated(dataset):
    """Forty simulated responses of the simulator's model, one experiment, on the dataset's test cases;
    their scores are all 0 and their temperatures extreme, so leaking them would move every figure."""
    endpoint = ProviderEndpoint.objects.create(team=dataset.team, name="Simulator", kind="sim")
    experiment = Experiment.objects.create(team=dataset.team, name="simulated run",
                                           status=Experiment.Status.COMPLETED, finished_at=timezone.now())  # fmt: skip
    target = ExperimentTarget.objects.create(experiment=experiment, endpoint=endpoint, model=SIM_MODEL)
    cases = list(dataset.cases.values())
    for i in range(40):
        case = cases[i % 3]
        Response.objects.create(
            experiment=experiment, target=target, test_case=case, item_key=f"tc:{case.pk}", repetition=i,
            content="sim", passed=False, score=0.0, quality={"overall": 5.0, "coherence": 5.0},
            parameters={"temperature": 1.9, "top_p": 0.5, "max_tokens": 200}, latency_ms=5.0, ttft_ms=1.0,
            cost_usd=0.0, output_tokens=50, is_simulated=True,
        )  # fmt: skip
    Response.objects.filter(experiment=experiment).update(
        created_at=timezone.now() - timedelta(days=2, hours=1)
    )  # with day 7
    return experiment


def test_filters_default_to_the_teams_switch_and_the_parameter_wins(team):
    """include_simulated comes from the parameter, else from Team.show_simulated; a bad value names it."""
    assert parse_filters({}, team=team).include_simulated is False
    team.show_simulated = True
    assert parse_filters({}, team=team).include_simulated is True
    assert parse_filters({"include_simulated": "0"}, team=team).include_simulated is False
    assert parse_filters({"include_simulated": "true"}).include_simulated is True
    with pytest.raises(FilterError) as error:
        parse_filters({"include_simulated": "maybe"})
    assert error.value.field == "include_simulated"


def test_trends_leave_simulated_responses_out_unless_included(dataset, simulated):
    """The simulated day's responses are not counted by default; included, that day is flagged."""
    measured = selectors.quality_trends(dataset.team, MEASURED)
    assert measured["n"] == len(dataset.ok()) and not measured["simulated"]
    assert not any(p["simulated"] for p in measured["points"])
    both = selectors.quality_trends(dataset.team, WITH_SIMULATED)
    assert both["n"] == len(dataset.ok()) + 40 and both["simulated"]
    flagged = [p for p in both["points"] if p["simulated"]]
    assert len(flagged) == 1 and flagged[0]["n"] == 40 + len(dataset.ok(day=7))


def test_breakdown_and_comparison_flag_the_simulated_groups(dataset, simulated):
    """A simulated model is no group by default; included, only its group and its pairs are flagged."""
    groups = {g["group"]: g for g in selectors.breakdown(dataset.team, MEASURED, "model")["groups"]}
    assert set(groups) == {"alpha", "beta"} and not any(g["simulated"] for g in groups.values())
    groups = {g["group"]: g for g in selectors.breakdown(dataset.team, WITH_SIMULATED, "model")["groups"]}
    assert groups[SIM_MODEL]["simulated"] and not groups["alpha"]["simulated"]
    tags = {g["group"]: g for g in selectors.breakdown(dataset.team, WITH_SIMULATED, "tag")["groups"]}
    assert all(g["simulated"] for g in tags.values())  # the simulator answered every test case
    measured_tags = selectors.breakdown(dataset.team, MEASURED, "tag")
    assert not measured_tags["simulated"] and measured_tags["groups"][0]["responses"] < tags["math"]["responses"]

    compared = selectors.model_comparison(dataset.team, parse_filters({"metric": "score"}))
    assert {t["model"] for t in compared["targets"]} == {"alpha", "beta"} and not compared["simulated"]
    compared = selectors.model_comparison(dataset.team, parse_filters({"metric": "score", "include_simulated": "1"}))
    targets = {t["model"]: t for t in compared["targets"]}
    assert targets[SIM_MODEL]["simulated"] and not targets["beta"]["simulated"]
    pairs = {(p["a"], p["b"]): p["simulated"] for p in compared["pairs"]}
    assert sum(pairs.values()) == 2 and len(pairs) == 3  # the two pairs with the simulator


def test_parameter_views_leave_simulated_out_and_flag_what_they_include(dataset, simulated):
    """The parameter sample has no simulated row by default; included, the temperature 1.9 value is flagged."""
    assert selectors.parameter_observations(dataset.team, MEASURED)["n"] == len(dataset.ok())
    correlation = selectors.parameter_correlation(dataset.team, MEASURED)
    assert not correlation["simulated"] and not any(c["simulated"] for c in correlation["correlations"])
    correlation = selectors.parameter_correlation(dataset.team, WITH_SIMULATED)
    assert correlation["n"] == len(dataset.ok()) + 40 and correlation["simulated"]
    temperature = next(e for e in correlation["effects"] if e["parameter"] == "temperature")
    flags = {v["value"]: v["simulated"] for v in temperature["values"]}
    assert flags[1.9] is True and flags[0.2] is False
    optimization = selectors.parameter_optimization(dataset.team, WITH_SIMULATED, objective_from({}, "overall"))
    assert optimization["simulated"] and all("simulated" in o for o in optimization["optimal"])
    insights = selectors.parameter_insights(dataset.team, MEASURED, objective_from({}, "overall"))
    assert not insights["simulated"] and all(i["simulated"] is False for i in insights["insights"])


def _run(team, variant, hardware, *, ttft, created, simulated=False):
    run = PerformanceRun.objects.create(team=team, variant=variant, hardware=hardware, concurrency=8,
                                        is_simulated=simulated)  # fmt: skip
    PerformanceRun.objects.filter(pk=run.pk).update(created_at=created)
    metrics = {"ttft_ms": {"count": 200, "mean": ttft, "stdev": 10.0, "p50": ttft, "p95": ttft * 1.2},
               "tpot_ms": {"count": 200, "mean": 20.0, "stdev": 2.0},
               "output_tps": {"count": 200, "mean": 50.0, "stdev": 5.0}}  # fmt: skip
    RunSummary.objects.create(run=run, source="samples", request_count=200, error_count=0, metrics=metrics,
                              output_token_throughput_tps=400.0 if not simulated else 40_000.0)  # fmt: skip
    return run


def test_regressions_skip_simulated_runs_and_responses_unless_included(dataset, simulated, team):
    """A simulated latest run is not compared by default; included, the comparison is flagged."""
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)
    now = timezone.now()
    _run(team, variant, hardware, ttft=100.0, created=now - timedelta(days=3))
    _run(team, variant, hardware, ttft=100.5, created=now - timedelta(days=2))
    _run(team, variant, hardware, ttft=30.0, created=now, simulated=True)
    measured = selectors.regressions(team)
    performance = [c for c in measured["comparisons"] if c["kind"] == "performance"]
    assert performance and all(c["value"] != 36.0 and not c["simulated"] for c in performance)
    assert not any(c["simulated"] for c in measured["comparisons"])
    both = selectors.regressions(team, include_simulated=True)
    ttft = next(c for c in both["comparisons"] if c["metric"] == "ttft_p95_ms")
    assert ttft["value"] == pytest.approx(36.0) and ttft["simulated"] and both["simulated"]
    team.show_simulated = True  # the team's default, when the caller does not say
    assert selectors.regressions(team)["simulated"]


def test_a_simulated_only_experiment_is_no_regression_baseline(dataset, simulated):
    """An experiment whose responses are all simulated is not "the latest experiment" of its target."""
    second = dataset.experiments["second run"]
    Response.objects.filter(experiment=second).update(is_simulated=True)
    measured = selectors.regressions(dataset.team)
    assert not [c for c in measured["comparisons"] if c["kind"] == "quality"]  # one measured experiment left
    included = [c for c in selectors.regressions(dataset.team, include_simulated=True)["comparisons"]
                if c["kind"] == "quality"]  # fmt: skip
    assert included and all(c["simulated"] for c in included)


def test_leaderboard_leaves_simulated_runs_out_unless_included(team):
    """A simulated run's 100× throughput does not reach the leaderboard by default; included, the row is flagged."""
    hardware = HardwareProfileFactory(team=team, hourly_cost_usd=3.6)
    variant = ModelVariantFactory(team=team, model_name="llama", quantization="FP16")
    other = ModelVariantFactory(team=team, model_name="qwen", quantization="FP16")
    ScoreFactory(team=team, variant=variant, value_pct=70.0)
    ScoreFactory(team=team, variant=other, value_pct=60.0)
    now = timezone.now()
    _run(team, variant, hardware, ttft=100.0, created=now)
    _run(team, other, hardware, ttft=100.0, created=now, simulated=True)
    rows = {r["model"]: r for r in selectors.leaderboard(team, MEASURED, {"speed": 1.0})["rows"]}
    assert rows["qwen"]["runs"] == 0 and rows["qwen"]["output_tps"] is None and not rows["qwen"]["simulated"]
    result = selectors.leaderboard(team, WITH_SIMULATED, {"speed": 1.0})
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["qwen"]["output_tps"] == 40_000.0 and rows["qwen"]["simulated"] and not rows["llama"]["simulated"]
    assert result["simulated"]


def test_custom_export_of_responses_leaves_simulated_out_and_marks_them(dataset, simulated):
    """The responses export follows the same switch and carries a `simulated` column."""
    export = custom_export(dataset.team, {"entity": "responses", "fields": ["id", "simulated"],
                                          "filters": {"timeframe": "30d"}})  # fmt: skip
    assert {row[1] for row in export.table.rows} == {False}
    export = custom_export(dataset.team, {"entity": "responses", "fields": ["id", "simulated"],
                                          "filters": {"timeframe": "30d", "include_simulated": True}})  # fmt: skip
    assert sum(row[1] for row in export.table.rows) == 40


def test_leaderboard_leaves_simulated_benchmark_scores_out_unless_included(team):
    """A generated benchmark score neither ranks a variant by default nor goes unmarked when included."""
    real = ModelVariantFactory(team=team, model_name="llama", quantization="FP16")
    generated = ModelVariantFactory(team=team, model_name="demo", quantization="FP16")
    ScoreFactory(team=team, variant=real, value_pct=60.0)
    ScoreFactory(team=team, variant=generated, value_pct=99.0, is_simulated=True)
    rows = {r["model"]: r for r in selectors.leaderboard(team, MEASURED, {"quality": 1.0})["rows"]}
    assert rows["demo"]["benchmark_score_pct"] is None and rows["llama"]["rank"] == 1
    rows = {r["model"]: r for r in selectors.leaderboard(team, WITH_SIMULATED, {"quality": 1.0})["rows"]}
    assert rows["demo"]["rank"] == 1 and rows["demo"]["simulated"] and not rows["llama"]["simulated"]


def test_leaderboard_own_quality_is_the_mean_score_of_measured_responses(dataset, simulated):
    """Own quality = mean evaluator score × 100 of a model's successful responses (any case), measured only."""
    ModelVariantFactory(team=dataset.team, model_name="ALPHA", quantization="FP16")
    ModelVariantFactory(team=dataset.team, model_name=SIM_MODEL, quantization="FP16")
    rows = {r["model"]: r for r in selectors.leaderboard(dataset.team, MEASURED, {"quality": 1.0})["rows"]}
    alpha = [100 * r.score for r in dataset.ok(model="alpha")]
    assert rows["ALPHA"]["own_quality"] == pytest.approx(sum(alpha) / len(alpha))
    assert rows["ALPHA"]["own_quality_n"] == len(alpha) and not rows["ALPHA"]["simulated"]
    assert rows[SIM_MODEL]["own_quality"] is None
    rows = {r["model"]: r for r in selectors.leaderboard(dataset.team, WITH_SIMULATED, {"quality": 1.0})["rows"]}
    assert rows[SIM_MODEL]["own_quality"] == 0.0 and rows[SIM_MODEL]["own_quality_n"] == 40
    assert rows[SIM_MODEL]["simulated"]


def test_the_api_follows_the_parameter_and_the_teams_default(viewer_api, dataset, simulated):
    """Through the API: left out by default, included with include_simulated=1, or by the team's setting."""
    url = "/api/v1/analytics/quality/breakdown?dimension=model"
    groups = {g["group"]: g for g in viewer_api.get(url).json()["groups"]}
    assert SIM_MODEL not in groups
    groups = {g["group"]: g for g in viewer_api.get(url + "&include_simulated=1").json()["groups"]}
    assert groups[SIM_MODEL]["simulated"] is True and groups["alpha"]["simulated"] is False
    dataset.team.show_simulated = True
    dataset.team.save(update_fields=["show_simulated"])
    assert SIM_MODEL in {g["group"] for g in viewer_api.get(url).json()["groups"]}
    assert SIM_MODEL not in {g["group"] for g in viewer_api.get(url + "&include_simulated=0").json()["groups"]}
    response = viewer_api.get(url + "&include_simulated=maybe")
    assert response.status_code == 400 and "include_simulated" in response.json()


def test_custom_export_adds_the_simulated_column_when_simulated_rows_may_be_in_it(dataset, simulated):
    """Default fields: a `simulated` column only when simulated rows are included; a bad switch names its field."""
    measured = custom_export(dataset.team, {"entity": "responses", "filters": {"timeframe": "30d"}})
    assert "simulated" not in measured.fields
    both = custom_export(
        dataset.team, {"entity": "responses", "filters": {"timeframe": "30d", "include_simulated": "1"}}
    )
    column = both.fields.index("simulated")
    assert sum(row[column] for row in both.table.rows) == 40
    runs = custom_export(dataset.team, {"entity": "runs", "filters": {"include_simulated": True}})
    assert runs.fields[-1] == "simulated"
    with pytest.raises(CustomExportError) as error:
        custom_export(dataset.team, {"entity": "runs", "filters": {"include_simulated": "perhaps"}})
    assert error.value.field == "filters.include_simulated"
