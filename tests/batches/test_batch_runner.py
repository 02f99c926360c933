"""Parameter sweeps in the worker: every (target, item, combination, repetition) stored once,
chunks that continue, cancel, resume, a refused key, the lease, recovery of a lost worker, the
team's limit, and refusal of another team's test cases, suites and endpoints."""

import threading
import time
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from apps.batches import batch_runner, services
from apps.batches.batch_runner import run_batch_chunk
from apps.batches.models import Batch
from apps.batches.parameters import combination
from apps.batches.selectors import combination_figures
from apps.batches.services import (
    BatchRefused,
    ConfirmationRequired,
    batch_cancel,
    batch_delete,
    batch_start,
    batch_state,
    batches_recover_stalled,
)
from apps.experiments.models import Experiment, Response
from apps.experiments.services import TransitionRefused, suite_publish
from apps.providers.models import ProviderEndpoint
from tests.batches.helpers import approved_case, make_batch, sim_endpoint
from tests.providers.servers import MockLLMServer, Script
from tests.threaded import closing_connection, running_in_thread

# The runner writes from its own thread (its own connection): these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)


def started(batch, **kwargs):
    return batch_start(batch=batch, **kwargs)


def keys(batch):
    return list(Response.objects.filter(experiment_id=batch.pk).values_list("target_id", "item_key", "combination",
                                                                            "repetition"))  # fmt: skip


def test_a_prompt_sweep_stores_one_result_per_combination_and_repetition(team, queued):
    batch = started(make_batch(team))
    assert batch.combination_count == 6 and batch.result_count == 12 and len(queued) == 1
    assert run_batch_chunk(batch.pk) == "completed"
    batch.refresh_from_db()
    stored = keys(batch)
    assert len(stored) == len(set(stored)) == 12
    for response in Response.objects.filter(experiment_id=batch.pk):
        assert response.parameters == combination(batch.parameter_values, response.combination)
        assert response.quality["overall"] >= 0 and response.latency_ms is not None
    state = batch_state(batch)
    assert state["status"] == "completed" and state["progress"] == 100.0 and state["completed_combinations"] == 6
    figures = combination_figures(batch, "overall")
    best = max(figures, key=lambda f: f.mean)
    assert state["results_preview"]["best_quality_score"] == pytest.approx(best.mean, abs=1e-4)
    assert state["results_preview"]["optimal_parameters"] == best.parameters
    overall = [r.quality["overall"] for r in Response.objects.filter(experiment_id=batch.pk)]
    assert state["results_preview"]["average_quality_score"] == pytest.approx(sum(overall) / 12, abs=1e-4)


def test_test_cases_are_evaluated_in_every_combination(team, member, queued):
    hit = approved_case(team, member, evaluator="regex", evaluator_settings={"pattern": "."})
    miss = approved_case(team, member, title="miss", evaluator="contains", expected_output="zzz-not-there")
    batch = started(make_batch(team, prompt="", test_cases=[hit, miss], objective="pass_rate", repetitions=1))
    assert batch.result_count == 12
    run_batch_chunk(batch.pk)
    rows = Response.objects.filter(experiment_id=batch.pk)
    assert {r.passed for r in rows.filter(test_case=hit)} == {True}
    assert {r.passed for r in rows.filter(test_case=miss)} == {False}
    batch.refresh_from_db()
    assert batch.preview["average"] == pytest.approx(50.0)


def test_a_chunk_stops_on_time_and_the_next_one_continues(team, queued, settings, sim_calls):
    settings.BATCH_CHUNK_S = 1
    endpoint = sim_endpoint(team, base_url="sim://local?ttft_ms=300&itl_ms=1&jitter=0")
    batch = started(
        make_batch(
            team, endpoint=endpoint, concurrency=2, ranges={"temperature": {"min": 0.1, "max": 1.0, "step": 0.1}}
        )
    )
    assert run_batch_chunk(batch.pk) == "continued"
    batch.refresh_from_db()
    first = batch.completed_results
    assert 0 < first < 20 and batch.lease == "" and len(queued) == 2  # released, and the next chunk queued
    assert batch.experiment.status == "running"
    outcome = "continued"
    while outcome == "continued":
        outcome = run_batch_chunk(batch.pk)
    assert outcome == "completed" and len(set(keys(batch))) == len(keys(batch)) == 20
    assert len(sim_calls) == 20  # nothing was asked twice across chunks


def test_cancel_stops_at_once_keeps_what_finished_and_resume_asks_only_the_rest(team, queued, sim_calls):
    endpoint = sim_endpoint(team, base_url="sim://local?ttft_ms=40&itl_ms=1&jitter=0")
    batch = started(make_batch(team, endpoint=endpoint, concurrency=2, repetitions=1,
                               ranges={"temperature": {"min": 0.1, "max": 2.0, "step": 0.1}}))  # fmt: skip
    outcome = {}
    worker = threading.Thread(
        target=closing_connection(lambda: outcome.setdefault("status", run_batch_chunk(batch.pk)))
    )
    worker.start()
    deadline = time.monotonic() + 10
    while Response.objects.filter(experiment_id=batch.pk).count() < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    asked = time.monotonic()
    batch_cancel(batch=batch)
    worker.join(timeout=10)
    # the whole batch takes ~0.4 s, so kept < 20 below is what shows it stopped; the clock bound is generous
    assert outcome["status"] == "cancelled" and time.monotonic() - asked < 5
    kept = Response.objects.filter(experiment_id=batch.pk).count()
    assert 4 <= kept < 20
    batch.refresh_from_db()
    assert batch.experiment.status == "cancelled" and batch.completed_results == kept and batch.lease == ""
    calls_before = len(sim_calls)
    started(batch)
    assert run_batch_chunk(batch.pk) == "completed"
    assert len(keys(batch)) == len(set(keys(batch))) == 20
    assert len(sim_calls) - calls_before == 20 - kept  # resume asked exactly the missing ones


def test_a_cancel_before_a_worker_picks_it_up_runs_nothing(team, queued, sim_calls):
    batch = started(make_batch(team))
    batch_cancel(batch=batch)
    assert Experiment.objects.get(pk=batch.pk).status == "cancelled"
    assert run_batch_chunk(batch.pk) == "cancelled" and not sim_calls


def test_a_second_delivery_waits_for_the_lease_of_a_live_chunk(team, queued, monkeypatch):
    monkeypatch.setattr(batch_runner, "LEASE_TTL", timedelta(seconds=1))
    batch = started(make_batch(team))
    Batch.objects.filter(pk=batch.pk).update(lease="someone-else", heartbeat_at=timezone.now())
    Experiment.objects.filter(pk=batch.pk).update(status="running")

    stop = threading.Event()

    def alive():  # the other chunk keeps beating
        while not stop.is_set():
            Batch.objects.filter(pk=batch.pk).update(heartbeat_at=timezone.now())
            time.sleep(0.2)

    beater = threading.Thread(target=closing_connection(alive))
    beater.start()
    try:
        assert run_batch_chunk(batch.pk) == "running elsewhere"
    finally:
        stop.set()
        beater.join()
    assert not Response.objects.filter(experiment_id=batch.pk).exists()


def test_a_dead_workers_lease_is_taken_over(team, queued, sim_calls):
    batch = started(make_batch(team))
    Batch.objects.filter(pk=batch.pk).update(lease="dead", heartbeat_at=timezone.now() - timedelta(minutes=1))
    Experiment.objects.filter(pk=batch.pk).update(status="running")
    assert run_batch_chunk(batch.pk) == "completed" and len(sim_calls) == 12


def test_a_chunk_that_lost_its_lease_writes_nothing(team, queued):
    batch = started(make_batch(team))
    with pytest.raises(batch_runner.LeaseLost):
        batch_runner._checkpoint(batch.pk, "not-mine", [], {"completed_results": 1})
    assert Batch.objects.get(pk=batch.pk).completed_results == 0


def test_recovery_requeues_a_silent_batch_and_fails_one_that_keeps_dying(team, queued):
    batch = started(make_batch(team))
    queued.clear()
    Experiment.objects.filter(pk=batch.pk).update(status="running")
    Batch.objects.filter(pk=batch.pk).update(lease="dead", heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert batches_recover_stalled() == 1 and queued == [("apps.batches.tasks.batch_run_chunk", batch.pk)]
    assert Batch.objects.get(pk=batch.pk).recoveries == 1
    assert batches_recover_stalled() == 0  # queued again already: nothing ran, nothing more to do
    # the chunks queued since took the lease and died too, without storing anything
    Batch.objects.filter(pk=batch.pk).update(recoveries=services.MAX_RECOVERIES - 1, lease="dead again")
    assert batches_recover_stalled() == 1
    experiment = Experiment.objects.get(pk=batch.pk)
    assert experiment.status == "failed" and "Resume" in experiment.error
    assert batches_recover_stalled() == 0


def test_recovery_requeues_a_pending_batch_whose_task_was_lost(team, queued):
    batch = started(make_batch(team))
    queued.clear()
    Batch.objects.filter(pk=batch.pk).update(queued_at=timezone.now() - timedelta(minutes=10))
    assert batches_recover_stalled() == 1 and len(queued) == 1
    assert batches_recover_stalled() == 0  # queued_at moved on: not again before the grace passes


def test_a_refused_key_fails_the_batch_and_says_so(team, queued):
    async def start():
        return await MockLLMServer(Script(status=401, error_message="bad key")).start()

    async def stop(server):
        await server.close()

    with running_in_thread(start, stop) as server:
        endpoint = ProviderEndpoint.objects.create(team=team, name="http", kind="openai_compatible",
                                                   base_url=f"{server.root}/v1")  # fmt: skip
        batch = started(make_batch(team, endpoint=endpoint))
        assert run_batch_chunk(batch.pk) == "failed"
    experiment = Experiment.objects.get(pk=batch.pk)
    assert "refused the API key (401)" in experiment.error
    assert not Response.objects.filter(experiment_id=batch.pk).exists()  # a refusal is not a result
    assert Batch.objects.get(pk=batch.pk).lease == ""


def test_the_teams_limit_needs_a_confirmation(team, queued):
    team.batch_confirm_requests = 10
    team.save()
    batch = make_batch(team)
    assert (
        batch.estimate["over_limit"] and "12 requests is over the team's limit of 10" in batch.estimate["limit_reason"]
    )
    with pytest.raises(ConfirmationRequired, match="Confirm to start"):
        batch_start(batch=batch)
    assert not queued
    batch_start(batch=batch, confirm=True)
    assert Batch.objects.get(pk=batch.pk).confirmed and len(queued) == 1


def test_start_refuses_a_running_completed_or_queued_batch(team, queued):
    batch = started(make_batch(team))
    with pytest.raises(BatchRefused, match="already queued"):
        batch_start(batch=batch)
    run_batch_chunk(batch.pk)
    with pytest.raises(BatchRefused, match="completed"):
        batch_start(batch=batch)


def test_delete_refuses_a_running_batch(team, queued):
    batch = started(make_batch(team))
    Experiment.objects.filter(pk=batch.pk).update(status="running")
    with pytest.raises(BatchRefused, match="cancel it first"):
        batch_delete(batch=Batch.objects.get(pk=batch.pk))
    Experiment.objects.filter(pk=batch.pk).update(status="failed")
    batch_delete(batch=Batch.objects.get(pk=batch.pk))
    assert not Batch.objects.exists() and not Experiment.objects.exists()


def test_another_teams_endpoint_test_case_or_suite_is_refused(team, other_team, member, outsider):
    theirs, mine = approved_case(other_team, outsider), sim_endpoint(team)
    with pytest.raises(TransitionRefused, match="approved test cases of the team"):
        make_batch(team, endpoint=mine, prompt="", test_cases=[theirs])
    with pytest.raises(TransitionRefused, match="endpoint"):
        make_batch(team, endpoint=sim_endpoint(other_team, name="theirs"))
    suite = suite_publish(team=other_team, name="s", test_cases=[theirs])
    with pytest.raises(TransitionRefused, match="suite"):
        make_batch(team, endpoint=mine, prompt="", suite=suite)
    assert not Batch.objects.exists()


def test_an_experiment_page_cannot_start_a_sweep(team, queued):
    from apps.experiments.services import experiment_start

    batch = make_batch(team)
    with pytest.raises(TransitionRefused, match="parameter sweep"):
        experiment_start(experiment=batch.experiment)


def test_results_are_counted_per_combination(team, queued):
    batch = started(make_batch(team, repetitions=3))
    run_batch_chunk(batch.pk)
    counts = dict(Response.objects.filter(experiment_id=batch.pk).values_list("combination").annotate(n=Count("id")))
    assert counts == dict.fromkeys(range(6), 3)


def test_a_sweeps_fixed_request_options_go_with_every_combination(team, queued, monkeypatch):
    """Options chosen on the sweep's form (stop, top-k …) are sent with each swept temperature and top-p."""
    from apps.batches.forms import BatchForm
    from apps.providers.engine.sim import SimAdapter

    sent = []
    original = SimAdapter.generate

    async def spy(self, session, request):
        sent.append(request)
        return await original(self, session, request)

    monkeypatch.setattr(SimAdapter, "generate", spy)
    endpoint = sim_endpoint(team)
    form = BatchForm({"name": "opts", "target_pairs": [f"{endpoint.pk}:sim-small"], "prompt": "p",
                      "responses_per_item": 1, "concurrency": 2, "temperature": "0.2, 0.8", "objective": "overall",
                      "top_k": 40, "stop_text": "END", "response_format": "json_object"}, team=team)  # fmt: skip
    assert form.is_valid(), form.errors
    batch = started(services.batch_create(team=team, user=None, **form.create_kwargs()))
    assert run_batch_chunk(batch.pk) == "completed"
    assert sorted(r.temperature for r in sent) == [0.2, 0.8]
    assert {(r.top_k, tuple(r.stop), r.response_format["type"]) for r in sent} == {(40, ("END",), "json_object")}
