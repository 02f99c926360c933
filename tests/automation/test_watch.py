"""Run events: a run that finished is told once (finished with its headline figure, failed or stopped with its
error), a run over the error-rate threshold is told once (a running one only past a minimum of requests), runs
older than a day are not, each look costs one query per run kind, and one event that cannot be stored does not
keep the others back."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from apps.automation import watch
from apps.automation.runkinds import RunRef, run_error_rate
from apps.experiments.models import Experiment
from apps.experiments.services import experiment_create, experiment_start
from apps.notifications.events import ERROR_RATE, RUN_FAILED, RUN_FINISHED
from apps.notifications.models import Event
from apps.providers.models import ProviderEndpoint
from tests.automation.test_runkinds_support import drain, record_submissions
from tests.batches.helpers import approved_case, sim_endpoint
from tests.batches.test_sweeps import make_sweep
from tests.experiments.test_experiments import _server
from tests.providers.servers import Script

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def submitted(monkeypatch):
    """The runs' tasks, recorded instead of queued (drain() runs them)."""
    return record_submissions(monkeypatch)


@pytest.fixture(autouse=True)
def _no_deliveries(monkeypatch):
    """Deliveries are the notifications app's business: recorded, not queued."""
    queued: list = []
    monkeypatch.setattr("apps.notifications.services.async_task", lambda *args, **kwargs: queued.append(args))
    cache.delete(watch.LAST_LOOK_KEY)
    return queued


def run_experiment(team, user, submitted, *, endpoint=None, responses=4, **fields):
    endpoint = endpoint or ProviderEndpoint.objects.filter(team=team, name="sim").first() or sim_endpoint(team)
    case = approved_case(team, user, expected_output="", evaluator="regex", evaluator_settings={"pattern": "."})
    experiment = experiment_create(team=team, user=user, name="nightly", targets=[(endpoint, "sim-small")],
                                   test_cases=[case], responses_per_item=responses, **fields)  # fmt: skip
    experiment_start(experiment=experiment)
    drain(submitted)
    experiment.refresh_from_db()
    return experiment


def test_a_finished_experiment_is_told_once_with_its_headline(team, member, submitted):
    """RUN_FINISHED with the run's page, its pass rate and interval; the next look sends nothing."""
    experiment = run_experiment(team, member, submitted)
    assert experiment.status == "completed"
    assert watch.runs_watch() == 1
    event = Event.objects.get(team=team)
    assert event.event == RUN_FINISHED and event.dedupe_key == watch.finished_key(
        "experiment", experiment.pk, "completed", experiment.finished_at
    )
    assert event.title == f"Experiment #{experiment.pk} · nightly finished"
    assert event.url == f"/experiments/{experiment.pk}/"
    assert "Pass rate: 100.0% (95% CI" in event.text and event.facts["Run"] == "Experiment"
    assert event.facts["Error rate"] == "0.0% of 4 requests"
    assert watch.runs_watch() == 0
    cache.delete(watch.LAST_LOOK_KEY)  # the look-back lost (a cache flush): the event log still keeps it once
    assert watch.runs_watch() == 0 and Event.objects.count() == 1


def test_a_failed_run_is_told_with_its_error(team, member, submitted):
    """A refused key fails the run: RUN_FAILED carries the run's own words."""
    with _server(Script(status=401, error_message="invalid api key")) as server:
        endpoint = ProviderEndpoint.objects.create(team=team, name="bad", kind="openai_compatible",
                                                   base_url=f"{server.root}/v1", max_concurrency=1)  # fmt: skip
        experiment = run_experiment(team, member, submitted, endpoint=endpoint, responses=2)
    assert experiment.status == "failed"
    watch.runs_watch()
    event = Event.objects.get(team=team, event=RUN_FAILED)
    assert event.title.endswith(" failed") and "refused the API key (401)" in event.text
    assert event.dedupe_key == watch.finished_key("experiment", experiment.pk, "failed", experiment.finished_at)


def test_a_resumed_run_that_fails_again_is_told_again(team, member, submitted):
    """Each end of a run is its own event: failed, resumed, failed again → two RUN_FAILED; further looks send
    nothing more."""
    experiment = run_experiment(team, member, submitted)
    first_end = timezone.now() - timedelta(minutes=5)
    Experiment.objects.filter(pk=experiment.pk).update(status="failed", error="The endpoint went away.",
                                                       finished_at=first_end)  # fmt: skip
    assert watch.runs_watch() == 1
    Experiment.objects.filter(pk=experiment.pk).update(status="running", error="", finished_at=None)  # resumed
    assert watch.runs_watch() == 0
    Experiment.objects.filter(pk=experiment.pk).update(status="failed", error="The endpoint refused the key.",
                                                       finished_at=timezone.now())  # fmt: skip
    assert watch.runs_watch() == 1 and watch.runs_watch() == 0
    told = list(Event.objects.filter(team=team, event=RUN_FAILED).order_by("id").values_list("text", flat=True))
    assert told == ["The endpoint went away.", "The endpoint refused the key."]


def test_a_cancel_with_a_reason_is_a_stop_and_without_one_a_finish(team, member, submitted):
    """A budget stop (cancelled, with the reason) is RUN_FAILED "stopped"; a person's cancel is RUN_FINISHED."""
    stopped = run_experiment(team, member, submitted)
    cancelled = run_experiment(team, member, submitted)
    Experiment.objects.filter(pk=stopped.pk).update(
        status="cancelled", error="Stopped: the team's monthly budget of $50.00 was reached ($50.02 spent)"
    )
    Experiment.objects.filter(pk=cancelled.pk).update(status="cancelled", error="")
    assert watch.runs_watch() == 2
    stop = Event.objects.get(dedupe_key__startswith=f"run-experiment-{stopped.pk}-cancelled-")
    assert stop.event == RUN_FAILED and stop.title.endswith(" stopped") and "monthly budget" in stop.text
    cancel = Event.objects.get(dedupe_key__startswith=f"run-experiment-{cancelled.pk}-cancelled-")
    assert cancel.event == RUN_FINISHED and cancel.title.endswith(" was cancelled")


def flaky_run(team, user, submitted, *, failures: int, responses: int):
    """An experiment whose first `failures` requests are refused (400, not retried) and the rest answered."""
    with _server(Script()) as server:
        server.queue.extend(Script(status=400, error_message="bad request") for _ in range(failures))
        endpoint = ProviderEndpoint.objects.create(team=team, name=f"flaky {failures} of {responses}", kind="openai_compatible",
                                                   base_url=f"{server.root}/v1", max_concurrency=1)  # fmt: skip
        return run_experiment(team, user, submitted, endpoint=endpoint, responses=responses)


def test_an_error_rate_over_the_threshold_is_told_once(team, member, submitted, settings):
    """3 of 10 requests refused: ERROR_RATE above the threshold, nothing at or below it."""
    experiment = flaky_run(team, member, submitted, failures=3, responses=10)
    assert run_error_rate(RunRef("experiment", experiment.pk)) == 0.3
    settings.NOTIFY_ERROR_RATE_THRESHOLD = 0.3
    watch.runs_watch()
    assert not Event.objects.filter(event=ERROR_RATE).exists()
    settings.NOTIFY_ERROR_RATE_THRESHOLD = 0.05
    assert watch.runs_watch() == 1  # the finish was told already
    event = Event.objects.get(event=ERROR_RATE)
    assert event.dedupe_key == f"error-rate-experiment-{experiment.pk}"
    assert event.text == "3 of 10 requests failed (30.0%), over the team's threshold of 5.0%."
    assert watch.runs_watch() == 0


def test_a_running_run_is_told_only_past_the_minimum_of_requests(team, member, submitted, settings):
    """Mid-run, 3 failures of the first 10 requests are no alarm yet; 3 of 20 (ERROR_RATE_MIN_REQUESTS) are."""
    settings.NOTIFY_ERROR_RATE_THRESHOLD = 0.05
    early = flaky_run(team, member, submitted, failures=3, responses=10)
    Experiment.objects.filter(pk=early.pk).update(status="running", finished_at=None)
    watch.runs_watch()
    assert not Event.objects.filter(event=ERROR_RATE).exists()
    later = flaky_run(team, member, submitted, failures=3, responses=watch.ERROR_RATE_MIN_REQUESTS)
    Experiment.objects.filter(pk=later.pk).update(status="running", finished_at=None)
    watch.runs_watch()
    event = Event.objects.get(event=ERROR_RATE)
    assert event.dedupe_key == f"error-rate-experiment-{later.pk}"
    assert event.text.endswith("so far.") and event.facts["Status"] == "running"


def test_runs_older_than_a_day_are_not_told(team, member, submitted):
    """Only runs that finished within the look-back are read."""
    experiment = run_experiment(team, member, submitted)
    Experiment.objects.filter(pk=experiment.pk).update(finished_at=timezone.now() - timedelta(days=1, minutes=1))
    assert watch.runs_watch() == 0 and not Event.objects.exists()


def test_a_look_at_nothing_costs_one_query_per_kind(team, django_assert_num_queries):
    """No run finished: five queries, one per run kind."""
    with django_assert_num_queries(5):
        assert watch.runs_watch() == 0


def test_a_load_sweep_is_told_with_its_page_and_error_rate(team, settings, submitted):
    """A sweep against a failing simulator: finished (headline TTFT p95) and its error rate from the stored steps."""
    from apps.automation.runkinds import run_repeat

    settings.NOTIFY_ERROR_RATE_THRESHOLD = 0.05
    flaky = sim_endpoint(team, "flaky", base_url="sim://local?ttft_ms=5&itl_ms=1&error_rate=0.3&rng_seed=5")
    template = make_sweep(team, endpoint=flaky, levels=[2], step_request_count=20, output_tokens=4)
    ref = run_repeat(kind="load_sweep", run_id=template.pk)
    drain(submitted)
    rate = run_error_rate(ref)
    assert rate is not None and rate > 0.05
    assert watch.runs_watch() == 2
    finished = Event.objects.get(event=RUN_FINISHED)
    assert finished.url == f"/batches/load/{ref.run_id}/" and "TTFT p95" in finished.text
    assert Event.objects.get(event=ERROR_RATE).dedupe_key == f"error-rate-load_sweep-{ref.run_id}"


def test_an_event_that_cannot_be_stored_does_not_keep_the_others_back(team, member, submitted, monkeypatch):
    """notify failing for one run: the other run's event is still sent."""
    first = run_experiment(team, member, submitted)
    second = run_experiment(team, member, submitted)
    from apps.notifications import services

    real = services.notify

    def failing(**arguments):
        if arguments["dedupe_key"].startswith(f"run-experiment-{first.pk}-completed-"):
            raise RuntimeError("the event log is down")
        return real(**arguments)

    monkeypatch.setattr(watch, "notify", failing)
    assert watch.runs_watch() == 1
    assert Event.objects.get().dedupe_key == watch.finished_key(
        "experiment", second.pk, "completed", second.finished_at
    )
