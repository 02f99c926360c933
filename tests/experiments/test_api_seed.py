"""The seed's experiment and test-case surface: progress over SSE, generate, execution results, PUT
and DELETE of test cases, PUT/PATCH of experiments with their bounds, and SSE in the schema."""

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from apps.experiments.models import Experiment, Response, Suite, TestCase
from apps.experiments.services import (
    experiment_create,
    suite_publish,
    testcase_approve,
    testcase_create,
    testcase_retire,
)
from apps.providers.models import ProviderEndpoint
from tests.batches.helpers import make_batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    """The experiment runs the services queue, instead of queueing them."""
    calls: list[tuple] = []
    monkeypatch.setattr("apps.experiments.services.job_submit", lambda **kw: calls.append((kw["func"], *kw["args"])))
    return calls


def sim(team, name="sim"):
    return ProviderEndpoint.objects.create(team=team, name=name, kind="sim", base_url="sim://local?zero_latency=1",
                                           model_names=["sim-small"])  # fmt: skip


def approved(team, author, reviewer, **fields):
    case = testcase_create(team=team, author=author, submit=True, **{"title": "t", "prompt": "Say hi", **fields})
    return testcase_approve(testcase=case, reviewer=reviewer)


def experiment(team, *, targets=1, status=Experiment.Status.PENDING, **fields):
    endpoints = [sim(team, f"sim{i}") for i in range(targets)]
    made = experiment_create(team=team, user=None, name="exp", targets=[(e, "sim-small") for e in endpoints],
                             **{"prompt": "Explain caching", **fields})  # fmt: skip
    Experiment.objects.filter(pk=made.pk).update(status=status)
    made.refresh_from_db()
    return made


def store(exp, *, repetition, target=None, error_code=""):
    target = target or exp.targets.first()
    return Response.objects.create(experiment=exp, target=target, item_key="prompt", repetition=repetition,
                                   content="" if error_code else "ok", error_code=error_code)  # fmt: skip


def events(response) -> list[dict]:
    """The `data` of every event of a consumed stream."""
    body = b"".join(response).decode()
    return [json.loads(line[len("data: ") :]) for line in body.splitlines() if line.startswith("data: ")]


class TestSchema:
    @pytest.mark.parametrize("path", ["/api/v1/batches/{id}/progress", "/api/v1/sweeps/{id}/progress",
                                      "/api/v1/experiments/{id}/progress"])  # fmt: skip
    def test_every_sse_endpoint_is_a_text_event_stream_in_the_schema(self, member_api, path):
        """Each progress stream is in the OpenAPI schema, answering `text/event-stream`."""
        schema = member_api.get("/api/schema/?format=json").json()
        ok = schema["paths"][path]["get"]["responses"]["200"]
        assert list(ok["content"]) == ["text/event-stream"]
        assert "event: progress" in ok["content"]["text/event-stream"]["examples"]["OneEvent"]["value"]


class TestExperimentProgress:
    def test_a_finished_experiment_streams_one_event_and_ends(self, viewer_api, team):
        """A finished experiment: one event with done, failed, total and status, then the stream ends."""
        exp = experiment(team, responses_per_item=3, status=Experiment.Status.COMPLETED)
        store(exp, repetition=0), store(exp, repetition=1), store(exp, repetition=2, error_code="timeout")
        response = viewer_api.get(f"/api/v1/experiments/{exp.pk}/progress")
        assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
        assert events(response) == [{"id": exp.pk, "status": "completed", "error": "", "done": 3, "failed": 1,
                                     "total": 3, "progress": 100.0, "finished": True}]  # fmt: skip

    def test_a_running_experiment_streams_until_it_finishes(self, member_api, team, monkeypatch):
        """While it runs the stream repeats the figures; it ends with the event that says finished."""
        exp = experiment(team, targets=2, responses_per_item=2, status=Experiment.Status.RUNNING)
        store(exp, repetition=0)
        monkeypatch.setattr("llmbench.sse.SSE_INTERVAL_S", 0)
        from apps.experiments.api import views

        reads = []
        original = views.experiment_progress

        def progress_then_finish(experiment):
            reads.append(experiment.status)
            if len(reads) == 2:  # the worker stores the rest and finishes between two reads
                store(exp, repetition=1)
                for rep in (0, 1):
                    store(exp, repetition=rep, target=exp.targets.last(), error_code="http_500" if rep else "")
                Experiment.objects.filter(pk=exp.pk).update(status=Experiment.Status.COMPLETED)
                experiment.refresh_from_db()
            return original(experiment)

        monkeypatch.setattr(views, "experiment_progress", progress_then_finish)
        got = events(member_api.get(f"/api/v1/experiments/{exp.pk}/progress"))
        assert [(e["status"], e["done"], e["failed"], e["total"], e["finished"]) for e in got] == [
            ("running", 1, 0, 4, False), ("completed", 4, 1, 4, True),
        ]  # fmt: skip

    def test_a_session_user_gets_the_stream_too(self, member_client, team):
        """The browser's session works like a token."""
        exp = experiment(team, status=Experiment.Status.CANCELLED)
        assert events(member_client.get(f"/api/v1/experiments/{exp.pk}/progress"))[0]["status"] == "cancelled"

    def test_anonymous_and_a_bad_token_get_401(self, anon_api, team):
        """No credentials, or a wrong token, is a 401 and no stream."""
        exp = experiment(team)
        assert anon_api.get(f"/api/v1/experiments/{exp.pk}/progress").status_code == 401
        anon_api.credentials(HTTP_AUTHORIZATION="Token nope")
        assert anon_api.get(f"/api/v1/experiments/{exp.pk}/progress").status_code == 401

    def test_another_teams_experiment_is_404(self, member_api, other_team):
        """Another team's experiment does not exist for this user."""
        response = member_api.get(f"/api/v1/experiments/{experiment(other_team).pk}/progress")
        assert response.status_code == 404 and response["Content-Type"] == "application/json"

    def test_a_parameter_sweep_points_to_its_batch_stream(self, member_api, team):
        """A sweep's experiment answers 409 naming the batch stream."""
        batch = make_batch(team)
        response = member_api.get(f"/api/v1/experiments/{batch.pk}/progress")
        assert response.status_code == 409 and f"/api/v1/batches/{batch.pk}/progress" in response.json()["detail"]


class TestGenerate:
    def test_generate_queues_a_pending_experiment(self, member_api, team, queued, django_capture_on_commit_callbacks):
        """POST generate starts the run through the same service as start: 202 and one queued task."""
        exp = experiment(team)
        with django_capture_on_commit_callbacks(execute=True):
            response = member_api.post(f"/api/v1/experiments/{exp.pk}/generate")
        assert response.status_code == 202 and response.json()["status"] == "pending"
        assert queued == [("apps.experiments.tasks.experiment_run", exp.pk)]

    def test_generate_resumes_a_failed_experiment_and_keeps_its_responses(self, member_api, team, queued):
        """A failed experiment goes back to pending with its stored responses."""
        exp = experiment(team, responses_per_item=2, status=Experiment.Status.FAILED)
        store(exp, repetition=0)
        assert member_api.post(f"/api/v1/executions/{exp.pk}/generate").status_code == 202
        exp.refresh_from_db()
        assert exp.status == "pending" and exp.responses.count() == 1

    @pytest.mark.parametrize("status", [Experiment.Status.RUNNING, Experiment.Status.COMPLETED])
    def test_generate_is_409_when_running_or_done(self, member_api, team, queued, status):
        """Nothing is queued twice."""
        response = member_api.post(f"/api/v1/experiments/{experiment(team, status=status).pk}/generate")
        assert response.status_code == 409 and status in response.json()["detail"] and not queued

    def test_generate_refuses_viewers_anonymous_other_teams_and_sweeps(self, viewer_api, anon_api, member_api, team,
                                                                      other_team, queued):  # fmt: skip
        """Viewer 403, anonymous 401, another team 404, a parameter sweep 409."""
        exp = experiment(team)
        assert viewer_api.post(f"/api/v1/experiments/{exp.pk}/generate").status_code == 403
        assert anon_api.post(f"/api/v1/experiments/{exp.pk}/generate").status_code == 401
        assert member_api.post(f"/api/v1/experiments/{experiment(other_team).pk}/generate").status_code == 404
        assert member_api.post(f"/api/v1/experiments/{make_batch(team).pk}/generate").status_code == 409
        assert member_api.get(f"/api/v1/experiments/{exp.pk}/generate").status_code == 405
        assert not queued


class TestExecutionResults:
    def test_results_list_every_response_and_filter(self, viewer_api, team):
        """GET /executions/{id}/results pages the responses; target and errors filter them."""
        exp = experiment(team, targets=2, responses_per_item=2)
        first, second = exp.targets.all()
        for rep in (0, 1):
            store(exp, repetition=rep, target=first)
        store(exp, repetition=0, target=second, error_code="timeout")
        data = viewer_api.get(f"/api/v1/executions/{exp.pk}/results").json()
        assert data["count"] == 3 and {"content", "passed", "evaluation", "is_simulated"} <= set(data["results"][0])
        only = viewer_api.get(f"/api/v1/executions/{exp.pk}/results?target={second.pk}").json()
        assert [r["target"] for r in only["results"]] == [second.pk]
        errors = viewer_api.get(f"/api/v1/executions/{exp.pk}/results?errors=true").json()
        assert [r["error_code"] for r in errors["results"]] == ["timeout"]

    def test_results_name_a_bad_filter(self, viewer_api, team):
        """A filter that is not a number (or a yes/no) is a 400 naming it."""
        exp = experiment(team)
        for query, field in (("target=x", "target"), ("test_case=-1", "test_case"), ("errors=maybe", "errors")):
            response = viewer_api.get(f"/api/v1/executions/{exp.pk}/results?{query}")
            assert response.status_code == 400 and field in response.json(), query

    def test_results_refuse_anonymous_and_other_teams(self, anon_api, member_api, team, other_team):
        """Anonymous 401, another team's execution 404."""
        assert anon_api.get(f"/api/v1/executions/{experiment(team).pk}/results").status_code == 401
        assert member_api.get(f"/api/v1/executions/{experiment(other_team).pk}/results").status_code == 404


class TestTestCasePut:
    def test_put_on_an_approved_case_makes_a_new_pending_version(self, member_api, team, member, admin_user):
        """PUT follows PATCH's versioning: the approved version stays, the change is v2 pending."""
        case = approved(team, member, admin_user, tags=["old"], expected_output="hi")
        body = {"title": "Greeting", "prompt": "Say hello", "expected_output": "hello"}
        response = member_api.put(f"/api/v1/testcases/{case.pk}", body, format="json")
        assert response.status_code == 200, response.json()
        data = response.json()
        assert (data["version"], data["status"], data["lineage"]) == (2, "pending", str(case.lineage))
        assert data["tags"] == [] and data["evaluator"] == "exact_match"  # left out: back to the defaults
        case.refresh_from_db()
        assert case.status == "approved" and not case.is_current and case.prompt == "Say hi"

    def test_put_on_a_draft_edits_it_in_place(self, member_api, team, member):
        """A draft has no history to keep."""
        case = testcase_create(team=team, author=member, title="t", prompt="p", tags=["x"])
        response = member_api.put(f"/api/v1/testcases/{case.pk}", {"title": "u", "prompt": "q"}, format="json")
        assert response.status_code == 200 and response.json()["id"] == case.pk and response.json()["version"] == 1
        case.refresh_from_db()
        assert (case.title, case.prompt, case.tags) == ("u", "q", [])

    def test_put_names_what_is_missing_or_too_long(self, member_api, team, member):
        """PUT needs the whole test case; a prompt over PROMPT_MAX_CHARS is refused by name."""
        case = testcase_create(team=team, author=member, title="t", prompt="p")
        response = member_api.put(f"/api/v1/testcases/{case.pk}", {"prompt": "q"}, format="json")
        assert response.status_code == 400 and "title" in response.json()
        with override_settings(PROMPT_MAX_CHARS=20):
            for field in ("prompt", "system_prompt"):
                body = {"title": "t", "prompt": "p", field: "x" * 21}
                response = member_api.put(f"/api/v1/testcases/{case.pk}", body, format="json")
                assert response.status_code == 400 and "21" in response.json()[field][0], field
        case.refresh_from_db()
        assert case.prompt == "p"

    def test_put_refuses_viewers_anonymous_and_other_teams(self, viewer_api, anon_api, member_api, team, member,
                                                           outsider, other_team):  # fmt: skip
        """Viewer 403, anonymous 401, another team's test case 404."""
        case = testcase_create(team=team, author=member, title="t", prompt="p")
        theirs = testcase_create(team=other_team, author=outsider, title="t", prompt="p")
        body = {"title": "u", "prompt": "q"}
        assert viewer_api.put(f"/api/v1/testcases/{case.pk}", body, format="json").status_code == 403
        assert anon_api.put(f"/api/v1/testcases/{case.pk}", body, format="json").status_code == 401
        assert member_api.put(f"/api/v1/testcases/{theirs.pk}", body, format="json").status_code == 404


class TestTestCaseDelete:
    def test_delete_retires_the_lineage_and_results_keep_their_version(self, member_api, team, member, admin_user):
        """Every version leaves the list and its suites; the experiment and its responses keep v1."""
        case = approved(team, member, admin_user)
        other = approved(team, member, admin_user, title="other")
        suite = suite_publish(team=team, name="smoke", test_cases=[case, other])
        exp = experiment(team, test_cases=[case])
        answer = Response.objects.create(experiment=exp, target=exp.targets.first(), test_case=case,
                                         item_key=f"tc:{case.pk}", content="hi")  # fmt: skip
        newer = member_api.patch(f"/api/v1/testcases/{case.pk}", {"prompt": "Say hi twice"}, format="json").json()

        assert member_api.delete(f"/api/v1/testcases/{case.pk}").status_code == 204

        assert not TestCase.objects.filter(lineage=case.lineage, is_current=True).exists()
        assert TestCase.objects.filter(lineage=case.lineage).count() == 2  # nothing deleted
        assert list(suite.test_cases.all()) == [other]
        assert list(exp.test_cases.all()) == [case] and Response.objects.get(pk=answer.pk).test_case_id == case.pk
        listed = [c["id"] for c in member_api.get("/api/v1/testcases").json()["results"]]
        assert listed == [other.pk]
        detail = member_api.get(f"/api/v1/testcases/{newer['id']}").json()
        assert detail["retired"] is True and member_api.get(f"/api/v1/testcases/{other.pk}").json()["retired"] is False
        assert LogEntry.objects.filter(object_id=str(newer["id"]), change_message__startswith="Retired").exists()

    def test_a_retired_case_cannot_be_edited_suited_or_retired_again(self, member_api, team, member, admin_user):
        """After DELETE: PATCH, a run and a second DELETE are 409, a new suite refuses it by name."""
        case = approved(team, member, admin_user)
        member_api.delete(f"/api/v1/testcases/{case.pk}")
        assert member_api.patch(f"/api/v1/testcases/{case.pk}", {"title": "x"}, format="json").status_code == 409
        assert member_api.delete(f"/api/v1/testcases/{case.pk}").status_code == 409
        response = member_api.post("/api/v1/suites", {"name": "s", "test_cases": [case.pk]}, format="json")
        assert response.status_code == 400 and "test_cases" in response.json()
        sim(team)
        run = member_api.post(f"/api/v1/testcases/{case.pk}/run", {"targets": [{"endpoint": "sim", "model": "sim-small"}]},
                              format="json")  # fmt: skip
        assert run.status_code == 409 and "retired" in run.json()["detail"] and not Experiment.objects.exists()

    def test_every_version_list_marks_retired_ones_in_a_fixed_number_of_queries(self, member_api, team, member,
                                                                                 admin_user):  # fmt: skip
        """`retired` comes with the list's one query, however many superseded versions it shows."""

        def listed() -> tuple[dict, int]:
            with CaptureQueriesContext(connection) as queries:
                rows = member_api.get("/api/v1/testcases?all_versions=1").json()["results"]
            return {(r["title"], r["version"]): r["retired"] for r in rows}, len(queries)

        def lineage(title: str) -> TestCase:
            case = approved(team, member, admin_user, title=title)
            member_api.patch(f"/api/v1/testcases/{case.pk}", {"prompt": "changed"}, format="json")
            return case

        gone = lineage("gone")
        lineage("kept")
        testcase_retire(test_case=gone, user=member)
        flags, few = listed()
        assert flags == {("gone", 1): True, ("gone", 2): True, ("kept", 1): False, ("kept", 2): False}
        for title in ("a", "b", "c"):
            lineage(title)
        assert listed()[1] == few

    def test_delete_refuses_viewers_anonymous_and_other_teams(self, viewer_api, anon_api, member_api, team, member,
                                                              outsider, other_team):  # fmt: skip
        """Viewer 403, anonymous 401, another team's test case 404; nothing is retired."""
        case = testcase_create(team=team, author=member, title="t", prompt="p")
        theirs = testcase_create(team=other_team, author=outsider, title="t", prompt="p")
        assert viewer_api.delete(f"/api/v1/testcases/{case.pk}").status_code == 403
        assert anon_api.delete(f"/api/v1/testcases/{case.pk}").status_code == 401
        assert member_api.delete(f"/api/v1/testcases/{theirs.pk}").status_code == 404
        assert TestCase.objects.filter(is_current=True).count() == 2

    def test_the_service_says_which_suites_the_lineage_left(self, team, member, admin_user):
        """testcase_retire returns the lineage, its version count and the suites it left."""
        case = approved(team, member, admin_user)
        suite_publish(team=team, name="smoke", test_cases=[case])
        suite_publish(team=team, name="smoke", test_cases=[case])
        retired = testcase_retire(test_case=case, user=member)
        assert (retired.lineage, retired.versions, retired.suites) == (case.lineage, 1, ["smoke v1", "smoke v2"])
        assert not Suite.test_cases.through.objects.exists()


class TestExperimentUpdate:
    @pytest.mark.parametrize("method", ["patch", "put"])
    def test_zero_responses_per_item_is_a_400_naming_the_field(self, member_api, team, method):
        """responses_per_item 0 is refused through PATCH and PUT."""
        exp = experiment(team)
        body = {"name": "exp", "responses_per_item": 0}
        response = getattr(member_api, method)(f"/api/v1/experiments/{exp.pk}", body, format="json")
        assert response.status_code == 400 and "responses_per_item" in response.json()
        exp.refresh_from_db()
        assert exp.responses_per_item == 1

    @pytest.mark.parametrize("method", ["patch", "put"])
    def test_a_prompt_over_the_limit_is_a_400_naming_the_field(self, member_api, team, method):
        """A prompt longer than PROMPT_MAX_CHARS is refused with both lengths in the message."""
        exp = experiment(team)
        with override_settings(PROMPT_MAX_CHARS=100):
            response = getattr(member_api, method)(f"/api/v1/experiments/{exp.pk}", {"name": "exp", "prompt": "x" * 101},
                                                   format="json")  # fmt: skip
        assert response.status_code == 400 and "101" in response.json()["prompt"][0]

    def test_bad_parameters_are_named(self, member_api, team):
        """Sampling parameters keep their ranges; an unknown one is named."""
        exp = experiment(team)
        for parameters, field in (({"temperature": 3}, "temperature"), ({"top_k": 5}, "top_k"),
                                  ({"max_tokens": 0}, "max_tokens")):  # fmt: skip
            response = member_api.patch(f"/api/v1/experiments/{exp.pk}", {"parameters": parameters}, format="json")
            assert response.status_code == 400 and field in response.json()["parameters"], parameters
        response = member_api.patch(f"/api/v1/experiments/{exp.pk}", {"prompt": " "}, format="json")
        assert response.status_code == 400 and "prompt" in response.json()

    def test_the_setup_changes_until_the_experiment_has_started(self, member_api, team):
        """Before any response the prompt and parameters change; after, only the description does (409)."""
        exp = experiment(team)
        body = {"prompt": "Explain queues", "parameters": {"temperature": 0.7}, "responses_per_item": 3}
        response = member_api.patch(f"/api/v1/experiments/{exp.pk}", body, format="json")
        assert response.status_code == 200 and response.json()["responses_per_item"] == 3
        exp.refresh_from_db()
        assert (exp.prompt, exp.parameters) == ("Explain queues", {"temperature": 0.7})
        store(exp, repetition=0)
        response = member_api.patch(f"/api/v1/experiments/{exp.pk}", {"prompt": "Other"}, format="json")
        assert response.status_code == 409 and "prompt" in response.json()["detail"]
        assert member_api.patch(f"/api/v1/experiments/{exp.pk}", {"name": "renamed"}, format="json").status_code == 200

    def test_put_replaces_the_whole_description(self, member_api, team):
        """PUT resets what it leaves out and needs a name; sending the setup unchanged is allowed after start."""
        exp = experiment(team, description="about", tags=["a"], parameters={"temperature": 0.2})
        store(exp, repetition=0)
        body = {"name": "new", "prompt": "Explain caching", "parameters": {"temperature": 0.2}}
        response = member_api.put(f"/api/v1/experiments/{exp.pk}", body, format="json")
        assert response.status_code == 200, response.json()
        exp.refresh_from_db()
        assert (exp.name, exp.description, exp.tags) == ("new", "", [])
        assert member_api.put(f"/api/v1/experiments/{exp.pk}", {"prompt": "Explain caching"},
                              format="json").json()["name"] == ["This field is required."]  # fmt: skip

    def test_updates_refuse_viewers_anonymous_and_other_teams(self, viewer_api, anon_api, member_api, team, other_team):
        """Viewer 403, anonymous 401, another team's experiment 404."""
        call, theirs = f"/api/v1/experiments/{experiment(team).pk}", f"/api/v1/experiments/{experiment(other_team).pk}"
        for method in ("patch", "put"):
            assert getattr(viewer_api, method)(call, {"name": "x"}, format="json").status_code == 403
            assert getattr(anon_api, method)(call, {"name": "x"}, format="json").status_code == 401
            assert getattr(member_api, method)(theirs, {"name": "x"}, format="json").status_code == 404
