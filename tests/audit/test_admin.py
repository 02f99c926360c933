"""The audit trail in the admin: team admins read their own team's entries; nobody adds, changes or deletes."""

import pytest
from django.test import Client

from apps.audit.models import AuditEntry
from tests.audit.test_views import add
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
LIST = "/admin/audit/auditentry/"


def test_a_team_admin_reads_the_teams_entries_only(admin_client_team, team, other_team):
    ours, theirs = add(team, object_repr="ours"), add(other_team, object_repr="theirs")
    page = admin_client_team.get(LIST).content.decode()
    assert "ours" in page and "theirs" not in page
    assert admin_client_team.get(f"{LIST}{ours.pk}/change/").status_code == 200
    assert admin_client_team.get(f"{LIST}{theirs.pk}/change/").status_code == 302  # the admin's "does not exist"


def test_nobody_adds_changes_or_deletes_one_in_the_admin(admin_client_team, team):
    entry = add(team, object_repr="ours")
    assert admin_client_team.get(f"{LIST}add/").status_code == 403
    assert admin_client_team.post(f"{LIST}{entry.pk}/change/", {"action": "x"}).status_code == 403
    assert admin_client_team.post(f"{LIST}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    response = admin_client_team.post(
        LIST, {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"}
    )
    assert response.status_code in (200, 302)
    assert AuditEntry.objects.filter(pk=entry.pk, action="provider_endpoint.key_rotated").exists()
    assert "delete_selected" not in admin_client_team.get(LIST).content.decode()


def test_a_superuser_cannot_delete_either(team):
    entry = add(team)
    client = Client()
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    assert client.get(LIST).status_code == 200
    assert client.post(f"{LIST}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_members_are_kept_out(member_client, team):
    add(team)
    response = member_client.get(LIST, follow=True)
    assert response.status_code == 403 and b"admins of the active team" in response.content
