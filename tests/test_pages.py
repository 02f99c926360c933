"""Site pages: home, the sections still to come, error pages and the demo data command."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from apps.accounts.models import Membership, Team
from apps.scores.models import ModelVariant, Score
from tests.factories import ModelVariantFactory

pytestmark = pytest.mark.django_db


def test_home_shows_the_navigation_and_the_teams_counts(viewer_client, team):
    ModelVariantFactory(team=team)
    response = viewer_client.get(reverse("home"))
    assert response.status_code == 200
    for label in [b"Leaderboard", b"Performance", b"Experiments", b"Batches", b"Analytics"]:
        assert label in response.content
    assert response.context["counts"]["variants"] == 1
    assert b'hx-headers=\'{"X-CSRFToken"' in response.content
    assert b'href="/admin/"' not in response.content  # viewers have no admin link


def test_providers_api_tokens_and_api_docs_are_in_the_main_navigation(viewer_client):
    """Not only in the user menu: the main <nav> links them, and every page has a favicon."""
    content = viewer_client.get(reverse("home")).content.decode()
    nav = content[content.index('<nav class="nav"') : content.index("</nav>")]
    for url in (reverse("providers:list"), reverse("accounts:tokens"), reverse("api-docs")):
        assert f'href="{url}"' in nav
    assert 'rel="icon"' in content and "favicon.svg" in content


def test_team_admins_see_the_admin_link(admin_client_team):
    assert b'href="/admin/"' in admin_client_team.get(reverse("home")).content


def test_an_unknown_page_is_the_404_page(viewer_client):
    with override_settings(DEBUG=False):
        response = viewer_client.get("/no/such/page/")
    assert response.status_code == 404 and b"belongs to another team" in response.content


def test_a_forbidden_action_is_the_403_page(viewer_client, team):
    variant = ModelVariantFactory(team=team)
    with override_settings(DEBUG=False):
        response = viewer_client.post(reverse("scores:variant-delete", args=[variant.pk]))
    assert response.status_code == 403 and b"Not allowed" in response.content


@pytest.mark.django_db(transaction=True)  # the demo experiment's responses are written from another thread
def test_load_demo_creates_a_team_login_and_scores_and_can_run_again():
    out = StringIO()
    call_command("load_demo", stdout=out)
    team = Team.objects.get(slug="demo")
    assert team.is_demo and "demo / demo-password" in out.getvalue()
    assert Membership.objects.get(team=team, user__username="demo").role == "admin"
    variants, scores = ModelVariant.objects.filter(team=team).count(), Score.objects.filter(team=team).count()
    assert variants >= 12 and scores >= 80
    assert {"AWQ", "BF16", "FP8", "Q4_K_M"} <= set(ModelVariant.objects.values_list("quantization", flat=True))
    from apps.batches.models import Batch
    from apps.experiments.models import Response, TestCase

    assert TestCase.objects.filter(team=team, status="approved").count() == 4
    assert TestCase.objects.filter(team=team, status="pending").count() == 1
    demo = Response.objects.filter(experiment__team=team, experiment__kind="single")
    # two experiments (temperature 0.2 and 1.0) × 2 targets × 4 test cases × 3 responses, all simulated
    assert demo.count() == 48 and demo.filter(passed__isnull=False).count() == 48
    assert not demo.filter(is_simulated=False).exists()
    assert {r.parameters.get("temperature") for r in demo} == {0.2, 1.0}
    sweep = Batch.objects.get(experiment__team=team)
    assert sweep.experiment.status == "completed" and sweep.completed_results == sweep.result_count == 96
    call_command("load_demo", stdout=StringIO())
    assert (ModelVariant.objects.count(), Score.objects.count()) == (variants, scores)
    assert TestCase.objects.filter(team=team).count() == 5
    assert Batch.objects.filter(experiment__team=team).count() == 1  # refreshed, not piled up
    assert Response.objects.filter(experiment__team=team, experiment__kind="single").count() == 48


@pytest.mark.django_db(transaction=True)
def test_the_demo_team_is_labelled_as_demo_data(client):
    call_command("load_demo", stdout=StringIO())
    # through the sign-in page, as a person would (django-axes checks every sign-in against its request)
    signed_in = client.post(reverse("login"), {"username": "demo", "password": "demo-password"})
    assert signed_in.status_code == 302
    assert b"generated demo data" in client.get(reverse("scores:leaderboard")).content
