"""The hot read paths answer as before, more cheaply: the run list built from values() equals the
ModelSerializer's output, the token look-up is one query, and the dashboard's analytical tiles are
cached per team but show a new run, score or response (and a new budget) at once."""

import json
import re
from datetime import UTC, datetime

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from apps.accounts.models import Membership
from apps.accounts.services import active_membership, token_authenticate, token_create
from apps.batches.models import Batch, LoadSweep
from apps.batches.services import sweep_create
from apps.experiments.models import Experiment, Response
from apps.experiments.services import experiment_create, testcase_create
from apps.hardware.api.serializers import PerformanceRunSerializer, TeamRunRows, run_list_rows
from apps.hardware.models import PerformanceRun, RunSummary
from apps.hardware.parsed import ParsedRun
from apps.hardware.services import RunTarget, run_store
from llmbench import dashboard
from tests.batches.helpers import make_batch, sim_endpoint
from tests.factories import (
    DeploymentFactory,
    HardwareProfileFactory,
    MembershipFactory,
    ModelVariantFactory,
    ScoreFactory,
)
from tests.hardware.helpers import generated_samples, stored_run
from tests.test_dashboard import priced_responses
from tests.test_query_counts import SESSION_QUERIES

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

    def test_pages_of_the_whole_team_equal_the_orms_pages(self, member_api, team, other_team):
        # The unfiltered list reads through statements compiled once (TeamRunRows); with a filter
        # parameter present (empty: it filters nothing) the same page comes through the ORM.
        self._runs(team)
        stored_run(team, samples=generated_samples(2))
        stored_run(other_team, samples=generated_samples(2))
        ids = list(PerformanceRun.objects.filter(team=team).values_list("id", flat=True))
        for query, want in (("page_size=3", ids[:3]), ("page_size=3&page=2", ids[3:]), ("page_size=500", ids),
                            ("", ids)):  # fmt: skip
            fast = member_api.get(f"{RUNS}?{query}").json()
            orm = member_api.get(f"{RUNS}?{query}&model=").json()
            assert fast["results"] == orm["results"] and fast["count"] == orm["count"]
            assert fast["count"] == 4
            assert [r["id"] for r in fast["results"]] == want
        assert member_api.get(f"{RUNS}?page=3&page_size=3").status_code == 404

    @pytest.mark.parametrize("as_text", [True, False])
    def test_whole_team_rows_equal_the_orms_rows(self, team, as_text):
        self._runs(team)
        runs = PerformanceRun.objects.filter(team=team)
        orm = list(run_list_rows(runs, metrics_as_json_text=as_text)[0:2])
        fast = TeamRunRows(team.pk, metrics_as_json_text=as_text, page_size=2)[0:2]
        if as_text:  # orjson fragments compare by identity: compare their text
            orm, fast = (
                [{**r, "summary_metrics_json": str(r["summary_metrics_json"])} for r in rows] for rows in (orm, fast)
            )
        assert fast == orm
        assert TeamRunRows(team.pk, metrics_as_json_text=as_text, page_size=2).count() == 3

    def test_whole_team_pages_are_two_queries_after_the_token(self, member_api, team, django_assert_num_queries):
        self._runs(team)
        member_api.get(RUNS)  # the token's first use writes last_used_at
        with django_assert_num_queries(3):  # the token, the count, the page
            assert member_api.get(RUNS).status_code == 200

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
        priced_responses(other_team, "theirs", [50.0])
        theirs = Client()
        theirs.force_login(outsider)
        assert "$50.00" in theirs.get(HOME).content.decode()  # cached for the other team
        priced_responses(team, "ours", [0.5])
        content = viewer_client.get(HOME).content.decode()
        assert 'id="month-cost-total">$0.50<' in content and "$50.00" not in content

    def test_the_simulated_results_switch_gets_its_own_tiles(self, viewer_client, team, computed):
        assert viewer_client.get(HOME).context["regressions"] is not None
        fragment_version = viewer_client.get(HOME).context["fragment_version"]
        team.show_simulated = True
        team.save()
        assert viewer_client.get(HOME).context["fragment_version"] != fragment_version  # its own rendered tiles too
        assert len(computed) == 2


def _fresh(team, *, admin: bool) -> dict:
    """What the dashboard shows, computed afresh without any cache."""
    return {
        "counts": dashboard.team_counts(team),
        "jobs": dashboard.running_jobs(team),
        "latest": dashboard.latest(team),
        "pending_testcases": dashboard.pending_testcase_count(team) if admin else None,
    }


def _shown(context) -> dict:
    latest = context["latest"]
    return {
        "counts": context["counts"],
        "jobs": context["jobs"],
        "latest": latest,
        "pending_testcases": context["pending_testcases"],
    }


def _names(latest) -> dict:
    """Every value the latest lists show, per list."""
    return {
        "runs": [(r.pk, r.name or r.label, r.is_simulated, r.created_at) for r in latest.runs],
        "experiments": [(e.pk, e.name, e.status) for e in latest.experiments],
        "batches": [(b.pk, b.experiment.name, b.experiment.status) for b in latest.batches],
        "sweeps": [(s.pk, s.name, s.status) for s in latest.sweeps],
    }


def _html(client) -> str:
    """The dashboard as rendered, without its per-response CSRF tokens."""
    return re.sub(
        r"csrfmiddlewaretoken\" value=\"[^\"]+|X-CSRFToken\": \"[^\"]+", "", client.get(HOME).content.decode()
    )


class TestDashboardFigures:
    """The page reads its counts, job kinds and versions in one query and its latest lists from the cache,
    yet shows exactly what a fresh computation shows, whatever changed in between."""

    @pytest.fixture
    def data(self, team):
        endpoint = sim_endpoint(team)
        run = stored_run(team, samples=[], name="")
        experiment = experiment_create(team=team, user=None, name="exp", targets=[(endpoint, "sim-small")], prompt="p")
        batch = make_batch(team, endpoint=endpoint, name="batch")
        sweep = sweep_create(team=team, user=None, name="sweep", endpoint=endpoint, model="sim-small",
                             variant=run.variant, levels=[1], step_request_count=1)  # fmt: skip
        return {"endpoint": endpoint, "run": run, "experiment": experiment, "batch": batch, "sweep": sweep}

    def _assert_fresh(self, client, team, *, admin=False):
        shown = _shown(client.get(HOME).context)
        fresh = _fresh(team, admin=admin)
        assert _names(shown.pop("latest")) == _names(fresh.pop("latest"))
        assert shown == fresh

    def test_a_warm_page_is_three_queries(self, admin_client_team, team, data, django_assert_num_queries):
        admin_client_team.get(HOME)
        # the user, the memberships (active team and switcher), the page's figures; and the session without Redis
        with django_assert_num_queries(SESSION_QUERIES + 3):
            assert admin_client_team.get(HOME).status_code == 200
        self._assert_fresh(admin_client_team, team, admin=True)

    @pytest.mark.parametrize(
        "change",
        [
            "new_run", "new_experiment", "new_batch", "new_sweep", "experiment_status", "batch_status",
            "sweep_status", "run_renamed", "variant_renamed", "hardware_renamed", "run_simulated", "experiment_renamed",
            "sweep_renamed", "experiment_deleted",
        ],
    )  # fmt: skip
    def test_every_change_to_the_latest_lists_shows_at_once(self, viewer_client, team, data, change):
        before = _names(viewer_client.get(HOME).context["latest"])
        run, experiment, batch, sweep = data["run"], data["experiment"], data["batch"], data["sweep"]
        match change:
            case "new_run":
                stored_run(team, samples=[], name="newer")
            case "new_experiment":
                experiment_create(team=team, user=None, name="exp2", targets=[(data["endpoint"], "sim-small")],
                                  prompt="p")  # fmt: skip
            case "new_batch":
                make_batch(team, endpoint=data["endpoint"], name="batch2")
            case "new_sweep":
                sweep_create(team=team, user=None, name="sweep2", endpoint=data["endpoint"], model="sim-small",
                             variant=run.variant, levels=[1], step_request_count=1)  # fmt: skip
            case "experiment_status":
                Experiment.objects.filter(pk=experiment.pk).update(status="completed")
            case "batch_status":
                Experiment.objects.filter(pk=batch.pk).update(status="failed")
            case "sweep_status":
                LoadSweep.objects.filter(pk=sweep.pk).update(status="cancelled")
            case "run_renamed":
                PerformanceRun.objects.filter(pk=run.pk).update(name="renamed")
            case "variant_renamed":
                run.variant.model_name = "other-model"
                run.variant.save()
            case "hardware_renamed":
                run.hardware.name = "other hardware"
                run.hardware.save()
            case "run_simulated":
                PerformanceRun.objects.filter(pk=run.pk).update(is_simulated=True)
            case "experiment_renamed":
                Experiment.objects.filter(pk=experiment.pk).update(name="exp renamed")
            case "sweep_renamed":
                LoadSweep.objects.filter(pk=sweep.pk).update(name="sweep renamed")
            case "experiment_deleted":
                Experiment.objects.filter(pk=experiment.pk).delete()
        page = _html(viewer_client)
        after = _names(viewer_client.get(HOME).context["latest"])
        assert after != before
        assert after == _names(_fresh(team, admin=False)["latest"])
        cache.clear()
        assert page == _html(viewer_client)  # the cached fragment of the page was not stale either

    def test_a_job_that_starts_shows_at_once_with_its_progress(self, viewer_client, team, data):
        assert viewer_client.get(HOME).context["jobs"] == []
        Experiment.objects.filter(pk=data["experiment"].pk).update(status="running")
        assert [j["id"] for j in viewer_client.get(HOME).context["jobs"]] == [data["experiment"].pk]
        LoadSweep.objects.filter(pk=data["sweep"].pk).update(status="running")
        Batch.objects.filter(pk=data["batch"].pk).update(queued_at=timezone.now())  # queued, still pending
        jobs = viewer_client.get(HOME).context["jobs"]
        assert {(j["kind"], j["id"]) for j in jobs} == {
            ("experiment", data["experiment"].pk),
            ("sweep", data["sweep"].pk),
            ("batch", data["batch"].pk),
        }
        Experiment.objects.filter(pk=data["batch"].pk).update(status="running")
        Batch.objects.filter(pk=data["batch"].pk).update(completed_results=1)
        (job,) = [j for j in viewer_client.get(HOME).context["jobs"] if j["kind"] == "batch"]
        assert job["completed"] == 1  # progress is never cached
        self._assert_fresh(viewer_client, team)
        page = _html(viewer_client)
        cache.clear()
        assert page == _html(viewer_client)

    def test_test_cases_to_review_are_counted_afresh(self, admin_client_team, team, admin_user):
        assert admin_client_team.get(HOME).context["pending_testcases"] == 0
        testcase_create(team=team, author=admin_user, submit=True, title="t", prompt="p")
        assert admin_client_team.get(HOME).context["pending_testcases"] == 1

    def test_another_teams_cached_lists_are_never_shown(self, viewer_client, team, other_team, outsider):
        stored_run(other_team, samples=[], name="their run")
        theirs = Client()
        theirs.force_login(outsider)
        assert [r.name for r in theirs.get(HOME).context["latest"].runs] == ["their run"]
        stored_run(team, samples=[], name="our run")
        assert [r.name for r in viewer_client.get(HOME).context["latest"].runs] == ["our run"]
        assert "their run" not in viewer_client.get(HOME).content.decode()


class TestTeamSwitcher:
    """The active team and the switcher's list come from one query, chosen as active_membership chooses."""

    @pytest.fixture
    def two_teams(self, member, team, other_team):
        MembershipFactory(user=member, team=other_team, role="viewer")
        return sorted([team, other_team], key=lambda t: t.name)

    def _page(self, client):
        response = client.get(HOME)
        request = response.wsgi_request
        return response, request

    def test_the_first_team_by_name_without_a_choice(self, member_client, member, two_teams):
        response, request = self._page(member_client)
        assert request.team == two_teams[0] == active_membership(request).team
        assert [m.team for m in response.context["user_memberships"]()] == two_teams

    @pytest.mark.parametrize("chosen", [0, 1])
    def test_the_sessions_team_when_the_user_is_in_it(self, member_client, two_teams, chosen):
        member_client.post(reverse("accounts:switch-team"), {"team": two_teams[chosen].pk})
        response, request = self._page(member_client)
        assert request.team == two_teams[chosen] == active_membership(request).team
        assert response.context["active_team"] == two_teams[chosen]

    def test_a_team_left_since_falls_back_to_the_first(self, member_client, member, two_teams):
        member_client.post(reverse("accounts:switch-team"), {"team": two_teams[1].pk})
        Membership.objects.filter(user=member, team=two_teams[1]).delete()
        response, request = self._page(member_client)
        assert request.team == two_teams[0]
        assert [m.team for m in response.context["user_memberships"]()] == [two_teams[0]]

    def test_the_switcher_costs_no_query_of_its_own(self, member_client, two_teams):
        member_client.get(reverse("hardware:runs"))
        with CaptureQueriesContext(connection) as queries:
            content = member_client.get(reverse("hardware:runs")).content.decode()
        assert all(t.name in content for t in two_teams)
        membership_reads = [q for q in queries.captured_queries if "accounts_membership" in q["sql"]]
        assert len(membership_reads) == 1


class TestRunListJson:
    """The run list is written by orjson with the stored metrics copied in; other renderers still work."""

    def test_the_metrics_are_not_decoded(self, member_api, team, monkeypatch):
        from django.db.models import JSONField

        stored_run(team, samples=generated_samples(5))
        decoded = []
        original = JSONField.from_db_value
        monkeypatch.setattr(JSONField, "from_db_value", lambda self, value, *a: decoded.append(self.name) or
                            original(self, value, *a))  # fmt: skip
        body = member_api.get(RUNS).json()
        assert body["results"][0]["summary"]["metrics"]  # present
        assert "metrics" not in decoded

    @pytest.mark.parametrize("accept", ["application/json; indent=4", "text/html"])
    def test_indented_and_browsable_answers_hold_the_same_runs(self, member_api, team, accept):
        stored_run(team, samples=generated_samples(5))
        plain = member_api.get(RUNS).json()["results"]
        response = member_api.get(RUNS, HTTP_ACCEPT=accept)
        assert response.status_code == 200
        if accept.startswith("application/json"):
            assert response.content.startswith(b"{\n") and json.loads(response.content)["results"] == plain
        else:  # the browsable API shows the same JSON, indented, in its page
            assert "&quot;metrics&quot;: {" in response.content.decode()


@pytest.mark.parametrize(
    ("redis_url", "engine"),
    [("redis://127.0.0.1:6379/8", "cached_db"), ("", "db")],
)
def test_sessions_are_cached_only_in_a_cache_all_processes_share(redis_url, engine):
    """With Redis, sessions are cached (a query less per page); in each process's own memory they would let a
    logout or a team switch in one web process go unseen by the others, so without Redis they are not."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {"REDIS_URL": redis_url}
    done = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.SESSION_ENGINE)"],
        env={**env, "DJANGO_SETTINGS_MODULE": "llmbench.settings"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == f"django.contrib.sessions.backends.{engine}", done.stderr
