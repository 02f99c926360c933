"""Analytics pages and API: roles, team scoping, bad input, and one answer shape per view."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.analytics.catalog import VIEWS
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

API = {
    "quality-trends": "/api/v1/analytics/quality/trends",
    "quality-breakdown": "/api/v1/analytics/quality/breakdown",
    "model-comparison": "/api/v1/analytics/models/comparison",
    "parameter-optimization": "/api/v1/analytics/parameters/optimization",
    "parameter-correlation": "/api/v1/analytics/parameters/correlation",
    "parameter-insights": "/api/v1/analytics/parameters/insights",
    "regressions": "/api/v1/analytics/regressions",
    "leaderboard": "/api/v1/analytics/leaderboard",
}


def test_every_view_has_an_api_route():
    assert set(API) == set(VIEWS)


@pytest.mark.parametrize("slug", list(API))
def test_a_viewer_reads_every_view(slug, viewer_api, dataset, other_dataset):
    response = viewer_api.get(API[slug])
    assert response.status_code == 200
    assert b"other-team-model" not in response.content and b"Theirs" not in response.content


@pytest.mark.parametrize("slug", list(API))
def test_anonymous_and_teamless_users_are_refused(slug, anon_api, db):
    assert anon_api.get(API[slug]).status_code in (401, 403)
    api = APIClient()
    api.force_authenticate(UserFactory())  # signed in, but in no team
    assert api.get(API[slug]).status_code == 403


def test_trends_answer_their_points(viewer_api, dataset):
    data = viewer_api.get(API["quality-trends"], {"granularity": "day"}).json()
    assert len(data["points"]) == 10 and data["trend"]["direction"] == "improving"
    assert {"period", "n", "mean", "ci_low", "ci_high", "metrics"} <= set(data["points"][0])


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        (API["quality-trends"], {"timeframe": "1y"}, "timeframe"),
        (API["quality-trends"], {"timeframe": "custom", "start": "2026-13-01", "end": "2026-12-01"}, "start"),
        (API["quality-breakdown"], {"dimension": "colour"}, "dimension"),
        (API["model-comparison"], {"metric": "speed"}, "metric"),
        (API["parameter-optimization"], {"objective": "vibes"}, "objective"),
        (API["parameter-insights"], {"weights": "quality:x"}, "weights"),
        (API["leaderboard"], {"weights": "taste:1"}, "weights"),
        (API["leaderboard"], {"weights": "quality:0"}, "weights"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(viewer_api, url, params, field):
    response = viewer_api.get(url, params)
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize("slug", list(VIEWS))
def test_every_page_renders_for_a_viewer(slug, viewer_client, dataset, other_dataset):
    response = viewer_client.get(reverse("analytics:view", args=[slug]))
    assert response.status_code == 200
    assert b"other-team-model" not in response.content
    assert b'id="download-pdf"' in response.content


def test_index_lists_every_view(viewer_client):
    content = viewer_client.get(reverse("analytics:index")).content.decode()
    assert all(f'id="view-{slug}"' in content for slug in VIEWS)


def test_pages_need_a_login_and_a_team(client, db):
    assert client.get(reverse("analytics:view", args=["quality-trends"])).status_code == 302
    client.force_login(UserFactory())
    assert client.get(reverse("analytics:view", args=["quality-trends"])).status_code == 403


def test_a_bad_filter_on_a_page_says_which(viewer_client):
    response = viewer_client.get(reverse("analytics:view", args=["quality-trends"]), {"granularity": "hour"})
    assert response.status_code == 400
    assert b"granularity: one of day, week" in response.content


def test_an_unknown_view_is_404(viewer_client, viewer_api):
    assert viewer_client.get("/analytics/nope/").status_code == 404
    assert viewer_api.get("/api/v1/export/analytics/nope", {"format": "csv"}).status_code == 404


def test_page_charts_are_echarts_and_the_pdf_keeps_server_side_svg(viewer_client, dataset):
    """Pages draw interactive ECharts from json_script data (no inline code); the PDF keeps the SVG charts."""
    content = viewer_client.get(reverse("analytics:view", args=["leaderboard"])).content.decode()
    main = content.split("<main", 1)[-1].split("</main>")[0]
    assert "data-analytics-chart" in main and "<svg" not in main
    assert all('type="application/json"' in tag for tag in main.split("<script")[1:])
    assert VIEWS["leaderboard"].run(dataset.team, {}).charts[0][1].startswith("<svg")


def test_the_dashboard_shows_the_trend_and_the_regressions_of_the_analytics(viewer_client, viewer_api, dataset):
    from apps.experiments.models import Response

    second = dataset.experiments["second run"]
    Response.objects.filter(experiment=second, target__model="beta", error_code="").update(passed=False, score=0.0)
    trend = viewer_api.get(API["quality-trends"]).json()
    regressions = viewer_api.get(API["regressions"]).json()
    content = viewer_client.get(reverse("home")).content.decode()
    assert f'<strong id="trend-mean">{trend["mean"]:.1f}</strong>' in content
    assert f'<strong id="trend-direction">{trend["trend"]["direction"]}</strong>' in content
    assert f'<strong id="regression-count">{regressions["regressions"]}</strong>' in content
    assert regressions["regressions"] >= 2 and "Lab · beta: pass_rate" in content
