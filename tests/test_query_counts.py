"""List pages and list APIs run a constant number of queries, however many rows they show."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.batches.services import batch_create, sweep_create
from apps.experiments.services import experiment_create
from apps.providers.models import ProviderEndpoint
from tests.hardware.helpers import stored_run

pytestmark = pytest.mark.django_db


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
