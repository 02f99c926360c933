"""/api/v1/schedules: members create, change, pause, resume and delete; viewers read; another team's are 404; bad
input is a 400 naming the field; /runs is the timeline."""

from datetime import UTC, datetime, timedelta

import pytest

from apps.automation.models import Schedule, ScheduledRun
from apps.automation.services import schedule_create, schedule_fire
from tests.automation.fakes import FakeKinds
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db
URL = "/api/v1/schedules"


@pytest.fixture
def kinds(monkeypatch):
    return FakeKinds.install(monkeypatch)


@pytest.fixture
def run_id(team, kinds):
    return kinds.add(team)


def make(team, kinds, **fields):
    fields = {"kind": "experiment", "template_run_id": kinds.add(team), "interval_minutes": 60} | fields
    return schedule_create(team=team, user=None, **fields)


def test_a_member_creates_a_cron_schedule_in_a_time_zone(member_api, member, run_id):
    """201 with the timing in words, the next firing, the run's title and the creator."""
    body = {"kind": "experiment", "run_id": run_id, "cron": "0 6 * * 1-5", "timezone": "Europe/Paris"}
    response = member_api.post(URL, body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    when = "at 06:00, Monday through Friday (Europe/Paris; cron 0 6 * * 1-5)"
    assert data["when"] == when and data["interval_minutes"] is None
    assert data["name"] == f"Nightly check #{run_id}, {when}"
    assert data["run_title"] == f"Nightly check #{run_id}" and data["created_by"] == member.username
    assert data["max_failures"] == 3 and data["alpha"] == 0.05 and data["paused"] is False
    next_run = datetime.fromisoformat(data["next_run_at"])
    assert next_run.astimezone(UTC).minute == 0 and next_run > datetime.now(UTC)
    assert data["timeline_url"] == f"/automation/schedules/{data['id']}/"


def test_an_interval_schedule_with_its_own_limits(member_api, run_id):
    body = {"kind": "experiment", "run_id": run_id, "interval_minutes": 90, "name": "Every 90", "max_failures": 1,
            "alpha": 0.01}  # fmt: skip
    data = member_api.post(URL, body, format="json").json()
    assert (data["name"], data["when"], data["max_failures"], data["alpha"]) == (
        "Every 90",
        "every 90 minutes",
        1,
        0.01,
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "nightly"}, "kind"),
        ({"run_id": 999999}, "run_id"),
        ({"run_id": "abc"}, "run_id"),
        ({"run_id": 2**64}, "run_id"),
        ({"cron": "61 * * * *", "interval_minutes": None}, "cron"),
        ({"cron": "0 6 * * *"}, "cron"),  # and an interval: not both
        ({"interval_minutes": None}, "cron"),  # neither
        ({"interval_minutes": 0}, "interval_minutes"),
        ({"interval_minutes": 10**9}, "interval_minutes"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"alpha": 0.9}, "alpha"),
        ({"max_failures": 0}, "max_failures"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(member_api, run_id, change, field):
    body = {"kind": "experiment", "run_id": run_id, "interval_minutes": 60} | change
    response = member_api.post(URL, body, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Schedule.objects.exists()


def test_another_teams_run_cannot_be_scheduled(member_api, other_team, kinds):
    """The run exists, but in another team: 400 on run_id, as if it did not exist."""
    theirs = kinds.add(other_team)
    response = member_api.post(URL, {"kind": "experiment", "run_id": theirs, "interval_minutes": 5}, format="json")
    assert response.status_code == 400 and response.json()["run_id"] == [f"No experiment #{theirs} in this team."]


def test_viewers_read_but_do_not_write(viewer_api, team, kinds, run_id):
    schedule = make(team, kinds)
    assert viewer_api.get(URL).json()["results"][0]["id"] == schedule.pk
    assert viewer_api.get(f"{URL}/{schedule.pk}/runs").status_code == 200
    assert viewer_api.post(URL, {"kind": "experiment", "run_id": run_id, "interval_minutes": 5}).status_code == 403
    for method, path in (("patch", ""), ("delete", ""), ("post", "/pause"), ("post", "/resume")):
        assert getattr(viewer_api, method)(f"{URL}/{schedule.pk}{path}").status_code == 403
    assert Schedule.objects.filter(pk=schedule.pk, paused=False).exists()


def test_anonymous_callers_are_refused(anon_api, team, kinds):
    schedule = make(team, kinds)
    assert anon_api.get(URL).status_code == 401
    assert anon_api.post(f"{URL}/{schedule.pk}/pause").status_code == 401


def test_another_teams_schedule_is_404_everywhere(member_api, other_team, kinds):
    theirs = make(other_team, kinds)
    assert member_api.get(URL).json()["count"] == 0
    for method, path in (("get", ""), ("patch", ""), ("delete", ""), ("post", "/pause"), ("post", "/resume"),
                         ("get", "/runs")):  # fmt: skip
        assert getattr(member_api, method)(f"{URL}/{theirs.pk}{path}").status_code == 404, (method, path)
    assert Schedule.objects.filter(pk=theirs.pk, paused=False).exists()


def test_a_member_changes_the_timing_and_the_next_firing_moves(member_api, team, kinds):
    schedule = make(team, kinds)
    response = member_api.patch(f"{URL}/{schedule.pk}", {"cron": "@daily", "timezone": "Asia/Tokyo"}, format="json")
    assert response.status_code == 200, response.json()
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.interval_minutes, schedule.timezone) == ("0 0 * * *", None, "Asia/Tokyo")
    assert schedule.next_run_at.astimezone(UTC).hour == 15  # midnight in Tokyo
    back = member_api.patch(f"{URL}/{schedule.pk}", {"interval_minutes": 30, "name": "Half-hourly"}, format="json")
    assert back.json()["when"] == "every 30 minutes" and back.json()["name"] == "Half-hourly"
    assert member_api.patch(f"{URL}/{schedule.pk}", {"name": " "}, format="json").json()["name"] == "Half-hourly"


def test_the_run_of_a_schedule_cannot_change(member_api, team, kinds):
    schedule = make(team, kinds)
    response = member_api.patch(f"{URL}/{schedule.pk}", {"run_id": kinds.add(team)}, format="json")
    assert response.status_code == 400 and "run_id" in response.json()
    bad = member_api.patch(f"{URL}/{schedule.pk}", {"cron": "nope", "interval_minutes": None}, format="json")
    assert bad.status_code == 400 and "cron" in bad.json()


def test_pause_and_resume(member_api, member, team, kinds):
    schedule = make(team, kinds)
    paused = member_api.post(f"{URL}/{schedule.pk}/pause").json()
    assert paused["paused"] is True and paused["paused_reason"].startswith(f"Paused by {member.username} on ")
    Schedule.objects.filter(pk=schedule.pk).update(consecutive_failures=2)
    resumed = member_api.post(f"{URL}/{schedule.pk}/resume").json()
    assert resumed["paused"] is False and resumed["paused_reason"] == "" and resumed["consecutive_failures"] == 0


def test_delete_keeps_the_runs_it_started(member_api, team, kinds):
    schedule = make(team, kinds)
    fired = schedule_fire(schedule_id=schedule.pk, now=schedule.next_run_at)
    assert member_api.delete(f"{URL}/{schedule.pk}").status_code == 204
    assert not Schedule.objects.exists() and not ScheduledRun.objects.exists() and fired.run_id in kinds.runs


def test_runs_lists_the_timeline_newest_first_with_filters(viewer_api, team, kinds):
    schedule = make(team, kinds)
    start = schedule.next_run_at
    first = schedule_fire(schedule_id=schedule.pk, now=start)
    skipped = schedule_fire(schedule_id=schedule.pk, now=start + timedelta(hours=1))
    kinds.finish(first)
    rows = viewer_api.get(f"{URL}/{schedule.pk}/runs").json()["results"]
    assert [r["id"] for r in rows] == [skipped.pk, first.pk]
    assert rows[0]["state"] == "skipped" and rows[0]["reason"].startswith("Skipped: the previous run #")
    assert rows[1]["run_url"] == f"/experiments/{first.run_id}/" and rows[1]["state_label"] == "running"
    only = viewer_api.get(f"{URL}/{schedule.pk}/runs", {"state": "skipped"}).json()["results"]
    assert [r["id"] for r in only] == [skipped.pk]
    assert viewer_api.get(f"{URL}/{schedule.pk}/runs", {"regression": "true"}).json()["count"] == 0
    assert "state" in viewer_api.get(f"{URL}/{schedule.pk}/runs", {"state": "exploded"}).json()
    assert "regression" in viewer_api.get(f"{URL}/{schedule.pk}/runs", {"regression": "maybe"}).json()


def test_a_read_only_token_cannot_create(viewer, member, team, run_id):
    """A member's read-scoped token reads but may not write."""
    from apps.accounts.services import token_create

    issued = token_create(user=member, team=team, name="ro", scope="read")
    api = api_client_for(member, team)
    api.credentials(HTTP_AUTHORIZATION=f"Token {issued.key}")
    assert api.get(URL).status_code == 200
    assert api.post(URL, {"kind": "experiment", "run_id": run_id, "interval_minutes": 5}).status_code == 403


def test_the_list_filters_by_paused(viewer_api, team, kinds):
    make(team, kinds)
    Schedule.objects.filter(pk=make(team, kinds).pk).update(paused=True)
    assert viewer_api.get(URL, {"paused": "true"}).json()["count"] == 1
    assert viewer_api.get(URL, {"kind": "experiment"}).json()["count"] == 2


def test_the_next_firing_is_in_the_future_and_the_clock_is_right(member_api, run_id):
    """Interval schedules fire first one interval after creation."""
    before = datetime.now(UTC)
    data = member_api.post(URL, {"kind": "experiment", "run_id": run_id, "interval_minutes": 15}, format="json").json()
    first = datetime.fromisoformat(data["next_run_at"])
    assert before + timedelta(minutes=15) <= first <= datetime.now(UTC) + timedelta(minutes=15)
