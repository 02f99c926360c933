"""Bad input is a 400 that names the problem, never a 500: bodies that are not JSON objects, JSON nested
past JSON_MAX_DEPTH (bodies, uploads, form fields), `null` in multipart JSON fields, counts past their
settings; and every API error is JSON carrying the request id, also when the server fails."""

import json
import logging
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from apps.batches.models import Batch, LoadSweep
from apps.experiments.forms import TestCaseForm
from apps.experiments.models import Experiment, Suite, TestCase
from apps.hardware.models import Deployment, PerformanceRun
from apps.scores.models import Score
from llmbench.parsers import JSONTooDeep, check_json_depth, json_depth
from llmbench.request_id import RequestIdLogFilter
from tests.batches.helpers import approved_case, make_batch, sim_endpoint
from tests.factories import DeploymentFactory, ModelVariantFactory
from tests.scores.test_importers import lm_eval_doc

pytestmark = pytest.mark.django_db

DEEP = "[" * 1000 + "]" * 1000  # 2 KB; Python's json recursed past its limit on this (a 500)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture
def world(team, member):
    """One sim endpoint, approved test case and parameter sweep of the team, for the detail routes."""
    endpoint = sim_endpoint(team)
    return {"endpoint": endpoint, "case": approved_case(team, member), "batch": make_batch(team, endpoint=endpoint)}


def _url(path: str, world) -> str:
    return path.format(case=world["case"].pk, batch=world["batch"].pk)


def _error(response) -> dict:
    """The body of an API error: JSON, with the request id of the response header."""
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert body["request_id"] and body["request_id"] == response["X-Request-ID"]
    return body


# --- a JSON body that is not an object ------------------------------------------------------------

OBJECT_BODY_ROUTES = [
    "/api/v1/batches/", "/api/v1/batches/estimate/", "/api/v1/experiments/", "/api/v1/executions/",
    "/api/v1/performance/predict", "/api/v1/sweeps/", "/api/v1/testcases/{case}/run", "/api/v1/workloads/",
    "/api/v1/workloads/preview",
]  # fmt: skip


@pytest.mark.parametrize("path", OBJECT_BODY_ROUTES)
@pytest.mark.parametrize("body", ["[null,null]", "null", '"text"', "42"])
def test_a_body_that_is_not_an_object_is_a_400(member_api, world, path, body):
    """An array, null, a string or a number as the body: 400 "expected a JSON object", not an AttributeError."""
    response = member_api.post(_url(path, world), data=body, content_type="application/json")
    assert response.status_code == 400
    assert "expected a json object" in _error(response)["detail"].lower()


def test_nothing_is_created_from_an_array_body(member_api, world):
    before = (Batch.objects.count(), Experiment.objects.count(), LoadSweep.objects.count())
    for path in ("/api/v1/batches/", "/api/v1/experiments/", "/api/v1/sweeps/", "/api/v1/testcases/{case}/run"):
        member_api.post(_url(path, world), data="[{}]", content_type="application/json")
    assert (Batch.objects.count(), Experiment.objects.count(), LoadSweep.objects.count()) == before


@pytest.mark.parametrize("path", OBJECT_BODY_ROUTES)
def test_anonymous_is_refused_before_the_body_is_read(anon_api, world, path):
    response = anon_api.post(_url(path, world), data="[null]", content_type="application/json")
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/batches/", "/api/v1/experiments/", "/api/v1/sweeps/"])
def test_a_viewer_is_refused_before_the_body_is_read(viewer_api, world, path):
    response = viewer_api.post(_url(path, world), data="[null]", content_type="application/json")
    assert response.status_code == 403 and _error(response)["detail"]


def test_another_teams_test_case_is_404_whatever_the_body(api_for_outsider, world):
    response = api_for_outsider.post(_url("/api/v1/testcases/{case}/run", world), data="[null]",
                                     content_type="application/json")  # fmt: skip
    assert response.status_code == 404 and _error(response)["detail"]


@pytest.fixture
def api_for_outsider(outsider, other_team):
    from tests.conftest import api_client_for

    return api_client_for(outsider, other_team)


# --- JSON nested too deep ----------------------------------------------------------------------------

DEEP_BODY_ROUTES = [
    ("post", "/api/v1/batches/"), ("post", "/api/v1/batches/estimate/"), ("post", "/api/v1/experiments/"),
    ("post", "/api/v1/executions/"), ("post", "/api/v1/performance/predict"), ("post", "/api/v1/sweeps/"),
    ("post", "/api/v1/testcases/"), ("post", "/api/v1/testcases/{case}/run"), ("post", "/api/v1/suites/"),
    ("post", "/api/v1/performance/hardware/"), ("post", "/api/v1/performance/deployments/"),
    ("post", "/api/v1/providers/endpoints/"), ("post", "/api/v1/export/batch"), ("post", "/api/v1/export/custom"),
    ("post", "/api/v1/tokens/"), ("post", "/api/v1/variants/"), ("post", "/api/v1/benchmarks/"),
    ("post", "/api/v1/scores/"), ("patch", "/api/v1/testcases/{case}/"), ("post", "/api/v1/batches/{batch}/start/"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), DEEP_BODY_ROUTES)
@pytest.mark.parametrize("body", [DEEP, '{"name": ' + DEEP + "}"])
def test_json_nested_past_the_limit_is_a_400_naming_the_setting(admin_api, world, method, path, body):
    response = getattr(admin_api, method)(_url(path, world), data=body, content_type="application/json")
    assert response.status_code == 400
    detail = _error(response)["detail"]
    assert "JSON_MAX_DEPTH" in detail and "64 levels" in detail


@override_settings(JSON_MAX_DEPTH=3)
def test_the_depth_limit_is_the_setting(admin_api):
    ok = admin_api.post("/api/v1/tokens/", data='{"name": "k", "x": [[1]]}', content_type="application/json")
    deep = admin_api.post("/api/v1/tokens/", data='{"name": "k", "x": [[[1]]]}', content_type="application/json")
    assert ok.status_code == 201 and deep.status_code == 400 and "3 levels" in deep.json()["detail"]


def test_depth_counts_brackets_outside_strings_only():
    assert json_depth('{"a": "[[[[[[", "b": [{"c": "]]\\"]["}]}') == 3
    assert json_depth(b'{"a": 1}\n{"b": [[]]}\n') == 3  # JSON Lines: the deepest line
    check_json_depth('"' + "[" * 500 + '"', depth_limit=2)  # inside a string: fine
    with pytest.raises(JSONTooDeep):
        check_json_depth(nested(3), depth_limit=2)


def test_a_deep_json_field_in_a_form_post_is_a_400(admin_api):
    """JSON inside a multipart field is parsed by the serializer, past the body's check: still a 400."""
    response = admin_api.post("/api/v1/performance/deployments/", {"name": "d", "engine": "vllm", "settings": DEEP},
                              format="multipart")  # fmt: skip
    assert response.status_code == 400 and _error(response)
    assert not Deployment.objects.exists()


class TestDeepUploads:
    """Uploaded files and JSON typed into forms have the same limit; nothing is written."""

    def test_performance_upload(self, member_api):
        upload = SimpleUploadedFile("run.json", ('{"format": "llmbench.performance/1", "runs": ' + DEEP + "}").encode())
        response = member_api.post("/api/v1/performance/upload", {"file": upload}, format="multipart")
        assert response.status_code == 400 and "JSON_MAX_DEPTH" in json.dumps(response.json())
        assert not PerformanceRun.objects.exists()

    def test_performance_upload_as_json_lines(self, member_api):
        lines = '{"index": 0}\n{"index": ' + DEEP + "}\n"
        response = member_api.post("/api/v1/performance/upload", {"file": SimpleUploadedFile("s.jsonl", lines.encode())},
                                   format="multipart")  # fmt: skip
        assert response.status_code == 400 and "JSON_MAX_DEPTH" in json.dumps(response.json())
        assert not PerformanceRun.objects.exists()

    def test_score_import(self, member_api):
        doc = json.dumps(lm_eval_doc())[:-1] + ', "extra": ' + DEEP + "}"
        body = {"file": SimpleUploadedFile("r.json", doc.encode()), "format": "lm_eval_json", "quantization": "FP8"}
        response = member_api.post("/api/v1/scores/import", body, format="multipart")
        assert response.status_code == 400 and "JSON_MAX_DEPTH" in json.dumps(response.json())
        assert not Score.objects.exists()

    def test_score_import_column_map(self, member_api):
        csv = SimpleUploadedFile("s.csv", b"model,quantization,benchmark,score\norg/a,BF16,MMLU,0.6\n")
        body = {"file": csv, "column_map": '{"Model": ' + DEEP + "}"}
        response = member_api.post("/api/v1/scores/import", body, format="multipart")
        assert response.status_code == 400 and "JSON_MAX_DEPTH" in response.json()["column_map"][0]
        assert not Score.objects.exists()

    def test_test_case_import_jsonl(self, member_api, team):
        lines = '{"title": "a", "prompt": "p"}\n{"title": "b", "prompt": "p", "tags": ' + DEEP + "}\n"
        upload = SimpleUploadedFile("cases.jsonl", lines.encode())
        response = member_api.post("/api/v1/testcases/import", {"file": upload}, format="multipart")
        assert response.status_code == 400 and "JSON_MAX_DEPTH" in json.dumps(response.json())
        assert not TestCase.objects.filter(team=team).exists()

    def test_test_case_import_csv_settings_cell(self, member_api, team):
        rows = 'title,prompt,evaluator,evaluator_settings\na,p,exact_match,"' + DEEP + '"\n'
        upload = SimpleUploadedFile("cases.csv", rows.encode())
        response = member_api.post("/api/v1/testcases/import", {"file": upload, "type": "csv"}, format="multipart")
        assert response.status_code == 400 and "JSON_MAX_DEPTH" in json.dumps(response.json())
        assert not TestCase.objects.filter(team=team).exists()

    def test_test_case_page_settings(self):
        form = TestCaseForm({"title": "t", "prompt": "p", "evaluator": "exact_match", "settings_json": DEEP})
        assert not form.is_valid() and "JSON_MAX_DEPTH" in form.errors["settings_json"][0]

    def test_json_schema_pasted_as_text(self):
        from apps.experiments.evaluators import SettingsError, validate_settings

        with pytest.raises(SettingsError, match="JSON_MAX_DEPTH"):
            validate_settings("json_schema", {"schema": '{"items": ' + DEEP + "}"})


# --- multipart `settings=null` on deployments ----------------------------------------------------------


class TestDeploymentSettingsNull:
    URL = "/api/v1/performance/deployments/"

    def test_create_is_a_400_naming_settings(self, member_api):
        response = member_api.post(self.URL, {"name": "d", "engine": "vllm", "settings": "null"}, format="multipart")
        assert response.status_code == 400 and "settings" in _error(response)
        assert not Deployment.objects.exists()

    @pytest.mark.parametrize("method", ["put", "patch"])
    def test_update_is_a_400_and_changes_nothing(self, member_api, team, method):
        deployment = DeploymentFactory(team=team, settings={"a": 1})
        response = getattr(member_api, method)(f"{self.URL}{deployment.pk}/",
                                               {"name": "renamed", "engine": "vllm", "settings": "null"},
                                               format="multipart")  # fmt: skip
        assert response.status_code == 400 and "settings" in response.json()
        deployment.refresh_from_db()
        assert deployment.settings == {"a": 1} and deployment.name != "renamed"

    def test_an_object_still_works_in_a_form_post(self, member_api):
        response = member_api.post(
            self.URL, {"name": "d", "engine": "vllm", "settings": '{"x": 1}'}, format="multipart"
        )
        assert response.status_code == 201 and Deployment.objects.get().settings == {"x": 1}

    def test_a_list_is_refused_in_json_too(self, member_api):
        response = member_api.post(self.URL, {"name": "d", "engine": "vllm", "settings": [1]}, format="json")
        assert response.status_code == 400 and "settings" in response.json()

    def test_anonymous_viewer_and_other_team(self, anon_api, viewer_api, api_for_outsider, team):
        deployment = DeploymentFactory(team=team)
        body = {"settings": "null"}
        assert anon_api.patch(f"{self.URL}{deployment.pk}/", body, format="multipart").status_code == 401
        assert viewer_api.patch(f"{self.URL}{deployment.pk}/", body, format="multipart").status_code == 403
        assert api_for_outsider.patch(f"{self.URL}{deployment.pk}/", body, format="multipart").status_code == 404


# --- suites without test cases ----------------------------------------------------------------------------


class TestSuiteWithoutTestCases:
    URL = "/api/v1/suites/"

    def test_a_form_post_without_test_cases_is_a_400(self, member_api, team):
        response = member_api.post(self.URL, {"name": "s"}, format="multipart")
        assert response.status_code == 400 and "test_cases" in _error(response)
        assert not Suite.objects.filter(team=team).exists()

    def test_an_empty_json_list_is_a_400(self, member_api, team):
        response = member_api.post(self.URL, {"name": "s", "test_cases": []}, format="json")
        assert response.status_code == 400 and "test_cases" in response.json()

    def test_a_form_post_with_a_test_case_publishes(self, member_api, team, member):
        case = approved_case(team, member)
        response = member_api.post(self.URL, {"name": "s", "test_cases": [case.pk]}, format="multipart")
        assert response.status_code == 201 and Suite.objects.get(team=team).test_cases.get() == case

    def test_anonymous_and_viewer(self, anon_api, viewer_api):
        assert anon_api.post(self.URL, {"name": "s"}, format="multipart").status_code == 401
        assert viewer_api.post(self.URL, {"name": "s"}, format="multipart").status_code == 403


# --- request ids and JSON errors ------------------------------------------------------------------------------


class TestRequestId:
    def test_every_response_carries_one(self, viewer_api):
        response = viewer_api.get("/api/v1/me")
        assert response.status_code == 200 and len(response["X-Request-ID"]) == 32

    def test_a_sane_incoming_id_is_kept(self, viewer_api):
        incoming = str(uuid.uuid4())
        response = viewer_api.get("/api/v1/no-such-thing", HTTP_X_REQUEST_ID=incoming)
        assert response["X-Request-ID"] == incoming and _error(response)["request_id"] == incoming

    @pytest.mark.parametrize("incoming", ["<script>", "x" * 500, "not a uuid"])
    def test_anything_else_is_replaced(self, viewer_api, incoming):
        response = viewer_api.get("/api/v1/me", HTTP_X_REQUEST_ID=incoming)
        assert response["X-Request-ID"] != incoming and len(response["X-Request-ID"]) == 32

    def test_drf_errors_carry_it(self, anon_api, member_api):
        assert _error(anon_api.get("/api/v1/me"))["detail"]  # 401
        body = _error(member_api.post("/api/v1/tokens/", {}, format="json"))  # 400, field errors
        assert body["name"]

    def test_an_unknown_api_url_is_a_json_404(self, viewer_api):
        response = viewer_api.get("/api/v1/no-such-thing")
        assert response.status_code == 404 and _error(response)["detail"] == "Not found."

    @override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=2)
    def test_a_request_django_refuses_is_a_json_400(self, member_api):
        """Django's own refusals (too many fields, too big a body) reach handler400, which answers JSON under /api/."""
        member_api.raise_request_exception = False
        response = member_api.post("/api/v1/tokens/", {"name": "k", "a": "1", "b": "2"}, format="multipart")
        assert response.status_code == 400 and _error(response)["detail"] == "Bad request."

    def test_pages_keep_their_html_404(self, viewer_client):
        response = viewer_client.get("/no-such-page/")
        assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


@pytest.fixture
def failing_me(monkeypatch):
    """GET /api/v1/me fails inside the view with an exception carrying a secret."""

    def boom(user):
        raise RuntimeError("secret-internal-detail")

    monkeypatch.setattr("apps.accounts.api.views.memberships_for", boom)


class TestServerErrors:
    @pytest.fixture(autouse=True)
    def _production(self, settings):
        """As in production: DEBUG off, so Django answers a failure through handler500."""
        settings.DEBUG = False

    def test_an_api_500_is_json_with_the_request_id_and_no_traceback(self, viewer_api, failing_me):
        viewer_api.raise_request_exception = False
        response = viewer_api.get("/api/v1/me")
        assert response.status_code == 500
        body = _error(response)
        assert set(body) == {"detail", "request_id"}
        assert b"secret-internal-detail" not in response.content and b"Traceback" not in response.content

    def test_the_log_line_carries_the_same_request_id(self, viewer_api, failing_me):
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.addFilter(RequestIdLogFilter())
        handler.emit = records.append
        logger = logging.getLogger("django.request")
        logger.addHandler(handler)
        try:
            viewer_api.raise_request_exception = False
            response = viewer_api.get("/api/v1/me")
        finally:
            logger.removeHandler(handler)
        assert [r.request_id for r in records if r.levelno >= logging.ERROR] == [response["X-Request-ID"]]

    def test_a_page_500_stays_html(self, viewer_client, monkeypatch):
        monkeypatch.setattr("llmbench.views.dashboard.page_figures", lambda team, **kwargs: 1 / 0)
        viewer_client.raise_request_exception = False
        response = viewer_client.get("/")
        assert response.status_code == 500 and response["Content-Type"].startswith("text/html")
        assert response["X-Request-ID"]

    def test_the_console_log_format_names_the_request(self, settings):
        assert "request_id" in settings.LOGGING["handlers"]["console"]["filters"]
        assert "%(request_id)s" in settings.LOGGING["formatters"]["plain"]["format"]


def test_log_records_outside_a_request_get_a_dash():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert RequestIdLogFilter().filter(record) and record.request_id == "-"


# --- upper bounds on counts --------------------------------------------------------------------------------


def _batch_body(**overrides) -> dict:
    body = {"name": "b", "targets": [{"endpoint": "sim", "model": "sim-small"}], "prompt": "hi",
            "parameter_ranges": {"temperature": [0.1, 0.5]}}  # fmt: skip
    return {**body, **overrides}


class TestSweepBounds:
    @pytest.mark.parametrize("path", ["/api/v1/batches/", "/api/v1/batches/estimate/"])
    def test_responses_per_combination_past_the_setting_is_a_400_naming_both(self, member_api, world, path):
        response = member_api.post(path, _batch_body(responses_per_combination=10**9), format="json")
        assert response.status_code == 400
        message = response.json()["responses_per_combination"][0]
        assert "SWEEP_MAX_RESPONSES_PER_COMBINATION" in message and "1,000" in message
        assert Batch.objects.count() == 1  # the fixture's

    @override_settings(SWEEP_MAX_RESPONSES_PER_COMBINATION=3, SWEEP_MAX_CONCURRENCY=2)
    def test_the_settings_set_the_limits(self, member_api, world):
        over = member_api.post("/api/v1/batches/estimate/", _batch_body(responses_per_combination=4, concurrency=3),
                               format="json")  # fmt: skip
        assert over.status_code == 400
        assert "At most 3" in over.json()["responses_per_combination"][0]
        assert "SWEEP_MAX_CONCURRENCY" in over.json()["concurrency"][0]
        ok = member_api.post("/api/v1/batches/estimate/", _batch_body(responses_per_combination=3, concurrency=2),
                             format="json")  # fmt: skip
        assert ok.status_code == 200, ok.json()

    def test_the_page_refuses_it_too(self, member_client, world):
        endpoint = world["endpoint"]
        body = {"name": "b", "target_pairs": [f"{endpoint.pk}:sim-small"], "prompt": "hi", "temperature": "0.1, 0.5",
                "responses_per_item": 10**9, "concurrency": 4, "objective": "overall"}  # fmt: skip
        response = member_client.post(reverse("batches:batch-new"), body)
        assert response.status_code == 400
        assert "SWEEP_MAX_RESPONSES_PER_COMBINATION" in response.context["form"].errors["responses_per_item"][0]
        assert Batch.objects.count() == 1


class TestLoadSweepBounds:
    def _body(self, team, **overrides) -> dict:
        body = {"name": "x", "endpoint": sim_endpoint(team, name="load").pk, "model": "sim-small",
                "variant": ModelVariantFactory(team=team).pk, "levels": [1], "step_request_count": 4}  # fmt: skip
        return {**body, **overrides}

    @pytest.mark.parametrize(
        ("field", "value", "setting"),
        [("step_request_count", 10**9, "LOAD_STEP_MAX_REQUESTS"), ("step_duration_s", 10**9, "LOAD_STEP_MAX_DURATION_S"),
         ("levels", [10**9], "LOAD_MAX_CONCURRENCY"), ("levels", list(range(1, 30)), "LOAD_MAX_STEPS")],
    )  # fmt: skip
    def test_past_the_setting_is_a_400_naming_it(self, member_api, team, field, value, setting):
        response = member_api.post("/api/v1/sweeps/", self._body(team, **{field: value}), format="json")
        assert response.status_code == 400 and setting in response.json()[field][0]
        assert not LoadSweep.objects.exists()

    def test_a_request_rate_past_the_setting(self, member_api, team):
        body = self._body(team, mode="open", levels=[10**7])
        response = member_api.post("/api/v1/sweeps/", body, format="json")
        assert response.status_code == 400 and "LOAD_MAX_RATE_RPS" in response.json()["levels"][0]

    @override_settings(LOAD_STEP_MAX_REQUESTS=10)
    def test_the_setting_sets_the_limit_on_the_page_too(self, member_client, team):
        body = {"name": "x", "target": f"{sim_endpoint(team).pk}:sim-small", "variant": ModelVariantFactory(team=team).pk,
                "mode": "closed", "arrivals": "constant", "levels": "1", "step_request_count": 11, "prompt_tokens": 10,
                "prompt_tokens_stdev": 0, "output_tokens": 8, "temperature": 0, "seed": 0}  # fmt: skip
        response = member_client.post(reverse("batches:sweep-new"), body)
        assert response.status_code == 400
        assert (
            "At most 10 (the LOAD_STEP_MAX_REQUESTS setting)"
            in response.context["form"].errors["step_request_count"][0]
        )
        assert not LoadSweep.objects.exists()


def test_an_experiments_max_tokens_is_bounded_in_patch_too(member_api, team, world):
    """PATCH had no upper bound on max_tokens (the create form has 1,000,000)."""
    from apps.experiments.services import experiment_create

    experiment = experiment_create(
        team=team, user=None, name="e", prompt="p", targets=[(world["endpoint"], "sim-small")]
    )
    response = member_api.patch(f"/api/v1/experiments/{experiment.pk}/", {"parameters": {"max_tokens": 10**12}},
                                format="json")  # fmt: skip
    assert response.status_code == 400 and "max_tokens" in response.json()["parameters"]
    experiment.refresh_from_db()
    assert "max_tokens" not in experiment.parameters


def test_ordinary_bodies_still_work(member_api):
    """The stricter parser takes ordinary objects."""
    response = member_api.post("/api/v1/performance/hardware/", {"name": "box", "accelerator": "L4"}, format="json")
    assert response.status_code == 201
