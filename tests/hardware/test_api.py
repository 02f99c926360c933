"""The performance API: every endpoint for success, anonymous (401), viewer writing (403),
another team's object (404) and bad input (400)."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.hardware.models import HardwareProfile, PerformanceRun, RequestSample
from tests.factories import DeploymentFactory, HardwareProfileFactory, ModelVariantFactory
from tests.hardware.helpers import stored_run

pytestmark = pytest.mark.django_db


def llmbench_json(**run_overrides) -> SimpleUploadedFile:
    run = {
        "name": "api upload",
        "model": "org/api-model",
        "quantization": "FP8",
        "concurrency": 4,
        "hardware": {"name": "uploaded box", "accelerator": "NVIDIA L4", "hourly_cost_usd": 0.8},
        "samples": [
            {"index": 0, "ttft_ms": 100.0, "e2e_ms": 300.0, "input_tokens": 10, "output_tokens": 5,
             "itl_ms": [50.0, 50.0, 50.0, 50.0], "start_offset_ms": 0.0},
            {"index": 1, "ttft_ms": 120.0, "e2e_ms": 340.0, "input_tokens": 10, "output_tokens": 5,
             "itl_ms": [55.0, 55.0, 55.0, 55.0], "start_offset_ms": 10.0},
            {"index": 2, "error_code": "500", "error_message": "boom", "input_tokens": 10},
        ],
    }  # fmt: skip
    run.update(run_overrides)
    body = {"format": "llmbench.performance/1", "runs": [run]}
    return SimpleUploadedFile("run.json", json.dumps(body).encode(), content_type="application/json")


@pytest.fixture
def own(team):
    return stored_run(team)


@pytest.fixture
def foreign(other_team):
    return stored_run(other_team)


class TestUpload:
    URL = "/api/v1/performance/upload"

    def test_it_stores_runs_with_samples_and_summary(self, member_api, team):
        response = member_api.post(self.URL, {"file": llmbench_json()}, format="multipart")
        assert response.status_code == 201, response.json()
        body = response.json()
        assert body["format"] == "llmbench_json" and body["samples"] == 3
        run = PerformanceRun.objects.get(pk=body["runs"][0]["id"])
        assert run.team == team and run.variant.quantization == "FP8" and run.hardware.name == "uploaded box"
        assert body["runs"][0]["summary"]["error_count"] == 1
        assert body["runs"][0]["summary"]["metrics"]["ttft_ms"]["mean"] == pytest.approx(110.0)
        assert RequestSample.objects.filter(run=run).count() == 3

    def test_the_form_fills_what_the_file_lacks(self, member_api, team):
        hardware, variant = HardwareProfileFactory(team=team), ModelVariantFactory(team=team)
        upload = llmbench_json(model="", quantization="", hardware=None, concurrency=None)
        body = {"file": upload, "variant": variant.pk, "hardware": hardware.pk, "concurrency": 16}
        response = member_api.post(self.URL, body, format="multipart")
        assert response.status_code == 201, response.json()
        run = PerformanceRun.objects.get()
        assert (run.variant, run.hardware, run.concurrency) == (variant, hardware, 16)

    def test_it_asks_for_what_is_missing(self, member_api):
        upload = llmbench_json(quantization="", hardware=None, concurrency=None)
        response = member_api.post(self.URL, {"file": upload}, format="multipart")
        assert response.status_code == 400
        fields = {e["field"] for e in response.json()["errors"]}
        assert {"quantization", "hardware", "concurrency"} <= fields
        assert not PerformanceRun.objects.exists() and not HardwareProfile.objects.exists()

    def test_a_bad_file_names_row_and_field_and_writes_nothing(self, member_api):
        upload = SimpleUploadedFile(
            "bad.json",
            b'{"format": "llmbench.performance/1", "runs": [{"samples": [{"index": 0, "ttft_ms": "fast"}]}]}',
        )
        response = member_api.post(self.URL, {"file": upload}, format="multipart")
        assert response.status_code == 400
        assert any(e["field"] == "ttft_ms" for e in response.json()["errors"])
        assert not PerformanceRun.objects.exists()

    def test_another_teams_hardware_is_refused(self, member_api, other_team):
        foreign_hardware = HardwareProfileFactory(team=other_team)
        response = member_api.post(
            self.URL, {"file": llmbench_json(), "hardware": foreign_hardware.pk}, format="multipart"
        )
        assert response.status_code == 400 and "hardware" in response.json()

    def test_a_viewer_cannot_upload(self, viewer_api):
        assert viewer_api.post(self.URL, {"file": llmbench_json()}, format="multipart").status_code == 403
        assert not PerformanceRun.objects.exists()

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.post(self.URL, {"file": llmbench_json()}, format="multipart").status_code == 401


class TestRuns:
    def test_list_and_detail_stay_in_the_team(self, viewer_api, own, foreign):
        listing = viewer_api.get("/api/v1/performance/runs").json()
        assert [r["id"] for r in listing["results"]] == [own.pk]
        detail = viewer_api.get(f"/api/v1/performance/runs/{own.pk}").json()
        assert detail["summary"]["request_count"] == 50
        assert viewer_api.get(f"/api/v1/performance/runs/{foreign.pk}").status_code == 404

    def test_samples_are_paginated_with_their_gaps(self, viewer_api, own):
        body = viewer_api.get(f"/api/v1/performance/runs/{own.pk}/samples?page_size=10").json()
        assert body["count"] == 50 and len(body["results"]) == 10
        assert isinstance(body["results"][0]["itl_ms"], list)

    def test_samples_of_another_team_are_404(self, viewer_api, foreign):
        assert viewer_api.get(f"/api/v1/performance/runs/{foreign.pk}/samples").status_code == 404

    def test_patch_sets_the_slo_and_recomputes_goodput(self, member_api, own):
        response = member_api.patch(f"/api/v1/performance/runs/{own.pk}", {"slo_ttft_ms": 1000}, format="json")
        assert response.status_code == 200
        own.summary.refresh_from_db()
        assert own.summary.goodput_rps is not None and own.summary.goodput_slo == {"ttft_ms": 1000}

    def test_patch_answers_with_the_recomputed_summary(self, member_api, own):
        """The PATCH answer carries the new goodput and SLO, the same as the database, not the old summary."""
        assert own.summary.goodput_rps is None
        response = member_api.patch(f"/api/v1/performance/runs/{own.pk}", {"slo_ttft_ms": 1000}, format="json")
        own.summary.refresh_from_db()
        answer = response.json()["summary"]
        assert answer["goodput_slo"] == {"ttft_ms": 1000} and answer["goodput_rps"] is not None
        assert answer["goodput_rps"] == pytest.approx(own.summary.goodput_rps)
        tighter = member_api.patch(f"/api/v1/performance/runs/{own.pk}", {"slo_ttft_ms": 1}, format="json").json()
        assert tighter["summary"]["goodput_rps"] == 0.0 and tighter["slo_ttft_ms"] == 1

    def test_patch_rejects_a_negative_slo(self, member_api, own):
        response = member_api.patch(f"/api/v1/performance/runs/{own.pk}", {"slo_e2e_ms": -1}, format="json")
        assert response.status_code == 400 and "slo_e2e_ms" in response.json()

    def test_a_viewer_cannot_change_or_delete(self, viewer_api, own):
        assert viewer_api.patch(f"/api/v1/performance/runs/{own.pk}", {"name": "x"}, format="json").status_code == 403
        assert viewer_api.delete(f"/api/v1/performance/runs/{own.pk}").status_code == 403

    def test_delete_removes_the_run_and_samples(self, member_api, own):
        assert member_api.delete(f"/api/v1/performance/runs/{own.pk}").status_code == 204
        assert not RequestSample.objects.filter(run_id=own.pk).exists()

    def test_delete_of_another_teams_run_is_404(self, admin_api, foreign):
        assert admin_api.delete(f"/api/v1/performance/runs/{foreign.pk}").status_code == 404
        assert PerformanceRun.objects.filter(pk=foreign.pk).exists()

    def test_filters_match_the_page(self, viewer_api, team):
        stored_run(team, concurrency=4)
        kept = stored_run(team, concurrency=32)
        assert [r["id"] for r in viewer_api.get("/api/v1/performance/runs?concurrency=32").json()["results"]] == [
            kept.pk
        ]
        assert viewer_api.get("/api/v1/performance/runs?engine=nonsense").status_code == 400

    def test_anonymous_is_401(self, anon_api, own):
        assert anon_api.get("/api/v1/performance/runs").status_code == 401
        assert anon_api.get(f"/api/v1/performance/runs/{own.pk}/samples").status_code == 401

    def test_list_queries_are_constant(self, viewer_api, team, django_assert_max_num_queries):
        for _ in range(5):
            stored_run(team, samples=[])
        with django_assert_max_num_queries(6):
            assert viewer_api.get("/api/v1/performance/runs").status_code == 200


class TestModelsEndpoints:
    def test_models_with_runs_and_their_runs(self, viewer_api, own, foreign):
        models = viewer_api.get("/api/v1/performance/models").json()
        assert [m["id"] for m in models] == [own.variant_id] and models[0]["run_count"] == 1
        runs = viewer_api.get(f"/api/v1/performance/models/{own.variant_id}/runs").json()
        assert [r["id"] for r in runs["results"]] == [own.pk]

    def test_runs_of_another_teams_model_are_404(self, viewer_api, foreign):
        assert viewer_api.get(f"/api/v1/performance/models/{foreign.variant_id}/runs").status_code == 404

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.get("/api/v1/performance/models").status_code == 401


class TestGridAndCompare:
    def test_grid(self, viewer_api, own, foreign):
        body = viewer_api.get("/api/v1/performance/grid", {"metric": "output_throughput_tps"}).json()
        assert body["metric"] == "output_throughput_tps" and len(body["cells"]) == 1
        assert body["cells"][0]["value"] == pytest.approx(own.summary.output_token_throughput_tps)

    def test_grid_rejects_an_unknown_metric(self, viewer_api):
        response = viewer_api.get("/api/v1/performance/grid", {"metric": "speed"})
        assert response.status_code == 400 and "metric" in response.json()

    def test_compare(self, viewer_api, team, own):
        other = stored_run(team)
        body = viewer_api.get("/api/v1/performance/compare", {"runs": f"{own.pk},{other.pk}"}).json()
        assert [r["id"] for r in body["runs"]] == [own.pk, other.pk]
        assert {t["metric"] for t in body["significance"][str(other.pk)]} >= {"ttft_ms", "itl_ms", "e2e_ms"}

    def test_compare_says_what_it_tests_and_prints_p_values_in_words(self, viewer_api, team, own):
        """The answer states one value per request (ITL: its mean), the request counts, and "< 0.001" for tiny p."""
        from tests.hardware.helpers import generated_samples

        other = stored_run(team, samples=generated_samples(50, seed=4, ttft_ms=300))
        body = viewer_api.get("/api/v1/performance/compare", {"runs": f"{own.pk},{other.pk}"}).json()
        tests = {t["metric"]: t for t in body["significance"][str(other.pk)]}
        assert "one value per successful request" in body["significance_method"]
        assert tests["itl_ms"]["values"] == "one per successful request (its mean ITL)"
        assert (tests["ttft_ms"]["n_first"], tests["ttft_ms"]["n_other"]) == (48, 48)
        assert tests["ttft_ms"]["p_value"] < 0.001 and tests["ttft_ms"]["p_value_text"] == "< 0.001"

    @pytest.mark.parametrize("runs", ["1", "1,x", "1,2,3,4,5", ""])
    def test_compare_rejects_bad_run_lists(self, viewer_api, runs, db):
        response = viewer_api.get("/api/v1/performance/compare", {"runs": runs})
        assert response.status_code == 400 and "runs" in response.json()

    def test_compare_with_another_teams_run_is_404(self, viewer_api, own, foreign):
        assert viewer_api.get("/api/v1/performance/compare", {"runs": f"{own.pk},{foreign.pk}"}).status_code == 404

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.get("/api/v1/performance/grid").status_code == 401
        assert anon_api.get("/api/v1/performance/compare?runs=1,2").status_code == 401


class TestPrediction:
    URL = "/api/v1/performance/predict"

    def test_it_says_when_there_is_not_enough_data(self, member_api, own):
        body = {"variant": own.variant_id, "hardware": own.hardware_id, "input_tokens": 100, "output_tokens": 20,
                "concurrency": 8}  # fmt: skip
        response = member_api.post(self.URL, body, format="json")
        assert response.status_code == 422 and "at least" in response.json()["detail"]

    def test_it_predicts_with_enough_runs(self, viewer_api, team):
        variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)
        for conc in (1, 2, 4, 8, 16, 32):
            stored_run(team, variant=variant, hardware=hardware, concurrency=conc)
        body = {"variant": variant.pk, "hardware": hardware.pk, "input_tokens": 100, "output_tokens": 20,
                "concurrency": 10}  # fmt: skip
        response = viewer_api.post(self.URL, body, format="json")
        assert response.status_code == 200, response.json()
        assert {p["target"] for p in response.json()["predictions"]} >= {"ttft_ms", "tpot_ms", "e2e_ms"}
        listing = viewer_api.get("/api/v1/performance/modeling/models").json()
        assert listing[0]["enough_data"] is True

    def test_bad_input_names_the_field(self, member_api, own, other_team):
        foreign_hardware = HardwareProfileFactory(team=other_team)
        body = {"variant": own.variant_id, "hardware": foreign_hardware.pk, "input_tokens": 0, "concurrency": 1}
        response = member_api.post(self.URL, body, format="json")
        assert response.status_code == 400 and {"hardware", "input_tokens", "output_tokens"} <= set(response.json())

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.post(self.URL, {}, format="json").status_code == 401


class TestHardwareAndDeployments:
    @pytest.mark.parametrize("resource", ["hardware", "deployments"])
    def test_crud_in_the_team(self, member_api, team, resource):
        response = member_api.post(f"/api/v1/performance/{resource}", {"name": "box"}, format="json")
        assert response.status_code == 201
        assert member_api.post(f"/api/v1/performance/{resource}", {"name": "box"}, format="json").status_code == 400

    @pytest.mark.parametrize("factory", [HardwareProfileFactory, DeploymentFactory])
    def test_another_teams_row_is_404(self, admin_api, other_team, factory):
        row = factory(team=other_team)
        resource = "hardware" if factory is HardwareProfileFactory else "deployments"
        assert admin_api.get(f"/api/v1/performance/{resource}/{row.pk}").status_code == 404
        assert admin_api.delete(f"/api/v1/performance/{resource}/{row.pk}").status_code == 404

    def test_a_viewer_cannot_create(self, viewer_api):
        assert viewer_api.post("/api/v1/performance/hardware", {"name": "x"}, format="json").status_code == 403

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.get("/api/v1/performance/hardware").status_code == 401


def test_a_variant_or_hardware_with_runs_cannot_be_deleted(admin_api, own):
    response = admin_api.delete(f"/api/v1/variants/{own.variant_id}")
    assert response.status_code == 409 and "performance runs" in response.json()["detail"]
    assert admin_api.delete(f"/api/v1/performance/hardware/{own.hardware_id}").status_code == 409
    assert PerformanceRun.objects.filter(pk=own.pk).exists()
