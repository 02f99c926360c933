"""Score pages: leaderboard, quantization, import (preview and write), catalog, variant detail."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.scores.models import ModelVariant, Score
from tests.factories import BenchmarkFactory, ModelVariantFactory, ScoreFactory

pytestmark = pytest.mark.django_db

GOOD_CSV = "model,quantization,benchmark,score\norg/a,BF16,MMLU,61.5\norg/a,AWQ,MMLU,60\n"
BAD_CSV = "model,quantization,benchmark,score\n,BF16,MMLU,61.5\norg/a,AWQ,MMLU,sixty\n"


def upload(text=GOOD_CSV):
    return SimpleUploadedFile("scores.csv", text.encode(), content_type="text/csv")


@pytest.fixture
def scored(team):
    variant = ModelVariantFactory(team=team, model_name="org/visible", family="Fam")
    ScoreFactory(variant=variant, benchmark=BenchmarkFactory(team=team, name="MMLU"), value_pct=64.25)
    return variant


@pytest.fixture
def foreign(other_team):
    variant = ModelVariantFactory(team=other_team, model_name="org/secret")
    ScoreFactory(variant=variant, value_pct=12.5)
    return variant


class TestLeaderboardPage:
    URL = reverse("scores:leaderboard")

    def test_it_shows_the_teams_scores_only(self, viewer_client, scored, foreign):
        response = viewer_client.get(self.URL)
        assert response.status_code == 200
        assert b"org/visible" in response.content and b"64.25" in response.content
        assert b"org/secret" not in response.content
        assert b"echarts.min.js" in response.content

    def test_htmx_gets_only_the_results_partial(self, viewer_client, scored):
        response = viewer_client.get(self.URL, {"sort": "MMLU"}, headers={"HX-Request": "true"})
        assert response.status_code == 200
        assert b'id="results"' in response.content and b"<html" not in response.content

    def test_an_empty_team_sees_how_to_fill_it(self, member_client):
        response = member_client.get(self.URL)
        assert b"No scores yet" in response.content and reverse("scores:import").encode() in response.content

    def test_bad_sort_is_400_naming_the_field(self, viewer_client, scored):
        response = viewer_client.get(self.URL, {"sort": "nonsense"})
        assert response.status_code == 400 and b"sort" in response.content

    def test_it_paginates(self, viewer_client, team):
        bench = BenchmarkFactory(team=team, name="MMLU")
        for i in range(55):
            ScoreFactory(variant=ModelVariantFactory(team=team), benchmark=bench, value_pct=i)
        response = viewer_client.get(self.URL, {"page": 2})
        assert len(response.context["page"].object_list) == 5 and b"Page 2 of 2" in response.content

    def test_anonymous_is_redirected(self, client):
        assert client.get(self.URL).status_code == 302


class TestQuantizationPage:
    def test_it_shows_points_lost(self, viewer_client, team):
        bench = BenchmarkFactory(team=team, name="MMLU")
        ScoreFactory(variant=ModelVariantFactory(team=team, model_name="org/q", quantization="BF16"), benchmark=bench,
                     value_pct=70)  # fmt: skip
        ScoreFactory(variant=ModelVariantFactory(team=team, model_name="org/q", quantization="GPTQ"), benchmark=bench,
                     value_pct=67.5)  # fmt: skip
        response = viewer_client.get(reverse("scores:quantization"))
        assert response.status_code == 200 and b"2.50" in response.content and b"GPTQ" in response.content

    def test_it_says_when_there_is_nothing_to_compare(self, viewer_client):
        assert b"No quantized variant" in viewer_client.get(reverse("scores:quantization")).content

    def test_anonymous_is_redirected(self, client):
        assert client.get(reverse("scores:quantization")).status_code == 302


class TestImportPage:
    URL = reverse("scores:import")

    def test_it_shows_the_form(self, member_client):
        response = member_client.get(self.URL)
        assert response.status_code == 200 and b'type="file"' in response.content

    def test_preview_shows_what_would_change_and_writes_nothing(self, member_client):
        response = member_client.post(self.URL, {"file": upload(), "preview": "1"}, headers={"HX-Request": "true"})
        assert response.status_code == 200
        assert b"2 scores" in response.content and b"percent" in response.content and b"org/a" in response.content
        assert b"<html" not in response.content
        assert not Score.objects.exists()

    def test_import_writes_and_redirects_to_the_leaderboard(self, member_client, team):
        response = member_client.post(self.URL, {"file": upload()})
        assert response.status_code == 302 and response["Location"] == reverse("scores:leaderboard")
        assert Score.objects.filter(team=team).count() == 2
        assert "Imported 2 scores" in member_client.get(response["Location"]).content.decode()

    def test_a_bad_file_is_400_listing_rows_and_fields_and_writes_nothing(self, member_client):
        response = member_client.post(self.URL, {"file": upload(BAD_CSV)})
        assert response.status_code == 400
        errors = response.context["file_error"]["errors"]
        assert [(e["row"], e["field"]) for e in errors] == [(2, "model"), (3, "score")]
        assert b"sixty" in response.content
        assert not ModelVariant.objects.exists()

    def test_a_bad_preview_shows_the_errors(self, member_client):
        response = member_client.post(
            self.URL, {"file": upload(BAD_CSV), "preview": "1"}, headers={"HX-Request": "true"}
        )
        assert response.status_code == 400 and b"is empty" in response.content

    def test_a_missing_file_is_400(self, member_client):
        response = member_client.post(self.URL, {})
        assert response.status_code == 400 and response.context["form"].errors["file"]

    def test_a_viewer_cannot_import(self, viewer_client):
        response = viewer_client.post(self.URL, {"file": upload()})
        assert response.status_code == 403 and not Score.objects.exists()

    def test_anonymous_is_redirected(self, client):
        assert client.post(self.URL, {"file": upload()}).status_code == 302
        assert not Score.objects.exists()


class TestCatalogPages:
    def test_list_filters_and_stays_in_the_team(self, viewer_client, scored, foreign, team):
        ModelVariantFactory(team=team, model_name="org/other", family="Else")
        response = viewer_client.get(reverse("scores:variants"), {"family": "fam"})
        assert b"org/visible" in response.content and b"org/other" not in response.content
        assert b"org/secret" not in viewer_client.get(reverse("scores:variants")).content

    def test_detail_shows_scores(self, viewer_client, scored):
        response = viewer_client.get(reverse("scores:variant", args=[scored.pk]))
        assert response.status_code == 200 and b"64.25" in response.content

    def test_detail_of_another_teams_variant_is_404(self, viewer_client, foreign):
        assert viewer_client.get(reverse("scores:variant", args=[foreign.pk])).status_code == 404

    def test_a_member_deletes_a_variant(self, member_client, scored):
        response = member_client.post(reverse("scores:variant-delete", args=[scored.pk]))
        assert response.status_code == 302 and not ModelVariant.objects.filter(pk=scored.pk).exists()

    def test_a_viewer_cannot_delete(self, viewer_client, scored):
        assert viewer_client.post(reverse("scores:variant-delete", args=[scored.pk])).status_code == 403
        assert ModelVariant.objects.filter(pk=scored.pk).exists()

    def test_delete_of_another_teams_variant_is_404(self, admin_client_team, foreign):
        assert admin_client_team.post(reverse("scores:variant-delete", args=[foreign.pk])).status_code == 404
        assert ModelVariant.objects.filter(pk=foreign.pk).exists()

    def test_delete_rejects_get(self, member_client, scored):
        assert member_client.get(reverse("scores:variant-delete", args=[scored.pk])).status_code == 405

    def test_anonymous_is_redirected(self, client, scored):
        assert client.get(reverse("scores:variant", args=[scored.pk])).status_code == 302

    def test_model_output_like_names_are_escaped(self, viewer_client, team):
        variant = ModelVariantFactory(team=team, model_name="<script>alert(1)</script>")
        ScoreFactory(variant=variant, value_pct=1)
        content = viewer_client.get(reverse("scores:leaderboard")).content
        assert b"<script>alert(1)</script>" not in content and b"&lt;script&gt;" in content
