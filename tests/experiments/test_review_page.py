"""A team admin approves or rejects a pending test case from its page: the admin action's service and the
same admin-log entry; members and viewers get 403, another team's case 404, a rejection needs a reason."""

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from apps.experiments.models import TestCase
from apps.experiments.services import testcase_create

pytestmark = pytest.mark.django_db


def pending(team, author) -> TestCase:
    return testcase_create(team=team, author=author, submit=True, title="Capital", prompt="Capital of France?",
                           expected_output="Paris")  # fmt: skip


def url(case, decision):
    return reverse(f"experiments:testcase-{decision}", args=[case.pk])


def log_messages(case) -> list[str]:
    return list(LogEntry.objects.filter(object_id=str(case.pk)).values_list("change_message", flat=True))


def test_an_admin_sees_the_review_buttons_on_a_pending_case(admin_client_team, team, member):
    """Approve and Reject (with a reason box) appear on a pending case's page for a team admin."""
    page = admin_client_team.get(reverse("experiments:testcase", args=[pending(team, member).pk])).content.decode()
    assert 'id="approve-testcase"' in page and 'id="reject-testcase"' in page and 'name="reason"' in page


def test_members_do_not_see_the_review_buttons(member_client, team, member):
    """A member sees no review buttons."""
    page = member_client.get(reverse("experiments:testcase", args=[pending(team, member).pk])).content.decode()
    assert 'id="approve-testcase"' not in page


def test_an_admin_approves_from_the_page_and_it_is_logged_like_the_admin_action(admin_client_team, team, member,
                                                                                 admin_user):  # fmt: skip
    """Approve: the case is approved by the admin and the admin log says "Approved v1", as the admin action does."""
    case = pending(team, member)
    response = admin_client_team.post(url(case, "approve"))
    assert response.status_code == 302 and response["Location"] == reverse("experiments:testcase", args=[case.pk])
    case.refresh_from_db()
    assert (case.status, case.reviewer) == ("approved", admin_user)
    assert log_messages(case) == ["Approved v1"]


def test_an_admin_rejects_with_a_reason(admin_client_team, team, member):
    """Reject with a reason: rejected, the reason kept and logged."""
    case = pending(team, member)
    assert admin_client_team.post(url(case, "reject"), {"reason": "  ambiguous  "}).status_code == 302
    case.refresh_from_db()
    assert (case.status, case.review_reason) == ("rejected", "ambiguous")
    assert log_messages(case) == ["Rejected v1: ambiguous"]


def test_a_rejection_without_a_reason_is_400_naming_it(admin_client_team, team, member):
    """No reason: 400 with the reason field's error on the page; the case stays pending, nothing logged."""
    case = pending(team, member)
    response = admin_client_team.post(url(case, "reject"), {"reason": " "})
    assert response.status_code == 400 and "A rejection needs a reason" in response.content.decode()
    case.refresh_from_db()
    assert case.status == "pending" and log_messages(case) == []


def test_an_already_reviewed_case_is_not_reviewed_again(admin_client_team, team, member):
    """Approving an approved case changes nothing and says why."""
    case = pending(team, member)
    admin_client_team.post(url(case, "approve"))
    response = admin_client_team.post(url(case, "reject"), {"reason": "late"}, follow=True)
    assert "Only pending test cases can be reviewed" in response.content.decode()
    case.refresh_from_db()
    assert case.status == "approved" and log_messages(case) == ["Approved v1"]


@pytest.mark.parametrize("who", ["member_client", "viewer_client"])
def test_members_and_viewers_get_403(request, team, member, who):
    """Only a team admin decides."""
    client = request.getfixturevalue(who)
    case = pending(team, member)
    assert client.post(url(case, "approve")).status_code == 403
    assert client.post(url(case, "reject"), {"reason": "no"}).status_code == 403
    case.refresh_from_db()
    assert case.status == "pending"


def test_another_teams_case_is_404(admin_client_team, other_team, outsider):
    """An admin of this team cannot review another team's case."""
    case = pending(other_team, outsider)
    assert admin_client_team.post(url(case, "approve")).status_code == 404
    case.refresh_from_db()
    assert case.status == "pending"


def test_get_and_anonymous_are_refused(admin_client_team, client, team, member):
    """A GET is 405; without a session the login page."""
    case = pending(team, member)
    assert admin_client_team.get(url(case, "approve")).status_code == 405
    admin_client_team.logout()
    response = client.post(url(case, "approve"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_api_review_writes_the_same_admin_log_entry(admin_api, team, member):
    """Approving or rejecting through the API logs "Approved v1" / "Rejected v1: reason" like the admin and page."""
    approved, rejected = pending(team, member), pending(team, member)
    assert admin_api.post(f"/api/v1/admin/testcases/{approved.pk}/approve").status_code == 200
    response = admin_api.post(f"/api/v1/admin/testcases/{rejected.pk}/reject", {"reason": "vague"}, format="json")
    assert response.status_code == 200
    assert log_messages(approved) == ["Approved v1"]
    assert log_messages(rejected) == ["Rejected v1: vague"]
