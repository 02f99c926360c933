"""The parameter sweep API (the seed's batch surface): create with the estimate, list, detail,
start (with confirmation over the limit), status, cancel, delete, results, combinations, heatmap,
analysis, optimization, insights and SSE; by role, by team, and with bad input named."""

import json

import pytest
from scipy import stats

from apps.batches.batch_runner import run_batch_chunk
from apps.batches.models import Batch
from apps.batches.services import batch_start
from apps.experiments.models import Response
from tests.batches.helpers import approved_case, make_batch, sim_endpoint

pytestmark = pytest.mark.django_db

SEED_RANGES = {"temperature": {"min": 0.1, "max": 1.0, "step": 0.1}, "top_p": {"min": 0.8, "max": 1.0, "step": 0.05},
               "max_tokens": [150, 300, 500]}  # fmt: skip


def body(**fields):
    data = {"name": "Temperature Analysis Batch", "description": "Testing temperature variations",
            "prompt": "Write a creative story about caching.", "targets": [{"endpoint": "sim", "model": "sim-small"}],
            "parameter_ranges": SEED_RANGES, "responses_per_combination": 3}  # fmt: skip
    data.update(fields)
    return data


def finished(team, **fields):
    batch = make_batch(team, **fields)
    batch_start(batch=batch)
    run_batch_chunk(batch.pk)
    return Batch.objects.get(pk=batch.pk)


class TestCreate:
    def test_a_member_creates_a_batch_in_the_seed_format(self, member_api, team, queued):
        sim_endpoint(team)
        response = member_api.post("/api/v1/batches", body(), format="json")
        assert response.status_code == 201, response.json()
        data = response.json()
        assert data["status"] == "pending" and data["total_combinations"] == 150 and data["total_results"] == 450
        assert data["parameter_values"]["top_p"] == [0.8, 0.85, 0.9, 0.95, 1.0] and data["estimated_duration"]
        assert data["estimate"]["combinations"] == 150 and data["targets"] == [{"id": data["targets"][0]["id"],
                                                                                "endpoint": "sim", "model": "sim-small"}]  # fmt: skip
        assert not queued  # created, not started

    def test_start_true_queues_it_and_the_seed_name_response_count_works(self, member_api, team, queued,
                                                                        django_capture_on_commit_callbacks):  # fmt: skip
        sim_endpoint(team)
        payload = body(start=True, responses_per_combination=None, response_count=1,
                       parameter_ranges={"temperature": [0.2, 0.9]})  # fmt: skip
        payload.pop("responses_per_combination")
        with django_capture_on_commit_callbacks(execute=True):
            response = member_api.post("/api/v1/batches", payload, format="json")
        assert response.status_code == 201 and response.json()["total_results"] == 2 and len(queued) == 1

    def test_over_the_limit_start_needs_confirm(self, member_api, team, queued, django_capture_on_commit_callbacks):
        sim_endpoint(team)
        team.batch_confirm_requests = 100
        team.save()
        response = member_api.post("/api/v1/batches", body(start=True), format="json")
        assert (
            response.status_code == 400
            and "450 requests is over the team's limit of 100" in response.json()["confirm"][0]
        )
        assert not Batch.objects.exists() and not queued  # nothing half-created
        with django_capture_on_commit_callbacks(execute=True):
            response = member_api.post("/api/v1/batches", body(start=True, confirm=True), format="json")
        assert response.status_code == 201 and len(queued) == 1

    @pytest.mark.parametrize(
        ("changes", "field", "text"),
        [
            ({"parameter_ranges": {"temperature": {"min": 0.1, "max": 1.0, "step": 0}}}, "parameter_ranges",
             "temperature.step: must be greater than 0"),
            ({"parameter_ranges": {"top_k": [1]}}, "parameter_ranges", "top_k: not a sweepable parameter"),
            ({"parameter_ranges": {}}, "parameter_ranges", "at least one parameter"),
            ({"targets": [{"endpoint": "nope", "model": "m"}]}, "targets_text", "no endpoint named 'nope'"),
            ({"prompt": ""}, "prompt", "Give a prompt"),
            ({"objective": "pass_rate"}, "objective", "needs test cases"),
            ({"concurrency": 0}, "concurrency", ""),
            ({"responses_per_combination": 0}, "responses_per_combination", ""),  # the name the body used
        ],
    )  # fmt: skip
    def test_bad_input_names_the_field(self, member_api, team, changes, field, text):
        sim_endpoint(team)
        response = member_api.post("/api/v1/batches", body(**changes), format="json")
        assert response.status_code == 400 and field in response.json(), response.json()
        assert text in " ".join(response.json()[field])
        assert not Batch.objects.exists()

    def test_another_teams_endpoint_or_test_case_is_refused(self, member_api, team, other_team, outsider):
        sim_endpoint(other_team)
        response = member_api.post("/api/v1/batches", body(), format="json")
        assert response.status_code == 400 and "targets_text" in response.json()
        sim_endpoint(team)
        theirs = approved_case(other_team, outsider)
        response = member_api.post("/api/v1/batches", body(prompt="", test_cases=[theirs.pk]), format="json")
        assert response.status_code == 400 and "test_cases" in response.json()
        assert not Batch.objects.exists()

    def test_estimate_without_creating(self, member_api, team):
        sim_endpoint(team, price_input_per_1m_usd=1.0, price_output_per_1m_usd=2.0)
        response = member_api.post("/api/v1/batches/estimate", body(), format="json")
        data = response.json()
        assert response.status_code == 200 and data["results"] == 450 and data["cost_usd"] > 0
        assert not Batch.objects.exists()

    def test_viewers_and_anonymous_cannot_create(self, viewer_api, anon_api, team):
        sim_endpoint(team)
        assert viewer_api.post("/api/v1/batches", body(), format="json").status_code == 403
        assert anon_api.post("/api/v1/batches", body(), format="json").status_code == 401


class TestLifecycle:
    def test_list_and_detail_are_scoped_to_the_team(self, viewer_api, anon_api, team, other_team):
        mine, theirs = make_batch(team), make_batch(other_team)
        assert [b["id"] for b in viewer_api.get("/api/v1/batches").json()["results"]] == [mine.pk]
        assert viewer_api.get(f"/api/v1/batches/{mine.pk}").json()["name"] == "sweep"
        for suffix in (
            "",
            "/status",
            "/results",
            "/combinations",
            "/heatmap",
            "/analysis",
            "/optimization",
            "/insights",
        ):
            assert viewer_api.get(f"/api/v1/batches/{theirs.pk}{suffix}").status_code == 404, suffix
        assert anon_api.get("/api/v1/batches").status_code == 401

    def test_start_cancel_and_delete(self, member_api, viewer_api, team, queued, django_capture_on_commit_callbacks):
        batch = make_batch(team)
        assert viewer_api.post(f"/api/v1/batches/{batch.pk}/start").status_code == 403
        with django_capture_on_commit_callbacks(execute=True):
            started = member_api.post(f"/api/v1/batches/{batch.pk}/start", {}, format="json")
        assert started.status_code == 200 and started.json()["state"]["queued"] and len(queued) == 1
        assert member_api.post(f"/api/v1/batches/{batch.pk}/start").status_code == 409
        cancelled = member_api.post(f"/api/v1/batches/{batch.pk}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        assert viewer_api.delete(f"/api/v1/batches/{batch.pk}").status_code == 403
        assert member_api.delete(f"/api/v1/batches/{batch.pk}").status_code == 204
        assert not Batch.objects.exists()

    def test_start_over_the_limit_is_a_409_until_confirmed(self, member_api, team, queued):
        team.batch_confirm_requests = 5
        team.save()
        batch = make_batch(team)
        response = member_api.post(f"/api/v1/batches/{batch.pk}/start", {}, format="json")
        assert response.status_code == 409 and "Confirm to start" in response.json()["detail"]
        assert member_api.post(f"/api/v1/batches/{batch.pk}/start", {"confirm": True}, format="json").status_code == 200

    def test_a_running_batch_is_not_deleted(self, member_api, team):
        batch = make_batch(team)
        batch.experiment.status = "running"
        batch.experiment.save()
        assert member_api.delete(f"/api/v1/batches/{batch.pk}").status_code == 409
        assert member_api.delete(f"/api/v1/experiments/{batch.pk}").status_code == 409  # not through experiments either


@pytest.mark.django_db(transaction=True)
class TestResults:
    def test_status_has_the_seed_fields(self, member_api, team, queued):
        batch = finished(team)
        data = member_api.get(f"/api/v1/batches/{batch.pk}/status").json()
        assert {"id", "status", "progress", "completed_combinations", "total_combinations", "current_parameters",
                "estimated_completion", "results_preview"} <= set(data)  # fmt: skip
        assert data["status"] == "completed" and data["progress"] == 100.0 and data["completed_combinations"] == 6
        assert set(data["results_preview"]) >= {"best_quality_score", "average_quality_score", "optimal_parameters"}

    def test_results_and_combinations(self, member_api, team, queued):
        batch = finished(team)
        results = member_api.get(f"/api/v1/batches/{batch.pk}/results?combination=2").json()
        assert results["count"] == 2 and all(r["combination"] == 2 for r in results["results"])
        assert member_api.get(f"/api/v1/batches/{batch.pk}/results?combination=x").status_code == 400
        rows = member_api.get(f"/api/v1/batches/{batch.pk}/combinations?sort=-mean").json()["results"]
        assert len(rows) == 6 and rows[0]["mean"] == max(r["mean"] for r in rows)
        for row in rows:
            stored = [r.quality["overall"] for r in Response.objects.filter(experiment_id=batch.pk,
                                                                           combination=row["index"])]  # fmt: skip
            assert row["mean"] == pytest.approx(sum(stored) / len(stored)) and row["n"] == 2
        assert member_api.get(f"/api/v1/batches/{batch.pk}/combinations?sort=up").status_code == 400
        assert member_api.get(f"/api/v1/batches/{batch.pk}/combinations?metric=nope").status_code == 400

    def test_the_heatmap_is_the_mean_per_cell(self, member_api, team, queued):
        batch = finished(team)
        data = member_api.get(f"/api/v1/batches/{batch.pk}/heatmap").json()
        assert (data["x"], data["y"], data["metric"]) == ("temperature", "top_p", "overall") and len(data["cells"]) == 6
        for xi, yi, mean, n in data["cells"]:
            stored = [r.quality["overall"] for r in Response.objects.filter(experiment_id=batch.pk)
                      if r.parameters["temperature"] == data["x_values"][xi] and r.parameters["top_p"] == data["y_values"][yi]]  # fmt: skip
            assert mean == pytest.approx(sum(stored) / len(stored), abs=1e-4) and n == len(stored)
        one_axis = member_api.get(f"/api/v1/batches/{batch.pk}/heatmap?x=top_p&y=").json()
        assert one_axis["y"] is None and len(one_axis["cells"]) == 2
        assert member_api.get(f"/api/v1/batches/{batch.pk}/heatmap?x=top_k").status_code == 400
        assert member_api.get(f"/api/v1/batches/{batch.pk}/heatmap?metric=nope").status_code == 400

    def test_analysis_matches_scipy_on_the_stored_results(self, member_api, team, queued):
        batch = finished(team, repetitions=4)
        data = member_api.get(f"/api/v1/batches/{batch.pk}/analysis").json()
        effect = next(e for e in data["effects"] if (e["parameter"], e["metric"]) == ("temperature", "overall"))
        rows = list(Response.objects.filter(experiment_id=batch.pk))
        groups = [[r.quality["overall"] for r in rows if r.parameters["temperature"] == t] for t in (0.2, 0.8, 1.4)]
        assert effect["kruskal_p"] == pytest.approx(stats.kruskal(*groups).pvalue)
        assert effect["anova_p"] == pytest.approx(stats.f_oneway(*groups).pvalue)
        assert [v["n"] for v in effect["values"]] == [8, 8, 8] and data["n"] == 24
        correlation = next(
            c for c in data["correlations"] if (c["parameter"], c["metric"]) == ("temperature", "overall")
        )
        x = [r.parameters["temperature"] for r in rows]
        y = [r.quality["overall"] for r in rows]
        assert correlation["spearman_rho"] == pytest.approx(stats.spearmanr(x, y).statistic)
        json.dumps(data, allow_nan=False)  # strict JSON: no NaN or infinity anywhere

    def test_optimization_and_insights(self, member_api, team, queued):
        batch = finished(team, repetitions=3)
        data = member_api.get(f"/api/v1/batches/{batch.pk}/optimization").json()
        assert data["objective"] == "overall" and {o["parameter"] for o in data["optimal"]} == {"temperature", "top_p"}
        weighted = member_api.get(f"/api/v1/batches/{batch.pk}/optimization?weights=quality:0.7,latency:0.3").json()
        assert weighted["objective"] == "weighted" and weighted["unit"] == "points"
        latency = member_api.get(f"/api/v1/batches/{batch.pk}/optimization?objective=latency_ms").json()
        assert latency["maximize"] is False
        for query, field in (("objective=nope", "objective"), ("weights=speed:1", "weights"), ("weights=quality:x", "weights"),
                             ("weights=quality:0", "weights"), ("quality_metric=nope", "quality_metric")):  # fmt: skip
            response = member_api.get(f"/api/v1/batches/{batch.pk}/optimization?{query}")
            assert response.status_code == 400 and field in response.json(), query
        insights = member_api.get(f"/api/v1/batches/{batch.pk}/insights").json()
        assert (
            insights["n"] == 18 and insights["insights"] and all(i["text"].endswith(".") for i in insights["insights"])
        )
        assert member_api.get(f"/api/v1/batches/{batch.pk}/insights?objective=nope").status_code == 400

    def test_sse_streams_the_state_until_finished(self, member_api, anon_api, team, other_team, queued):
        batch = finished(team)
        response = member_api.get(f"/api/v1/batches/{batch.pk}/progress")
        assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
        payload = json.loads(b"".join(response).decode().split("data: ", 1)[1].split("\n", 1)[0])
        assert payload["status"] == "completed" and payload["completed_results"] == 12
        assert anon_api.get(f"/api/v1/batches/{batch.pk}/progress").status_code == 401
        assert member_api.get(f"/api/v1/batches/{make_batch(other_team).pk}/progress").status_code == 404

    def test_sse_refusals_are_json_for_api_clients(self, member_api, anon_api, other_team):
        """401 and 404 from the stream are JSON bodies (with the token challenge), not the HTML error page."""
        theirs = make_batch(other_team)
        missing = member_api.get(f"/api/v1/batches/{theirs.pk}/progress")
        assert missing.status_code == 404 and missing.json()["detail"]
        anonymous = anon_api.get(f"/api/v1/batches/{theirs.pk}/progress")
        assert anonymous.json()["detail"] and anonymous["WWW-Authenticate"] == "Token"
