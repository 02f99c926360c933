"""CI gate pages: the list with saved checks, the start form, a gate's page (and its refreshing part), the saved-check
form, the script download and its link on the API docs page; roles, other teams and bad input."""

import pytest
from django.test import Client

from apps.gates.models import Gate, GateCheck
from apps.providers.budget import BudgetExceeded
from tests.conftest import api_client_for
from tests.gates.conftest import GOOD_FIGURES, figure

pytestmark = pytest.mark.django_db


@pytest.fixture
def template(team, fake_runs):
    return fake_runs.add(team, "experiment", figures=GOOD_FIGURES)


def a_gate(team, template, **fields) -> Gate:
    defaults = {"kind": "experiment", "template_run_id": template, "criteria": ["pass_rate >= 0.9"]}
    return Gate.objects.create(team=team, **{**defaults, **fields})


def test_the_list_shows_the_teams_gates_and_checks_in_words(viewer_client, team, other_team, template, fake_runs):
    """Verdicts in words, saved checks with their criteria; another team's gates are not there."""
    a_gate(team, template, status="passed", reason="The criterion passed.", name="PR 42")
    a_gate(other_team, template, status="failed", name="theirs")
    GateCheck.objects.create(team=team, name="nightly", kind="experiment", template_run_id=template,
                             criteria=["mean_score >= 0.7"])  # fmt: skip
    page = viewer_client.get("/gates/")
    text = page.content.decode()
    assert page.status_code == 200 and "PR 42" in text and "theirs" not in text
    assert "Passed" in text and "nightly" in text and "mean_score &gt;= 0.7" in text
    assert "Start a gate" not in text  # a viewer cannot start one
    assert viewer_client.get("/gates/", {"status": "great"}).status_code == 400


def test_the_pages_link_the_runs_they_name(viewer_client, team, template):
    """The run a check repeats, its pinned baseline and the run a gate started each link to their pages."""
    GateCheck.objects.create(team=team, name="nightly", kind="experiment", template_run_id=template,
                             baseline_run_id=template + 1, criteria=["no significant regression"])  # fmt: skip
    gate = a_gate(team, template, baseline_run_id=template + 1, run_id=template + 2, status="running")
    listed = viewer_client.get("/gates/").content.decode()
    for run_id in (template, template + 1, template + 2):
        assert f'href="/experiments/{run_id}/"' in listed
    detail = viewer_client.get(f"/gates/{gate.pk}/").content.decode()
    assert f'<a href="/experiments/{template}/">Experiment #{template}</a> repeated' in detail
    assert f'<a href="/experiments/{template + 1}/">Experiment #{template + 1}</a>, significance level' in detail


def test_pages_need_a_sign_in_and_hide_other_teams_gates(member_client, other_team, template):
    """Anonymous visitors go to the login page; another team's gate is a 404."""
    anonymous = Client()
    assert anonymous.get("/gates/").status_code == 302 and "/login/" in anonymous.get("/gates/new/")["Location"]
    theirs = a_gate(other_team, template)
    assert member_client.get(f"/gates/{theirs.pk}/").status_code == 404


def test_a_member_starts_a_gate_from_the_form(member_client, team, template, fake_runs):
    """A good form starts the gate and opens its page; the gate's page shows it waiting for its run."""
    page = member_client.post("/gates/new/", {"kind": "experiment", "run": template, "model": "candidate",
                                              "criteria": "pass_rate >= 0.9\nerror_rate < 5%"})  # fmt: skip
    gate = Gate.objects.get()
    assert page.status_code == 302 and page["Location"] == f"/gates/{gate.pk}/"
    assert gate.criteria == ["pass_rate >= 0.9", "error_rate < 5%"] and fake_runs.repeats[0]["model"] == "candidate"
    text = member_client.get(page["Location"]).content.decode()
    assert "The verdict appears here when the run ends." in text and 'hx-trigger="every 3s"' in text


def test_the_form_shows_problems_next_to_their_fields(member_client, template, fake_runs):
    """A bad figure is shown under the criteria (400); a missing run under the run; nothing is started."""
    page = member_client.post("/gates/new/", {"kind": "experiment", "run": template, "criteria": "pass_rat >= 2"})
    assert page.status_code == 400 and "unknown figure “pass_rat”" in page.content.decode()
    page = member_client.post("/gates/new/", {"kind": "experiment", "criteria": "pass_rate >= 2"})
    assert page.status_code == 400 and "Give a saved check, or the run to repeat." in page.content.decode()
    page = member_client.post("/gates/new/", {"kind": "experiment", "run": "abc", "criteria": "x"})
    assert page.status_code == 400 and "Enter a whole number." in page.content.decode()
    assert Gate.objects.count() == 0 and fake_runs.repeats == []


def test_the_budget_refusal_is_shown_with_its_figures(member_client, template, fake_runs):
    """The refusal's message (with the figures) is on the form; nothing is started."""
    fake_runs.refuse = BudgetExceeded("This experiment cannot start: estimated $4.20, $3.10 left.", code="budget")
    page = member_client.post("/gates/new/", {"kind": "experiment", "run": template, "criteria": "pass_rate >= 0.9"})
    assert page.status_code == 400 and "estimated $4.20, $3.10 left" in page.content.decode()
    assert Gate.objects.count() == 0


def test_viewers_cannot_start_gates_or_change_checks(viewer_client, team, template):
    """POSTs of a viewer are 403; the form itself may be read."""
    assert viewer_client.get("/gates/new/").status_code == 200
    assert viewer_client.post("/gates/new/", {"kind": "experiment", "run": template}).status_code == 403
    check = GateCheck.objects.create(team=team, name="nightly", kind="experiment", template_run_id=template)
    assert viewer_client.post(f"/gates/checks/{check.pk}/delete/").status_code == 403
    assert viewer_client.post("/gates/checks/new/", {"name": "x"}).status_code == 403


def test_a_gates_page_shows_each_criterion_judged(member_client, team, template, fake_runs, notified):
    """Once its run ends the page (and its refreshing part) shows figure, interval, test and verdict per criterion."""
    fake_runs.next_figures = {**GOOD_FIGURES, "error_rate": figure("error_rate", 0.2, low=0.15, high=0.25)}
    member_client.post("/gates/new/", {"kind": "experiment", "run": template,
                                       "criteria": "pass_rate >= 0.9\nerror_rate <= 0.05"})  # fmt: skip
    gate = Gate.objects.get()
    fake_runs.finish(gate.run_id)
    part = member_client.get(f"/gates/{gate.pk}/", headers={"HX-Request": "true"})
    text = part.content.decode()
    assert part.status_code == 200 and "<html" not in text and "hx-trigger" not in text
    assert "1 of 2 criteria failed: error_rate &lt;= 0.05." in text and "0.88 to 0.96" in text
    assert text.count("badge gate-passed") == 1 and text.count("badge gate-failed") == 2


def test_saved_checks_are_created_changed_and_deleted_from_pages(member_client, team, template, fake_runs):
    """Create, a duplicate name refused under the name, change, start by name, delete."""
    body = {"name": "nightly", "kind": "experiment", "run": template, "criteria": "pass_rate >= 0.9", "alpha": 0.05}
    assert member_client.post("/gates/checks/new/", body).status_code == 302
    check = GateCheck.objects.get()
    page = member_client.post("/gates/checks/new/", body)
    assert page.status_code == 400 and "already has a check named “nightly”" in page.content.decode()
    assert member_client.get(f"/gates/checks/{check.pk}/").status_code == 200
    assert member_client.post(f"/gates/checks/{check.pk}/", {**body, "model": "m2"}).status_code == 302
    check.refresh_from_db()
    assert check.model == "m2"
    assert member_client.get("/gates/new/", {"check": "nightly"}).status_code == 200
    assert member_client.post("/gates/new/", {"check": "nightly"}).status_code == 302
    assert fake_runs.repeats[-1]["model"] == "m2"
    assert member_client.post(f"/gates/checks/{check.pk}/delete/").status_code == 302
    assert not GateCheck.objects.exists() and Gate.objects.count() == 1


def test_the_script_downloads_for_signed_in_users_and_tokens(viewer_client, viewer, team, settings):
    """An attachment named llmbench-gate for a session or a token; nobody else (unless the docs are public)."""
    page = viewer_client.get("/gates/llmbench-gate")
    assert page.status_code == 200 and 'attachment; filename="llmbench-gate"' in page["Content-Disposition"]
    assert b"#!/usr/bin/env python3" in b"".join(page.streaming_content)
    assert api_client_for(viewer, team).get("/gates/llmbench-gate").status_code == 200
    assert Client().get("/gates/llmbench-gate").status_code in (401, 403)
    settings.API_DOCS_PUBLIC = True
    assert Client().get("/gates/llmbench-gate").status_code == 200


def test_the_api_docs_page_links_the_script(viewer_client):
    """The API docs page offers the download."""
    text = viewer_client.get("/api/docs/").content.decode()
    assert 'href="/gates/llmbench-gate"' in text
