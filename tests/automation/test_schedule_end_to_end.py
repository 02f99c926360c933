"""End to end with the real run kinds: the tick fires a schedule of an experiment against the simulator, the
worker's part runs the repeat, the next tick stores its figures; a second repeat against an endpoint that now fails
every request is compared with the first, flagged as a regression, notified and drawn on the timeline."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.automation import services
from apps.automation.models import Schedule
from apps.automation.services import schedule_create
from apps.automation.tasks import automation_tick
from apps.experiments.services import experiment_create
from apps.notifications import events
from apps.providers.models import ProviderEndpoint
from tests.automation import test_runkinds_support
from tests.automation.fakes import latest
from tests.automation.test_runkinds_support import drain
from tests.batches.helpers import FAST, approved_case, sim_endpoint

pytestmark = pytest.mark.django_db(transaction=True)
submitted = test_runkinds_support.submitted  # the fixture: the apps' job_submit calls, recorded


def due_now(schedule: Schedule) -> None:
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now() - timedelta(seconds=1))


def test_the_tick_fires_runs_and_compares_a_scheduled_experiment(team, member, submitted, monkeypatch, client):
    """Fired by the tick, run by the worker's part, settled by the next tick; then an endpoint failing every request
    makes the second repeat's error rate a regression (Fisher's exact test), notified and ringed on the chart."""
    sent = []
    monkeypatch.setattr(services, "notify", lambda **kwargs: sent.append(kwargs))
    endpoint = sim_endpoint(team)
    case = approved_case(team, member, expected_output="", evaluator="regex", evaluator_settings={"pattern": "."})
    template = experiment_create(team=team, user=member, name="nightly", targets=[(endpoint, "sim-small")],
                                 test_cases=[case], responses_per_item=40)  # fmt: skip
    schedule = schedule_create(team=team, user=member, kind="experiment", template_run_id=template.pk,
                               interval_minutes=60, name="Nightly")  # fmt: skip

    due_now(schedule)
    assert automation_tick()["fired"] == 1
    first = latest(schedule)
    assert first.state == "running" and first.run_id != template.pk
    assert first.run_title == f"Experiment #{first.run_id} · nightly"
    assert drain(submitted) == ["completed"]
    assert automation_tick()["settled"] == 1
    first.refresh_from_db()
    assert first.state == "completed" and first.comparison == []
    assert first.figures["pass_rate"]["value"] == 1.0 and first.figures["error_rate"]["value"] == 0.0

    ProviderEndpoint.objects.filter(pk=endpoint.pk).update(base_url=f"{FAST}&error_rate=1")
    due_now(schedule)
    assert automation_tick()["fired"] == 1
    drain(submitted)
    automation_tick()
    second = latest(schedule)
    assert second.state == "completed" and second.baseline_run_id == first.run_id
    verdicts = {c["name"]: c for c in second.comparison}
    assert verdicts["error_rate"]["verdict"] == "regression" and verdicts["error_rate"]["p_value"] < 0.05
    assert second.regression
    assert [e["event"] for e in sent] == [events.REGRESSION] and "Error rate" in sent[0]["title"]
    schedule.refresh_from_db()
    assert schedule.consecutive_failures == 0 and not schedule.paused

    client.force_login(member)
    html = client.get(reverse("automation:timeline", args=[schedule.pk]), {"figure": "error_rate"}).content.decode()
    chart = html[html.index("<svg") : html.index("</svg>")]
    assert chart.count('class="point"') == 2 and chart.count('class="regression"') == 1
    assert f'href="/experiments/{second.run_id}/"' in html and "Error rate: 1 vs 0 (Fisher" in html
