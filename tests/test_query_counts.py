"""List pages and list APIs run a constant number of queries, however many rows they show."""

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.batches.services import batch_create, sweep_create
from apps.experiments.services import experiment_create
from apps.providers.models import ProviderEndpoint
from tests.factories import ModelVariantFactory, ScoreFactory
from tests.hardware.helpers import stored_run
from tests.test_dashboard import priced_responses

pytestmark = pytest.mark.django_db

# A page reads its session from the database unless sessions are cached (with Redis: llmbench/settings.py).
SESSION_QUERIES = 0 if settings.SESSION_ENGINE == "django.contrib.sessions.backends.cached_db" else 1


def _grow(team, n):
    """n more runs, experiments, load sweeps, parameter sweeps and endpoints."""
    for i in range(n):
        endpoint = ProviderEndpoint.objects.create(team=team, name=f"sim{n}-{i}", kind="sim")
        run = stored_run(team, samples=[])
        experiment_create(team=team, user=None, name=f"e{i}", targets=[(endpoint, "sim-small")], prompt="p")
        sweep_create(team=team, user=None, name=f"s{i}", endpoint=endpoint, model="sim-small", variant=run.variant,
                     levels=[1], step_request_count=1)  # fmt: skip
        batch_create(team=team, user=None, name=f"b{i}", targets=[(endpoint, "sim-small")], prompt="p",
                     parameter_ranges={"temperature": [0.1, 0.9]})  # fmt: skip


@pytest.mark.parametrize(
    "url", [reverse("hardware:runs"), reverse("experiments:list"), reverse("batches:sweeps"), reverse("providers:list")]
)
def test_list_pages_do_not_grow_with_rows(member_client, team, url, django_assert_max_num_queries):
    _grow(team, 2)
    with CaptureQueriesContext(connection) as few:
        assert member_client.get(url).status_code == 200
    _grow(team, 12)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert member_client.get(url).status_code == 200


@pytest.mark.parametrize(
    "url", ["/api/v1/performance/runs", "/api/v1/experiments", "/api/v1/providers/endpoints", "/api/v1/batches"]
)
def test_list_apis_do_not_grow_with_rows(member_api, team, url, django_assert_max_num_queries):
    _grow(team, 2)
    member_api.get(url)  # the token's first use writes last_used_at once
    with CaptureQueriesContext(connection) as few:
        assert member_api.get(url).status_code == 200
    _grow(team, 12)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert member_api.get(url).status_code == 200


class TestHotPathBaselines:
    """Per-view baselines: a change that adds a query to a hot path has to change these numbers."""

    def _warm(self, client, url):
        assert client.get(url).status_code == 200  # the token's first use writes last_used_at; the cache fills

    @pytest.mark.parametrize(
        ("url", "queries"),
        [
            ("/api/v1/scores/leaderboard", 3),  # token, benchmarks, the cache version (apps/scores/cache.py; warm)
            ("/api/v1/scores/leaderboard?include_simulated=1", 3),  # the simulated flag comes with the scores
            ("/api/v1/performance/grid", 3),  # token, workloads, cells
            ("/api/v1/performance/runs", 3),  # token, count, page
        ],
    )
    def test_api(self, member_api, team, url, queries, django_assert_num_queries):
        ScoreFactory(variant=ModelVariantFactory(team=team))
        stored_run(team, samples=[])
        self._warm(member_api, url)
        with django_assert_num_queries(queries):
            assert member_api.get(url).status_code == 200

    def test_dashboard(self, admin_client_team, team, django_assert_num_queries):
        priced_responses(team, "cheap", [0.25])
        stored_run(team, samples=[])
        with CaptureQueriesContext(connection) as cold:
            assert admin_client_team.get("/").status_code == 200
        # the session (only without Redis: with it, sessions are cached); the user; the memberships (active team and
        # switcher); the page's figures (counts, test cases to review, which kinds of job run, the versions of the
        # tiles and of the latest lists). Nothing runs here, so no job is read.
        with django_assert_num_queries(SESSION_QUERIES + 3):
            assert admin_client_team.get("/").status_code == 200
        # + the tiles when computed (cost, trend and the regressions: two or three queries, by the data) and the four
        # latest lists
        assert len(cold.captured_queries) >= SESSION_QUERIES + 3 + 3 + 4
