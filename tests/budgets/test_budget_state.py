"""The month's metered spend of every run kind, what budget_check refuses (with its figures) and allows, the
dashboard's figure equal to budget_state's, and the 80% / 100% events once per month."""

import pytest
from django.urls import reverse

from apps.benchmarks.models import BenchmarkAnswer, BenchmarkItem, BenchmarkRun
from apps.notifications import events
from apps.providers.budget import (
    BudgetExceeded,
    BudgetWatch,
    budget_check,
    budget_events,
    budget_state,
    month_start_utc,
)
from tests.budgets.conftest import answers, priced_endpoint, responses, set_budget, sim_endpoint

pytestmark = pytest.mark.django_db


def test_spend_adds_every_metered_kind_of_this_month_and_nothing_else(team, other_team):
    """Responses and benchmark answers of the team count; last month's, other teams' and simulated ones do not."""
    endpoint = priced_endpoint(team, name="real")
    responses(team, [1.25, 0.75], endpoint=endpoint)
    answers(team, [0.5, 0.5], endpoint=endpoint)
    responses(team, [100.0], last_month=True)
    responses(team, [7.0], simulated=True)
    answers(team, [9.0], endpoint=sim_endpoint(team))
    responses(other_team, [50.0])
    state = budget_state(team.pk)
    assert state.spent_usd == pytest.approx(3.0)
    assert state.budget_usd is None and state.hard_limit is False and state.left_usd is None


def test_the_dashboard_shows_the_same_total_as_budget_state(team, viewer_client):
    """The tile's total (experiments, sweeps and benchmark answers) is budget_state's spend, per endpoint too."""
    set_budget(team, 10.0)
    endpoint = priced_endpoint(team, name="real")
    responses(team, [1.0, 2.0], endpoint=endpoint)
    answers(team, [0.25], endpoint=endpoint)
    answers(team, [0.5], endpoint=priced_endpoint(team, name="other"))
    cost = viewer_client.get(reverse("home")).context["cost"]
    assert cost.total_usd == pytest.approx(budget_state(team.pk).spent_usd) == pytest.approx(3.75)
    assert [(row.name, row.cost_usd, row.responses) for row in cost.by_endpoint] == [
        ("real", 3.25, 3),
        ("other", 0.5, 1),
    ]
    assert cost.hard_limit is True
    # a benchmark answer stored after the page was seen shows at once (the cached tile's version moves)
    run = BenchmarkRun.objects.get(targets__endpoint__name="other")
    item = BenchmarkItem.objects.filter(suite=run.suite, split="test").order_by("index")[1]
    BenchmarkAnswer.objects.create(run=run, target=run.targets.get(), item=item, cost_usd=1.0, correct=True)
    BenchmarkRun.objects.filter(pk=run.pk).update(completed_answers=2)
    assert viewer_client.get(reverse("home")).context["cost"].total_usd == pytest.approx(4.75)


def test_a_run_estimated_over_what_is_left_is_refused_with_the_figures(team):
    """The message says the estimate, what is left, the budget and the spend since the 1st."""
    set_budget(team, 50.0)
    responses(team, [46.90])
    with pytest.raises(BudgetExceeded) as refused:
        budget_check(team_id=team.pk, estimate_usd=4.20, what="This parameter sweep")
    start = month_start_utc()
    assert refused.value.messages == [
        f"This parameter sweep cannot start: estimated $4.20, $3.10 left of the $50.00 monthly budget "
        f"($46.90 spent since 1 {start:%B})."
    ]
    budget_check(team_id=team.pk, estimate_usd=3.10, what="x")  # exactly what is left: allowed


def test_without_the_hard_limit_or_a_budget_everything_is_allowed(team):
    """A budget that is not a hard limit only warns; no budget at all allows anything."""
    set_budget(team, 1.0, hard=False)
    responses(team, [5.0])
    budget_check(team_id=team.pk, estimate_usd=100.0, what="x")
    budget_check(team_id=team.pk, estimate_usd=None, what="x")
    set_budget(team, None)
    budget_check(team_id=team.pk, estimate_usd=100.0, what="x")


def test_a_run_without_an_estimate_is_refused_only_when_nothing_is_left(team):
    """No estimate: allowed while anything is left; refused once the budget is spent. Simulated runs (0.0) never."""
    set_budget(team, 10.0)
    responses(team, [9.99])
    budget_check(team_id=team.pk, estimate_usd=None, what="This load sweep")
    responses(team, [0.01])
    with pytest.raises(BudgetExceeded, match=r"This load sweep cannot start: nothing is left of the \$10.00 monthly "
                                             r"budget \(\$10.00 spent since 1 "):  # fmt: skip
        budget_check(team_id=team.pk, estimate_usd=None, what="This load sweep")
    budget_check(team_id=team.pk, estimate_usd=0.0, what="A simulated run")


def test_80_and_100_percent_are_told_once_per_month(team, notified):
    """Below 80% nothing; at 80% budget_80; at 100% budget_100; each with a per-month dedupe key."""
    set_budget(team, 10.0)
    responses(team, [7.9])
    assert budget_events(team.pk) is None and notified == []
    responses(team, [0.1])
    assert budget_events(team.pk) == events.BUDGET_80
    month = f"{month_start_utc():%Y-%m}"
    assert notified[-1]["event"] == events.BUDGET_80 and notified[-1]["dedupe_key"] == f"budget-80-{team.pk}-{month}"
    assert notified[-1]["team_id"] == team.pk and "$8.00 of the $10.00 monthly budget" in notified[-1]["text"]
    responses(team, [2.5])
    assert budget_events(team.pk) == events.BUDGET_100
    assert notified[-1]["dedupe_key"] == f"budget-100-{team.pk}-{month}"
    assert notified[-1]["facts"]["Spent this month"] == "$10.50" and notified[-1]["facts"]["Hard limit"].startswith(
        "yes"
    )
    assert "hard limit" in notified[-1]["text"]


def test_no_budget_no_event_and_a_failing_notify_never_breaks_a_run(team, monkeypatch):
    """Without a budget nothing is sent; a notify that raises is logged, not raised."""
    responses(team, [100.0])
    assert budget_events(team.pk) is None

    def broken(**kwargs):
        raise RuntimeError("down")

    monkeypatch.setattr("apps.notifications.services.notify", broken)
    set_budget(team, 1.0)
    assert budget_events(team.pk) is None


def test_the_watch_adds_costs_and_says_why_it_stops(team, notified, settings):
    """Reached once spend plus the answers added reach the budget; only with the hard limit."""
    set_budget(team, 5.0)
    responses(team, [4.0])
    watch = BudgetWatch(team.pk)
    assert watch.due()
    watch.refresh()
    assert not watch.reached and not watch.due()
    watch.add(0.5)
    watch.add(None)
    assert not watch.reached
    watch.add(0.52)
    assert watch.reached and watch.reason == "Stopped: the team's monthly budget of $5.00 was reached ($5.02 spent)."
    set_budget(team, 5.0, hard=False)
    watch.refresh()
    watch.add(10.0)
    assert not watch.reached
    assert not BudgetWatch(team.pk, metered=False).due()


def test_the_events_are_stored_once_a_month_through_notify(team, django_capture_on_commit_callbacks):
    """The real notify(): one budget_80 Event, however often the 80% level is seen again."""
    from apps.notifications.models import Event

    set_budget(team, 10.0)
    responses(team, [8.5])
    with django_capture_on_commit_callbacks(execute=False):  # deliveries are not this test's business
        for _ in range(3):
            budget_events(team.pk)
    stored = Event.objects.filter(team=team)
    assert [(e.event, e.dedupe_key, e.url) for e in stored] == [
        (events.BUDGET_80, f"budget-80-{team.pk}-{month_start_utc():%Y-%m}", "/")
    ]
