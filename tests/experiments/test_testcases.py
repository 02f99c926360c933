"""Test cases: versions, the approval workflow in the admin and through the API, by role and team."""

import pytest
from django.contrib.admin.models import LogEntry

from apps.experiments.models import TestCase
from apps.experiments.services import (
    TransitionRefused,
    testcase_approve,
    testcase_create,
    testcase_reject,
    testcase_update,
)

pytestmark = pytest.mark.django_db


def make_case(team, author, **fields) -> TestCase:
    defaults = {"title": "Capital", "prompt": "Capital of France?", "expected_output": "Paris", "submit": True}
    return testcase_create(team=team, author=author, **{**defaults, **fields})


class TestWorkflow:
    def test_editing_an_approved_case_makes_a_new_pending_version(self, team, member, admin_user):
        case = testcase_approve(testcase=make_case(team, member), reviewer=admin_user)
        new = testcase_update(testcase=case, author=member, expected_output="Paris, France")
        case.refresh_from_db()
        assert (new.version, new.status, new.lineage) == (2, "pending", case.lineage)
        assert case.status == "approved" and not case.is_current and new.is_current
        assert new.last_approved() == case and new.prompt == case.prompt

    def test_a_rejected_case_goes_back_to_pending_when_edited(self, team, member, admin_user):
        case = testcase_reject(testcase=make_case(team, member), reviewer=admin_user, reason="ambiguous")
        assert case.review_reason == "ambiguous"
        edited = testcase_update(testcase=case, author=member, prompt="Capital city of France?")
        assert edited.pk == case.pk and edited.status == "pending"

    def test_only_pending_cases_are_reviewed_and_a_rejection_needs_a_reason(self, team, member, admin_user):
        draft = make_case(team, member, submit=False)
        with pytest.raises(TransitionRefused):
            testcase_approve(testcase=draft, reviewer=admin_user)
        with pytest.raises(TransitionRefused, match="reason"):
            testcase_reject(testcase=make_case(team, member), reviewer=admin_user, reason=" ")

    def test_an_old_version_cannot_be_edited(self, team, member, admin_user):
        case = testcase_approve(testcase=make_case(team, member), reviewer=admin_user)
        testcase_update(testcase=case, author=member, title="v2")
        with pytest.raises(TransitionRefused):
            testcase_update(testcase=TestCase.objects.get(pk=case.pk), author=member, title="v3")


class TestAdmin:
    URL = "/admin/experiments/testcase/"

    def test_an_admin_approves_in_the_admin_and_it_is_logged(self, admin_client_team, team, member, admin_user):
        case = make_case(team, member)
        response = admin_client_team.post(self.URL, {"action": "approve", "_selected_action": [case.pk]})
        assert response.status_code == 302
        case.refresh_from_db()
        assert case.status == "approved" and case.reviewer == admin_user
        assert LogEntry.objects.filter(object_id=str(case.pk), change_message__startswith="Approved").exists()

    def test_reject_asks_for_a_reason_first(self, admin_client_team, team, member):
        case = make_case(team, member)
        ask = admin_client_team.post(self.URL, {"action": "reject", "_selected_action": [case.pk]})
        assert ask.status_code == 200 and b"Reason" in ask.content
        case.refresh_from_db()
        assert case.status == "pending"
        done = admin_client_team.post(
            self.URL, {"action": "reject", "_selected_action": [case.pk], "confirm": "1", "reason": "wrong answer"}
        )
        assert done.status_code == 302
        case.refresh_from_db()
        assert (case.status, case.review_reason) == ("rejected", "wrong answer")

    def test_pending_cases_come_first_and_the_diff_shows_changes(self, admin_client_team, team, member, admin_user):
        approved = testcase_approve(testcase=make_case(team, member, title="A first"), reviewer=admin_user)
        new = testcase_update(testcase=approved, author=member, expected_output="Paris!")
        listing = admin_client_team.get(self.URL)
        assert listing.context["cl"].result_list[0] == new
        change = admin_client_team.get(f"{self.URL}{new.pk}/change/")
        assert b"-expected_output: Paris" in change.content and b"+expected_output: Paris!" in change.content

    def test_a_member_cannot_approve(self, member_client, team, member):
        case = make_case(team, member)
        response = member_client.post(self.URL, {"action": "approve", "_selected_action": [case.pk]})
        assert response.status_code in (302, 403)
        case.refresh_from_db()
        assert case.status == "pending"

    def test_another_teams_case_is_not_touched(self, admin_client_team, other_team, outsider):
        case = make_case(other_team, outsider)
        admin_client_team.post(self.URL, {"action": "approve", "_selected_action": [case.pk]})
        case.refresh_from_db()
        assert case.status == "pending"


class TestApi:
    def test_a_member_creates_submits_and_edits(self, member_api, team):
        created = member_api.post(
            "/api/v1/testcases", {"title": "t", "prompt": "p", "expected_output": "e"}, format="json"
        )
        assert created.status_code == 201 and created.json()["status"] == "draft"
        case_id = created.json()["id"]
        assert member_api.post(f"/api/v1/testcases/{case_id}/submit").json()["status"] == "pending"
        edited = member_api.patch(f"/api/v1/testcases/{case_id}", {"prompt": "p2"}, format="json")
        assert edited.status_code == 200 and edited.json()["prompt"] == "p2"

    def test_bad_input_names_the_field(self, member_api):
        response = member_api.post(
            "/api/v1/testcases", {"title": "t", "evaluator": "vibes", "tags": "x"}, format="json"
        )
        assert response.status_code == 400 and {"prompt", "evaluator", "tags"} <= set(response.json())

    def test_the_review_queue_is_for_admins(self, admin_api, member_api, viewer_api, team, member, admin_user):
        case = make_case(team, member)
        assert [c["id"] for c in admin_api.get("/api/v1/admin/testcases/pending").json()["results"]] == [case.pk]
        assert member_api.get("/api/v1/admin/testcases/pending").status_code == 403
        assert member_api.post(f"/api/v1/admin/testcases/{case.pk}/approve").status_code == 403
        assert admin_api.post(f"/api/v1/admin/testcases/{case.pk}/reject", {}, format="json").status_code == 400
        assert admin_api.post(f"/api/v1/admin/testcases/{case.pk}/approve").json()["status"] == "approved"
        assert admin_api.post(f"/api/v1/admin/testcases/{case.pk}/approve").status_code == 409
        assert admin_api.get("/api/v1/admin/testcases/stats").json()["approved"] == 1

    def test_another_teams_case_is_404(self, admin_api, other_team, outsider):
        case = make_case(other_team, outsider)
        assert admin_api.get(f"/api/v1/testcases/{case.pk}").status_code == 404
        assert admin_api.post(f"/api/v1/admin/testcases/{case.pk}/approve").status_code == 404

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.get("/api/v1/testcases").status_code == 401
        assert anon_api.get("/api/v1/admin/testcases/pending").status_code == 401
