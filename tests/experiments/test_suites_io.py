"""Suites (versioned sets of approved test cases), test case import/export, running one test case,
and the response endpoint, by role and team."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.experiments.models import Experiment, Suite, TestCase
from apps.experiments.services import TransitionRefused, suite_publish, testcase_approve, testcase_create
from apps.providers.models import ProviderEndpoint

pytestmark = pytest.mark.django_db


def approved(team, author, reviewer, title="t"):
    return testcase_approve(testcase=testcase_create(team=team, author=author, submit=True, title=title, prompt="p"),
                            reviewer=reviewer)  # fmt: skip


def test_publishing_a_suite_again_makes_its_next_version(team, member, admin_user):
    a, b = approved(team, member, admin_user, "a"), approved(team, member, admin_user, "b")
    first = suite_publish(team=team, name="core", test_cases=[a])
    second = suite_publish(team=team, name="core", test_cases=[a, b])
    assert (first.version, second.version) == (1, 2) and list(first.test_cases.all()) == [a]
    with pytest.raises(TransitionRefused):
        suite_publish(
            team=team, name="core", test_cases=[testcase_create(team=team, author=member, title="d", prompt="p")]
        )


def test_an_experiment_records_the_suite_version(team, member, admin_user):
    from apps.experiments.services import experiment_create

    suite = suite_publish(team=team, name="core", test_cases=[approved(team, member, admin_user)])
    endpoint = ProviderEndpoint.objects.create(team=team, name="sim", kind="sim")
    experiment = experiment_create(team=team, user=member, name="s", targets=[(endpoint, "sim-small")], suite=suite)
    assert experiment.suite == suite and list(experiment.test_cases.all()) == list(suite.test_cases.all())


def test_suites_api(member_api, viewer_api, team, other_team, member, admin_user, outsider):
    case = approved(team, member, admin_user)
    theirs = approved(other_team, outsider, outsider, "theirs")
    created = member_api.post("/api/v1/suites", {"name": "core", "test_cases": [case.pk]}, format="json")
    assert created.status_code == 201 and created.json()["version"] == 1
    again = member_api.post("/api/v1/suites", {"name": "core", "test_cases": [case.pk]}, format="json")
    assert again.json()["version"] == 2
    refused = member_api.post("/api/v1/suites", {"name": "x", "test_cases": [theirs.pk]}, format="json")
    assert refused.status_code == 400 and "test_cases" in refused.json()
    assert viewer_api.post("/api/v1/suites", {"name": "v", "test_cases": [case.pk]}, format="json").status_code == 403
    assert Suite.objects.filter(team=team).count() == 2


def test_import_then_export_round_trips(member_api, team):
    lines = [
        {"title": "Capital", "prompt": "Capital of France?", "expected_output": "Paris", "evaluator": "exact_match"},
        {
            "title": "Regex",
            "prompt": "Say hi",
            "evaluator": "regex",
            "evaluator_settings": {"pattern": "hi"},
            "tags": ["x"],
        },
    ]
    upload = SimpleUploadedFile("cases.jsonl", "\n".join(json.dumps(line) for line in lines).encode())
    response = member_api.post("/api/v1/testcases/import", {"file": upload, "submit": "true"}, format="multipart")
    assert response.status_code == 201 and response.json() == {"created": 2}
    assert set(TestCase.objects.filter(team=team).values_list("status", flat=True)) == {"pending"}
    exported = b"".join(member_api.get("/api/v1/testcases/export?type=jsonl").streaming_content).decode()
    titles = sorted(json.loads(line)["title"] for line in exported.splitlines())
    assert titles == ["Capital", "Regex"]
    csv_text = b"".join(member_api.get("/api/v1/testcases/export?type=csv").streaming_content).decode()
    assert csv_text.splitlines()[0].startswith("title,system_prompt,prompt")


def test_a_bad_import_names_rows_and_fields_and_writes_nothing(member_api, team):
    body = 'title,prompt,evaluator,evaluator_settings\nok,p,exact_match,\n,p,regex,"{""pattern"": ""(""}"\nx,p,vibes,\n'
    upload = SimpleUploadedFile("cases.csv", body.encode())
    response = member_api.post("/api/v1/testcases/import", {"file": upload}, format="multipart")
    assert response.status_code == 400
    fields = {(e["row"], e["field"]) for e in response.json()["errors"]}
    assert (3, "title") in fields and any(f.startswith("evaluator_settings") for r, f in fields if r == 3)
    assert (4, "evaluator") in fields
    assert not TestCase.objects.filter(team=team).exists()


def test_running_one_test_case_creates_an_execution(member_api, team, member, admin_user, other_team, outsider):
    case = approved(team, member, admin_user)
    ProviderEndpoint.objects.create(team=team, name="Simulator", kind="sim")
    body = {"targets": [{"endpoint": "Simulator", "model": "sim-small"}]}
    response = member_api.post(f"/api/v1/testcases/{case.pk}/run", body, format="json")
    assert response.status_code == 201, response.json()
    execution = Experiment.objects.get(pk=response.json()["id"])
    assert list(execution.test_cases.all()) == [case]
    assert member_api.get(f"/api/v1/executions/{execution.pk}").status_code == 200
    theirs = approved(other_team, outsider, outsider, "theirs")
    assert member_api.post(f"/api/v1/testcases/{theirs.pk}/run", body, format="json").status_code == 404
    assert member_api.post(f"/api/v1/testcases/{case.pk}/run", {"targets": []}, format="json").status_code == 400


def test_responses_of_another_team_are_404(member_api, other_team):
    from apps.experiments.models import Response
    from apps.experiments.services import experiment_create

    endpoint = ProviderEndpoint.objects.create(team=other_team, name="sim", kind="sim")
    experiment = experiment_create(team=other_team, user=None, name="x", targets=[(endpoint, "m")], prompt="p")
    response = Response.objects.create(experiment=experiment, target=experiment.targets.get(), item_key="prompt")
    assert member_api.get(f"/api/v1/responses/{response.pk}").status_code == 404


def test_anonymous_is_401(anon_api, db):
    for url in ("/api/v1/suites", "/api/v1/testcases/export", "/api/v1/executions"):
        assert anon_api.get(url).status_code == 401
