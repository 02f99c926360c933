"""The fair queue in the admin: a team admin reads the team's jobs only; nobody adds, changes or deletes one."""

import pytest

from apps.jobs.models import Job

pytestmark = pytest.mark.django_db
LIST = "/admin/jobs/job/"


@pytest.fixture
def jobs(team, other_team):
    ours = Job.objects.create(team=team, func="apps.experiments.tasks.experiment_run", args=[1], key="a", label="ours")
    theirs = Job.objects.create(team=other_team, func="apps.experiments.tasks.experiment_run", args=[2], key="b",
                                label="theirs")  # fmt: skip
    return ours, theirs


def test_a_team_admin_sees_the_teams_jobs_and_not_another_teams(admin_client_team, jobs):
    """The list shows the active team's jobs only; another team's job is not found."""
    page = admin_client_team.get(LIST)
    assert page.status_code == 200
    assert b"ours" in page.content and b"theirs" not in page.content
    assert admin_client_team.get(f"{LIST}{jobs[1].pk}/change/").status_code == 302  # the admin's "does not exist"


def test_jobs_cannot_be_added_changed_or_deleted_in_the_admin(admin_client_team, jobs):
    """The queue owns its rows: no add page, no delete page, the change page is read-only."""
    assert admin_client_team.get(f"{LIST}add/").status_code == 403
    assert admin_client_team.get(f"{LIST}{jobs[0].pk}/delete/").status_code == 403
    response = admin_client_team.post(f"{LIST}{jobs[0].pk}/change/", {"label": "changed"})
    assert response.status_code == 403
    assert Job.objects.get(pk=jobs[0].pk).label == "ours"


def test_a_member_or_viewer_cannot_open_the_jobs_admin(member_client, jobs):
    """Only team admins (and superusers) reach the admin."""
    response = member_client.get(LIST, follow=True)  # through the admin's login page, which refuses members
    assert response.status_code == 403 and b"ours" not in response.content


def test_anonymous_visitors_are_sent_to_sign_in(client, jobs):
    """Without a session the admin redirects to the login page."""
    response = client.get(LIST)
    assert response.status_code == 302 and "/login/" in response["Location"]
