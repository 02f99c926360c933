"""Score pages: leaderboard, quantization, import (preview and write), catalog, variant detail."""

import json
import re

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

    def test_the_key_columns_come_first_in_a_sticky_table(self, viewer_client, scored):
        """Model, quantization, average and coverage lead the table, family and size are collapsible."""
        content = viewer_client.get(self.URL).content.decode()
        table = content[content.index('id="leaderboard-table"') :]
        headers = [re.sub(r"<[^>]+>|[▼▲]", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", table)]
        assert headers[:5] == ["Model", "Quant.", "Average %", "Coverage", "MMLU"]
        assert headers[-2:] == ["Family", "Parameters (billions)"]
        assert '<div class="table-wrap sticky-first"><table class="numeric" id="leaderboard-table">' in content
        assert '<th class="secondary">Family</th>' in content and 'class="columns-toggle"' in content

    def test_it_shows_coverage_and_says_how_gaps_are_ranked(self, viewer_client, team):
        """A variant with 1 of 2 benchmarks shows "1 of 2" and ranks after the complete one; the rule is on the page."""
        mmlu, gsm = BenchmarkFactory(team=team, name="MMLU"), BenchmarkFactory(team=team, name="GSM8K")
        full, partial = ModelVariantFactory(team=team, model_name="org/full"), ModelVariantFactory(team=team,
                                                                                                 model_name="org/gap")  # fmt: skip
        (
            ScoreFactory(variant=full, benchmark=mmlu, value_pct=50),
            ScoreFactory(variant=full, benchmark=gsm, value_pct=52),
        )
        ScoreFactory(variant=partial, benchmark=mmlu, value_pct=90)
        content = viewer_client.get(self.URL).content.decode()
        assert content.index("org/full") < content.index("org/gap")
        assert ">2 of 2</td>" in content and "1 of 2</td>" in content
        assert "variants missing some follow" in content

    def test_simulated_scores_are_left_out_until_switched_on(self, viewer_client, team, scored):
        """By default a simulated row is hidden; the switch shows it with a "simulated" badge."""
        demo = ModelVariantFactory(team=team, model_name="org/demo")
        ScoreFactory(variant=demo, benchmark=scored.scores.get().benchmark, value_pct=99, is_simulated=True)
        content = viewer_client.get(self.URL).content.decode()
        assert "org/demo" not in content and 'name="include_simulated"' in content
        assert "badge simulated" not in content
        content = viewer_client.get(self.URL, {"include_simulated": ["0", "1"]}).content.decode()
        row = content[content.index("org/demo") - 300 : content.index("org/demo") + 400]
        assert 'data-simulated="true"' in row and "badge simulated" in row
        assert content.count("badge simulated") == 1  # org/visible is measured
        chart = json.loads(re.search(r'id="leaderboard-chart" type="application/json">(.*?)</script>', content)[1])
        assert {bar["label"] for bar in chart} == {"demo · BF16 (simulated)", "visible · BF16"}

    def test_the_team_default_shows_simulated_scores(self, viewer_client, team):
        """A team that shows simulated results sees them with the switch ticked; an empty page says what is hidden."""
        ScoreFactory(variant__team=team, variant__model_name="org/demo", value_pct=99, is_simulated=True)
        content = viewer_client.get(self.URL).content.decode()
        assert "org/demo" not in content and "Simulated scores (generated demo data) are left out" in content
        team.show_simulated = True
        team.save(update_fields=["show_simulated"])
        response = viewer_client.get(self.URL)
        assert b"org/demo" in response.content and response.context["include_simulated"] is True

    def test_a_mixed_row_marks_its_simulated_cells(self, viewer_client, team):
        """A row with measured and simulated scores badges the simulated cell as well as the row."""
        variant = ModelVariantFactory(team=team, model_name="org/mixed")
        ScoreFactory(variant=variant, benchmark=BenchmarkFactory(team=team, name="MMLU"), value_pct=61.25)
        ScoreFactory(variant=variant, benchmark=BenchmarkFactory(team=team, name="GSM8K"), value_pct=70,
                     is_simulated=True)  # fmt: skip
        content = viewer_client.get(self.URL, {"include_simulated": "1"}).content.decode()
        assert content.count("badge simulated") == 2
        assert '<td>70.00 <span class="badge simulated"' in content
        assert "<td>61.25</td>" in content


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

    def test_mean_points_lost_comes_right_after_the_variant(self, viewer_client, team):
        """Model, quantization, mean points lost first, in a sticky table; the base column is collapsible."""
        bench = BenchmarkFactory(team=team, name="MMLU")
        ScoreFactory(variant=ModelVariantFactory(team=team, model_name="org/q", quantization="BF16"), benchmark=bench,
                     value_pct=70)  # fmt: skip
        ScoreFactory(variant=ModelVariantFactory(team=team, model_name="org/q", quantization="AWQ"), benchmark=bench,
                     value_pct=69)  # fmt: skip
        content = viewer_client.get(reverse("scores:quantization")).content.decode()
        table = content[content.index('id="quantization-table"') :]
        headers = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", table)]
        assert headers == ["Model", "Quant.", "Mean points lost", "Benchmarks compared", "Base", "MMLU"]
        assert '<div class="table-wrap sticky-first"><table class="numeric" id="quantization-table">' in content
        assert '<td class="text secondary">BF16</td>' in content and "<strong>1.00</strong>" in content

    def test_simulated_scores_are_left_out_until_switched_on(self, viewer_client, team):
        """A quantized variant with simulated scores only is not compared by default; switched on, it has a badge."""
        bench = BenchmarkFactory(team=team, name="MMLU")
        ScoreFactory(variant=ModelVariantFactory(team=team, model_name="org/q", quantization="BF16"), benchmark=bench,
                     value_pct=70)  # fmt: skip
        ScoreFactory(variant=ModelVariantFactory(team=team, model_name="org/q", quantization="FP8"), benchmark=bench,
                     value_pct=69.5, is_simulated=True)  # fmt: skip
        content = viewer_client.get(reverse("scores:quantization")).content.decode()
        assert "FP8" not in content and 'name="include_simulated"' in content
        assert "Simulated scores (generated demo data) are left out" in content
        content = viewer_client.get(reverse("scores:quantization"), {"include_simulated": "1"}).content.decode()
        assert "FP8" in content and content.count("badge simulated") == 1 and 'data-simulated="true"' in content

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

    def test_every_bad_cell_is_listed_on_the_page(self, member_client):
        """NaN, text, an empty model and a 150: the page lists all four with their rows and fields."""
        text = "model,quantization,benchmark,score\norg/a,BF16,MMLU,NaN\norg/a,BF16,GSM8K,sixty\n,BF16,ARC,70\n" \
               "org/a,BF16,HellaSwag,150\n"  # fmt: skip
        response = member_client.post(self.URL, {"file": upload(text), "preview": "1"}, headers={"HX-Request": "true"})
        assert response.status_code == 400
        errors = response.context["file_error"]["errors"]
        assert [(e["row"], e["field"]) for e in errors] == [(2, "score"), (3, "score"), (4, "model"), (5, "score")]
        assert "150 is outside 0–100 percent" in response.content.decode()
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

    def test_detail_badges_simulated_scores(self, viewer_client, scored, team):
        """Every score of the variant is listed; a simulated one carries the badge."""
        ScoreFactory(variant=scored, benchmark=BenchmarkFactory(team=team, name="GSM8K"), value_pct=80,
                     is_simulated=True)  # fmt: skip
        content = viewer_client.get(reverse("scores:variant", args=[scored.pk])).content.decode()
        assert content.count("badge simulated") == 1
        gsm_row = content[content.index("GSM8K") - 60 : content.index("GSM8K") + 200]
        assert 'data-simulated="true"' in gsm_row and "badge simulated" in gsm_row

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


def test_the_quantization_filter_refuses_a_nul_character_by_name(member_client, member_api):
    """A NUL character (the fuzzer found it: PostgreSQL refuses it in a query) is a 400 naming `family`, never a
    500, on the page and in the API."""
    page = member_client.get(reverse("scores:quantization"), {"family": "a\x00b"})
    assert page.status_code == 400 and page.content.decode().startswith("family:")
    api = member_api.get("/api/v1/scores/quantization", {"family": "a\x00b"})
    assert api.status_code == 400 and "family" in api.json()
