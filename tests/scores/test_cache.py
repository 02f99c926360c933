"""The leaderboard's and the quantization view's cached answers (apps/scores/cache.py): a change to the team's
scores shows at once, on the page and in the API; another team, another query or another role never gets
someone else's cached answer."""

import pytest
from django.test import Client
from django.urls import reverse

from apps.scores.models import Score
from apps.scores.services import scores_import
from tests.factories import BenchmarkFactory, ModelVariantFactory, ScoreFactory

pytestmark = pytest.mark.django_db


def test_an_import_shows_at_once_on_the_cached_page_and_api(team, member_client, member_api):
    ScoreFactory(team=team, variant=ModelVariantFactory(team=team, model_name="org/a", quantization="BF16"),
                 benchmark=BenchmarkFactory(team=team, name="MMLU"), value_pct=61.0)  # fmt: skip
    assert "61.00" in member_client.get(reverse("scores:leaderboard")).content.decode()
    assert member_api.get("/api/v1/scores/leaderboard").json()["results"][0]["average_pct"] == 61.0
    scores_import(team=team, content=b"model,quantization,benchmark,score\norg/a,BF16,MMLU,72.5\n")
    assert "72.50" in member_client.get(reverse("scores:leaderboard")).content.decode()
    assert member_api.get("/api/v1/scores/leaderboard").json()["results"][0]["average_pct"] == 72.5


def test_a_measured_score_and_a_delete_show_at_once(team, member_client):
    variant = ModelVariantFactory(team=team, model_name="org/b", quantization="AWQ")
    mmlu = BenchmarkFactory(team=team, name="MMLU")
    ScoreFactory(team=team, variant=variant, benchmark=mmlu, value_pct=50.0)
    assert "50.00" in member_client.get(reverse("scores:leaderboard")).content.decode()
    measured = Score.objects.create(team=team, variant=variant, benchmark=mmlu, origin=Score.Origin.MEASURED,
                                    value_pct=55.0, n_items=10)  # fmt: skip
    page = member_client.get(reverse("scores:leaderboard")).content.decode()
    assert "55.00" in page and "50.00" not in page
    measured.delete()
    assert "50.00" in member_client.get(reverse("scores:leaderboard")).content.decode()


def test_the_cached_answer_follows_the_query_the_team_and_the_role(team, member, viewer, outsider):
    ScoreFactory(team=team, variant=ModelVariantFactory(team=team, model_name="org/mine", quantization="BF16"),
                 benchmark=BenchmarkFactory(team=team, name="MMLU"), value_pct=70.0)  # fmt: skip
    as_member, as_viewer, as_outsider = Client(), Client(), Client()
    as_member.force_login(member)
    as_viewer.force_login(viewer)
    as_outsider.force_login(outsider)
    assert "org/mine" in as_member.get(reverse("scores:leaderboard")).content.decode()
    assert "org/mine" not in as_member.get(reverse("scores:leaderboard") + "?family=none").content.decode()
    # An empty board offers the import to a member only: the role is part of the key.
    empty = reverse("scores:leaderboard") + "?quantization=FP8"
    assert "Import a CSV" in as_member.get(empty).content.decode()
    assert "Import a CSV" not in as_viewer.get(empty).content.decode()
    # The other team, same URLs.
    assert "org/mine" not in as_outsider.get(reverse("scores:leaderboard")).content.decode()
    assert "org/mine" not in as_outsider.get(reverse("scores:quantization")).content.decode()
