"""Run kinds: a run repeated with its configuration (or another endpoint / model) through the apps' own services,
its state, error, title and page, and the refusals (another team's run, an unknown kind, the budget)."""

import pytest
from django.core.exceptions import ObjectDoesNotExist, ValidationError

from apps.automation import runkinds
from apps.automation.runkinds import RepeatRefused, RunRef
from apps.experiments.models import Experiment, Response
from apps.experiments.services import experiment_create
from apps.providers.budget import BudgetExceeded
from apps.providers.models import ProviderEndpoint
from tests.automation.test_runkinds_support import drain, record_submissions
from tests.batches.helpers import approved_case, make_batch, sim_endpoint

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def submitted(monkeypatch):
    """The runs' tasks, recorded instead of queued (drain() runs them)."""
    return record_submissions(monkeypatch)


def an_experiment(team, user, *, endpoint=None, **fields):
    endpoint = endpoint or sim_endpoint(team)
    case = approved_case(team, user, expected_output="", evaluator="regex", evaluator_settings={"pattern": "cach"})
    defaults = {"name": "nightly", "targets": [(endpoint, "sim-small")], "test_cases": [case],
                "responses_per_item": 3, "parameters": {"temperature": 0.4, "max_tokens": 40}}  # fmt: skip
    return experiment_create(team=team, user=user, **{**defaults, **fields})


def test_an_experiment_is_repeated_with_its_configuration_and_runs_to_completion(team, member, submitted):
    """The repeat has the template's test cases, parameters and targets, is queued through the fair queue and runs."""
    template = an_experiment(team, member)
    ref = runkinds.run_repeat(kind="experiment", run_id=template.pk, user=member)
    assert ref.kind == "experiment" and ref.run_id != template.pk
    repeat = Experiment.objects.get(pk=ref.run_id)
    assert (repeat.name, repeat.parameters, repeat.responses_per_item) == ("nightly", template.parameters, 3)
    assert list(repeat.test_cases.all()) == list(template.test_cases.all()) and repeat.created_by == member
    assert [(t.endpoint_id, t.model) for t in repeat.targets.all()] == [
        (t.endpoint_id, t.model) for t in template.targets.all()
    ]
    assert [(team_id, func, args) for team_id, func, args in submitted] == [
        (team.pk, "apps.experiments.tasks.experiment_run", (ref.run_id,))
    ]
    assert runkinds.run_state(ref) == "pending" and runkinds.run_error(ref) == ""
    assert drain(submitted) == ["completed"]
    assert runkinds.run_state(ref) == "completed"
    assert Response.objects.filter(experiment_id=ref.run_id).count() == 3


def test_the_endpoint_and_model_can_be_overridden(team, member, submitted):
    """An override replaces every target's endpoint or model; targets that become one are asked once."""
    first, second = sim_endpoint(team, "first"), sim_endpoint(team, "second", model_names=["sim-small", "sim-large"])
    template = an_experiment(team, member, targets=[(first, "sim-small"), (second, "sim-small")])
    ref = runkinds.run_repeat(kind="experiment", run_id=template.pk, endpoint_id=second.pk, model="sim-large")
    assert [(t.endpoint_id, t.model) for t in Experiment.objects.get(pk=ref.run_id).targets.all()] == [
        (second.pk, "sim-large")
    ]
    ref = runkinds.run_repeat(kind="experiment", run_id=template.pk, model="sim-large")
    assert [(t.endpoint_id, t.model) for t in Experiment.objects.get(pk=ref.run_id).targets.all()] == [
        (first.pk, "sim-large"), (second.pk, "sim-large")
    ]  # fmt: skip


def test_a_bad_override_is_refused_naming_the_field_and_creates_nothing(team, other_team, member, submitted):
    """Another team's endpoint, a model the endpoint does not serve or an empty model: RepeatRefused by field."""
    template = an_experiment(team, member)
    theirs = sim_endpoint(other_team, "theirs")
    real = ProviderEndpoint.objects.create(team=team, name="real", kind="openai_compatible",
                                           base_url="http://127.0.0.1:9/v1", model_names=["gpt-a"])  # fmt: skip
    before = Experiment.objects.count()
    for overrides, field in (({"endpoint_id": theirs.pk}, "endpoint_id"), ({"endpoint_id": "x"}, "endpoint_id"),
                             ({"endpoint_id": real.pk, "model": "gpt-b"}, "model"), ({"model": "  "}, "model")):  # fmt: skip
        with pytest.raises(RepeatRefused) as excinfo:
            runkinds.run_repeat(kind="experiment", run_id=template.pk, **overrides)
        assert isinstance(excinfo.value, ValidationError) and field in excinfo.value.message_dict
    assert Experiment.objects.count() == before and submitted == []


def test_the_budget_refusal_comes_through_as_it_is_and_nothing_is_created(team, member, submitted, monkeypatch):
    """BudgetExceeded raised by the start service reaches the caller unchanged; the new run is rolled back."""
    template = an_experiment(team, member)

    def refuse(*, experiment):
        raise BudgetExceeded("estimated $4.20, $3.10 left of the $50.00 monthly budget")

    monkeypatch.setattr("apps.experiments.services.experiment_start", refuse)
    before = Experiment.objects.count()
    with pytest.raises(BudgetExceeded, match=r"\$3\.10 left"):
        runkinds.run_repeat(kind="experiment", run_id=template.pk)
    assert Experiment.objects.count() == before and submitted == []


def test_another_teams_run_or_another_kind_reads_as_missing(team, other_team, member):
    """template_get finds only the team's runs of that kind; an unknown kind names the field."""
    template = an_experiment(team, member)
    assert runkinds.template_get(team=team, kind="experiment", run_id=template.pk) == template
    with pytest.raises(ObjectDoesNotExist):
        runkinds.template_get(team=other_team, kind="experiment", run_id=template.pk)
    with pytest.raises(ObjectDoesNotExist):
        runkinds.template_get(team=team, kind="parameter_sweep", run_id=template.pk)
    batch = make_batch(team, endpoint=sim_endpoint(team, "sweeps"))
    with pytest.raises(ObjectDoesNotExist):
        runkinds.template_get(team=team, kind="experiment", run_id=batch.pk)
    with pytest.raises(ValidationError) as excinfo:
        runkinds.template_get(team=team, kind="nonsense", run_id=template.pk)
    assert "kind" in excinfo.value.message_dict


def test_state_error_title_and_url_of_an_experiment(team, member):
    """A failed run says why; the title names the kind, id and name; the url is the run's page."""
    template = an_experiment(team, member)
    Experiment.objects.filter(pk=template.pk).update(status="failed", error="The endpoint refused the API key (401).")
    ref = RunRef("experiment", template.pk)
    assert runkinds.run_state(ref) == "failed"
    assert runkinds.run_error(ref) == "The endpoint refused the API key (401)."
    assert runkinds.run_title(ref) == f"Experiment #{template.pk} · nightly"
    assert runkinds.run_url(ref) == f"/experiments/{template.pk}/"


def test_a_parameter_sweep_is_repeated_with_its_ranges_and_runs(team, member, submitted):
    """The repeat has the template's ranges, repetitions and objective and runs chunk by chunk."""
    template = make_batch(team, ranges={"temperature": [0.2, 1.0]}, repetitions=2, objective="score")
    ref = runkinds.run_repeat(kind="parameter_sweep", run_id=template.pk, user=member)
    repeat = Experiment.objects.get(pk=ref.run_id).batch
    assert repeat.parameter_values == template.parameter_values and repeat.objective == "score"
    assert repeat.result_count == template.result_count == 4
    assert runkinds.run_state(ref) == "pending"
    drain(submitted)
    assert runkinds.run_state(ref) == "completed"
    assert Response.objects.filter(experiment_id=ref.run_id).count() == 4
    assert runkinds.run_url(ref) == f"/batches/{ref.run_id}/"
    assert runkinds.run_title(ref) == f"Parameter sweep #{ref.run_id} · sweep"
