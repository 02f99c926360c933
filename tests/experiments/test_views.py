"""Experiment pages and API by role and team; model output renders as inert text."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from apps.experiments.models import Experiment, ExperimentTarget, Response, TestCase
from apps.experiments.services import experiment_create
from apps.providers.models import ProviderEndpoint

pytestmark = pytest.mark.django_db
HOSTILE = (
    '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>'
    '<div hx-get="/admin/" hx-trigger="load" hx-on:click="alert(4)">y</div>'
)


def make_experiment(team, user=None) -> Experiment:
    endpoint = ProviderEndpoint.objects.create(team=team, name=f"sim-{team.slug}", kind="sim")
    return experiment_create(team=team, user=user, name="exp", targets=[(endpoint, "sim-small")], prompt="hello")


class _Tags(HTMLParser):
    """The elements inside each rendered model output (<div class="output">)."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.depth = 0
        self.outputs = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.depth:
            self.tags.append((tag, attrs))
            self.depth += tag == "div"
        elif tag == "div" and attrs.get("class") == "output":
            self.depth, self.outputs = 1, self.outputs + 1

    def handle_endtag(self, tag):
        if self.depth and tag == "div":
            self.depth -= 1


def test_model_output_is_rendered_inert(viewer_client, team):
    experiment = make_experiment(team)
    Response.objects.create(experiment=experiment, target=experiment.targets.get(), item_key="prompt", content=HOSTILE)
    page = viewer_client.get(reverse("experiments:detail", args=[experiment.pk])).content.decode()
    parser = _Tags()
    parser.feed(page)
    assert parser.outputs == 2 and parser.tags == []  # the prompt and the hostile output hold no element at all
    assert "&lt;img src=x onerror=" in page and 'hx-get="/admin/"' not in page
    assert "alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "hx-disable" in page  # htmx ignores anything inside the response block anyway


def test_a_member_creates_and_runs_an_experiment(member_client, team, django_capture_on_commit_callbacks):
    ProviderEndpoint.objects.create(team=team, name="Simulator", kind="sim")
    body = {"name": "mine", "prompt": "Explain caching", "targets_text": "Simulator: sim-small", "responses_per_item": 2,
            "temperature": 0.5}  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = member_client.post(reverse("experiments:new"), body)
    experiment = Experiment.objects.get()
    assert response.status_code == 302 and len(callbacks) == 1
    assert experiment.parameters == {"temperature": 0.5} and ExperimentTarget.objects.get().model == "sim-small"


def test_bad_input_names_the_field(member_client, team):
    response = member_client.post(
        reverse("experiments:new"), {"name": "x", "targets_text": "Nowhere: m", "responses_per_item": 1}
    )
    assert response.status_code == 400
    assert {"targets_text", "prompt"} <= set(response.context["form"].errors)


def test_viewers_cannot_create_or_act(viewer_client, team):
    experiment = make_experiment(team)
    assert viewer_client.post(reverse("experiments:new"), {}).status_code == 403
    assert viewer_client.post(reverse("experiments:cancel", args=[experiment.pk])).status_code == 403


def test_another_teams_experiment_is_404(member_client, other_team):
    experiment = make_experiment(other_team)
    assert member_client.get(reverse("experiments:detail", args=[experiment.pk])).status_code == 404
    assert member_client.post(reverse("experiments:favourite", args=[experiment.pk])).status_code == 404


def test_list_filters_and_anonymous_redirect(member_client, client, team):
    make_experiment(team)
    assert b"exp" in member_client.get(reverse("experiments:list"), {"q": "ex"}).content
    assert b"No experiments yet" in member_client.get(reverse("experiments:list"), {"q": "zzz"}).content
    client.logout()


def test_api_create_list_responses_metrics(member_api, team):
    ProviderEndpoint.objects.create(team=team, name="Simulator", kind="sim")
    body = {"name": "api", "prompt": "hi", "targets": [{"endpoint": "Simulator", "model": "sim-small"}]}
    created = member_api.post("/api/v1/experiments", body, format="json")
    assert created.status_code == 201, created.json()
    experiment_id = created.json()["id"]
    assert member_api.get("/api/v1/experiments").json()["results"][0]["id"] == experiment_id
    assert member_api.get(f"/api/v1/experiments/{experiment_id}/responses").json()["count"] == 0
    assert member_api.get(f"/api/v1/experiments/{experiment_id}/metrics").json()[0]["responses"] == 0
    assert member_api.post(f"/api/v1/experiments/{experiment_id}/cancel").json()["status"] == "cancelled"


def test_api_refusals(member_api, viewer_api, anon_api, team, other_team):
    theirs = make_experiment(other_team)
    assert member_api.get(f"/api/v1/experiments/{theirs.pk}").status_code == 404
    assert member_api.post("/api/v1/experiments", {"name": "x"}, format="json").status_code == 400
    assert viewer_api.post("/api/v1/experiments", {"name": "x"}, format="json").status_code == 403
    assert anon_api.get("/api/v1/experiments").status_code == 401


def test_exports_carry_every_response_and_neutralize_formulas(viewer_client, team):
    import csv
    import io
    import json

    experiment = make_experiment(team)
    target = experiment.targets.get()
    Response.objects.create(
        experiment=experiment, target=target, item_key="prompt", content="=HYPERLINK(1)", passed=True
    )
    Response.objects.create(experiment=experiment, target=target, item_key="prompt", repetition=1, content="plain")
    raw = b"".join(viewer_client.get(reverse("experiments:export-csv", args=[experiment.pk])).streaming_content)
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    assert [r["content"] for r in rows] == ["'=HYPERLINK(1)", "plain"] and rows[0]["passed"] == "true"
    body = json.loads(
        b"".join(viewer_client.get(reverse("experiments:export-json", args=[experiment.pk])).streaming_content)
    )
    assert [r["content"] for r in body["tables"]["responses"]] == ["=HYPERLINK(1)", "plain"]


def test_exports_and_side_by_side_of_another_team_are_404(viewer_client, other_team):
    experiment = make_experiment(other_team)
    for name in ("experiments:export-csv", "experiments:export-json", "experiments:compare"):
        assert viewer_client.get(reverse(name, args=[experiment.pk])).status_code == 404


def test_side_by_side_pairs_responses_to_the_same_item(viewer_client, team):
    experiment = make_experiment(team)
    other = ExperimentTarget.objects.create(
        experiment=experiment, endpoint=experiment.targets.first().endpoint, model="sim-large"
    )
    first = experiment.targets.first()
    Response.objects.create(experiment=experiment, target=first, item_key="prompt", content="from small")
    Response.objects.create(experiment=experiment, target=other, item_key="prompt", content="from large")
    page = viewer_client.get(reverse("experiments:compare", args=[experiment.pk]))
    assert len(page.context["rows"]) == 1 and b"from small" in page.content and b"from large" in page.content


def test_api_update_export_compare_delete(member_api, viewer_api, team):
    experiment = make_experiment(team)
    url = f"/api/v1/experiments/{experiment.pk}"
    assert member_api.patch(url, {"tags": ["a"], "favourite": True}, format="json").json()["favourite"] is True
    assert member_api.patch(url, {"tags": "a"}, format="json").status_code == 400
    assert viewer_api.patch(url, {"name": "x"}, format="json").status_code == 403
    export = member_api.get(f"{url}/export?type=csv")
    assert export.status_code == 200 and b"response_id" in b"".join(export.streaming_content)
    assert member_api.get(f"{url}/export?type=xml").status_code == 400
    assert member_api.get(f"{url}/compare").status_code == 400  # one target only
    assert member_api.delete(url).status_code == 204 and not Experiment.objects.filter(pk=experiment.pk).exists()


def test_a_member_writes_and_submits_a_test_case(member_client, team):
    body = {"title": "Capital", "prompt": "Capital of France?", "expected_output": "Paris", "evaluator": "exact_match",
            "settings_json": '{"case_sensitive": true}', "tags_text": "geo, easy", "submit": "1"}  # fmt: skip
    response = member_client.post(reverse("experiments:testcase-new"), body)
    case = TestCase.objects.get()
    assert response.status_code == 302 and case.status == "pending" and case.tags == ["geo", "easy"]
    assert case.evaluator_settings["case_sensitive"] is True
    assert b"Capital" in member_client.get(reverse("experiments:testcases"), {"status": "pending"}).content


def test_a_bad_evaluator_setting_is_400_naming_it(member_client):
    body = {"title": "t", "prompt": "p", "evaluator": "regex", "settings_json": '{"pattern": "("}'}
    response = member_client.post(reverse("experiments:testcase-new"), body)
    assert response.status_code == 400 and "pattern" in str(response.context["form"].errors["settings_json"])


def test_saving_an_approved_test_case_makes_a_new_version(member_client, team, member, admin_user):
    from apps.experiments.services import testcase_approve, testcase_create

    case = testcase_approve(testcase=testcase_create(team=team, author=member, submit=True, title="t", prompt="p"),
                            reviewer=admin_user)  # fmt: skip
    body = {"title": "t", "prompt": "p2", "evaluator": "exact_match", "settings_json": ""}
    assert member_client.post(reverse("experiments:testcase", args=[case.pk]), body).status_code == 302
    assert list(TestCase.objects.order_by("version").values_list("version", "status")) == [
        (1, "approved"),
        (2, "pending"),
    ]


def test_test_case_pages_by_role_and_team(viewer_client, other_team, outsider):
    from apps.experiments.services import testcase_create

    theirs = testcase_create(team=other_team, author=outsider, title="secret", prompt="p")
    assert viewer_client.get(reverse("experiments:testcase", args=[theirs.pk])).status_code == 404
    assert viewer_client.post(reverse("experiments:testcase-new"), {"title": "x"}).status_code == 403
    assert b"secret" not in viewer_client.get(reverse("experiments:testcases")).content
