"""Deletes that take other tracked objects along: a team deleted is one entry with counts, not thousands; a
user deleted leaves an entry per membership and token; a queryset delete an entry per row, in one INSERT."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import Membership
from apps.audit.models import AuditEntry
from apps.experiments.models import Experiment
from apps.providers.models import ProviderEndpoint
from tests.audit.helpers import entries, only
from tests.conftest import api_client_for
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_deleting_a_team_writes_one_entry_counting_what_went_with_it(team, member, viewer):
    api_client_for(member, team)  # a token
    ProviderEndpoint.objects.create(team=team, name="sim", kind="sim")
    Experiment.objects.bulk_create([Experiment(team=team, name=f"e{i}") for i in range(30)])
    before = AuditEntry.objects.count()
    team.delete()
    entry = only("team.deleted")
    assert AuditEntry.objects.count() == before + 1
    assert (entry.object_type, entry.object_repr, entry.team_label) == ("team", "Alpha", "Alpha")
    assert entry.changes["name"] == ["Alpha", None]
    assert entry.changes["also_deleted"] == [
        {"api tokens": 1, "experiments": 30, "memberships": 2, "provider endpoints": 1},
        None,
    ]
    assert not entries(action__in=["membership.removed", "experiment.deleted", "provider_endpoint.deleted"])


def test_the_entries_of_a_deleted_team_stay(team, member):
    ProviderEndpoint.objects.create(team=team, name="sim", kind="sim")
    team_pk = team.pk
    team.delete()
    assert only("provider_endpoint.created", team_id=team_pk).team_label == "Alpha"


def test_deleting_a_user_removes_their_memberships_one_entry_each(team, other_team, member):
    MembershipFactory(user=member, team=other_team, role="viewer")
    api_client_for(member, team)
    username = member.username
    member.delete()
    removed = entries(action="membership.removed")
    assert sorted(e.team_id for e in removed) == sorted([team.pk, other_team.pk])
    assert all(e.changes["user"] == [username, None] for e in removed)
    assert only("api_token.deleted").team_id == team.pk


def test_a_queryset_delete_writes_an_entry_per_row_in_one_insert(team):
    Experiment.objects.bulk_create([Experiment(team=team, name=f"e{i}") for i in range(25)])
    with CaptureQueriesContext(connection) as queries:
        Experiment.objects.filter(team=team).delete()
    deleted = entries(action="experiment.deleted")
    assert sorted(e.object_repr for e in deleted) == sorted(f"e{i}" for i in range(25))
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT") and "audit" in q["sql"]]
    assert len(inserts) == 1


def test_the_same_object_deleted_after_a_failed_delete_is_still_recorded(team):
    """State left by a delete that failed half-way does not swallow the next one."""
    endpoint = ProviderEndpoint.objects.create(team=team, name="sim", kind="sim")
    endpoint.__dict__["_audit_delete_state"] = {"pending": 3, "posted": 1, "items": []}  # what a failure leaves
    endpoint.delete()
    assert only("provider_endpoint.deleted").object_repr == "sim"


def test_membership_rows_are_counted_by_their_own_team_when_teams_are_deleted_together(team, other_team, member):
    from apps.accounts.models import Team

    MembershipFactory(team=other_team, role="viewer")
    Team.objects.filter(pk__in=[team.pk, other_team.pk]).delete()
    deleted = {e.object_repr: e.changes.get("also_deleted") for e in entries(action="team.deleted")}
    assert deleted == {"Alpha": [{"memberships": 1}, None], "Bravo": [{"memberships": 1}, None]}
    assert Membership.objects.count() == 0
