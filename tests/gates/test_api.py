"""CI gates API: start (201), read (pending → passed / failed with each criterion), list, saved checks; roles, other
teams (404) and bad input (400 naming the field)."""

import pytest
from django.core.exceptions import ValidationError

from apps.automation.runkinds import RepeatRefused
from apps.gates.models import Gate, GateCheck
from apps.gates.services import gates_evaluate_pending
from apps.notifications import events
from apps.providers.budget import BudgetExceeded
from apps.providers.models import ProviderEndpoint
from tests.conftest import api_client_for
from tests.gates.conftest import GOOD_FIGURES, comparison, figure
from tests.test_api_schema import assert_documented, openapi  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

URL = "/api/v1/gates"


@pytest.fixture
def template(team, fake_runs):
    return fake_runs.add(team, "experiment", figures=GOOD_FIGURES)


def start(api, **body):
    return api.post(URL, body, format="json")


def test_a_member_starts_a_gate_and_reads_it_pending_then_passed(member_api, member, team, template, fake_runs,
                                                                   notified, django_capture_on_commit_callbacks):  # fmt: skip
    """201 with id and status; the run is a repeat with the override; once it ends GET answers each criterion."""
    endpoint = ProviderEndpoint.objects.create(team=team, name="candidate", kind="sim", base_url="sim://local")
    fake_runs.next_figures = GOOD_FIGURES
    answer = start(member_api, kind="experiment", run=template, endpoint=endpoint.pk, model="sim-large",
                   criteria=["pass_rate >= 0.9", "error_rate <= 0.05"], name="PR 42")  # fmt: skip
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["status"] == "pending" and body["passed"] is None and body["id"]
    assert fake_runs.repeats == [{"kind": "experiment", "run_id": template, "user": member,
                                  "endpoint_id": endpoint.pk, "model": "sim-large", "new": body["run"]["id"]}]  # fmt: skip
    assert member_api.get(f"{URL}/{body['id']}").json()["status"] == "pending"
    fake_runs.finish(body["run"]["id"], state="running")
    assert member_api.get(f"{URL}/{body['id']}").json()["status"] == "running"
    fake_runs.finish(body["run"]["id"])
    with django_capture_on_commit_callbacks(execute=True):
        gate = member_api.get(f"{URL}/{body['id']}").json()
    assert (gate["status"], gate["passed"], gate["reason"]) == ("passed", True, "All 2 criteria passed.")
    first = gate["results"][0]
    assert (first["text"], first["figure"], first["value"], first["interval"], first["passed"]) == (
        "pass_rate >= 0.9", "pass_rate", 0.93, [0.88, 0.96], True)  # fmt: skip
    assert gate["url"].endswith(f"/gates/{body['id']}/") and gate["run"]["state"] == "completed"
    assert [n["event"] for n in notified] == [events.GATE_FINISHED]
    assert notified[0]["dedupe_key"] == f"gate-{body['id']}" and "passed" in notified[0]["title"]


def test_a_gate_fails_when_a_threshold_is_not_met(member_api, template, fake_runs, notified):
    """A figure under its threshold fails the gate; the reason names the criterion."""
    fake_runs.next_figures = {**GOOD_FIGURES, "pass_rate": figure("pass_rate", 0.71, low=0.6, high=0.8)}
    gate_id = start(member_api, kind="experiment", run=template, criteria=["pass_rate >= 0.9"]).json()["id"]
    fake_runs.finish(Gate.objects.get(pk=gate_id).run_id)
    gate = member_api.get(f"{URL}/{gate_id}").json()
    assert (gate["status"], gate["passed"]) == ("failed", False)
    assert gate["reason"] == "1 of 1 criteria failed: pass_rate >= 0.9." and not gate["results"][0]["passed"]


def test_a_gate_whose_run_fails_is_failed_with_the_runs_error(member_api, template, fake_runs, notified,
                                                              django_capture_on_commit_callbacks):  # fmt: skip
    """The run's error is the gate's reason; nothing is judged."""
    gate_id = start(member_api, kind="experiment", run=template, criteria=["pass_rate >= 0.9"]).json()["id"]
    fake_runs.finish(Gate.objects.get(pk=gate_id).run_id, state="failed", error="Endpoint refused the connection")
    with django_capture_on_commit_callbacks(execute=True):
        gate = member_api.get(f"{URL}/{gate_id}").json()
    assert gate["status"] == "failed" and gate["results"] == []
    assert gate["reason"].endswith("failed: Endpoint refused the connection")
    assert len(notified) == 1


def test_a_regression_against_the_pinned_baseline_fails_the_gate(member_api, team, template, fake_runs, notified):
    """“no significant regression” compares with the baseline run and fails on a regression."""
    baseline = fake_runs.add(team, "experiment", figures=GOOD_FIGURES)
    fake_runs.comparisons = [comparison("pass_rate", 0.93, 0.7, verdict="regression", p=0.002, test="Newcombe",
                                        unit="")]  # fmt: skip
    answer = start(member_api, kind="experiment", run=template, baseline=baseline,
                   criteria=["no significant regression at p < 0.05"])  # fmt: skip
    assert answer.status_code == 201, answer.content
    fake_runs.finish(answer.json()["run"]["id"])
    gate = member_api.get(f"{URL}/{answer.json()['id']}").json()
    assert gate["status"] == "failed" and gate["baseline_run"] == baseline
    result = gate["results"][0]
    assert (result["test"], result["p_value"], result["comparisons"][0]["verdict"]) == ("Newcombe", 0.002, "regression")


def test_a_saved_check_is_started_by_name_with_the_change_under_test(member_api, team, template, fake_runs, notified):
    """`check` takes the check's configuration; a model given replaces the check's."""
    check = GateCheck.objects.create(team=team, name="nightly", kind="experiment", template_run_id=template,
                                     criteria=["pass_rate >= 0.5"], model="old")  # fmt: skip
    answer = start(member_api, check="nightly", model="candidate-7b")
    assert answer.status_code == 201, answer.content
    assert answer.json()["check"] == "nightly" and answer.json()["criteria"] == ["pass_rate >= 0.5"]
    assert fake_runs.repeats[-1]["model"] == "candidate-7b" and Gate.objects.get().saved_check == check
    assert start(member_api, check="nope").json()["check"] == ["The team has no saved check named “nope”."]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"criteria": ["pass_rat >= 0.9"]}, "criteria", "unknown figure “pass_rat”"),
        ({"criteria": ["pass_rate =< 0.9"]}, "criteria", "unknown operator “=<”"),
        ({"criteria": []}, "criteria", "at least one"),
        ({"criteria": "pass_rate >= 0.9"}, "criteria", "list"),
        ({"criteria": ["no significant regression"]}, "baseline", "needs a pinned baseline"),
        ({"criteria": ["pass_rate >= 0.9"], "baseline": 999999}, "baseline", "No experiment #999999"),
        ({"criteria": ["pass_rate >= 0.9"], "run": 999999}, "run", "No experiment #999999"),
        ({"criteria": ["pass_rate >= 0.9"], "run": 2**70}, "run", "less than or equal"),
        ({"criteria": ["pass_rate >= 0.9"], "kind": "poem"}, "kind", "not a valid choice"),
        ({"criteria": ["pass_rate >= 0.9"], "endpoint": 999999}, "endpoint", "No such endpoint"),
        ({"criteria": ["pass_rate >= 0.9"], "alpha": 7}, "alpha", "less than or equal"),
        ({"kind": None, "run": None, "criteria": ["pass_rate >= 0.9"]}, "kind", ""),
    ],
)
def test_bad_input_is_a_400_naming_the_field(member_api, template, fake_runs, body, field, words):
    """Each problem is answered 400 under its field, and no gate or run is made."""
    full = {"kind": "experiment", "run": template, **body}
    full = {k: v for k, v in full.items() if v is not None}
    answer = start(member_api, **full)
    assert answer.status_code == 400, answer.content
    assert field in answer.json() and words in str(answer.json()[field])
    assert Gate.objects.count() == 0 and fake_runs.repeats == []


def test_another_teams_runs_and_endpoints_are_refused(member_api, other_team, fake_runs, template):
    """A template, baseline or endpoint of another team is a 400 naming it, as if it did not exist."""
    theirs = fake_runs.add(other_team, "experiment")
    endpoint = ProviderEndpoint.objects.create(team=other_team, name="theirs", kind="sim", base_url="sim://local")
    assert "run" in start(member_api, kind="experiment", run=theirs, criteria=["pass_rate >= 0.9"]).json()
    assert "baseline" in start(member_api, kind="experiment", run=template, baseline=theirs,
                               criteria=["no significant regression"]).json()  # fmt: skip
    assert "endpoint" in start(member_api, kind="experiment", run=template, endpoint=endpoint.pk,
                               criteria=["pass_rate >= 0.9"]).json()  # fmt: skip


def test_the_budget_refusal_is_a_400_with_its_figures_and_nothing_is_stored(member_api, template, fake_runs):
    """BudgetExceeded from the repeat: 400 {"detail": the refusal with its figures}; no gate."""
    fake_runs.refuse = BudgetExceeded("This experiment cannot start: estimated $4.20, $3.10 left of the $50.00 "
                                      "monthly budget ($46.90 spent since 1 December).", code="budget")  # fmt: skip
    answer = start(member_api, kind="experiment", run=template, criteria=["pass_rate >= 0.9"])
    assert answer.status_code == 400 and "estimated $4.20, $3.10 left" in answer.json()["detail"]
    assert Gate.objects.count() == 0


def test_a_refused_repeat_is_a_400_naming_the_gates_field(member_api, template, fake_runs):
    """RepeatRefused by endpoint_id / model comes back under endpoint / model."""
    fake_runs.refuse = RepeatRefused({"model": "sim does not serve “x”.", "endpoint_id": "No such endpoint."})
    body = start(member_api, kind="experiment", run=template, model="x", criteria=["pass_rate >= 0.9"]).json()
    assert body["model"] == ["sim does not serve “x”."] and body["endpoint"] == ["No such endpoint."]
    fake_runs.refuse = ValidationError("The suite has no approved test cases.")
    assert "run" in start(member_api, kind="experiment", run=template, criteria=["pass_rate >= 0.9"]).json()


def test_roles_anonymous_and_other_teams(viewer_api, anon_api, team, other_team, outsider, template, fake_runs):
    """Viewers read but cannot start (403); anonymous calls are 401; another team's gate is a 404 and not listed."""
    gate = Gate.objects.create(team=team, kind="experiment", template_run_id=template, criteria=["pass_rate >= 0.9"],
                               status="passed")  # fmt: skip
    assert start(viewer_api, kind="experiment", run=template, criteria=["pass_rate >= 0.9"]).status_code == 403
    assert viewer_api.get(f"{URL}/{gate.pk}").status_code == 200
    assert anon_api.get(URL).status_code == 401 and anon_api.post(URL, {}, format="json").status_code == 401
    theirs = api_client_for(outsider, other_team)
    assert theirs.get(f"{URL}/{gate.pk}").status_code == 404 and theirs.get(URL).json()["results"] == []
    assert viewer_api.delete(f"{URL}/{gate.pk}").status_code in (403, 405)


def test_the_list_judges_waiting_gates_and_filters_by_status(member_api, template, fake_runs, notified):
    """Listing judges the gates whose run ended; ?status= filters; a bad status is a 400 naming it."""
    ids = [start(member_api, kind="experiment", run=template, criteria=["pass_rate >= 0.9"]).json()["id"]
           for _ in range(2)]  # fmt: skip
    fake_runs.next_figures = GOOD_FIGURES
    fake_runs.finish(Gate.objects.get(pk=ids[0]).run_id, figures=GOOD_FIGURES)
    rows = member_api.get(URL).json()["results"]
    assert {r["id"]: r["status"] for r in rows} == {ids[0]: "passed", ids[1]: "pending"}
    assert [r["id"] for r in member_api.get(URL, {"status": "pending"}).json()["results"]] == [ids[1]]
    answer = member_api.get(URL, {"status": "great"})
    assert answer.status_code == 400 and "status" in answer.json()


def test_the_tick_judges_each_ended_gate_once_and_notifies_once(member_api, template, fake_runs, notified,
                                                               django_capture_on_commit_callbacks):  # fmt: skip
    """gates_evaluate_pending counts the gates that ended; a second look (GET or tick) changes nothing."""
    ids = [start(member_api, kind="experiment", run=template, criteria=["pass_rate >= 0.9"]).json()["id"]
           for _ in range(3)]  # fmt: skip
    for gate_id in ids[:2]:
        fake_runs.finish(Gate.objects.get(pk=gate_id).run_id, figures=GOOD_FIGURES)
    with django_capture_on_commit_callbacks(execute=True):
        assert gates_evaluate_pending() == 2
        assert gates_evaluate_pending() == 0
        assert member_api.get(f"{URL}/{ids[0]}").json()["status"] == "passed"
    assert sorted(n["dedupe_key"] for n in notified) == sorted(f"gate-{i}" for i in ids[:2])


def test_a_gate_whose_run_was_deleted_ends_in_error(member_api, template, fake_runs, notified):
    """The pipeline is not left waiting: error, saying the run was deleted."""
    gate_id = start(member_api, kind="experiment", run=template, criteria=["pass_rate >= 0.9"]).json()["id"]
    del fake_runs.runs[("experiment", Gate.objects.get(pk=gate_id).run_id)]
    gate = member_api.get(f"{URL}/{gate_id}").json()
    assert gate["status"] == "error" and "was deleted" in gate["reason"] and gate["run"] is None


def test_saved_checks_are_created_changed_listed_and_deleted(member_api, viewer_api, team, other_team, outsider,
                                                            template, fake_runs):  # fmt: skip
    """CRUD for members; duplicate names and bad criteria are 400s by field; viewers 403; other teams 404."""
    url = "/api/v1/gate-checks"
    body = {"name": "nightly", "kind": "experiment", "run": template, "criteria": ["pass_rate >= 0.9"]}
    answer = member_api.post(url, body, format="json")
    assert answer.status_code == 201, answer.content
    check_id = answer.json()["id"]
    assert member_api.post(url, body, format="json").json()["name"] == ["The team already has a check named “nightly”."]
    bad = member_api.post(url, {**body, "name": "other", "criteria": ["pass_rate ~ 3"]}, format="json")
    assert bad.status_code == 400 and "criteria" in bad.json()
    assert member_api.post(url, {**body, "name": "has space"}, format="json").status_code == 400
    changed = member_api.patch(f"{url}/{check_id}", {"model": "candidate"}, format="json")
    assert changed.status_code == 200 and changed.json()["model"] == "candidate"
    assert changed.json()["criteria"] == ["pass_rate >= 0.9"]
    assert viewer_api.get(url).json()["results"][0]["name"] == "nightly"
    assert viewer_api.post(url, {**body, "name": "x"}, format="json").status_code == 403
    assert api_client_for(outsider, other_team).get(f"{url}/{check_id}").status_code == 404
    gate = Gate.objects.create(team=team, kind="experiment", template_run_id=template, saved_check_id=check_id)
    assert member_api.delete(f"{url}/{check_id}").status_code == 204
    gate.refresh_from_db()
    assert gate.saved_check is None


def test_answers_match_the_documented_schema(openapi, member_api, team, template, fake_runs, notified):  # noqa: F811
    """POST 201, GET of a judged gate, the list and a saved check validate against /api/schema/."""
    baseline = fake_runs.add(team, "experiment", figures=GOOD_FIGURES)
    fake_runs.comparisons = [comparison("pass_rate", 0.9, 0.93, unit="", test="Fisher exact (Holm)")]
    fake_runs.next_figures = {**GOOD_FIGURES, "mean_score": figure("mean_score", None, n=0)}
    created = start(member_api, kind="experiment", run=template, baseline=baseline,
                    criteria=["pass_rate >= 0.9", "mean_score >= 0.5", "no significant regression"])  # fmt: skip
    assert_documented(openapi, created, "/api/v1/gates/", "post")
    fake_runs.finish(created.json()["run"]["id"])
    judged = member_api.get(f"{URL}/{created.json()['id']}")
    assert judged.json()["status"] == "failed"
    assert_documented(openapi, judged, "/api/v1/gates/{id}/")
    assert_documented(openapi, member_api.get(URL), "/api/v1/gates/")
    check = member_api.post("/api/v1/gate-checks", {"name": "n", "kind": "experiment", "run": template,
                                                     "criteria": ["pass_rate >= 0.9"]}, format="json")  # fmt: skip
    assert_documented(openapi, check, "/api/v1/gate-checks/", "post")
