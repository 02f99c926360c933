"""A team admin reads the schedules, CI gates and notifications pages (issue 17) on a laptop (1366×900) and on a
phone (390×844): the important words are on screen and no page scrolls sideways as a whole (a wide table scrolls
inside its own frame). Screenshots go to $LLMBENCH_SHOTS (default /tmp/ui17)."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.accounts.models import Membership
from apps.automation.services import schedule_create, schedule_fire, schedule_pause, scheduled_runs_settle
from apps.gates.models import Gate
from apps.gates.services import check_save, gate_evaluate, gate_start
from apps.notifications import events
from apps.notifications.models import Channel, Delivery
from apps.notifications.services import channel_create, delivery_attempt, notify
from tests.automation.fakes import FakeKinds
from tests.browser.conftest import log_in
from tests.factories import MembershipFactory
from tests.gates.conftest import GOOD_FIGURES, FakeRuns, comparison, figure
from tests.notifications.conftest import closed_port, receiver  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("LLMBENCH_SHOTS", "/tmp/ui17"))
SIZES = {"1366": (1366, 900), "phone": (390, 844)}

# How far the page reaches past the window, the table frames that reach past it, and the tables that need
# scrolling sideways inside their frame (none should: they fit at 1366 px and turn into cards on a phone).
OVERFLOW = """() => ({
  page: document.documentElement.scrollWidth - window.innerWidth,
  frames: [...document.querySelectorAll('.table-wrap')].filter((w) => w.getBoundingClientRect().right > innerWidth + 1)
          .map((w) => w.querySelector('table')?.id || '?'),
  scrolling: [...document.querySelectorAll('.table-wrap')].filter((w) => w.scrollWidth > w.clientWidth + 1)
             .map((w) => w.querySelector('table')?.id || '?'),
})"""
# The words a person sees (hidden elements, such as the folded menu on a phone, do not count).
MISSING = "(words) => words.filter((word) => !document.body.innerText.includes(word))"


@pytest.fixture
def admin(db):
    return MembershipFactory(role=Membership.Role.ADMIN, team__name="Alpha", team__slug="alpha",
                             user__email="ana@example.com")  # fmt: skip


def visit_everywhere(browser, live_server, username: str, pages: list[tuple]) -> dict:
    """Open each (name, path, words[, script run first]) at both sizes and take a screenshot; per page, the words
    not visible and how far it reaches past the window."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: dict = {}
    for size, (width, height) in SIZES.items():
        context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(20_000)
        log_in(page, username)
        for name, path, words, *prepare in pages:
            response = page.goto(path)
            assert response.status == 200, f"{path} answered {response.status}"
            for script in prepare:
                page.evaluate(script)
            page.screenshot(path=str(SHOTS / f"{name}-{size}.png"), full_page=True)
            missing = page.evaluate(MISSING, words)
            overflow = page.evaluate(OVERFLOW)
            if missing or overflow["page"] > 1 or overflow["frames"] or overflow["scrolling"]:
                problems[f"{name}@{size}"] = {"missing": missing, **overflow}
        context.close()
    return problems


def test_schedules_read_well(browser, live_server, admin, monkeypatch):
    """Laptop and phone: the list, a timeline with completed, regressed, failed and skipped runs, a paused schedule."""
    kinds = FakeKinds.install(monkeypatch)
    monkeypatch.setattr("apps.automation.services.notify", lambda **kwargs: None)
    team = admin.team
    schedule = schedule_create(team=team, user=admin.user, kind="experiment", template_run_id=kinds.add(team),
                               name="Nightly quality check", cron="0 6 * * *", timezone_name="Europe/Paris",
                               now=timezone.now() - timedelta(days=7))  # fmt: skip

    def fire():
        schedule.refresh_from_db()
        return schedule_fire(schedule_id=schedule.pk, now=schedule.next_run_at)

    for value in (0.9, 0.91, 0.6):  # the third a regression
        kinds.next_value = value
        kinds.finish(fire())
        scheduled_runs_settle()
    kinds.finish(fire(), "failed", error="The endpoint answered 401 to every request.")
    scheduled_runs_settle()
    fire()
    fire()  # the previous run still runs: skipped
    paused = schedule_create(team=team, user=admin.user, kind="experiment", template_run_id=kinds.add(team),
                             name="Hourly latency", interval_minutes=60, timezone_name="UTC")  # fmt: skip
    schedule_pause(schedule=paused, user=admin.user, reason="Paused itself after 3 failed runs in a row.")

    problems = visit_everywhere(browser, live_server, admin.user.username, [
        ("schedules", "/automation/", ["Schedules", "Nightly quality check", "Hourly latency", "paused"]),
        ("timeline", f"/automation/schedules/{schedule.pk}/",
         ["Nightly quality check", "Timeline", "regression", "skipped", "The endpoint answered 401"]),
        ("timeline-empty", f"/automation/schedules/{paused.pk}/", ["Hourly latency", "Paused itself"]),
        ("schedule-edit", f"/automation/schedules/{schedule.pk}/edit/", ["Edit", "cron expression", "Time zone"]),
    ])  # fmt: skip
    assert not problems, f"words missing or pages wider than the window: {problems}"


def test_the_edit_form_shows_the_next_firings_at_once(browser, live_server, admin, monkeypatch):
    """Editing a schedule shows its timing in words and its next firings before anything is typed, and again as the
    cron expression changes."""
    kinds = FakeKinds.install(monkeypatch)
    schedule = schedule_create(team=admin.team, user=admin.user, kind="experiment", template_run_id=kinds.add(admin.team),
                               name="Weekday check", cron="0 6 * * 1-5", timezone_name="Asia/Tokyo")  # fmt: skip
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, admin.user.username)
    page.goto(f"/automation/schedules/{schedule.pk}/edit/")
    preview = page.locator("#preview")
    expect(preview).to_contain_text("At 06:00, Monday through Friday (Asia/Tokyo; cron 0 6 * * 1-5). Next: ")
    expect(preview).to_contain_text("06:00 JST")
    page.fill("#id_cron", "30 18 * * 0")
    expect(preview).to_contain_text("At 18:30, only on Sunday (Asia/Tokyo; cron 30 18 * * 0). Next: ")
    context.close()


def test_gates_read_well(browser, live_server, admin, monkeypatch):
    """Laptop and phone: the list with a saved check, a passed and a failed gate; each gate's page; the form."""
    fake = FakeRuns()
    for name in ("template_get", "run_repeat", "run_state", "run_error", "run_title", "run_url", "run_figures",
                 "run_compare"):  # fmt: skip
        monkeypatch.setattr(f"apps.automation.runkinds.{name}", getattr(fake, name))
    monkeypatch.setattr("apps.gates.services.notify", lambda **kwargs: None)
    team = admin.team
    template = fake.add(team, "experiment", figures=GOOD_FIGURES)
    baseline = fake.add(team, "experiment", figures=GOOD_FIGURES)
    check_save(team=team, user=admin.user, name="nightly-quality", description="The nightly suite on the candidate",
               kind="experiment", run_id=template, criteria=["pass_rate >= 0.9", "error_rate <= 0.05"])  # fmt: skip
    fake.next_figures = GOOD_FIGURES
    passed = gate_start(team=team, user=admin.user, name="PR 42", kind="experiment", run_id=template,
                        criteria=["pass_rate >= 0.9"])  # fmt: skip
    fake.finish(passed.run_id)
    gate_evaluate(gate_id=passed.pk)
    fake.next_figures = {**GOOD_FIGURES, "error_rate": figure("error_rate", 0.2, low=0.15, high=0.25,
                                                              higher_is_better=False, label="Error rate")}  # fmt: skip
    fake.comparisons = [comparison("p95_ttft_ms", 380.0, 512.0, verdict="regression", p=0.003)]
    failed = gate_start(team=team, user=admin.user, name="PR 43 candidate-model", kind="experiment", run_id=template,
                        model="candidate-v2", baseline_id=baseline,
                        criteria=["pass_rate >= 0.9", "error_rate <= 0.05", "no significant regression"])  # fmt: skip
    fake.finish(failed.run_id)
    gate_evaluate(gate_id=failed.pk)
    assert Gate.objects.get(pk=failed.pk).status == Gate.Status.FAILED

    problems = visit_everywhere(browser, live_server, admin.user.username, [
        ("gates", "/gates/", ["CI gates", "Saved checks", "nightly-quality", "PR 42", "Passed", "Failed"]),
        ("gate-failed", f"/gates/{failed.pk}/", ["Failed", "criteria failed", "Error rate"]),
        ("gate-passed", f"/gates/{passed.pk}/", ["Passed", "The criterion passed"]),
        ("gate-new", "/gates/new/", ["Start a CI gate"]),
    ])  # fmt: skip
    assert not problems, f"words missing or pages wider than the window: {problems}"


def test_notifications_read_well(browser, live_server, admin, receiver, closed_port, settings, monkeypatch):  # noqa: F811
    """Laptop and phone: choices, channels, and the log with a delivery sent on its third try and one given up."""
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = True
    settings.NOTIFY_MAX_ATTEMPTS = 3
    settings.NOTIFY_TIMEOUT_S = 3
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    queued: list[int] = []
    monkeypatch.setattr("apps.notifications.services.async_task", lambda func, *args, **kwargs: queued.extend(args))
    team = admin.team
    channel_create(team=team, user=admin.user, name="Ops Slack", kind=Channel.Kind.WEBHOOK, url=receiver.url,
                   fmt=Channel.Format.SLACK, events=[events.RUN_FAILED, events.REGRESSION])  # fmt: skip
    channel_create(team=team, user=admin.user, name="Old receiver", kind=Channel.Kind.WEBHOOK,
                   url=f"http://127.0.0.1:{closed_port}/hook", fmt=Channel.Format.GENERIC,
                   events=[events.RUN_FAILED])  # fmt: skip
    channel_create(team=team, user=admin.user, name="Team list", kind=Channel.Kind.EMAIL,
                   email="llm-team@example.com", events=[events.SCHEDULE_PAUSED])  # fmt: skip
    receiver.planned = [500, 503]  # the Slack hook answers 500, then 503, then 200
    notify(team_id=team.pk, event=events.RUN_FAILED, title="Experiment #7 failed", text="The endpoint answered 500.",
           url="/experiments/7/", facts={"Errors": 12})  # fmt: skip
    for _ in range(3):
        for delivery in Delivery.objects.filter(status=Delivery.Status.PENDING):
            Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
            delivery_attempt(delivery_id=delivery.pk)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent", "failed"}
    notify(team_id=team.pk, event=events.REGRESSION, title="Nightly quality check: pass rate fell 0.91 → 0.60",
           text="Worse than the run before.", url="/automation/schedules/1/")  # fmt: skip

    problems = visit_everywhere(browser, live_server, admin.user.username, [
        ("notifications", "/notifications/", ["Notifications", "E-mail me when", "Ops Slack", "Team list"]),
        ("deliveries", "/notifications/deliveries/", ["Notification deliveries", "Ops Slack", "Old receiver",
                                                       "Sent", "Failed"]),
        ("deliveries-tries", "/notifications/deliveries/?status=failed", ["Try 1", "Try 3", "Connection refused"],
         "document.querySelectorAll('#deliveries-table details').forEach((d) => { d.open = true; })"),
        ("deliveries-none", "/notifications/deliveries/?event=gate_finished", ["No deliveries match this filter"]),
        ("channel-new", "/notifications/channels/new/", ["New channel"]),
    ])  # fmt: skip
    assert not problems, f"words missing or pages wider than the window: {problems}"


def test_empty_pages_say_what_to_do(browser, live_server, admin):
    """A team with nothing yet: each page says so and where to start, at both sizes."""
    problems = visit_everywhere(browser, live_server, admin.user.username, [
        ("empty-schedules", "/automation/", ["No schedules yet", "Repeat on a schedule"]),
        ("empty-gates", "/gates/", ["No saved checks yet", "No gates yet"]),
        ("empty-notifications", "/notifications/", ["No channels yet", "E-mail me when"]),
        ("empty-deliveries", "/notifications/deliveries/", ["No deliveries"]),
    ])  # fmt: skip
    assert not problems, f"words missing or pages wider than the window: {problems}"
