"""GET /api/v1/audit-entries: team admins only, the team's entries only, filters with clear 400s, no way to write."""

import pytest

from apps.audit.models import AuditEntry
from tests.audit.test_views import add

pytestmark = pytest.mark.django_db
URL = "/api/v1/audit-entries"


def test_an_admin_lists_the_teams_entries_newest_first(admin_api, team, other_team):
    older, newer = add(team, object_repr="older", days_ago=1), add(team, object_repr="newer")
    add(other_team, object_repr="theirs")
    response = admin_api.get(URL, {"object_type": "provider_endpoint"})
    assert response.status_code == 200
    body = response.json()
    assert [row["object_repr"] for row in body["results"]] == ["newer", "older"]
    row = body["results"][0]
    assert row["id"] == newer.pk and row["action"] == "provider_endpoint.key_rotated"
    assert row["action_label"] == "Provider key replaced" and row["object_type_label"] == "Provider endpoint"
    assert row["team"] == "Alpha" and row["actor"] == "alice" and row["via"] == "page"
    assert row["changes"] == {"api_key": ["(set) …aaaa", "(set) …bbbb"]}
    assert older.pk != newer.pk


def test_the_api_sees_what_the_api_did(admin_api, admin_user, team):
    """The entries of the fixture's own sign-up (team and memberships) are there with the token's row."""
    response = admin_api.post("/api/v1/tokens", {"name": "second"}, format="json")
    assert response.status_code == 201
    rows = admin_api.get(URL, {"action": "api_token.created", "via": "api"}).json()["results"]
    assert len(rows) == 1 and rows[0]["actor_id"] == admin_user.pk and rows[0]["request_id"]
    assert response.json()["key"] not in str(rows)


def test_an_entry_by_id_and_another_teams_is_404(admin_api, team, other_team):
    ours, theirs = add(team), add(other_team)
    assert admin_api.get(f"{URL}/{ours.pk}").json()["id"] == ours.pk
    assert admin_api.get(f"{URL}/{theirs.pk}").status_code == 404
    assert admin_api.get(f"{URL}/999999").status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"action": "nope"}, "action"),
        ({"object_type": "x"}, "object_type"),
        ({"via": "telepathy"}, "via"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "until"),
        ({"page": "0"}, "detail"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(admin_api, team, query, field):
    response = admin_api.get(URL, query)
    assert response.status_code in (400, 404)  # DRF answers a page past the end with 404
    assert field in response.json()


def test_filters_combine(admin_api, team):
    add(team, "api_token.created", object_type="api_token", actor="bob", object_repr="token")
    add(team, actor="bob", object_repr="key")
    add(team, "api_token.created", object_type="api_token", actor="carol", object_repr="not bob's")
    rows = admin_api.get(URL, {"actor": "Bob", "object_type": "api_token"}).json()["results"]
    assert [row["object_repr"] for row in rows] == ["token"]


def test_it_is_paginated(admin_api, team):
    AuditEntry.objects.bulk_create(
        [AuditEntry(team=team, actor_label="a", via="page", action="experiment.deleted") for _ in range(7)]
    )
    body = admin_api.get(URL, {"action": "experiment.deleted", "page_size": 5}).json()
    assert body["count"] == 7 and len(body["results"]) == 5 and body["next"]


@pytest.mark.parametrize("who", ["viewer_api", "member_api"])
def test_viewers_and_members_get_403(request, team, who):
    api = request.getfixturevalue(who)
    entry = add(team)
    assert api.get(URL).status_code == 403
    assert api.get(f"{URL}/{entry.pk}").status_code == 403
    assert api.delete(f"{URL}/{entry.pk}").status_code == 403


def test_anonymous_is_401(anon_api, team):
    assert anon_api.get(URL).status_code == 401


def test_nobody_can_write_an_entry_through_the_api(admin_api, team):
    entry = add(team)
    assert admin_api.post(URL, {"action": "team.deleted"}, format="json").status_code == 405
    assert admin_api.put(f"{URL}/{entry.pk}", {"action": "x"}, format="json").status_code == 405
    assert admin_api.patch(f"{URL}/{entry.pk}", {"action": "x"}, format="json").status_code == 405
    assert admin_api.delete(f"{URL}/{entry.pk}").status_code == 405
    entry.refresh_from_db()
    assert entry.action == "provider_endpoint.key_rotated"


def test_it_is_in_the_openapi_schema_read_only(admin_api):
    paths = admin_api.get("/api/schema/", {"format": "json"}).json()["paths"]
    assert set(paths["/api/v1/audit-entries/"]) == {"get"}
    assert set(paths["/api/v1/audit-entries/{id}/"]) == {"get"}
