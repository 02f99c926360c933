"""Run figures and comparisons on real runs: an experiment repeated against a server that answers wrongly is a pass-rate
regression (Fisher), a slower load-sweep endpoint a TTFT regression (Mann-Whitney U), a weaker benchmark target an
accuracy regression item by item (McNemar), capacity brackets that do not overlap a capacity regression; each figure
has the interval the apps compute; p-values are Holm-adjusted; a figure one run lacks is "no data"."""

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from scipy import stats

from apps.automation import runkinds
from apps.automation.runkinds import RunRef, quantile_interval
from apps.benchmarks.models import BenchmarkAnswer
from apps.benchmarks.services import TargetSpec, benchmark_run_create, benchmark_run_start
from apps.capacity.models import CapacitySearch
from apps.experiments.models import Response
from apps.experiments.services import experiment_create, experiment_start
from apps.providers.models import ProviderEndpoint
from apps.scores.paired import mcnemar_exact_p
from tests.automation.test_runkinds_support import drain, record_submissions
from tests.batches.helpers import approved_case, sim_endpoint
from tests.batches.test_sweeps import make_sweep
from tests.benchmarks.test_runner import Mocks, make_suite, mock_endpoint, write_key
from tests.capacity.helpers import make_search
from tests.experiments.test_experiments import _server
from tests.providers.servers import Script

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def submitted(monkeypatch):
    """The runs' tasks, recorded instead of queued (drain() runs them)."""
    return record_submissions(monkeypatch)


@pytest.fixture
def mocks():
    """Known-answer mockllm servers (closed after the test)."""
    servers = Mocks()
    yield servers
    servers.close()


def by_name(comparisons) -> dict:
    return {c.name: c for c in comparisons}


def test_an_experiment_against_a_server_answering_wrongly_is_a_pass_rate_regression(team, member, submitted):
    """Baseline: every answer right; the repeat against another endpoint: every answer wrong (Fisher, Holm)."""
    case = approved_case(team, member, expected_output="Hello, world!", evaluator="exact_match")
    with _server(Script()) as right, _server(Script(pieces=["Good", "bye"])) as wrong:
        good = ProviderEndpoint.objects.create(team=team, name="good", kind="openai_compatible",
                                               base_url=f"{right.root}/v1")  # fmt: skip
        bad = ProviderEndpoint.objects.create(team=team, name="bad", kind="openai_compatible",
                                              base_url=f"{wrong.root}/v1")  # fmt: skip
        template = experiment_create(team=team, user=member, name="check", targets=[(good, "gpt-test")],
                                     test_cases=[case], responses_per_item=12)  # fmt: skip
        experiment_start(experiment=template)
        drain(submitted)
        current = runkinds.run_repeat(kind="experiment", run_id=template.pk, endpoint_id=bad.pk)
        drain(submitted)
    baseline = RunRef("experiment", template.pk)
    figures = runkinds.run_figures(baseline)
    assert next(iter(figures)) == "pass_rate"  # the headline first
    assert set(figures) == {"pass_rate", "mean_score", "mean_quality", "error_rate", "p50_ttft_ms", "p95_ttft_ms",
                            "p50_e2e_ms", "p95_e2e_ms", "cost_usd"}  # fmt: skip
    ci = stats.binomtest(12, 12).proportion_ci(method="wilson")
    assert (figures["pass_rate"].value, figures["pass_rate"].n) == (1.0, 12)
    assert (figures["pass_rate"].ci_low, figures["pass_rate"].ci_high) == pytest.approx((ci.low, ci.high))
    assert figures["error_rate"].value == 0.0 and not figures["pass_rate"].unit
    latencies = np.array(Response.objects.filter(experiment=template).values_list("latency_ms", flat=True))
    assert figures["p50_e2e_ms"].value == pytest.approx(np.percentile(latencies, 50))
    assert figures["p50_e2e_ms"].ci_low <= figures["p50_e2e_ms"].value <= figures["p50_e2e_ms"].ci_high

    found = by_name(runkinds.run_compare(baseline, current, alpha=0.05))
    assert "cost_usd" not in found  # a total: no test applies
    assert runkinds.run_figures(current)["pass_rate"].value == 0.0
    raw = stats.fisher_exact([[0, 12], [12, 0]]).pvalue
    rate = found["pass_rate"]
    assert (rate.baseline, rate.current, rate.verdict) == (1.0, 0.0, "regression")
    assert rate.test.startswith("Fisher's exact test") and "Holm" in rate.test
    assert raw <= rate.p_value < 0.05
    assert found["error_rate"].verdict == "no change"
    assert found["mean_score"].verdict == "regression" and "Welch" in found["mean_score"].test
    # The same run against itself: nothing changes.
    assert all(c.verdict in ("no change", "no data") for c in runkinds.run_compare(baseline, baseline))


def test_a_figure_one_run_lacks_is_no_data_and_kinds_must_match(team, member, submitted):
    """A prompt-only experiment has no pass rate; comparing an experiment with a load sweep is refused."""
    endpoint = sim_endpoint(team)
    plain = experiment_create(team=team, user=member, name="plain", targets=[(endpoint, "sim-small")], prompt="hi",
                              responses_per_item=3)  # fmt: skip
    experiment_start(experiment=plain)
    drain(submitted)
    ref = RunRef("experiment", plain.pk)
    figures = runkinds.run_figures(ref)
    assert figures["pass_rate"].value is None and figures["pass_rate"].n == 0
    found = by_name(runkinds.run_compare(ref, ref))
    assert found["pass_rate"].verdict == "no data" and found["pass_rate"].p_value is None
    assert found["error_rate"].verdict == "no change"
    sweep = make_sweep(team, endpoint=sim_endpoint(team, "load"))
    with pytest.raises(ValidationError) as excinfo:
        runkinds.run_compare(ref, RunRef("load_sweep", sweep.pk))
    assert "baseline" in excinfo.value.message_dict
    with pytest.raises(ValidationError):
        runkinds.run_compare(ref, ref, alpha=1.5)


def test_a_slower_endpoint_is_a_ttft_regression_of_the_load_sweep(team, submitted):
    """Both sweeps run one level; TTFT p95 per level and without the suffix; Mann-Whitney U finds the slowdown."""
    fast = sim_endpoint(team, "fast", base_url="sim://local?ttft_ms=5&itl_ms=1&jitter=0.1")
    slow = sim_endpoint(team, "slow", base_url="sim://local?ttft_ms=60&itl_ms=1&jitter=0.1")
    template = make_sweep(team, endpoint=fast, levels=[2], step_request_count=24, output_tokens=4)
    runkinds.run_repeat(kind="load_sweep", run_id=template.pk)  # the same endpoint again: a baseline
    drain(submitted)
    baseline = RunRef("load_sweep", template.pk + 1)
    current = runkinds.run_repeat(kind="load_sweep", run_id=template.pk, endpoint_id=slow.pk)
    drain(submitted)
    figures = runkinds.run_figures(baseline)
    assert next(iter(figures)) == "p95_ttft_ms" and "p95_ttft_ms@2" in figures and "throughput_rps@2" in figures
    step = template.__class__.objects.get(pk=baseline.run_id).steps.get()
    summary = step.run.summary
    assert figures["p95_ttft_ms@2"].value == pytest.approx(summary.stat("ttft_ms", "p95"))
    assert figures["throughput_rps"].value == pytest.approx(summary.request_throughput_rps)
    low, high = figures["throughput_rps"].ci_low, figures["throughput_rps"].ci_high
    assert low < summary.request_throughput_rps < high  # Garwood's interval around one trial's rate
    assert figures["error_rate"].value == 0.0
    found = by_name(runkinds.run_compare(baseline, current))
    assert found["p95_ttft_ms@2"].verdict == found["p95_ttft_ms"].verdict == "regression"
    assert found["p95_ttft_ms"].test.startswith("Mann-Whitney U") and found["p95_ttft_ms"].p_value < 0.05
    assert found["error_rate@2"].verdict == "no change"


def test_several_levels_are_named_per_level_only(team, submitted):
    """A sweep of two levels has each figure per level and none without the suffix."""
    sweep = make_sweep(team, levels=[1, 3], step_request_count=6)
    runkinds.run_repeat(kind="load_sweep", run_id=sweep.pk)
    drain(submitted)
    figures = runkinds.run_figures(RunRef("load_sweep", sweep.pk + 1))
    assert list(figures)[:2] == ["p95_ttft_ms@1", "p50_ttft_ms@1"]
    assert "p95_ttft_ms" not in figures and figures["p95_ttft_ms@3"].value is not None
    assert figures["throughput_rps@3"].label == "Request throughput at 3"


def test_a_weaker_benchmark_target_is_an_accuracy_regression_item_by_item(team, submitted, mocks, tmp_path):
    """Same suite, answers paired by item: McNemar's exact p on the discordant items, as apps.scores.paired."""
    suite = make_suite(team)
    key = write_key(suite, tmp_path / "key.jsonl")
    strong = mock_endpoint(team, mocks.start(key, 0.9), "strong")
    weak = mock_endpoint(team, mocks.start(key, 0.4), "weak")
    template = benchmark_run_create(team=team, user=None, suite=suite, targets=[TargetSpec(strong, "mock")])
    benchmark_run_start(run=template)
    drain(submitted)
    current = runkinds.run_repeat(kind="benchmark_run", run_id=template.pk, endpoint_id=weak.pk)
    drain(submitted)
    baseline = RunRef("benchmark_run", template.pk)
    figures = runkinds.run_figures(baseline)
    assert list(figures) == ["accuracy", "no_answer_rate", "error_rate", "p50_e2e_ms", "p95_e2e_ms", "cost_usd"]
    right = dict(BenchmarkAnswer.objects.filter(run_id=template.pk).values_list("item_id", "correct"))
    after = dict(BenchmarkAnswer.objects.filter(run_id=current.run_id).values_list("item_id", "correct"))
    assert figures["accuracy"].value == pytest.approx(sum(right.values()) / 60)
    ci = stats.binomtest(sum(right.values()), 60).proportion_ci(method="wilson")
    assert (figures["accuracy"].ci_low, figures["accuracy"].ci_high) == pytest.approx((ci.low, ci.high))
    found = by_name(runkinds.run_compare(baseline, current))
    accuracy = found["accuracy"]
    raw = mcnemar_exact_p(sum(right[i] and not after[i] for i in right), sum(after[i] and not right[i] for i in right))
    assert accuracy.test.startswith("McNemar's exact test on 60 paired items") and accuracy.p_value >= raw
    assert accuracy.verdict == "regression" and accuracy.p_value < 0.05


def test_capacity_brackets_that_do_not_overlap_decide_the_capacity_verdict(team, submitted):
    """A real search compared with itself is no change; a bracket wholly below the baseline's is a regression."""
    fast = sim_endpoint(team, name="fast", model_names=["sim-small"])
    search = make_search(team, endpoint=fast, model="sim-small", probe_duration_s=1, start_level=32, max_level=64,
                         slo={"objectives": [{"metric": "ttft_ms", "percentile": 50, "max_ms": 100}]})  # fmt: skip
    runkinds.run_repeat(kind="capacity_search", run_id=search.pk)
    drain(submitted)
    ref = RunRef("capacity_search", CapacitySearch.objects.latest("id").pk)
    figures = runkinds.run_figures(ref)
    assert list(figures) == ["capacity", "capacity_rps", "goodput_rps", "output_tps", "cost_per_1m_output_usd"]
    assert figures["capacity"].value == 64 and figures["capacity"].unit == "req/s"
    assert figures["capacity"].ci_low == 64 and figures["capacity"].ci_high is None  # an open top: every level met it
    found = by_name(runkinds.run_compare(ref, ref))
    assert found["capacity"].verdict == "no change" and found["capacity"].test == "capacity brackets overlap"
    assert found["goodput_rps"].test.startswith("not tested")
    lower = make_search(team, endpoint=fast, model="sim-small", name="lower")
    CapacitySearch.objects.filter(pk=lower.pk).update(
        status="completed", capacity=10, capacity_low=10, capacity_high=12, capacity_rps=10,
        result={"capacity": 10, "low": 10, "high": 12, "capacity_rps": 10, "probes_used": 4},
    )  # fmt: skip
    found = by_name(runkinds.run_compare(ref, RunRef("capacity_search", lower.pk)))
    assert found["capacity"].verdict == "regression" and found["capacity"].p_value is None
    assert by_name(runkinds.run_compare(RunRef("capacity_search", lower.pk), ref))["capacity"].verdict == "improvement"


def test_the_quantile_interval_is_distribution_free():
    """Order-statistic ranks from the binomial; a side too few values can bound is None."""
    values = np.arange(1.0, 101.0)
    low, high = quantile_interval(values, 0.5)
    assert low < 50.5 < high and (low, high) == (40.0, 61.0)  # the textbook ranks 40 and 61 (96.5%)
    assert quantile_interval(np.arange(20.0), 0.95)[1] is None
    assert quantile_interval(np.array([1.0, 2.0]), 0.5) == (None, None)
    # Coverage: the true median of a standard exponential (ln 2) is inside in about 95% of samples of 50.
    rng = np.random.default_rng(7)
    hits = sum(lo <= np.log(2) <= hi for lo, hi in (quantile_interval(rng.exponential(size=50), 0.5)
                                                    for _ in range(400)))  # fmt: skip
    assert 0.93 <= hits / 400 <= 0.995


def test_a_large_mean_gets_the_t_interval_inside_its_bounds():
    """Above BOOTSTRAP_MAX_N values the mean's interval is Student's t (scipy), kept inside the score's range."""
    from apps.automation.runkinds.figures import BOOTSTRAP_MAX_N, _mean

    values = np.random.default_rng(1).uniform(0, 1, BOOTSTRAP_MAX_N + 1)
    figure = _mean(values, "mean_score", "Mean score", "", (0.0, 1.0))
    low, high = stats.t.interval(0.95, values.size - 1, loc=values.mean(), scale=stats.sem(values))
    assert (figure.ci_low, figure.ci_high) == pytest.approx((low, high)) and figure.n == values.size
    ones = _mean(np.ones(BOOTSTRAP_MAX_N + 1), "mean_score", "Mean score", "", (0.0, 1.0))
    assert ones.value == 1.0 and ones.ci_high == 1.0 and ones.ci_low < 1.0  # Wilson when every value is on a bound
