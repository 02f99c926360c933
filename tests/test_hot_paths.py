"""The hot read paths answer as before, more cheaply: the run list built from values() equals the
ModelSerializer's output, the token look-up is one query, and the dashboard's analytical tiles are
cached per team but show a new run, score or response (and a new budget) at once."""

import json
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from rest_framework.renderers import JSONRenderer

from apps.accounts.services import token_authenticate, token_create
from apps.experiments.models import Response
from apps.hardware.api.serializers import PerformanceRunSerializer
from apps.hardware.models import PerformanceRun, RunSummary
from apps.hardware.parsed import ParsedRun
from apps.hardware.services import RunTarget, run_store
from tests.factories import DeploymentFactory, HardwareProfileFactory, ModelVariantFactory, ScoreFactory
from tests.hardware.helpers import generated_samples, stored_run
from tests.test_dashboard import priced_responses

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/performance/runs"
HOME = reverse("home")


def _as_json(data):
    """What the API's renderer makes of `data`, read back (so both sides are compared as JSON)."""
    return json.loads(JSONRenderer().render(data))


class TestRunList:
    def _runs(self, team):
        """A run with everything (deployment, rate, start time, tags), one without hardware or deployment, and
        one whose summary is gone."""
        full = run_store(
            team=team,
            parsed=ParsedRun(source_format="llmbench_json", tool="test", concurrency=4, request_rate_rps=2.5,
                             started_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), duration_s=12.5,
                             samples=generated_samples(20)),
            target=RunTarget(ModelVariantFactory(team=team), HardwareProfileFactory(team=team),
                             DeploymentFactory(team=team)),
        )  # fmt: skip
        PerformanceRun.objects.filter(pk=full.pk).update(name="full", tags=["a", "b"], notes="n", slo_ttft_ms=200.0)
        bare = run_store(
            team=team, parsed=ParsedRun(source_format="llmbench_json", tool="test", samples=generated_samples(5)),
            target=RunTarget(ModelVariantFactory(team=team), None, None),
        )  # fmt: skip
        no_summary = stored_run(team, samples=generated_samples(3))
        RunSummary.objects.filter(run=no_summary).delete()
        return [full, bare, no_summary]

    def test_it_equals_the_model_serializers_output(self, member_api, team):
        self._runs(team)
        expected = PerformanceRunSerializer(
            PerformanceRun.objects.filter(team=team).select_related("variant", "hardware", "deployment", "summary"),
            many=True,
        ).data
        body = member_api.get(RUNS).json()
        assert body["count"] == 3
        for got, want in zip(body["results"], _as_json(expected), strict=True):
            assert {k: v for k, v in got.items() if v != want.get(k)} == {}
            assert list(got) == list(want)  # the same keys in the same order
        assert body["results"] == _as_json(expected)
        assert [r["hardware_name"] for r in body["results"]].count(None) == 1
        assert sum(r["summary"] is None for r in body["results"]) == 1

    def test_filters_still_apply_and_a_bad_one_is_a_400_naming_it(self, member_api, team):
        full, _, _ = self._runs(team)
        assert [r["id"] for r in member_api.get(f"{RUNS}?engine=vllm").json()["results"]] == [full.pk]
        assert [r["id"] for r in member_api.get(f"{RUNS}?concurrency=4&page_size=1").json()["results"]] == [full.pk]
        response = member_api.get(f"{RUNS}?concurrency=many")
        assert response.status_code == 400 and "concurrency" in response.json()

    def test_another_teams_runs_are_never_listed(self, member_api, team, other_team):
        stored_run(other_team, samples=[])
        assert member_api.get(RUNS).json() == {"count": 0, "next": None, "previous": None, "results": []}

    def test_anonymous_is_refused(self, anon_api):
        assert anon_api.get(RUNS).status_code in (401, 403)


class TestTokenLookUp:
    def test_it_is_one_query_with_the_user_team_and_membership(self, member, team, django_assert_num_queries):
        issued = token_create(user=member, team=team, name="ci")
        token_authenticate(issued.key)  # the first use writes last_used_at
        with django_assert_num_queries(1):
            token, membership = token_authenticate(issued.key)
            assert token.user == member and membership.team == team and membership.role == "member"
            assert token.team.show_simulated is False and membership.user.is_active
            assert token.last_used_at.tzinfo is not None  # converted like the ORM's own rows (SQLite: from text)

    def test_a_token_acts_in_its_own_team_only(self, member, team, other_team):
        issued = token_create(user=member, team=team, name="ci")
        # The same user joins the other team; the token still answers for its own team.
        from tests.factories import MembershipFactory

        MembershipFactory(user=member, team=other_team, role="admin")
        _, membership = token_authenticate(issued.key)
        assert membership.team == team and membership.role == "member"


class TestDashboardTiles:
    @pytest.fixture
    def computed(self, monkeypatch):
        """How often the cached tiles were computed."""
        import llmbench.dashboard as dashboard

        calls = []
        original = dashboard.regressions
        monkeypatch.setattr(dashboard, "regressions", lambda team, **kw: calls.append(team.pk) or original(team, **kw))
        return calls

    def test_a_second_view_of_unchanged_data_reads_the_cache(self, viewer_client, team, computed):
        priced_responses(team, "cheap", [0.25])
        first = viewer_client.get(HOME).content
        second = viewer_client.get(HOME).content
        assert computed == [team.pk]
        assert b"$0.25" in first and b"$0.25" in second

    def test_a_new_response_shows_at_once(self, viewer_client, team, computed):
        experiment = priced_responses(team, "cheap", [0.25])
        assert 'id="month-cost-total">$0.25<' in viewer_client.get(HOME).content.decode()
        target = experiment.targets.get()
        Response.objects.create(experiment=experiment, target=target, item_key="prompt", repetition=9, cost_usd=1.0)
        assert 'id="month-cost-total">$1.25<' in viewer_client.get(HOME).content.decode()
        assert len(computed) == 2

    def test_a_new_run_shows_at_once(self, viewer_client, team, computed):
        viewer_client.get(HOME)
        run = stored_run(team, samples=generated_samples(5), name="fresh run")
        content = viewer_client.get(HOME).content.decode()
        assert reverse("hardware:run", args=[run.pk]) in content and "<strong>1</strong> runs" in content
        assert len(computed) == 2

    def test_a_new_score_shows_at_once(self, viewer_client, team):
        viewer_client.get(HOME)
        ScoreFactory(variant=ModelVariantFactory(team=team))
        assert "<strong>1</strong> scores" in viewer_client.get(HOME).content.decode()

    def test_a_new_budget_shows_at_once(self, viewer_client, team, computed):
        priced_responses(team, "cheap", [1.0])
        viewer_client.get(HOME)
        team.monthly_budget_usd = 1.0
        team.save()
        assert "over budget" in viewer_client.get(HOME).content.decode()
        assert computed == [team.pk]  # the budget is applied to the cached figures, not cached with them

    def test_another_teams_cached_tiles_are_never_shown(self, viewer_client, team, other_team, outsider):
        from django.test import Client

        priced_responses(other_team, "theirs", [50.0])
        theirs = Client()
        theirs.force_login(outsider)
        assert "$50.00" in theirs.get(HOME).content.decode()  # cached for the other team
        priced_responses(team, "ours", [0.5])
        content = viewer_client.get(HOME).content.decode()
        assert 'id="month-cost-total">$0.50<' in content and "$50.00" not in content

    def test_the_simulated_results_switch_gets_its_own_tiles(self, viewer_client, team, computed):
        assert viewer_client.get(HOME).context["regressions"] is not None
        team.show_simulated = True
        team.save()
        viewer_client.get(HOME)
        assert len(computed) == 2
