"""A running run stops when the team's metered spend reaches its hard monthly budget, as a cancel stops it: what
finished is kept, the run is failed (resumable next month or with a larger budget) and says why; the team is told
the budget is spent. Against mockllm over HTTP (10 output tokens an answer) with the three runners."""

import re

import pytest

from apps.batches.services import batch_start
from apps.benchmarks.models import BenchmarkAnswer, BenchmarkRun, Status
from apps.benchmarks.services import TargetSpec, benchmark_run_create, benchmark_run_start
from apps.experiments.models import Experiment, Response
from apps.experiments.runner import run_experiment
from apps.experiments.services import experiment_create
from apps.notifications import events
from apps.providers.budget import BudgetExceeded, budget_state
from tests.batches.helpers import make_batch
from tests.batches.helpers import run_until_done as run_batch_until_done
from tests.benchmarks.test_runner import make_suite, mocks, run_until_done, write_key  # noqa: F401 - mocks: fixture
from tests.budgets.conftest import priced_endpoint, responses, set_budget

# The runners write from their own threads (their own connections): these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)

STOPPED = re.compile(r"^Stopped: the team's monthly budget of \$0\.45 was reached \(\$(\d+\.\d\d) spent\)\.$")


def test_an_experiment_stops_at_the_budget_and_keeps_what_finished(team, mockllm, notified):
    """$0.10 an answer, $0.45 budget, 20 answers asked one at a time: the fifth reaches it, nothing more is sent,
    the five are stored, the run fails with the reason, budget_100 is sent."""
    set_budget(team, 0.45)
    endpoint = priced_endpoint(team, mockllm, per_output_token=0.01, max_concurrency=1)
    experiment = experiment_create(team=team, user=None, name="spend", targets=[(endpoint, "mock")], prompt="hi",
                                   responses_per_item=20)  # fmt: skip
    assert run_experiment(experiment.pk) == Experiment.Status.FAILED
    experiment.refresh_from_db()
    stored = list(Response.objects.filter(experiment=experiment))
    assert len(stored) == 5 and all(r.content and r.cost_usd == pytest.approx(0.1) for r in stored)
    assert STOPPED.match(experiment.error), experiment.error
    assert float(STOPPED.match(experiment.error)[1]) == pytest.approx(0.5)
    assert budget_state(team.pk).spent_usd == pytest.approx(0.1 * len(stored))
    assert [n["event"] for n in notified] == [events.BUDGET_100]


def test_a_run_queued_after_the_budget_was_spent_sends_nothing(team, mockllm, notified):
    """Spend reached while the run waited in the queue: it stops before its first request."""
    set_budget(team, 0.45)
    responses(team, [0.45])
    endpoint = priced_endpoint(team, mockllm, per_output_token=0.01)
    experiment = experiment_create(team=team, user=None, name="late", targets=[(endpoint, "mock")], prompt="hi")
    assert run_experiment(experiment.pk) == Experiment.Status.FAILED
    experiment.refresh_from_db()
    assert experiment.error == "Stopped: the team's monthly budget of $0.45 was reached ($0.45 spent)."
    assert not Response.objects.filter(experiment=experiment).exists()


def test_without_the_hard_limit_the_run_completes(team, mockllm, notified):
    """The same run over the budget, not a hard limit: it completes; the team is told the budget is spent."""
    set_budget(team, 0.45, hard=False)
    endpoint = priced_endpoint(team, mockllm, per_output_token=0.01, max_concurrency=1)
    experiment = experiment_create(team=team, user=None, name="spend", targets=[(endpoint, "mock")], prompt="hi",
                                   responses_per_item=8)  # fmt: skip
    assert run_experiment(experiment.pk) == Experiment.Status.COMPLETED
    assert Response.objects.filter(experiment=experiment).count() == 8
    assert [n["event"] for n in notified] == [events.BUDGET_100]
    assert "hard limit" not in notified[0]["text"]


def test_a_parameter_sweep_stops_at_the_budget_and_keeps_its_results(team, mockllm, notified, submitted):
    """Started while the budget was a warning, made a hard limit before the worker ran: it stops at the fifth
    $0.10 result and keeps the five."""
    set_budget(team, 0.45, hard=False)
    endpoint = priced_endpoint(team, mockllm, per_output_token=0.01, max_concurrency=1)
    batch = make_batch(team, endpoint=endpoint, ranges={"temperature": [0.2, 0.8]}, repetitions=10, concurrency=1)
    batch_start(batch=batch, confirm=True)
    set_budget(team, 0.45)
    run_batch_until_done(batch.pk)
    experiment = Experiment.objects.get(pk=batch.pk)
    stored = Response.objects.filter(experiment=experiment).count()
    assert experiment.status == "failed" and STOPPED.match(experiment.error), experiment.error
    assert stored == 5
    assert budget_state(team.pk).spent_usd == pytest.approx(0.1 * stored)
    assert events.BUDGET_100 in [n["event"] for n in notified]


def test_a_benchmark_run_stops_at_the_budget_and_keeps_its_answers(team, mocks, tmp_path, notified, submitted):  # noqa: F811
    """A 60-item run on a known-answer mockllm: stopped with answers stored, fewer than asked, failed and why."""
    set_budget(team, 0.45, hard=False)
    suite = make_suite(team)
    key = write_key(suite, tmp_path / "key.jsonl")
    endpoint = priced_endpoint(team, mocks.start(key, 0.9, output_tokens=10), per_output_token=0.01)
    run = benchmark_run_create(team=team, user=None, suite=suite, concurrency=1, targets=[TargetSpec(endpoint, "mock")])
    benchmark_run_start(run=run)
    set_budget(team, 0.45)
    assert run_until_done(run.pk) == Status.FAILED
    run.refresh_from_db()
    stored = BenchmarkAnswer.objects.filter(run=run, error_code="")
    assert 0 < stored.count() < 60 and run.completed_answers == stored.count()
    assert STOPPED.match(run.error), run.error
    spent = budget_state(team.pk).spent_usd
    assert spent >= 0.45 and spent == pytest.approx(sum(a.cost_usd for a in stored))
    assert events.BUDGET_100 in [n["event"] for n in notified]
    # resuming is refused while nothing is left
    with pytest.raises(BudgetExceeded, match=r"This benchmark run cannot start: estimated \$[\d.]+, \$0\.00 left"):
        benchmark_run_start(run=BenchmarkRun.objects.get(pk=run.pk))
