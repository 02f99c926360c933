"""Scores measured here by benchmark runs, where the decision is made: the leaderboard prefers them over
imported ones, the quantization view compares two of them item by item, the API says which is which, and
the analytics quality × speed × cost view uses them."""

import zlib
from datetime import date

import numpy as np
import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse

from apps.analytics import selectors as analytics_selectors
from apps.analytics.filters import parse_filters
from apps.scores.models import Score
from apps.scores.paired import paired_comparison
from apps.scores.selectors import leaderboard, quantization_report
from apps.scores.services import scores_import
from tests.factories import BenchmarkFactory, ModelVariantFactory, ScoreFactory

pytestmark = pytest.mark.django_db

N_ITEMS = 400
SETTINGS = {"shots": 0, "temperature": 0.0, "max_tokens": 512}


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # paired comparisons are cached by score id and version: ids repeat across tests
    yield
    cache.clear()


def measured(variant, benchmark, correct, *, answers=None, sha="suite-sha", run_id=7, settings=SETTINGS,
             simulated=False, suite_id=3):  # fmt: skip
    """A measured score as a benchmark run writes it (apps.benchmarks publishes these)."""
    correct = np.asarray(correct, dtype=bool)
    n = len(correct)
    if answers is None:
        answers = np.where(correct, 1, 2)
    value = 100 * correct.mean()
    return Score.objects.create(
        team=variant.team, variant=variant, benchmark=benchmark, origin=Score.Origin.MEASURED,
        value_pct=value, stderr_pct=1.0, ci_low_pct=max(value - 4, 0), ci_high_pct=min(value + 4, 100),
        n_items=n, n_shot=settings["shots"], source="Measured: run", evaluated_at=date(2026, 12, 1),
        is_simulated=simulated,
        provenance={"run_id": run_id, "target_id": 1, "suite": {"id": suite_id, "name": "GSM8K test", "version": 2,
                    "sha256": sha}, "endpoint": "vllm", "model": variant.model_name, "settings": settings,
                    "finished_at": "2026-12-01T10:00:00Z"},
        outcomes=np.packbits(correct).tobytes(),
        answer_digests=np.array([zlib.crc32(str(a).encode()) for a in answers], dtype="<u4").tobytes(),
    )  # fmt: skip


@pytest.fixture
def pair(team):
    """org/a BF16 and AWQ, both measured on the same 400 GSM8K items: the base right on 300, the quantized
    variant right on 290 of those 300 and on 4 others (10 flipped to wrong, 4 to right)."""
    gsm = BenchmarkFactory(team=team, name="GSM8K")
    base = ModelVariantFactory(team=team, model_name="org/a", quantization="BF16")
    awq = ModelVariantFactory(team=team, model_name="org/a", quantization="AWQ")
    base_correct = np.zeros(N_ITEMS, dtype=bool)
    base_correct[:300] = True
    awq_correct = base_correct.copy()
    awq_correct[290:300] = False
    awq_correct[300:304] = True
    awq_answers = np.where(awq_correct, 1, 2)
    awq_answers[350:360] = 3  # wrong both times, with another answer
    return {
        "gsm": gsm, "base": base, "awq": awq,
        "base_score": measured(base, gsm, base_correct, run_id=11),
        "awq_score": measured(awq, gsm, awq_correct, answers=awq_answers, run_id=12),
        "base_correct": base_correct, "awq_correct": awq_correct,
    }  # fmt: skip


def item_url(suite_id: int, index: int) -> str:
    """The benchmarks app's item page (mounted by apps.benchmarks; a bare number while it is not)."""
    try:
        return reverse("benchmarks:item", args=[suite_id, index])
    except NoReverseMatch:
        return str(index)


class TestLeaderboardPrefersMeasured:
    def test_a_measured_score_replaces_the_imported_one_of_its_cell(self, team):
        gsm, mmlu = BenchmarkFactory(team=team, name="GSM8K"), BenchmarkFactory(team=team, name="MMLU")
        variant = ModelVariantFactory(team=team, model_name="org/a", quantization="AWQ")
        ScoreFactory(variant=variant, benchmark=gsm, value_pct=80.0)
        ScoreFactory(variant=variant, benchmark=mmlu, value_pct=60.0)
        measured(variant, gsm, [True] * 3 + [False])  # 75 %
        row = leaderboard(team=team).rows[0]
        assert row.scores == {"GSM8K": 75.0, "MMLU": 60.0}
        assert row.average_pct == pytest.approx(67.5)
        assert row.origins == {"GSM8K": "measured", "MMLU": "imported"}
        assert row.measured["GSM8K"] == {"ci_low_pct": 71.0, "ci_high_pct": 79.0, "n_items": 4, "run_id": 7,
                                         "run_url": row.measured["GSM8K"]["run_url"]}  # fmt: skip
        assert list(row.measured) == ["GSM8K"]

    def test_a_simulated_measured_score_stays_out_unless_simulated_are_included(self, team):
        """A run against the simulator is simulated: by default the imported score shows; included, the measured."""
        gsm = BenchmarkFactory(team=team, name="GSM8K")
        variant = ModelVariantFactory(team=team)
        ScoreFactory(variant=variant, benchmark=gsm, value_pct=80.0)
        measured(variant, gsm, [True, False], simulated=True)
        row = leaderboard(team=team).rows[0]
        assert (row.scores["GSM8K"], row.origins["GSM8K"], row.simulated) == (80.0, "imported", False)
        row = leaderboard(team=team, include_simulated=True).rows[0]
        assert (row.scores["GSM8K"], row.origins["GSM8K"], row.simulated) == (50.0, "measured", True)

    def test_a_board_without_measured_scores_makes_no_query_for_them(self, team, django_assert_num_queries):
        gsm = BenchmarkFactory(team=team, name="GSM8K")
        ScoreFactory(variant=ModelVariantFactory(team=team), benchmark=gsm, value_pct=50)
        with django_assert_num_queries(2):  # variants, scores
            (row,) = leaderboard(team=team, team_benchmarks=[gsm]).rows
        assert (row.origins, row.measured) == ({"GSM8K": "imported"}, {})

    def test_a_measured_score_alone_makes_a_row(self, team):
        gsm = BenchmarkFactory(team=team, name="GSM8K")
        measured(ModelVariantFactory(team=team), gsm, [True, True, False, False])
        (row,) = leaderboard(team=team).rows
        assert (row.scores, row.origins) == ({"GSM8K": 50.0}, {"GSM8K": "measured"})

    def test_an_import_updates_only_the_imported_score(self, team):
        """Re-importing the cell's number updates the imported row; the measured one is untouched and still shown."""
        gsm = BenchmarkFactory(team=team, name="GSM8K")
        variant = ModelVariantFactory(team=team, model_name="org/a", quantization="AWQ")
        score = measured(variant, gsm, [True, False, False, False])
        csv = b"model,quantization,benchmark,score\norg/a,AWQ,GSM8K,90\n"
        first = scores_import(team=team, content=csv, scale="percent")
        second = scores_import(team=team, content=csv.replace(b"90", b"91"), scale="percent")
        assert (first.scores_created, first.scores_updated) == (1, 0)
        assert (second.scores_created, second.scores_updated) == (0, 1)
        score.refresh_from_db()
        assert (score.value_pct, score.origin, bytes(score.outcomes)) == (
            25.0,
            "measured",
            np.packbits([1, 0, 0, 0]).tobytes(),
        )
        assert Score.objects.get(variant=variant, origin="imported").value_pct == 91.0
        assert leaderboard(team=team).rows[0].scores["GSM8K"] == 25.0

    def test_the_measured_figures_cost_one_query_whatever_their_number(self, team, django_assert_num_queries):
        gsm = BenchmarkFactory(team=team, name="GSM8K")
        for i in range(10):
            variant = ModelVariantFactory(team=team)
            ScoreFactory(variant=variant, benchmark=gsm, value_pct=50 + i)
            measured(variant, gsm, [True, False, bool(i % 2)])
        # Variants, scores (with the origin), the measured figures (the benchmarks given): none per measured cell.
        with django_assert_num_queries(3):
            board = leaderboard(team=team, team_benchmarks=[gsm])
        assert all(r.origins["GSM8K"] == "measured" for r in board.rows)


class TestPairedQuantization:
    def test_both_measured_on_the_same_suite_are_compared_item_by_item(self, team, pair):
        (row,) = quantization_report(team=team).rows
        delta = row.deltas["GSM8K"]
        assert (delta["base_origin"], delta["quantized_origin"]) == ("measured", "measured")
        paired = delta["paired"]
        expected = paired_comparison(pair["base_score"].outcomes, pair["awq_score"].outcomes, N_ITEMS)
        assert paired["points_lost"] == pytest.approx(100 * 6 / N_ITEMS) == pytest.approx(delta["points_lost"])
        assert (paired["ci_low_pts"], paired["ci_high_pts"]) == (pytest.approx(-expected.ci_high_pts),
                                                                 pytest.approx(-expected.ci_low_pts))  # fmt: skip
        assert paired["ci_low_pts"] < paired["points_lost"] < paired["ci_high_pts"]
        assert (paired["base_only"], paired["quantized_only"], paired["flipped_count"]) == (10, 4, 14)
        assert paired["flipped"] == list(range(290, 304))
        assert paired["mcnemar_p"] == pytest.approx(expected.mcnemar_p)
        assert paired["agreement"] == pytest.approx((N_ITEMS - 14 - 10) / N_ITEMS)  # flips and other wrong answers
        assert (paired["settings_differ"], paired["n_items"], paired["suite"]) == (False, N_ITEMS, "GSM8K test v2")
        assert row.paired_count == 1

    def test_different_settings_are_compared_but_said(self, team, pair):
        pair["awq_score"].provenance["settings"] = {**SETTINGS, "shots": 5}
        pair["awq_score"].save()
        paired = quantization_report(team=team).rows[0].deltas["GSM8K"]["paired"]
        assert paired["settings_differ"] is True and paired["settings_note"] == "shots 0 (base) vs 5"

    @pytest.mark.parametrize("change", ["sha", "n_items", "no_outcomes"])
    def test_another_suite_falls_back_to_the_unpaired_difference(self, team, pair, change):
        score = pair["awq_score"]
        if change == "sha":
            score.provenance["suite"]["sha256"] = "another-suite"
        elif change == "n_items":
            score.n_items = N_ITEMS - 1
        else:
            score.outcomes = None
        score.save()
        delta = quantization_report(team=team).rows[0].deltas["GSM8K"]
        assert delta["paired"] is None and delta["points_lost"] == pytest.approx(1.5)

    def test_an_imported_base_gives_the_unpaired_difference_labelled(self, team, pair):
        pair["base_score"].delete()
        ScoreFactory(variant=pair["base"], benchmark=pair["gsm"], value_pct=80.0)
        delta = quantization_report(team=team).rows[0].deltas["GSM8K"]
        assert (delta["paired"], delta["base_origin"], delta["quantized_origin"]) == (None, "imported", "measured")
        assert delta["points_lost"] == pytest.approx(80.0 - 73.5)

    def test_the_outcomes_are_read_once_per_pair_version(self, team, pair):
        """The first view reads the binary columns of the two scores; the next one reads no binary column at all,
        until a score changes."""
        with CaptureQueriesContext(connection) as first:
            quantization_report(team=team)
        with CaptureQueriesContext(connection) as second:
            again = quantization_report(team=team)
        binary_reads = [q["sql"] for q in first.captured_queries if "answer_digests" in q["sql"]]
        assert len(binary_reads) == 1
        assert not any("outcomes" in q["sql"] or "answer_digests" in q["sql"] for q in second.captured_queries)
        assert again.rows[0].deltas["GSM8K"]["paired"]["flipped_count"] == 14
        score = pair["awq_score"]
        flipped = np.unpackbits(np.frombuffer(score.outcomes, dtype=np.uint8), count=N_ITEMS).astype(bool)
        flipped[0] = False
        score.outcomes, score.value_pct = np.packbits(flipped).tobytes(), 100 * flipped.mean()
        score.save()
        assert quantization_report(team=team).rows[0].deltas["GSM8K"]["paired"]["flipped_count"] == 15


class TestPages:
    def test_the_leaderboard_shows_the_measured_badge_and_interval(self, viewer_client, team, pair):
        content = viewer_client.get(reverse("scores:leaderboard")).content.decode()
        assert 'data-origin="measured"' in content and ">measured</span>" in content
        assert "(71.0–79.0)" in content or "(70.5–78.5)" in content  # the AWQ or base interval
        assert "Measured here on 400 items" in content

    def test_the_quantization_page_says_what_is_lost_item_by_item(self, viewer_client, team, pair):
        content = viewer_client.get(reverse("scores:quantization")).content.decode()
        assert "AWQ loses 1.5 points on GSM8K</strong> (95% CI" in content
        assert "McNemar p = 0.18" in content and "14 items flipped" in content
        assert "same answer on 94.0% of items" in content
        assert "<summary>Flipped items (14)</summary>" in content
        assert f'hx-get="?flipped={pair["awq"].pk}&amp;benchmark=GSM8K"' in content  # fetched when opened
        assert "different settings" not in content

    def test_the_flipped_items_of_a_pair_are_listed_with_links(self, viewer_client, team, pair):
        response = viewer_client.get(reverse("scores:quantization"), {"flipped": pair["awq"].pk, "benchmark": "GSM8K"},
                                     headers={"HX-Request": "true"})  # fmt: skip
        content = response.content.decode()
        assert response.status_code == 200 and "<html" not in content
        assert f'<a href="{item_url(3, 290)}">290</a>' in content or ", 291, " in content
        assert ">303<" in content or ", 303" in content
        assert ">289<" not in content and ">304<" not in content
        assert "10 right only with BF16, 4 only with AWQ" in content

    @pytest.mark.parametrize(
        ("params", "message"),
        [({"flipped": "abc", "benchmark": "GSM8K"}, 'flipped: a model variant id (a whole number), not "abc"'),
         ({"flipped": "1"}, "benchmark: the name of a benchmark is required")],
    )  # fmt: skip
    def test_a_bad_flipped_items_request_is_400_naming_the_field(self, viewer_client, pair, params, message):
        response = viewer_client.get(reverse("scores:quantization"), params)
        assert response.status_code == 400 and message in response.content.decode()

    def test_flipped_items_of_another_teams_variant_or_an_unpaired_benchmark_are_404(self, viewer_client, other_team,
                                                                                       pair):  # fmt: skip
        foreign = ModelVariantFactory(team=other_team, model_name="org/a", quantization="AWQ")
        url = reverse("scores:quantization")
        assert viewer_client.get(url, {"flipped": foreign.pk, "benchmark": "GSM8K"}).status_code == 404
        assert viewer_client.get(url, {"flipped": pair["awq"].pk, "benchmark": "MMLU"}).status_code == 404
        assert viewer_client.get(url, {"flipped": pair["base"].pk, "benchmark": "GSM8K"}).status_code == 404

    def test_the_quantization_page_warns_when_settings_differ(self, viewer_client, team, pair):
        pair["awq_score"].provenance["settings"] = {**SETTINGS, "temperature": 0.7}
        pair["awq_score"].save()
        content = viewer_client.get(reverse("scores:quantization")).content.decode()
        assert "different settings (temperature 0.0 (base) vs 0.7)" in content

    def test_the_htmx_partial_carries_the_paired_comparison(self, viewer_client, team, pair):
        response = viewer_client.get(reverse("scores:quantization"), headers={"HX-Request": "true"})
        assert b"<html" not in response.content and b"items flipped" in response.content

    def test_another_teams_measured_scores_are_not_shown(self, viewer_client, other_team):
        gsm = BenchmarkFactory(team=other_team, name="GSM8K")
        measured(ModelVariantFactory(team=other_team, model_name="org/secret"), gsm, [True, False])
        for name in ("scores:leaderboard", "scores:quantization"):
            assert b"org/secret" not in viewer_client.get(reverse(name)).content

    def test_another_teams_variant_is_404(self, viewer_client, other_team):
        variant = ModelVariantFactory(team=other_team, model_name="org/secret", quantization="AWQ")
        measured(variant, BenchmarkFactory(team=other_team), [True])
        assert viewer_client.get(reverse("scores:variant", args=[variant.pk])).status_code == 404

    def test_anonymous_is_redirected(self, client, pair):
        assert client.get(reverse("scores:quantization")).status_code == 302

    def test_the_variant_page_shows_the_paired_comparison(self, viewer_client, team, pair):
        response = viewer_client.get(reverse("scores:variant", args=[pair["awq"].pk]))
        assert response.status_code == 200 and b"org/a" in response.content


class TestApi:
    def test_the_leaderboard_gives_origin_interval_and_run_per_cell(self, viewer_api, team, pair):
        ScoreFactory(variant=pair["awq"], benchmark=BenchmarkFactory(team=team, name="MMLU"), value_pct=55.0)
        body = viewer_api.get("/api/v1/scores/leaderboard").json()
        row = next(r for r in body["results"] if r["quantization"] == "AWQ")
        assert row["scores"] == {"GSM8K": 73.5, "MMLU": 55.0}  # the fields of before, unchanged
        assert row["origins"] == {"GSM8K": "measured", "MMLU": "imported"}
        cell = row["measured"]["GSM8K"]
        assert (cell["ci_low_pct"], cell["ci_high_pct"], cell["n_items"], cell["run_id"]) == (69.5, 77.5, 400, 12)
        assert "run_url" in cell

    def test_the_quantization_api_gives_the_paired_comparison(self, viewer_api, team, pair):
        row = viewer_api.get("/api/v1/scores/quantization").json()["results"][0]
        delta = row["deltas"]["GSM8K"]
        assert delta["points_lost"] == pytest.approx(1.5) and delta["base_pct"] == 75.0  # the fields of before
        assert delta["paired"]["flipped"] == list(range(290, 304))
        assert delta["paired"]["mcnemar_p"] == pytest.approx(0.1795, abs=1e-4)
        assert row["paired_count"] == 1

    def test_a_measured_score_cannot_be_edited_through_the_api(self, member_api, pair):
        response = member_api.patch(f"/api/v1/scores/{pair['awq_score'].pk}", {"value_pct": 99}, format="json")
        assert response.status_code == 400 and "origin" in response.json()
        pair["awq_score"].refresh_from_db()
        assert pair["awq_score"].value_pct == 73.5

    def test_an_imported_score_may_sit_beside_a_measured_one(self, member_api, pair):
        body = {"variant": pair["awq"].pk, "benchmark": pair["gsm"].pk, "value_pct": 70}
        response = member_api.post("/api/v1/scores", body, format="json")
        assert response.status_code == 201 and response.json()["origin"] == "imported"
        again = member_api.post("/api/v1/scores", body, format="json")
        assert again.status_code == 400 and "benchmark" in again.json()

    def test_a_viewer_cannot_write_scores(self, viewer_api, pair):
        body = {"variant": pair["awq"].pk, "benchmark": pair["gsm"].pk, "value_pct": 70}
        assert viewer_api.post("/api/v1/scores", body, format="json").status_code == 403

    def test_the_score_list_says_the_origin(self, viewer_api, pair):
        results = viewer_api.get("/api/v1/scores", {"variant": pair["awq"].pk}).json()["results"]
        assert [(r["origin"], r["n_items"]) for r in results] == [("measured", 400)]

    def test_another_teams_measured_score_is_404(self, viewer_api, other_team):
        score = measured(ModelVariantFactory(team=other_team), BenchmarkFactory(team=other_team), [True])
        assert viewer_api.get(f"/api/v1/scores/{score.pk}").status_code == 404

    def test_anonymous_is_401(self, anon_api, pair):
        assert anon_api.get("/api/v1/scores/quantization").status_code == 401

    def test_a_bad_sort_is_400_naming_the_field(self, viewer_api, pair):
        response = viewer_api.get("/api/v1/scores/leaderboard", {"sort": "nonsense"})
        assert response.status_code == 400 and "sort" in response.json()


class TestAnalytics:
    def test_quality_uses_the_measured_score_once(self, team):
        """Imported 50 and measured 80 on the same benchmark: the quality is 80 (not their mean), labelled measured."""
        gsm = BenchmarkFactory(team=team, name="GSM8K")
        variant = ModelVariantFactory(team=team)
        ScoreFactory(variant=variant, benchmark=gsm, value_pct=50.0)
        measured(variant, gsm, [True] * 4 + [False])
        filters = parse_filters({"timeframe": "30d"})
        (row,) = analytics_selectors.leaderboard(team, filters, {"quality": 1.0})["rows"]
        assert (row["benchmark_score_pct"], row["benchmarks"], row["benchmarks_measured"]) == (80.0, 1, 1)
        assert row["quality"] == 80.0


class TestVariantPage:
    def test_it_lists_both_origins_and_the_paired_comparison(self, viewer_client, team, pair):
        ScoreFactory(variant=pair["awq"], benchmark=pair["gsm"], value_pct=80.0)
        content = viewer_client.get(reverse("scores:variant", args=[pair["awq"].pk])).content.decode()
        assert ">measured</span>" in content and ">imported<" in content and "69.5–77.5" in content
        assert "AWQ loses 1.5 points on GSM8K" in content

    def test_it_does_not_read_the_outcomes(self, viewer_client, pair):
        with CaptureQueriesContext(connection) as queries:
            viewer_client.get(reverse("scores:variant", args=[pair["base"].pk]))
        assert not any("answer_digests" in q["sql"] for q in queries.captured_queries)


def test_the_custom_export_of_scores_tells_the_origins_apart(viewer_api, team, pair):
    """An imported and a measured score of one benchmark are two rows; the export says which is which."""
    ScoreFactory(variant=pair["awq"], benchmark=pair["gsm"], value_pct=80.0)
    body = {"entity": "scores", "format": "csv", "filters": {}}
    response = viewer_api.post("/api/v1/export/custom", body, format="json")
    text = b"".join(response.streaming_content if response.streaming else [response.content]).decode()
    lines = [line for line in text.splitlines() if "AWQ" in line]
    assert response.status_code == 200 and "origin" in text.splitlines()[0]
    assert sorted(line.split(",")[3] for line in lines) == ["imported", "measured"]
