"""Experiments run against sim and over HTTP: responses stored and evaluated as they arrive, a
rerun repeats none, a refused key stops the run, and the per-target figures match scipy."""

import json

import pytest
from scipy import stats

from apps.experiments.models import Experiment, Response
from apps.experiments.runner import run_experiment
from apps.experiments.selectors import experiment_summary, mean_interval, wilson_interval
from apps.experiments.services import TransitionRefused, experiment_create, testcase_approve, testcase_create
from apps.providers.models import ProviderEndpoint
from tests.providers.servers import MockLLMServer, Script
from tests.threaded import running_in_thread

pytestmark = pytest.mark.django_db(transaction=True)


def approved_case(team, author, reviewer, **fields):
    case = testcase_create(team=team, author=author, submit=True, **{"title": "t", "prompt": "Say hi", **fields})
    return testcase_approve(testcase=case, reviewer=reviewer)


def sim(team, name="sim"):
    return ProviderEndpoint.objects.create(team=team, name=name, kind="sim", price_input_per_1m_usd=1.0,
                                           price_output_per_1m_usd=2.0)  # fmt: skip


def test_a_prompt_experiment_against_sim_stores_every_response(team, member):
    experiment = experiment_create(
        team=team, user=member, name="prompt", targets=[(sim(team), "sim-small")], prompt="Explain caching",
        parameters={"temperature": 0.2, "max_tokens": 40}, responses_per_item=3,
    )  # fmt: skip
    assert run_experiment(experiment.pk) == "completed"
    responses = list(Response.objects.filter(experiment=experiment))
    assert len(responses) == 3 and all(r.content and r.quality["word_count"] > 0 for r in responses)
    assert all(r.parameters == {"temperature": 0.2, "max_tokens": 40} for r in responses)
    assert all(r.cost_usd == pytest.approx((r.input_tokens * 1 + r.output_tokens * 2) / 1e6) for r in responses)
    assert all(r.is_simulated for r in responses)  # the sim provider's answers are marked as such


def test_test_cases_are_evaluated_and_a_rerun_repeats_nothing(team, member, admin_user):
    hit = approved_case(team, member, admin_user, expected_output="", evaluator="regex",
                        evaluator_settings={"pattern": "."})  # fmt: skip
    miss = approved_case(team, member, admin_user, expected_output="zzz-not-there", evaluator="contains")
    experiment = experiment_create(team=team, user=member, name="cases", targets=[(sim(team), "sim-small")],
                                   test_cases=[hit, miss], responses_per_item=2)  # fmt: skip
    run_experiment(experiment.pk)
    by_case = {c.pk: [r.passed for r in Response.objects.filter(test_case=c)] for c in (hit, miss)}
    assert by_case == {hit.pk: [True, True], miss.pk: [False, False]}
    Experiment.objects.filter(pk=experiment.pk).update(status="pending")
    run_experiment(experiment.pk)
    assert Response.objects.filter(experiment=experiment).count() == 4


def test_only_approved_cases_of_the_team_run(team, other_team, member, outsider):
    draft = testcase_create(team=team, author=member, title="d", prompt="p")
    with pytest.raises(TransitionRefused):
        experiment_create(team=team, user=member, name="x", targets=[(sim(team), "m")], test_cases=[draft])
    with pytest.raises(TransitionRefused):
        experiment_create(team=team, user=member, name="x", targets=[(sim(other_team, "theirs"), "m")], prompt="p")


def _server(script):
    async def start():
        return await MockLLMServer(script).start()

    async def stop(server):
        await server.close()

    return running_in_thread(start, stop)


def test_an_experiment_over_http_with_the_retry_layer(team, member, admin_user):
    case = approved_case(team, member, admin_user, expected_output="Hello, world!", evaluator="exact_match")
    with _server(Script()) as server:
        server.queue.append(Script(status=429, headers={"retry-after-ms": "10"}))
        endpoint = ProviderEndpoint.objects.create(team=team, name="http", kind="openai_compatible",
                                                   base_url=f"{server.root}/v1")  # fmt: skip
        experiment = experiment_create(team=team, user=member, name="http", targets=[(endpoint, "gpt-test")],
                                       test_cases=[case])  # fmt: skip
        assert run_experiment(experiment.pk) == "completed"
        assert len(server.requests) == 2  # the 429 was retried once
    response = Response.objects.get(experiment=experiment)
    assert response.content == "Hello, world!" and response.passed is True and response.ttft_ms is not None
    assert response.is_simulated is False  # a real server's answer is a measurement


def test_a_refused_key_stops_the_run_and_says_so(team, member):
    with _server(Script(status=401, error_message="invalid api key")) as server:
        endpoint = ProviderEndpoint.objects.create(team=team, name="bad", kind="openai_compatible",
                                                   base_url=f"{server.root}/v1", max_concurrency=1)  # fmt: skip
        experiment = experiment_create(team=team, user=member, name="401", targets=[(endpoint, "gpt-test")],
                                       prompt="hi", responses_per_item=5)  # fmt: skip
        assert run_experiment(experiment.pk) == "failed"
        assert len(server.requests) == 1
    experiment.refresh_from_db()
    assert "refused the API key (401)" in experiment.error


def test_the_summary_matches_scipy(team, member, admin_user):
    case = approved_case(
        team, member, admin_user, expected_output="", evaluator="regex", evaluator_settings={"pattern": "cach"}
    )
    experiment = experiment_create(team=team, user=member, name="s", targets=[(sim(team), "sim-small")],
                                   test_cases=[case], responses_per_item=6, parameters={"temperature": 1.3})  # fmt: skip
    run_experiment(experiment.pk)
    summary = experiment_summary(experiment)[0]
    rows = list(Response.objects.filter(experiment=experiment, error_code=""))
    passed = sum(1 for r in rows if r.passed)
    assert summary.passed == passed and summary.evaluated == len(rows)
    expected_ci = stats.binomtest(passed, len(rows)).proportion_ci(method="wilson")
    assert summary.pass_rate_ci == pytest.approx((expected_ci.low, expected_ci.high))


def test_interval_helpers():
    """Wilson around the proportion; a bootstrap interval around the mean, none for a single value."""
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(8, 10)
    assert low < 0.8 < high
    assert mean_interval([1.0]) is None
    low, high = mean_interval([1.0, 2.0, 3.0])
    assert 1.0 <= low < 2.0 < high <= 3.0


def test_the_demo_runs_two_experiments_that_differ_in_temperature(team, member):
    """The demo's pair of experiments is named for, and actually asked at, two different temperatures."""
    from apps.experiments.demo import TEMPERATURES, demo_quality_load
    from apps.providers.demo import demo_endpoint_load

    demo_endpoint_load(team=team)
    count = demo_quality_load(team=team, user=member)
    experiments = {e.name: e for e in Experiment.objects.filter(team=team)}
    assert sorted(experiments) == sorted(name for name, _ in TEMPERATURES)
    assert count == Response.objects.filter(experiment__team=team).count() > 0
    for name, temperature in TEMPERATURES:
        assert str(temperature) in name and experiments[name].parameters["temperature"] == temperature
        temperatures = set(Response.objects.filter(experiment=experiments[name]).values_list("temperature", flat=True))
        assert temperatures == {temperature}
    assert not Response.objects.filter(experiment__team=team, is_simulated=False).exists()


def test_an_llm_judge_grades_over_http_and_an_unparsable_answer_is_an_error(team, member, admin_user):
    with (
        _server(Script(pieces=["SCORE: 8\nRATIONALE: ", "clear and correct"])) as good,
        _server(Script(pieces=["I would rather not say."])) as vague,
    ):
        judges = [
            ProviderEndpoint.objects.create(
                team=team, name=name, kind="openai_compatible", base_url=f"{server.root}/v1"
            )
            for name, server in (("good judge", good), ("vague judge", vague))
        ]
        cases = [
            approved_case(team, member, admin_user, title=f"judged {i}", evaluator="llm_judge", evaluator_settings={
                "rubric": "Is it polite?", "judge_endpoint": judge.pk, "judge_model": "gpt-test"})
            for i, judge in enumerate(judges)
        ]  # fmt: skip
        experiment = experiment_create(team=team, user=member, name="judged", targets=[(sim(team), "sim-small")],
                                       test_cases=cases)  # fmt: skip
        assert run_experiment(experiment.pk) == "completed"
    graded = Response.objects.get(experiment=experiment, test_case=cases[0])
    assert graded.passed is True and graded.score == pytest.approx((8 - 1) / 9)
    assert graded.evaluation["raw_answer"].startswith("SCORE: 8")
    undecided = Response.objects.get(experiment=experiment, test_case=cases[1])
    assert undecided.passed is None and undecided.score is None and undecided.evaluation_error


def test_an_experiment_against_mockllm_over_http(team, member, admin_user):
    from aiohttp import web

    from apps.providers.mockllm import MockProfile, make_app

    async def start():
        runner = web.AppRunner(make_app(MockProfile(ttft_ms=5, itl_ms=1, output_tokens=12)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    async def stop(runner):
        await runner.cleanup()

    case = approved_case(
        team, member, admin_user, expected_output="", evaluator="regex", evaluator_settings={"pattern": r"\w"}
    )
    with running_in_thread(start, stop) as runner:
        endpoint = ProviderEndpoint.objects.create(team=team, name="mock", kind="openai_compatible",
                                                   base_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v1")  # fmt: skip
        experiment = experiment_create(team=team, user=member, name="mock", targets=[(endpoint, "mock")],
                                       test_cases=[case], responses_per_item=3, parameters={"max_tokens": 12})  # fmt: skip
        assert run_experiment(experiment.pk) == "completed"
    responses = list(Response.objects.filter(experiment=experiment))
    assert len(responses) == 3
    assert [(r.output_tokens, r.passed, r.error_code) for r in responses] == [(12, True, "")] * 3
    assert all(r.ttft_ms >= 4 for r in responses)


def test_compare_two_targets_with_fisher_and_mann_whitney(team, member):
    experiment = experiment_create(team=team, user=member, name="c", prompt="p",
                                   targets=[(sim(team), "a"), (sim(team, "sim2"), "b")])  # fmt: skip
    first, second = experiment.targets.order_by("pk")
    for i, (target, passed, score) in enumerate([(first, True, 1.0)] * 6 + [(first, False, 0.0)] * 2
                                                + [(second, True, 1.0)] * 2 + [(second, False, 0.0)] * 6):  # fmt: skip
        Response.objects.create(experiment=experiment, target=target, item_key="prompt", repetition=i, passed=passed,
                                score=score)  # fmt: skip
    from apps.experiments.selectors import compare_targets

    result = compare_targets(experiment)
    assert result["pass_rate_difference"] == pytest.approx(2 / 8 - 6 / 8)
    assert result["pass_rate_p_value"] == pytest.approx(stats.fisher_exact([[6, 2], [2, 6]]).pvalue)
    expected = stats.mannwhitneyu([1.0] * 6 + [0.0] * 2, [1.0] * 2 + [0.0] * 6, alternative="two-sided").pvalue
    assert result["mean_score_p_value"] == pytest.approx(expected)


def test_request_options_from_the_form_reach_the_server_and_the_responses(team, member):
    """Top-k, min-p, repetition penalty, min tokens, ignore EOS, stop and a JSON schema, chosen on the experiment
    form, are in every body the server receives and recorded on each response."""
    from aiohttp import web

    from apps.experiments.forms import ExperimentForm
    from apps.providers.mockllm import MockProfile, make_app, received_requests

    app = make_app(MockProfile(ttft_ms=2, itl_ms=1, output_tokens=6))

    async def start():
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    async def stop(runner):
        await runner.cleanup()

    with running_in_thread(start, stop) as runner:
        ProviderEndpoint.objects.create(team=team, name="mock", kind="openai_compatible",
                                                   base_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v1")  # fmt: skip
        schema = '{"name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}'
        form = ExperimentForm({
            "name": "opts", "targets_text": "mock: mock", "prompt": "Say hi", "responses_per_item": 2,
            "max_tokens": 6, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "min_tokens": 3,
            "ignore_eos": "on", "stop_text": "END\n\nSTOP", "response_format": "json_schema", "json_schema": schema,
        }, team=team)  # fmt: skip
        assert form.is_valid(), form.errors
        experiment = experiment_create(team=team, user=member, **form.create_kwargs())
        assert run_experiment(experiment.pk) == "completed"
        bodies = [entry["body"] for entry in received_requests(app) if entry["path"].endswith("/chat/completions")]
    expected = {"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "min_tokens": 3, "ignore_eos": True,
                "stop": ["END", "STOP"],
                "response_format": {"type": "json_schema", "json_schema": json.loads(schema)}}  # fmt: skip
    assert len(bodies) == 2 and all({k: b.get(k) for k in expected} == expected for b in bodies)
    for response in Response.objects.filter(experiment=experiment):
        assert {k: response.parameters.get(k) for k in expected} == expected


@pytest.mark.parametrize(
    "fields, error_field",
    [({"stop_text": "a\nb\nc\nd\ne"}, "stop_text"), ({"response_format": "json_schema", "json_schema": "{"}, "json_schema"),
     ({"response_format": "json_schema", "json_schema": '{"name": "x"}'}, "json_schema"), ({"min_p": 2}, "min_p")],
)  # fmt: skip
def test_bad_request_options_name_their_field(team, fields, error_field):
    from apps.experiments.forms import ExperimentForm

    sim(team)
    form = ExperimentForm({"name": "x", "targets_text": "sim: sim-small", "prompt": "p", "responses_per_item": 1,
                           **fields}, team=team)  # fmt: skip
    assert not form.is_valid() and error_field in form.errors
