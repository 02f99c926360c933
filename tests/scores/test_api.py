"""The score API: catalog CRUD, import, leaderboard, quantization; every endpoint for
success, anonymous (401), viewer writing (403), another team's object (404) and bad input (400)."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.scores.models import Benchmark, ModelVariant, Score
from tests.factories import BenchmarkFactory, ModelVariantFactory, ScoreFactory
from tests.scores.test_importers import lm_eval_doc

pytestmark = pytest.mark.django_db


@pytest.fixture
def own(team):
    """One variant, benchmark and score of the request's team."""
    score = ScoreFactory(variant__team=team, variant__model_name="org/own", benchmark__name="MMLU", value_pct=60)
    return {"variants": score.variant, "benchmarks": score.benchmark, "scores": score}


@pytest.fixture
def foreign(other_team):
    score = ScoreFactory(variant__team=other_team, variant__model_name="org/foreign", benchmark__name="MMLU")
    return {"variants": score.variant, "benchmarks": score.benchmark, "scores": score}


RESOURCES = ["variants", "benchmarks", "scores"]


def csv_upload(text: str, name="scores.csv"):
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def valid_body(resource: str, team) -> dict:
    if resource == "variants":
        return {"model_name": "org/new", "quantization": "awq"}
    if resource == "benchmarks":
        return {"name": "GSM8K", "higher_is_better": True}
    variant = ModelVariantFactory(team=team, model_name="org/new")
    benchmark = BenchmarkFactory(team=team, name="GSM8K")
    return {"variant": variant.pk, "benchmark": benchmark.pk, "value_pct": 71.5}


class TestCatalogCrud:
    @pytest.mark.parametrize("resource", RESOURCES)
    def test_list_shows_only_the_team(self, viewer_api, own, foreign, resource):
        response = viewer_api.get(f"/api/v1/{resource}")
        assert response.status_code == 200
        assert [row["id"] for row in response.json()["results"]] == [own[resource].pk]

    @pytest.mark.parametrize("resource", RESOURCES)
    def test_a_member_creates_in_the_team(self, member_api, team, resource):
        response = member_api.post(f"/api/v1/{resource}", valid_body(resource, team), format="json")
        assert response.status_code == 201, response.json()
        model = {"variants": ModelVariant, "benchmarks": Benchmark, "scores": Score}[resource]
        assert model.objects.get(pk=response.json()["id"]).team == team

    @pytest.mark.parametrize("resource", RESOURCES)
    def test_a_viewer_cannot_write(self, viewer_api, own, team, resource):
        url = f"/api/v1/{resource}"
        assert viewer_api.post(url, valid_body(resource, team), format="json").status_code == 403
        assert viewer_api.patch(f"{url}/{own[resource].pk}", {}, format="json").status_code == 403
        assert viewer_api.delete(f"{url}/{own[resource].pk}").status_code == 403

    @pytest.mark.parametrize("resource", RESOURCES)
    def test_another_teams_object_is_404(self, admin_api, foreign, resource):
        url = f"/api/v1/{resource}/{foreign[resource].pk}"
        assert admin_api.get(url).status_code == 404
        assert admin_api.patch(url, {}, format="json").status_code == 404
        assert admin_api.delete(url).status_code == 404
        assert type(foreign[resource]).objects.filter(pk=foreign[resource].pk).exists()

    @pytest.mark.parametrize("resource", RESOURCES)
    def test_anonymous_is_401(self, anon_api, own, resource):
        assert anon_api.get(f"/api/v1/{resource}").status_code == 401
        assert anon_api.get(f"/api/v1/{resource}/{own[resource].pk}").status_code == 401
        assert anon_api.post(f"/api/v1/{resource}", {}, format="json").status_code == 401

    @pytest.mark.parametrize(
        ("resource", "body", "field"),
        [
            ("variants", {"quantization": "AWQ"}, "model_name"),
            ("variants", {"model_name": "org/own", "quantization": "bf16"}, "quantization"),  # duplicate
            ("benchmarks", {"name": "mmlu"}, "name"),  # duplicate, any case
            ("benchmarks", {"name": "X", "scale_max": 0}, "scale_max"),
            ("scores", {"value_pct": 50}, "variant"),
        ],
    )
    def test_bad_input_is_400_naming_the_field(self, member_api, own, resource, body, field):
        if resource == "variants" and field == "quantization":
            body["quantization"] = own["variants"].quantization.lower()
        response = member_api.post(f"/api/v1/{resource}", body, format="json")
        assert response.status_code == 400 and field in response.json()

    def test_a_score_cannot_point_at_another_teams_variant(self, member_api, own, foreign):
        body = {"variant": foreign["variants"].pk, "benchmark": own["benchmarks"].pk, "value_pct": 50}
        response = member_api.post("/api/v1/scores", body, format="json")
        assert response.status_code == 400 and "variant" in response.json()

    def test_a_score_outside_its_scale_is_400(self, member_api, own):
        body = {"variant": own["variants"].pk, "benchmark": own["benchmarks"].pk, "value_pct": 150}
        response = member_api.patch(f"/api/v1/scores/{own['scores'].pk}", body, format="json")
        assert response.status_code == 400 and "value_pct" in response.json()

    def test_variants_filter_like_the_page(self, viewer_api, team):
        ModelVariantFactory(team=team, model_name="org/x", family="Llama", quantization="AWQ")
        ModelVariantFactory(team=team, model_name="org/y", family="Qwen", quantization="AWQ")
        names = [v["model_name"] for v in viewer_api.get("/api/v1/variants?family=llama").json()["results"]]
        assert names == ["org/x"]

    def test_list_queries_do_not_grow_with_rows(self, viewer_api, team, django_assert_max_num_queries):
        for i in range(30):
            ScoreFactory(variant__team=team, benchmark__name=f"B{i}")
        with django_assert_max_num_queries(6):
            assert viewer_api.get("/api/v1/scores?page_size=100").status_code == 200


class TestImportApi:
    URL = "/api/v1/scores/import"

    def test_it_imports_a_long_csv(self, member_api, team):
        upload = csv_upload("model,quantization,benchmark,score\norg/a,BF16,MMLU,0.61\norg/a,BF16,GSM8K,0.7\n")
        response = member_api.post(self.URL, {"file": upload}, format="multipart")
        assert response.status_code == 201
        assert response.json() == {
            "layout": "long", "scale": "fraction", "rows": 2, "scores_created": 2, "scores_updated": 0,
            "variants_created": 1, "benchmarks_created": 2,
        }  # fmt: skip
        assert Score.objects.get(team=team, benchmark__name="MMLU").value_pct == pytest.approx(61.0)

    def test_it_imports_lm_eval_json_with_the_given_quantization(self, member_api, team):
        upload = SimpleUploadedFile("results.json", json.dumps(lm_eval_doc()).encode())
        body = {"file": upload, "format": "lm_eval_json", "quantization": "FP8"}
        response = member_api.post(self.URL, body, format="multipart")
        assert response.status_code == 201 and response.json()["rows"] == 4
        assert set(ModelVariant.objects.filter(team=team).values_list("quantization", flat=True)) == {"FP8"}

    def test_it_accepts_a_column_map(self, member_api, team):
        upload = csv_upload("Name,Quant,MMLU\norg/a,BF16,61\n")
        body = {"file": upload, "column_map": json.dumps({"Name": "model", "Quant": "quantization"})}
        assert member_api.post(self.URL, body, format="multipart").status_code == 201

    def test_a_bad_file_is_400_listing_every_row_and_field_and_writes_nothing(self, member_api, team):
        upload = csv_upload("model,quantization,benchmark,score\n,BF16,MMLU,1\norg/a,BF16,MMLU,nan\norg/b,X,Y,z\n")
        response = member_api.post(self.URL, {"file": upload}, format="multipart")
        assert response.status_code == 400
        body = response.json()
        assert [(e["row"], e["field"]) for e in body["errors"]] == [(2, "model"), (3, "score"), (4, "score")]
        assert "Nothing was written" in body["detail"]
        assert not ModelVariant.objects.exists()

    @pytest.mark.parametrize(
        ("body", "field"),
        [({}, "file"), ({"format": "xml"}, "format"), ({"column_map": "[1]"}, "column_map")],
    )
    def test_bad_parameters_are_400(self, member_api, body, field):
        if field != "file":
            body["file"] = csv_upload("model,quantization,MMLU\nm,BF16,1\n")
        response = member_api.post(self.URL, body, format="multipart")
        assert response.status_code == 400 and field in response.json()

    def test_a_viewer_cannot_import(self, viewer_api):
        response = viewer_api.post(self.URL, {"file": csv_upload("model,quantization,MMLU\nm,BF16,1\n")})
        assert response.status_code == 403 and not Score.objects.exists()

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.post(self.URL, {"file": csv_upload("model,quantization,MMLU\nm,BF16,1\n")}).status_code == 401


class TestLeaderboardApi:
    URL = "/api/v1/scores/leaderboard"

    @pytest.fixture
    def board(self, team, other_team):
        for name, mmlu, gsm in [("org/a", 70, 80), ("org/b", 60, 50), ("org/c", 65, None)]:
            variant = ModelVariantFactory(team=team, model_name=name)
            ScoreFactory(variant=variant, benchmark=self.bench(team, "MMLU"), value_pct=mmlu)
            if gsm is not None:
                ScoreFactory(variant=variant, benchmark=self.bench(team, "GSM8K"), value_pct=gsm)
        ScoreFactory(variant__team=other_team, benchmark__name="MMLU", value_pct=99)

    @staticmethod
    def bench(team, name):
        return Benchmark.objects.get_or_create(team=team, name=name)[0]

    def test_it_ranks_complete_variants_first_by_average(self, viewer_api, board):
        """org/c has 1 of the 2 benchmarks: its higher average does not put it above org/b, which has both."""
        body = viewer_api.get(self.URL).json()
        assert body["benchmarks"] == ["GSM8K", "MMLU"]
        assert [
            (r["model_name"], r["average_pct"], r["coverage_count"], r["coverage_total"], r["complete"])
            for r in body["results"]
        ] == [("org/a", 75.0, 2, 2, True), ("org/b", 55.0, 2, 2, True), ("org/c", 65.0, 1, 2, False)]
        assert body["results"][2]["scores"] == {"GSM8K": None, "MMLU": 65.0}

    def test_its_rows_say_whether_they_include_simulated_scores(self, viewer_api, board, team):
        """Simulated scores are out by default; with include_simulated=1 the row has simulated: true and names them."""
        variant = ModelVariantFactory(team=team, model_name="org/demo")
        ScoreFactory(variant=variant, benchmark=self.bench(team, "MMLU"), value_pct=99, is_simulated=True)
        default = viewer_api.get(self.URL).json()["results"]
        assert "org/demo" not in [r["model_name"] for r in default]
        assert not any(r["simulated"] for r in default)
        rows = {r["model_name"]: r for r in viewer_api.get(self.URL, {"include_simulated": "1"}).json()["results"]}
        assert (rows["org/demo"]["simulated"], rows["org/demo"]["simulated_benchmarks"]) == (True, ["MMLU"])
        assert (rows["org/a"]["simulated"], rows["org/a"]["simulated_benchmarks"]) == (False, [])

    def test_the_teams_setting_includes_simulated_scores_unless_the_call_says_no(self, viewer_api, board, team):
        """A team that shows simulated results gets them by default; include_simulated=0 still leaves them out."""
        ScoreFactory(variant__team=team, variant__model_name="org/demo", benchmark=self.bench(team, "MMLU"),
                     value_pct=99, is_simulated=True)  # fmt: skip
        team.show_simulated = True
        team.save(update_fields=["show_simulated"])
        assert "org/demo" in [r["model_name"] for r in viewer_api.get(self.URL).json()["results"]]
        off = viewer_api.get(self.URL, {"include_simulated": "0"}).json()["results"]
        assert "org/demo" not in [r["model_name"] for r in off]

    def test_it_sorts_by_a_benchmark_and_paginates(self, viewer_api, board):
        body = viewer_api.get(self.URL, {"sort": "gsm8k", "order": "asc", "page_size": 1}).json()
        assert body["count"] == 3 and [r["model_name"] for r in body["results"]] == ["org/b"]

    @pytest.mark.parametrize(
        ("params", "field"), [({"sort": "nope"}, "sort"), ({"benchmark": "X"}, "benchmark"), ({"order": "up"}, "order")]
    )
    def test_bad_parameters_are_400(self, viewer_api, board, params, field):
        response = viewer_api.get(self.URL, params)
        assert response.status_code == 400 and field in response.json()

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.get(self.URL).status_code == 401

    def test_its_query_count_is_constant(self, viewer_api, board, team, django_assert_max_num_queries):
        for i in range(40):
            ScoreFactory(variant__team=team, benchmark=self.bench(team, "MMLU"), value_pct=i)
        with django_assert_max_num_queries(8):  # token, membership, last use, benchmarks ×2, variants, scores
            assert viewer_api.get(self.URL).status_code == 200


class TestQuantizationApi:
    URL = "/api/v1/scores/quantization"

    def test_it_reports_points_lost(self, viewer_api, team):
        mmlu = BenchmarkFactory(team=team, name="MMLU")
        base = ModelVariantFactory(team=team, model_name="org/a", quantization="BF16")
        quant = ModelVariantFactory(team=team, model_name="org/a", quantization="AWQ")
        ScoreFactory(variant=base, benchmark=mmlu, value_pct=70)
        ScoreFactory(variant=quant, benchmark=mmlu, value_pct=68.25)
        body = viewer_api.get(self.URL).json()
        row = body["results"][0]
        assert (row["quantization"], row["base_quantization"]) == ("AWQ", "BF16")
        assert row["deltas"]["MMLU"] == {"base_pct": 70.0, "quantized_pct": 68.25, "points_lost": 1.75,
                                         "base_origin": "imported", "quantized_origin": "imported", "paired": None}  # fmt: skip
        assert body["benchmarks"] == ["MMLU"]

    def test_it_leaves_simulated_scores_out_unless_asked(self, viewer_api, team):
        """A simulated base score gives no delta by default; included, the row and the API say it is simulated."""
        mmlu, gsm = BenchmarkFactory(team=team, name="MMLU"), BenchmarkFactory(team=team, name="GSM8K")
        base = ModelVariantFactory(team=team, model_name="org/a", quantization="BF16")
        quant = ModelVariantFactory(team=team, model_name="org/a", quantization="AWQ")
        ScoreFactory(variant=base, benchmark=mmlu, value_pct=70)
        ScoreFactory(variant=quant, benchmark=mmlu, value_pct=68)
        ScoreFactory(variant=base, benchmark=gsm, value_pct=80, is_simulated=True)
        ScoreFactory(variant=quant, benchmark=gsm, value_pct=60)
        row = viewer_api.get(self.URL).json()["results"][0]
        assert list(row["deltas"]) == ["MMLU"] and row["mean_points_lost"] == 2.0 and row["simulated"] is False
        row = viewer_api.get(self.URL, {"include_simulated": "true"}).json()["results"][0]
        assert list(row["deltas"]) == ["GSM8K", "MMLU"] and row["mean_points_lost"] == 11.0
        assert (row["simulated"], row["simulated_benchmarks"]) == (True, ["GSM8K"])

    def test_its_query_count_is_constant(self, viewer_api, team, django_assert_max_num_queries):
        """Queue depth, token, membership, last use, benchmarks, variants, scores, simulated ones: however many."""
        mmlu = BenchmarkFactory(team=team, name="MMLU")
        for i in range(30):
            ScoreFactory(variant__team=team, variant__model_name=f"org/m{i}", variant__quantization="AWQ",
                         benchmark=mmlu, value_pct=50)  # fmt: skip
            ScoreFactory(variant__team=team, variant__model_name=f"org/m{i}", variant__quantization="BF16",
                         benchmark=mmlu, value_pct=51)  # fmt: skip
        with django_assert_max_num_queries(8):
            body = viewer_api.get(self.URL, {"include_simulated": "1"}).json()
        assert body["count"] == 30

    def test_it_answers_json_and_the_browsable_api_alike(self, viewer_api, viewer_client, team):
        """The JSON answer (rendered in the view) and the browsable API page carry the same rows."""
        base = ModelVariantFactory(team=team, model_name="org/a", quantization="BF16")
        ScoreFactory(variant=base, benchmark__team=team, benchmark__name="MMLU", value_pct=70)
        ScoreFactory(variant=ModelVariantFactory(team=team, model_name="org/a", quantization="GPTQ"),
                     benchmark=base.scores.get().benchmark, value_pct=65)  # fmt: skip
        response = viewer_api.get(self.URL)
        assert response.status_code == 200 and response["Content-Type"] == "application/json"
        assert response.json()["results"][0]["deltas"]["MMLU"]["points_lost"] == 5.0
        page = viewer_client.get(self.URL, {"format": "api"})
        assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
        assert "&quot;points_lost&quot;: 5.0" in page.content.decode()

    def test_it_is_empty_for_another_teams_data(self, viewer_api, other_team):
        base = ModelVariantFactory(team=other_team, model_name="org/a", quantization="BF16")
        ScoreFactory(variant=base, value_pct=70)
        assert viewer_api.get(self.URL).json()["results"] == []

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.get(self.URL).status_code == 401


class TestSchema:
    @pytest.mark.parametrize("path", ["/api/v1/scores/leaderboard/", "/api/v1/scores/quantization/"])
    def test_include_simulated_is_documented(self, viewer_api, path):
        """Both rankings document the include_simulated parameter and the simulated flag of their rows."""
        schema = viewer_api.get("/api/schema/?format=json").json()
        operation = schema["paths"][path]["get"]
        params = {p["name"]: p for p in operation["parameters"]}
        assert params["include_simulated"]["schema"]["type"] == "boolean"
        assert "simulated" in params["include_simulated"]["description"]
        components = schema["components"]["schemas"]

        def resolve(ref: str) -> dict:
            return components[ref.rsplit("/", 1)[-1]]

        page = resolve(operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"])
        row = resolve(page["properties"]["results"]["items"]["$ref"])
        assert row["properties"]["simulated"]["type"] == "boolean"

    def test_the_leaderboard_states_its_ranking_rule(self, viewer_api):
        """The leaderboard's API docs say how variants missing benchmarks are ranked."""
        schema = viewer_api.get("/api/schema/?format=json").json()
        operation = schema["paths"]["/api/v1/scores/leaderboard/"]["get"]
        assert "missing some follow" in operation["description"]
        assert "coverage_count" in operation["description"]
