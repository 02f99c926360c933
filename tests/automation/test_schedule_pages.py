"""The schedule pages: the list, a new schedule from a run's link, edit, pause / resume / delete, the timeline with
its chart and table, and the form's preview; roles, another team's schedule (404) and bad input (400)."""

from datetime import timedelta

import pytest
from django.urls import reverse

from apps.automation.models import Schedule
from apps.automation.services import schedule_create, schedule_fire, scheduled_runs_settle
from tests.automation.fakes import FakeKinds

pytestmark = pytest.mark.django_db


@pytest.fixture
def kinds(monkeypatch):
    return FakeKinds.install(monkeypatch)


def make(team, kinds, **fields):
    fields = {"kind": "experiment", "template_run_id": kinds.add(team), "interval_minutes": 60} | fields
    return schedule_create(team=team, user=None, **fields)


def new_url(kind="experiment", run=""):
    return f"{reverse('automation:schedule-new')}?kind={kind}&run={run}"


def test_the_link_on_a_run_page_opens_a_form_naming_the_run(member_client, team, kinds):
    run_id = kinds.add(team)
    assert new_url(run=run_id).startswith("/automation/schedules/new?kind=")
    page = member_client.get(new_url(run=run_id))
    assert page.status_code == 200
    html = page.content.decode()
    assert f"Nightly check #{run_id}</a>" in html and 'name="cron"' in html and 'name="interval_minutes"' in html
    assert '<option value="Europe/Paris">' in html  # the time zone suggestions


def test_a_member_creates_a_schedule_and_lands_on_its_timeline(member_client, member, team, kinds):
    run_id = kinds.add(team)
    form = {"kind": "experiment", "run": run_id, "cron": "30 7 * * 1", "timezone": "America/New_York",
            "max_failures": 2, "alpha": 0.05, "name": ""}  # fmt: skip
    response = member_client.post(new_url(run=run_id), form)
    schedule = Schedule.objects.get()
    assert response.status_code == 302 and response.url == reverse("automation:timeline", args=[schedule.pk])
    assert (schedule.cron, schedule.timezone, schedule.max_failures, schedule.created_by) == (
        "30 7 * * 1", "America/New_York", 2, member,
    )  # fmt: skip
    page = member_client.get(response.url).content.decode()
    assert (
        "Scheduled: at 07:30, only on Monday (America/New_York; cron 30 7 * * 1), first at " in page
        and "Not fired yet" in page
    )


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"cron": "every morning"}, "is not a cron expression"),
        ({"cron": "0 6 * * *", "interval_minutes": 30}, "not both"),
        ({}, "Give a cron expression"),
        ({"interval_minutes": 30, "timezone": "Paris"}, "is not a time zone"),
        ({"interval_minutes": 0}, "greater than or equal to 1"),
        ({"interval_minutes": 30, "alpha": 2}, "less than or equal to 0.5"),
    ],
)
def test_bad_input_is_a_400_with_the_reason_in_words(member_client, team, kinds, fields, words):
    run_id = kinds.add(team)
    form = {"kind": "experiment", "run": run_id, "timezone": "UTC", "max_failures": 3, "alpha": 0.05} | fields
    response = member_client.post(new_url(run=run_id), form)
    assert response.status_code == 400 and words in response.content.decode()
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    ("kind", "run"),
    [
        ("", "5"),
        ("nightly", "5"),
        ("experiment", ""),
        ("experiment", "x"),
        ("experiment", "²"),
        ("experiment", "9" * 30),
    ],
)
def test_a_new_schedule_without_a_run_is_a_400_that_says_where_to_start(member_client, kind, run):
    response = member_client.get(new_url(kind=kind, run=run))
    assert response.status_code == 400 and "Repeat on a schedule" in response.content.decode()


def test_another_teams_run_is_404(member_client, other_team, kinds):
    theirs = kinds.add(other_team)
    assert member_client.get(new_url(run=theirs)).status_code == 404
    assert member_client.post(new_url(run=theirs), {"kind": "experiment", "run": theirs,
                                                    "interval_minutes": 5}).status_code == 404  # fmt: skip


def test_viewers_see_schedules_but_cannot_create_change_or_delete_them(viewer_client, team, kinds):
    schedule = make(team, kinds, name="Nightly")
    page = viewer_client.get(reverse("automation:list")).content.decode()
    assert "Nightly" in page and "every hour" in page and "Pause</button>" not in page
    assert viewer_client.get(reverse("automation:timeline", args=[schedule.pk])).status_code == 200
    assert viewer_client.get(new_url(run=schedule.template_run_id)).status_code == 403
    assert viewer_client.get(reverse("automation:schedule-edit", args=[schedule.pk])).status_code == 403
    for action in ("pause", "resume", "delete"):
        assert viewer_client.post(reverse(f"automation:schedule-{action}", args=[schedule.pk])).status_code == 403
    assert Schedule.objects.filter(pk=schedule.pk, paused=False).exists()


def test_anonymous_visitors_are_sent_to_sign_in(client, team, kinds):
    schedule = make(team, kinds)
    for url in (reverse("automation:list"), reverse("automation:timeline", args=[schedule.pk])):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_another_teams_schedule_is_404_on_every_page(member_client, other_team, kinds):
    theirs = make(other_team, kinds)
    assert member_client.get(reverse("automation:timeline", args=[theirs.pk])).status_code == 404
    assert member_client.get(reverse("automation:schedule-edit", args=[theirs.pk])).status_code == 404
    for action in ("pause", "resume", "delete"):
        assert member_client.post(reverse(f"automation:schedule-{action}", args=[theirs.pk])).status_code == 404
    assert Schedule.objects.filter(pk=theirs.pk).exists()


def test_a_member_edits_the_timing(member_client, team, kinds):
    schedule = make(team, kinds, name="Old")
    page = member_client.get(reverse("automation:schedule-edit", args=[schedule.pk])).content.decode()
    assert 'value="Old"' in page and 'value="60"' in page and "Delete</button>" in page
    form = {"name": "New", "cron": "0 */6 * * *", "timezone": "UTC", "max_failures": 5, "alpha": 0.01}
    response = member_client.post(reverse("automation:schedule-edit", args=[schedule.pk]), form)
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert (schedule.name, schedule.cron, schedule.interval_minutes, schedule.max_failures, schedule.alpha) == (
        "New", "0 */6 * * *", None, 5, 0.01,
    )  # fmt: skip
    assert schedule.next_run_at.hour % 6 == 0 and schedule.next_run_at.minute == 0
    bad = member_client.post(reverse("automation:schedule-edit", args=[schedule.pk]), form | {"cron": "0 0 31 2 *"})
    assert bad.status_code == 400 and "is not a cron expression" in bad.content.decode()


def test_pause_resume_and_delete_from_the_pages(member_client, team, kinds):
    schedule = make(team, kinds, name="Nightly")
    response = member_client.post(reverse("automation:schedule-pause", args=[schedule.pk]), {"from": "list"})
    assert response.status_code == 302 and response.url == reverse("automation:list")
    page = member_client.get(response.url).content.decode()
    assert "“Nightly” is paused" in page and "Resume</button>" in page and "Paused by " in page
    response = member_client.post(reverse("automation:schedule-resume", args=[schedule.pk]))
    assert response.url == reverse("automation:timeline", args=[schedule.pk])
    assert not Schedule.objects.get(pk=schedule.pk).paused
    assert member_client.get(reverse("automation:schedule-pause", args=[schedule.pk])).status_code == 405
    response = member_client.post(reverse("automation:schedule-delete", args=[schedule.pk]))
    assert response.url == reverse("automation:list") and not Schedule.objects.exists()


def run_history(team, kinds):
    """Three completed runs (the third a regression), then a failure and a skip."""
    schedule = make(team, kinds, name="Nightly")
    start = schedule.next_run_at
    for hour, value in ((0, 0.9), (1, 0.91), (2, 0.6)):
        kinds.next_value = value
        kinds.finish(schedule_fire(schedule_id=schedule.pk, now=start + timedelta(hours=hour)))
        scheduled_runs_settle()
    failed = schedule_fire(schedule_id=schedule.pk, now=start + timedelta(hours=3))
    kinds.finish(failed, "failed", error="The endpoint answered 401 to every request.")
    schedule_fire(schedule_id=schedule.pk, now=start + timedelta(hours=4))
    schedule_fire(schedule_id=schedule.pk, now=start + timedelta(hours=5))  # the previous one still runs
    return schedule


def test_the_timeline_draws_each_run_and_rings_the_regression(viewer_client, team, kinds):
    schedule = run_history(team, kinds)
    html = viewer_client.get(reverse("automation:timeline", args=[schedule.pk])).content.decode()
    chart = html[html.index("<svg") : html.index("</svg>")]
    assert chart.count('class="point"') == 3 and chart.count('class="regression"') == 1
    assert 'aria-label="Pass rate per scheduled run"' in chart and "Worse than the run before" in chart
    assert "1 run with a regression" in html
    assert "Pass rate: 0.600 vs 0.910 (two-proportion z-test, p = 0.001) · " in html
    assert '<span class="verdict-regression">worse</span>' in html
    assert "The endpoint answered 401 to every request." in html
    assert "Skipped: the previous run #" in html and "The first completed run: nothing to compare with yet." in html
    other = viewer_client.get(reverse("automation:timeline", args=[schedule.pk]), {"figure": "p95_ttft_ms"})
    assert 'aria-label="p95 TTFT (ms) per scheduled run"' in other.content.decode()


def test_the_timeline_table_filters_by_state_through_htmx(viewer_client, team, kinds):
    schedule = run_history(team, kinds)
    url = reverse("automation:timeline", args=[schedule.pk])
    partial = viewer_client.get(url, {"state": "failed"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="runs")
    html = partial.content.decode()
    assert partial.status_code == 200 and "<svg" not in html and html.count("<tr ") == 1 and "401" in html
    bad = viewer_client.get(url, {"state": "exploded"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="runs")
    assert bad.status_code == 400 and "Choose a state from the list." in bad.content.decode()


def test_a_schedule_without_completed_runs_says_the_chart_comes_later(viewer_client, team, kinds):
    schedule = make(team, kinds)
    html = viewer_client.get(reverse("automation:timeline", args=[schedule.pk])).content.decode()
    assert "The chart appears once a scheduled run has completed." in html and "<svg" not in html


def test_the_form_previews_the_next_firings_on_the_zones_clock(member_client):
    url = reverse("automation:schedule-preview")
    html = member_client.get(url, {"cron": "0 9 * * *", "timezone": "Asia/Tokyo"}).content.decode()
    assert "At 09:00 (Asia/Tokyo; cron 0 9 * * *). Next: " in html and html.count("09:00 JST") == 3
    assert "is not a cron expression" in member_client.get(url, {"cron": "0 9 * *"}).content.decode()
    assert "every 45 minutes" in member_client.get(url, {"interval_minutes": "45"}).content.decode().lower()
    assert "Between 1 and" in member_client.get(url, {"interval_minutes": "9" * 12}).content.decode()
    assert "Give a cron expression" in member_client.get(url, {"interval_minutes": "²"}).content.decode()


def test_the_list_shows_each_schedules_last_run_and_status(member_client, team, kinds):
    schedule = run_history(team, kinds)
    Schedule.objects.filter(pk=schedule.pk).update(paused=True, paused_reason="Paused itself after 3 failed runs.")
    html = member_client.get(reverse("automation:list")).content.decode()
    row = html[html.index(f'id="schedule-{schedule.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "skipped" in row and "paused" in row and "Paused itself after 3 failed runs." in row
    assert ">1</td>" in row  # one regression
