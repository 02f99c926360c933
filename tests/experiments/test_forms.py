"""The experiment and test-case forms (pages): targets picked from the team's endpoint · model pairs, and
bounds on every number and on prompt sizes, each refused with a 400 naming the field."""

import pytest
from django.test import override_settings
from django.urls import reverse

from apps.experiments.forms import ExperimentForm
from apps.experiments.models import Experiment, ExperimentTarget, TestCase
from apps.providers.models import ProviderEndpoint

pytestmark = pytest.mark.django_db
NEW = "experiments:new"


@pytest.fixture
def endpoint(team):
    return ProviderEndpoint.objects.create(team=team, name="Local vLLM", kind="openai_compatible",
                                           base_url="http://gpu:8000/v1", model_names=["llama-8b", "qwen-7b"])  # fmt: skip


def post_new(client, **fields):
    return client.post(reverse(NEW), {"name": "e", "prompt": "Explain caching", "responses_per_item": 1, **fields})


def test_targets_are_endpoint_and_model_pairs_of_the_team(member_client, team, endpoint, other_team):
    """The select lists "endpoint · model" for each configured model (the simulator's own models when it
    lists none); another team's endpoints are not offered."""
    sim = ProviderEndpoint.objects.create(team=team, name="Simulator", kind="sim")
    ProviderEndpoint.objects.create(team=other_team, name="Theirs", kind="sim")
    page = member_client.get(reverse(NEW)).content.decode()
    assert f'value="{endpoint.pk}:llama-8b">Local vLLM · llama-8b</option>' in page
    assert f'value="{sim.pk}:sim-small">Simulator · sim-small (simulated)</option>' in page
    assert "Theirs" not in page and 'name="targets_text"' not in page  # picked, not typed


def test_a_member_runs_an_experiment_on_picked_targets(member_client, endpoint, django_capture_on_commit_callbacks):
    """Two picked pairs become the experiment's two targets."""
    with django_capture_on_commit_callbacks(execute=False):
        response = post_new(member_client, target_pairs=[f"{endpoint.pk}:llama-8b", f"{endpoint.pk}:qwen-7b"])
    assert response.status_code == 302
    assert sorted(ExperimentTarget.objects.values_list("endpoint__name", "model")) == [
        ("Local vLLM", "llama-8b"), ("Local vLLM", "qwen-7b"),
    ]  # fmt: skip


def test_a_target_of_another_team_is_rejected(member_client, other_team):
    """Posting another team's endpoint as a choice is a 400 on the targets, and nothing is created."""
    theirs = ProviderEndpoint.objects.create(team=other_team, name="Theirs", kind="sim")
    response = post_new(member_client, target_pairs=[f"{theirs.pk}:sim-small"])
    assert response.status_code == 400 and "target_pairs" in response.context["form"].errors
    assert not Experiment.objects.exists()


def test_no_target_is_refused_on_the_picker(member_client, endpoint):
    """Nothing picked: the picker says to choose one."""
    response = post_new(member_client)
    assert response.status_code == 400
    assert response.context["form"].errors["target_pairs"] == ["Choose at least one target."]


def test_the_typed_targets_still_work_for_the_api_and_sweeps(team, endpoint):
    """`targets_text` (what the API and the sweep page send) still resolves to the same pairs."""
    form = ExperimentForm({"name": "e", "prompt": "p", "responses_per_item": 1, "targets_text": "Local vLLM: x"},
                          team=team)  # fmt: skip
    assert form.is_valid(), form.errors
    assert form.cleaned_data["targets_text"] == [(endpoint, "x")]


@pytest.mark.parametrize(
    "field, value",
    [("responses_per_item", 0), ("responses_per_item", 1001), ("temperature", 2.5), ("temperature", -0.1),
     ("top_p", 1.5), ("max_tokens", 0), ("frequency_penalty", 3), ("presence_penalty", -3), ("seed", -1)],
)  # fmt: skip
def test_numbers_out_of_bounds_are_400_naming_the_field(member_client, endpoint, field, value):
    """Zero responses per item (which "completed" with nothing), a temperature of 2.5 ...: refused, named."""
    response = post_new(member_client, target_pairs=[f"{endpoint.pk}:llama-8b"], **{field: value})
    assert response.status_code == 400 and field in response.context["form"].errors
    assert not Experiment.objects.exists()


@override_settings(PROMPT_MAX_CHARS=100)
@pytest.mark.parametrize("field", ["prompt", "system_prompt"])
def test_an_experiment_prompt_over_the_limit_is_refused_naming_it(member_client, endpoint, field):
    """A prompt or system prompt past PROMPT_MAX_CHARS: 400 with a message giving its length and the limit."""
    response = post_new(member_client, target_pairs=[f"{endpoint.pk}:llama-8b"], **{field: "x" * 101})
    assert response.status_code == 400
    (message,) = response.context["form"].errors[field]
    assert "101 characters long; the limit is 100 characters (the PROMPT_MAX_CHARS setting)" in message
    assert post_new(member_client, target_pairs=[f"{endpoint.pk}:llama-8b"], **{field: "x" * 100}).status_code == 302


@override_settings(PROMPT_MAX_CHARS=100)
@pytest.mark.parametrize("field", ["prompt", "system_prompt"])
def test_a_test_case_prompt_over_the_limit_is_refused_naming_it(member_client, field):
    """The same limit on test cases, on the test case page."""
    body = {"title": "t", "prompt": "p", "evaluator": "exact_match", "settings_json": "", field: "y" * 150}
    response = member_client.post(reverse("experiments:testcase-new"), body)
    assert response.status_code == 400 and "the limit is 100 characters" in response.context["form"].errors[field][0]
    assert not TestCase.objects.exists()


def test_the_limit_is_read_when_validating(team, endpoint, settings):
    """Changing the setting changes the limit without a restart (the validator reads it each time)."""
    data = {"name": "e", "prompt": "z" * 50, "responses_per_item": 1, "targets_text": "Local vLLM: m"}
    settings.PROMPT_MAX_CHARS = 40
    assert "prompt" in ExperimentForm(data, team=team).errors
    settings.PROMPT_MAX_CHARS = 60
    assert ExperimentForm(data, team=team).is_valid()


def test_an_experiment_with_nothing_to_ask_fails_instead_of_completing(team, endpoint):
    """Zero responses per item stored by other means: the run fails and says why, never "completed"."""
    from apps.experiments.runner import run_experiment
    from apps.experiments.services import experiment_create

    experiment = experiment_create(team=team, user=None, name="e", targets=[(endpoint, "m")], prompt="p",
                                   responses_per_item=0)  # fmt: skip
    assert run_experiment(experiment.pk) == "failed"
    experiment.refresh_from_db()
    assert experiment.error == "Nothing to ask: responses per item must be at least 1."


def test_a_retired_test_case_is_not_offered(team, member, admin_user):
    """After DELETE retires a lineage, its approved version leaves the experiment form's choices;
    an approved version whose lineage has a newer pending version stays offered."""
    from apps.experiments.services import testcase_approve, testcase_create, testcase_retire, testcase_update

    retired = testcase_create(team=team, author=member, submit=True, title="Old", prompt="p", expected_output="e")
    kept = testcase_create(team=team, author=member, submit=True, title="Kept", prompt="p", expected_output="e")
    retired, kept = (testcase_approve(testcase=c, reviewer=admin_user) for c in (retired, kept))
    testcase_update(testcase=kept, author=member, prompt="p2")  # a new pending version
    testcase_retire(test_case=retired, user=member)
    offered = set(ExperimentForm(team=team).fields["test_cases"].queryset)
    assert kept in offered and retired not in offered
