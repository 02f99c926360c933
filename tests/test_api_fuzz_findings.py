"""Server errors and undocumented answers tests/test_api_fuzz.py found, each pinned by a focused test:
a progress stream asked with another method, a batch export asked for an id too large for the database, and
an analytics filter holding a NUL character (PostgreSQL refuses it in a query)."""

import pytest
from django.test import Client

from apps.experiments.models import Experiment
from apps.experiments.services import experiment_create
from apps.providers.models import ProviderEndpoint
from tests.batches.helpers import make_batch

pytestmark = pytest.mark.django_db


def _finished_experiment(team) -> Experiment:
    endpoint = ProviderEndpoint.objects.create(team=team, name="sim", kind="sim", model_names=["sim-small"])
    experiment = experiment_create(team=team, user=None, name="exp", prompt="Hi", targets=[(endpoint, "sim-small")])
    Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.COMPLETED)
    return experiment


class TestProgressStreamMethods:
    @pytest.mark.parametrize("method", ["post", "put", "delete"])
    def test_another_method_is_a_json_405(self, viewer_api, team, method):
        """Only GET streams; anything else is a JSON 405 naming the allowed methods (it used to stream)."""
        experiment = _finished_experiment(team)
        response = getattr(viewer_api, method)(f"/api/v1/experiments/{experiment.pk}/progress")
        assert (response.status_code, response["Allow"]) == (405, "GET, HEAD")
        assert response.json() == {"detail": f'Method "{method.upper()}" not allowed.'}

    @pytest.mark.parametrize("path", ["/api/v1/batches/{id}/progress", "/api/v1/sweeps/{id}/progress"])
    def test_the_batch_and_sweep_streams_refuse_too(self, viewer_api, team, path):
        """The three streams share the decorator: the other two refuse a POST the same way."""
        assert viewer_api.post(path.format(id=1)).status_code == 405

    def test_with_csrf_checks_on_a_post_is_the_same_json_405(self, team, admin_user):
        """A browser session's POST gets the JSON 405, not Django's HTML 403 CSRF page."""
        client = Client(enforce_csrf_checks=True)
        client.force_login(admin_user)
        response = client.post(f"/api/v1/experiments/{_finished_experiment(team).pk}/progress")
        assert response.status_code == 405 and response["Content-Type"] == "application/json"

    def test_get_still_streams_and_anonymous_is_401(self, viewer_api, anon_api, team):
        """The wrapper changes nothing for GET: the stream for the team, 401 without credentials."""
        experiment = _finished_experiment(team)
        assert viewer_api.get(f"/api/v1/experiments/{experiment.pk}/progress")["Content-Type"] == "text/event-stream"
        assert anon_api.get(f"/api/v1/experiments/{experiment.pk}/progress").status_code == 401


class TestBatchExportId:
    def test_an_id_beyond_64_bits_is_a_400_naming_batch_id(self, viewer_api, team):
        """It overflowed the database's integer (a 500 on SQLite and PostgreSQL)."""
        response = viewer_api.post("/api/v1/export/batch", {"batch_id": 2**70, "format": "csv"}, format="json")
        assert response.status_code == 400 and list(response.json()) == ["batch_id", "request_id"]

    def test_the_largest_id_is_a_404_and_a_real_one_downloads(self, viewer_api, team):
        """Inside the range the lookup answers as before: 404 for no such batch, the file for one."""
        assert viewer_api.post("/api/v1/export/batch", {"batch_id": 2**63 - 1}, format="json").status_code == 404
        batch = make_batch(team)
        response = viewer_api.post("/api/v1/export/batch", {"batch_id": batch.pk, "format": "csv"}, format="json")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")

    def test_another_teams_batch_is_404_and_anonymous_401(self, viewer_api, anon_api, other_team):
        """Team scoping and authentication are unchanged."""
        batch = make_batch(other_team)
        assert viewer_api.post("/api/v1/export/batch", {"batch_id": batch.pk}, format="json").status_code == 404
        assert anon_api.post("/api/v1/export/batch", {"batch_id": batch.pk}, format="json").status_code == 401


class TestAnalyticsTextFilters:
    @pytest.mark.parametrize("name", ["model", "tag"])
    @pytest.mark.parametrize(
        "path", ["/api/v1/analytics/quality/trends", "/api/v1/export/analytics/parameter-optimization?format=csv"]
    )
    def test_a_nul_character_is_a_400_naming_the_filter(self, viewer_api, team, path, name):
        """It reached the query: a 500 on PostgreSQL ("text fields cannot contain NUL")."""
        joiner = "&" if "?" in path else "?"
        response = viewer_api.get(f"{path}{joiner}{name}=gpt%00x")
        assert response.status_code == 400 and name in response.json()

    def test_ordinary_filters_still_answer(self, viewer_api, anon_api, team):
        """A plain model and tag filter as before; anonymous is 401."""
        assert viewer_api.get("/api/v1/analytics/quality/trends?model=gpt-4o&tag=demo").status_code == 200
        assert anon_api.get("/api/v1/analytics/quality/trends?model=gpt-4o").status_code == 401
