"""Real answers of the operations whose declarations were wrong match /api/schema/: a test case's null
reviewer and author, per-target metrics and the performance model lists as arrays, a model's runs as a page,
downloads with their documented media types and progress streams as documented events.
(tests/test_api_fuzz.py checks every operation the same way with generated requests.)"""

import json

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from jsonschema import Draft202012Validator

from apps.experiments.models import Experiment, Response
from apps.experiments.services import experiment_create, testcase_approve, testcase_create
from apps.hardware.models import PerformanceRun
from apps.providers.models import ProviderEndpoint
from tests.hardware.helpers import stored_run

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def openapi() -> dict:
    """The document /api/schema/?format=json serves."""
    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


def _json_schema(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema (`null` allowed too); everything else as is."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    return {"anyOf": [converted, {"type": "null"}]} if node.get("nullable") else converted


def assert_documented(openapi: dict, response, path: str, method: str = "get") -> None:
    """The answer's status and media type are documented for the operation, and a JSON body (or each
    event of a stream) validates against the schema documented for them."""
    operation = openapi["paths"][path][method]
    assert str(response.status_code) in operation["responses"], (response.status_code, list(operation["responses"]))
    content = operation["responses"][str(response.status_code)]["content"]
    media_type = response["Content-Type"].split(";")[0].strip()
    assert media_type in content, f"{media_type} is not among the documented {list(content)}"
    if media_type == "application/json":
        bodies = [json.loads(b"".join(response) if response.streaming else response.content)]
    elif media_type == "text/event-stream":
        bodies = _events(b"".join(response).decode())
        assert bodies, "the stream sent no event"
    else:
        return  # a file: its media type is what the schema can say
    schema = {**_json_schema(content[media_type]["schema"]), "components": _json_schema(openapi["components"])}
    for body in bodies:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in Draft202012Validator(schema).iter_errors(body)]
        assert not errors, errors


def _events(wire: str) -> list[dict]:
    """Each Server-Sent Event as {field: value} (the shape OpenAPI describes an event with)."""
    events = []
    for block in wire.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append(fields)
    return events


def _sim(team) -> ProviderEndpoint:
    return ProviderEndpoint.objects.create(team=team, name="sim", kind="sim", base_url="sim://local?zero_latency=1",
                                           model_names=["sim-small"])  # fmt: skip


def _finished_experiment(team) -> Experiment:
    """A completed experiment with two targets and a few stored responses, one of them an error."""
    endpoint = _sim(team)
    experiment = experiment_create(team=team, user=None, name="exp", prompt="Explain caching", responses_per_item=2,
                                   targets=[(endpoint, "sim-small"), (endpoint, "sim-large")])  # fmt: skip
    first, second = experiment.targets.all()
    for repetition in (0, 1):
        Response.objects.create(experiment=experiment, target=first, item_key="prompt", repetition=repetition,
                                content="Caching keeps answers near.", latency_ms=120.0, ttft_ms=30.0, cost_usd=0.001,
                                quality={"overall": 70.0})  # fmt: skip
    Response.objects.create(experiment=experiment, target=second, item_key="prompt", error_code="timeout")
    Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.COMPLETED)
    return experiment


class TestTestCaseReviewerAndAuthor:
    def test_a_test_case_nobody_reviewed_has_a_null_reviewer_in_every_answer(self, openapi, admin_api):
        """Created, listed, read, edited (PATCH and PUT) and queued for review: reviewer null, as documented."""
        created = admin_api.post("/api/v1/testcases/", {"title": "t", "prompt": "Say hi", "submit": True},
                                 format="json")  # fmt: skip
        assert created.status_code == 201 and created.json()["reviewer"] is None
        assert_documented(openapi, created, "/api/v1/testcases/", "post")
        pk = created.json()["id"]
        assert_documented(openapi, admin_api.get("/api/v1/testcases/"), "/api/v1/testcases/")
        assert_documented(openapi, admin_api.get(f"/api/v1/testcases/{pk}/"), "/api/v1/testcases/{id}/")
        assert_documented(
            openapi, admin_api.get("/api/v1/admin/testcases/pending/"), "/api/v1/admin/testcases/pending/"
        )
        patched = admin_api.patch(f"/api/v1/testcases/{pk}/", {"title": "t2"}, format="json")
        assert_documented(openapi, patched, "/api/v1/testcases/{id}/", "patch")
        put = admin_api.put(f"/api/v1/testcases/{pk}/", {"title": "t3", "prompt": "Say hi"}, format="json")
        assert_documented(openapi, put, "/api/v1/testcases/{id}/", "put")

    def test_a_deleted_author_and_reviewer_read_as_null(self, openapi, admin_api, team, member, admin_user):
        """The foreign keys are SET_NULL: once the users are gone the test case says null for both."""
        case = testcase_approve(testcase=testcase_create(team=team, author=member, submit=True, title="t", prompt="p"),
                                reviewer=member)  # fmt: skip
        member.delete()
        response = admin_api.get(f"/api/v1/testcases/{case.pk}/")
        assert (response.json()["author"], response.json()["reviewer"]) == (None, None)
        assert_documented(openapi, response, "/api/v1/testcases/{id}/")


@pytest.mark.parametrize("prefix", ["experiments", "executions"])
def test_experiment_metrics_are_a_list_of_targets(openapi, viewer_api, team, prefix):
    """One object per target (pass rate and its interval null when nothing was evaluated)."""
    experiment = _finished_experiment(team)
    response = viewer_api.get(f"/api/v1/{prefix}/{experiment.pk}/metrics/")
    assert [row["model"] for row in response.json()] == ["sim-small", "sim-large"]
    assert_documented(openapi, response, f"/api/v1/{prefix}/{{id}}/metrics/")


class TestPerformanceModels:
    def test_models_with_runs_and_modeling_configurations_are_lists(self, openapi, viewer_api, team):
        """GET performance/models and performance/modeling/models answer arrays, as documented now."""
        run = stored_run(team)
        models = viewer_api.get("/api/v1/performance/models")
        assert models.json() == [{"id": run.variant_id, "model_name": run.variant.model_name,
                                  "quantization": run.variant.quantization, "run_count": 1}]  # fmt: skip
        assert_documented(openapi, models, "/api/v1/performance/models")
        configurations = viewer_api.get("/api/v1/performance/modeling/models")
        assert [c["runs"] for c in configurations.json()] == [1]
        assert_documented(openapi, configurations, "/api/v1/performance/modeling/models")

    def test_a_models_runs_are_a_page(self, openapi, viewer_api, team):
        """GET performance/models/{id}/runs is paginated (count, next, previous, results) and says so,
        with its `page` and `page_size` parameters."""
        run = stored_run(team)
        stored_run(team, variant=run.variant, hardware=run.hardware, concurrency=16)
        response = viewer_api.get(f"/api/v1/performance/models/{run.variant_id}/runs?page_size=1")
        assert response.json()["count"] == 2 and len(response.json()["results"]) == 1
        path = "/api/v1/performance/models/{variant_id}/runs"
        assert_documented(openapi, response, path)
        assert {"page", "page_size"} <= {p["name"] for p in openapi["paths"][path]["get"]["parameters"]}


def test_a_run_without_hardware_or_deployment_has_null_names(openapi, viewer_api, team):
    """Both are optional on a run: the list and the detail say null for their names, as documented."""
    run = stored_run(team)
    PerformanceRun.objects.filter(pk=run.pk).update(hardware=None)
    listed = viewer_api.get("/api/v1/performance/runs/")
    assert (listed.json()["results"][0]["hardware_name"], listed.json()["results"][0]["deployment_name"]) == (
        None,
        None,
    )
    assert_documented(openapi, listed, "/api/v1/performance/runs/")
    assert_documented(openapi, viewer_api.get(f"/api/v1/performance/runs/{run.pk}/"), "/api/v1/performance/runs/{id}/")


class TestDownloads:
    @pytest.mark.parametrize("kind", ["csv", "json", "xlsx", "pdf"])
    def test_an_experiment_export_is_sent_as_documented(self, openapi, viewer_api, team, kind):
        """Each format's Content-Type is one the schema lists (not application/octet-stream)."""
        experiment = _finished_experiment(team)
        response = viewer_api.get(f"/api/v1/experiments/{experiment.pk}/export/?format={kind}")
        assert response.status_code == 200
        assert_documented(openapi, response, "/api/v1/experiments/{id}/export/")

    @pytest.mark.parametrize("kind", ["csv", "json", "xlsx"])
    def test_a_run_export_is_sent_as_documented(self, openapi, viewer_api, team, kind):
        """CSV samples, JSON and Excel summaries: each a documented media type."""
        run = stored_run(team)
        response = viewer_api.get(f"/api/v1/performance/runs/{run.pk}/export/?format={kind}")
        assert response.status_code == 200
        assert_documented(openapi, response, "/api/v1/performance/runs/{id}/export/")

    @pytest.mark.parametrize("kind", ["jsonl", "csv"])
    def test_the_test_case_export_is_sent_as_documented(self, openapi, viewer_api, team, admin_user, kind):
        """JSON Lines or CSV, never the application/json the schema used to claim."""
        testcase_create(team=team, author=admin_user, title="t", prompt="p")
        response = viewer_api.get(f"/api/v1/testcases/export?type={kind}")
        assert response.status_code == 200
        assert_documented(openapi, response, "/api/v1/testcases/export")


def test_a_progress_stream_sends_documented_events(openapi, viewer_api, team):
    """Each event is `event: progress` with a `data` line of JSON text, as the event schema says."""
    experiment = _finished_experiment(team)
    response = viewer_api.get(f"/api/v1/experiments/{experiment.pk}/progress")
    assert_documented(openapi, response, "/api/v1/experiments/{id}/progress")
