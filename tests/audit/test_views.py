"""The audit page and its CSV download: team admins only, the team's entries only, filters in words, bad
filters a 400 naming the field in words, never a 500."""

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.audit.services import record
from tests.audit.helpers import entries, only

pytestmark = pytest.mark.django_db
PAGE = reverse("audit:list")
CSV = reverse("audit:export")


def add(team, action="provider_endpoint.key_rotated", *, days_ago=0, actor="alice", object_type="provider_endpoint",
        **fields) -> AuditEntry:  # fmt: skip
    entry = AuditEntry.objects.create(
        team=team, team_label=team.name, actor_label=actor, via=fields.pop("via", "page"), action=action, object_type=object_type,
        object_id="1", object_repr=fields.pop("object_repr", "vllm"), at=timezone.now() - timedelta(days=days_ago),
        changes=fields.pop("changes", {"api_key": ["(set) …aaaa", "(set) …bbbb"]}), **fields,
    )  # fmt: skip
    return entry


def shown(response) -> str:
    return response.content.decode()


class TestPage:
    def test_an_admin_sees_the_teams_entries_in_words(self, admin_client_team, team, other_team):
        add(team, object_repr="ours")
        add(other_team, object_repr="theirs")
        response = admin_client_team.get(PAGE)
        assert response.status_code == 200
        page = shown(response)
        assert "ours" in page and "theirs" not in page
        assert "Provider key replaced" in page and "API key: (set) …aaaa → (set) …bbbb" in page
        table = page.split('id="audit-table"')[1]
        assert "provider_endpoint.key_rotated" not in table and "api_key" not in table

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ({"action": "api_token.created"}, {"token"}),
            ({"actor": "BOB"}, {"bob's"}),
            ({"object_type": "team"}, {"budget"}),
            ({"via": "api"}, {"token"}),
            ({"since": "2000-01-01", "until": "2000-01-01"}, set()),
            ({"since": (timezone.now() - timedelta(days=3)).date().isoformat()}, {"token", "bob's", "budget"}),
        ],
    )
    def test_it_filters(self, admin_client_team, team, query, expected):
        baseline = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0  # the fixtures' own
        add(team, "api_token.created", object_type="api_token", object_repr="token", via="api")
        add(team, actor="bob", object_repr="bob's")
        add(team, "team.settings_changed", object_type="team", object_repr="budget")
        add(team, object_repr="old", days_ago=10)
        response = admin_client_team.get(PAGE, query)
        assert response.status_code == 200
        rows = {row["entry"].object_repr for row in response.context["rows"] if row["entry"].pk > baseline}
        assert rows == expected

    @pytest.mark.parametrize(
        ("query", "words"),
        [
            ({"since": "yesterday"}, "From (date, UTC): Enter a valid date."),
            ({"action": "nope"}, "Action: Select a valid choice."),
            ({"object_type": "<script>"}, "Object type: Select a valid choice."),
            ({"since": "2026-02-01", "until": "2026-01-01"}, "To (date, UTC): The end of the date range is before"),
        ],
    )
    def test_a_bad_filter_is_a_400_in_words(self, admin_client_team, team, query, words):
        response = admin_client_team.get(PAGE, query)
        assert response.status_code == 400
        assert words in shown(response)

    def test_it_is_paginated(self, admin_client_team, team):
        AuditEntry.objects.bulk_create(
            [AuditEntry(team=team, actor_label="a", via="page", action="experiment.deleted") for _ in range(60)]
        )
        query = {"action": "experiment.deleted"}
        first = admin_client_team.get(PAGE, query)
        assert len(first.context["rows"]) == 50 and "Page 1 of 2" in shown(first)
        assert len(admin_client_team.get(PAGE, {**query, "page": 2}).context["rows"]) == 10
        assert admin_client_team.get(PAGE, {"page": "x"}).status_code == 200

    def test_htmx_gets_the_results_only(self, admin_client_team, team):
        add(team)
        response = admin_client_team.get(PAGE, headers={"HX-Request": "true"})
        assert response.status_code == 200 and 'id="results"' in shown(response) and "<html" not in shown(response)

    def test_it_runs_a_constant_number_of_queries(self, admin_client_team, team, django_assert_max_num_queries):
        add(team)
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as few:
            admin_client_team.get(PAGE)
        for _ in range(20):
            add(team)
        with django_assert_max_num_queries(len(few.captured_queries)):
            admin_client_team.get(PAGE)

    @pytest.mark.parametrize("who", ["viewer", "member"])
    def test_viewers_and_members_get_403(self, request, team, who):
        client = Client()
        client.force_login(request.getfixturevalue(who))
        assert client.get(PAGE).status_code == 403
        assert client.get(CSV).status_code == 403

    def test_anonymous_is_sent_to_log_in(self, client, db):
        assert "/login/" in client.get(PAGE)["Location"]
        assert "/login/" in client.get(CSV)["Location"]

    def test_it_only_answers_get(self, admin_client_team):
        assert admin_client_team.post(PAGE).status_code == 405
        assert admin_client_team.post(CSV).status_code == 405

    def test_an_outsider_without_the_team_sees_none_of_it(self, team, other_team, outsider):
        """An admin of another team sees their own team's trail, which holds nothing of this team's."""
        add(team, object_repr="ours")
        client = Client()
        client.force_login(outsider)
        response = client.get(PAGE)
        assert response.status_code == 200 and "ours" not in shown(response)


class TestCsv:
    def read(self, response) -> list[dict]:
        return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))

    def test_it_downloads_the_filtered_entries_and_is_itself_recorded(self, admin_client_team, admin_user, team,
                                                                       other_team):  # fmt: skip
        add(team, object_repr="ours")
        add(team, "team.settings_changed", object_type="team", object_repr="budget")
        add(other_team, object_repr="theirs")
        response = admin_client_team.get(CSV, {"object_type": "provider_endpoint"})
        assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
        rows = self.read(response)
        assert [row["object"] for row in rows] == ["ours"]
        assert rows[0]["action_words"] == "Provider key replaced" and rows[0]["team"] == "Alpha"
        assert '"api_key"' in rows[0]["changes"]
        entry = only("export.downloaded")
        assert entry.actor_id == admin_user.pk and entry.team_id == team.pk
        assert entry.changes["route"] == [None, "audit:export"]
        assert entry.changes["query"] == [None, "object_type=provider_endpoint"]

    def test_a_bad_filter_is_a_400_in_words_and_no_download(self, admin_client_team):
        response = admin_client_team.get(CSV, {"until": "13/45/2026"})
        assert response.status_code == 400 and "To (date, UTC): Enter a valid date." in shown(response)
        assert not entries(action="export.downloaded")

    def test_formula_like_text_is_quoted(self, admin_client_team, team):
        record(action="experiment.deleted", object_repr="=HYPERLINK(1)", team_id=team.pk, team_label=team.name)
        rows = self.read(admin_client_team.get(CSV, {"action": "experiment.deleted"}))
        assert rows[0]["object"] == "'=HYPERLINK(1)"
