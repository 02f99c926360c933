"""A run whose estimate is more than what is left of a hard monthly budget is refused before it starts, on every
page and API call that starts one: the page says why (with the figures), the API answers 400 with the same text,
nothing is queued and nothing half-made is left behind. Without the hard limit the same runs start."""

import re

import pytest
from django.urls import reverse

from apps.batches.models import Batch, LoadSweep
from apps.batches.services import sweep_create
from apps.benchmarks.models import BenchmarkRun
from apps.benchmarks.services import TargetSpec, benchmark_run_create
from apps.capacity.models import CapacitySearch
from apps.experiments.models import Experiment
from apps.experiments.services import experiment_create
from tests.batches.helpers import make_batch
from tests.benchmarks.test_runner import make_suite
from tests.budgets.conftest import priced_endpoint, responses, set_budget, sim_endpoint
from tests.capacity.helpers import make_search
from tests.factories import ModelVariantFactory

pytestmark = pytest.mark.django_db

SPENT = re.compile(r"\(\$10\.00 spent since 1 \w+\)")


@pytest.fixture
def spent(team):
    """A hard $10.00 budget, all of it spent this month."""
    set_budget(team, 10.0)
    responses(team, [10.0])
    return team


def _experiment(team, endpoint=None):
    endpoint = endpoint or priced_endpoint(team, name=f"p{Experiment.objects.count()}")
    return experiment_create(team=team, user=None, name="run", targets=[(endpoint, "mock")], prompt="p")


def _sweep(team, endpoint=None):
    return sweep_create(team=team, user=None, name="load", endpoint=endpoint or priced_endpoint(team, name="load"),
                        model="mock", variant=ModelVariantFactory(team=team), levels=[1], step_request_count=1)  # fmt: skip


def _benchmark(team, endpoint=None):
    suite = make_suite(team, name=f"s{BenchmarkRun.objects.count()}")
    endpoint = endpoint or priced_endpoint(team, name=f"b{BenchmarkRun.objects.count()}")
    return benchmark_run_create(team=team, user=None, suite=suite, targets=[TargetSpec(endpoint, "mock")])


def _messages(response) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


# --- pages ----------------------------------------------------------------------------------------------------------


def test_a_page_start_of_each_kind_is_refused_with_the_figures(member_client, spent, submitted):
    """Experiment, parameter sweep, load sweep, benchmark run and capacity search: the message, nothing queued."""
    team = spent
    experiment, batch = _experiment(team), make_batch(team, endpoint=priced_endpoint(team, name="sweep"))
    sweep, run = _sweep(team), _benchmark(team)
    search = make_search(team, endpoint=priced_endpoint(team, name="cap", model_names=["sim-medium"]))
    starts = [
        (reverse("experiments:start", args=[experiment.pk]), "This experiment cannot start: nothing is left of "
         "the $10.00 monthly budget"),
        (reverse("batches:batch-start", args=[batch.pk]), "This parameter sweep cannot start: estimated $"),
        (reverse("batches:sweep-start", args=[sweep.pk]), "This load sweep cannot start: nothing is left"),
        (reverse("benchmarks:run-start", args=[run.pk]), "This benchmark run cannot start: estimated $"),
        (reverse("capacity:start", args=[search.pk]), "This capacity search cannot start: nothing is left"),
    ]  # fmt: skip
    for url, text in starts:
        response = member_client.post(url, follow=True)
        assert response.status_code == 200
        assert text in _messages(response) and SPENT.search(_messages(response)), (url, _messages(response))
    assert submitted == []
    assert Experiment.objects.get(pk=experiment.pk).status == "pending" and not Batch.objects.get(pk=batch.pk).queued_at
    assert LoadSweep.objects.get(pk=sweep.pk).status == "pending"
    assert BenchmarkRun.objects.get(pk=run.pk).status == "pending"
    assert CapacitySearch.objects.get(pk=search.pk).status == "pending"


def test_the_estimate_and_what_is_left_are_in_a_parameter_sweeps_refusal(member_client, team, submitted):
    """Half the budget left: the sweep's estimate (over it) and $5.00 left are both named."""
    set_budget(team, 10.0)
    responses(team, [5.0])
    batch = make_batch(team, endpoint=priced_endpoint(team, name="sweep"))
    estimate = batch.estimate["cost_usd"]
    response = member_client.post(reverse("batches:batch-start", args=[batch.pk]), follow=True)
    assert (f"estimated ${estimate:,.2f}, $5.00 left of the $10.00 monthly budget ($5.00 spent since 1 "
            in _messages(response))  # fmt: skip
    assert submitted == []


def test_creating_and_starting_on_a_page_saves_the_run_and_says_why_it_did_not_start(member_client, spent, submitted):
    """The new experiment is kept (pending, to start later) and the page says why it did not start."""
    endpoint = priced_endpoint(spent, name="real")
    data = {"name": "new", "prompt": "hi", "targets_text": f"{endpoint.name}: mock", "responses_per_item": 1}
    response = member_client.post(reverse("experiments:new"), data, follow=True)
    assert response.status_code == 200
    experiment = Experiment.objects.get(name="new")
    assert experiment.status == "pending" and submitted == []
    assert "Saved, not started. This experiment cannot start: nothing is left" in _messages(response)


def test_a_parameter_sweep_form_shows_the_refusal_and_creates_nothing(member_client, spent, submitted):
    """The sweep form (create and start at once) answers 400 with the refusal; no batch is made."""
    endpoint = priced_endpoint(spent, name="real", model_names=["mock"])
    data = {"name": "new", "prompt": "hi", "target_pairs": [f"{endpoint.pk}:mock"], "temperature": "0.2, 0.8",
            "responses_per_item": 1, "concurrency": 1, "objective": "overall", "start": "1", "confirm": "1"}  # fmt: skip
    response = member_client.post(reverse("batches:batch-new"), data)
    content = response.content.decode()
    if "cannot start" not in content:  # the form's field names differ: say what it complained of
        pytest.fail(str(response.context["form"].errors))
    assert response.status_code == 400 and "This parameter sweep cannot start: estimated $" in content
    assert not Batch.objects.exists() and submitted == []


def test_without_the_hard_limit_the_same_starts_go_ahead(
    member_client, team, submitted, django_capture_on_commit_callbacks
):
    """Over the budget but not a hard limit: every kind is queued."""
    set_budget(team, 10.0, hard=False)
    responses(team, [25.0])
    experiment, batch, sweep, run = _experiment(team), make_batch(team, endpoint=priced_endpoint(team, name="s")), \
        _sweep(team), _benchmark(team)  # fmt: skip
    for url in (reverse("experiments:start", args=[experiment.pk]), reverse("batches:batch-start", args=[batch.pk]),
                reverse("batches:sweep-start", args=[sweep.pk]), reverse("benchmarks:run-start", args=[run.pk])):  # fmt: skip
        with django_capture_on_commit_callbacks(execute=True):
            assert member_client.post(url, {"confirm": "1"}).status_code == 302
    assert [call[0] for call in submitted] == [
        "apps.experiments.tasks.experiment_run", "apps.batches.tasks.batch_run_chunk",
        "apps.batches.tasks.load_sweep_run", "apps.benchmarks.tasks.benchmark_run_chunk",
    ]  # fmt: skip


def test_simulated_runs_meter_nothing_and_always_start(
    member_client, spent, submitted, django_capture_on_commit_callbacks
):
    """A run on the simulator costs nothing real: it starts with the budget spent."""
    experiment = _experiment(spent, sim_endpoint(spent))
    with django_capture_on_commit_callbacks(execute=True):
        assert member_client.post(reverse("experiments:start", args=[experiment.pk])).status_code == 302
    assert submitted == [("apps.experiments.tasks.experiment_run", experiment.pk)]


def test_page_starts_keep_their_roles_and_team(client, viewer, member, spent, other_team, submitted):
    """Anonymous: to the log-in page; a viewer: 403; another team's run: 404, before any budget is read."""
    experiment, theirs = _experiment(spent), _experiment(other_team)
    url = reverse("experiments:start", args=[experiment.pk])
    client.force_login(viewer)
    assert client.post(url).status_code == 403
    client.force_login(member)
    assert client.post(reverse("experiments:start", args=[theirs.pk])).status_code == 404
    client.logout()
    assert client.post(url).status_code == 302
    assert submitted == []


# --- API ------------------------------------------------------------------------------------------------------------


def test_api_starts_answer_400_with_the_figures(member_api, spent, submitted):
    """POST …/start of each kind: 400 {"detail": the refusal}; nothing queued."""
    team = spent
    experiment, batch = _experiment(team), make_batch(team, endpoint=priced_endpoint(team, name="sweep"))
    sweep, run = _sweep(team), _benchmark(team)
    search = make_search(team, endpoint=priced_endpoint(team, name="cap", model_names=["sim-medium"]))
    for url, text in [
        (f"/api/v1/experiments/{experiment.pk}/start", "This experiment cannot start: nothing is left"),
        (f"/api/v1/experiments/{experiment.pk}/generate", "This experiment cannot start: nothing is left"),
        (f"/api/v1/batches/{batch.pk}/start", "This parameter sweep cannot start: estimated $"),
        (f"/api/v1/sweeps/{sweep.pk}/start", "This load sweep cannot start: nothing is left"),
        (f"/api/v1/benchmark-runs/{run.pk}/start", "This benchmark run cannot start: estimated $"),
        (f"/api/v1/capacity/{search.pk}/start", "This capacity search cannot start: nothing is left"),
    ]:
        response = member_api.post(url, {"confirm": True}, format="json")
        assert response.status_code == 400, (url, response.status_code, response.content)
        assert text in response.json()["detail"] and SPENT.search(response.json()["detail"])
    assert submitted == []


def test_api_create_and_start_is_refused_whole(member_api, spent, submitted):
    """Created and started in one call: refused with 400 and nothing is created."""
    endpoint = priced_endpoint(spent, name="Real", model_names=["mock"])
    body = {"name": "api", "prompt": "hi", "targets": [{"endpoint": "Real", "model": "mock"}]}
    response = member_api.post("/api/v1/experiments", body, format="json")
    assert response.status_code == 400 and "nothing is left" in response.json()["detail"]
    assert not Experiment.objects.filter(name="api").exists()
    body = {"name": "api-load", "endpoint": endpoint.pk, "model": "mock", "variant": ModelVariantFactory(team=spent).pk,
            "mode": "open", "arrivals": "poisson", "levels": [5], "step_duration_s": 2, "start": True}  # fmt: skip
    response = member_api.post("/api/v1/sweeps", body, format="json")
    assert response.status_code == 400 and "This load sweep cannot start" in response.json()["detail"]
    assert not LoadSweep.objects.filter(name="api-load").exists()
    assert submitted == []


def test_api_starts_keep_their_roles_and_team(viewer_api, member_api, anon_api, spent, other_team, submitted):
    """A viewer: 403; another team's run: 404; anonymous: 401; all before the budget."""
    experiment, theirs = _experiment(spent), _experiment(other_team)
    assert viewer_api.post(f"/api/v1/experiments/{experiment.pk}/start").status_code == 403
    assert member_api.post(f"/api/v1/experiments/{theirs.pk}/start").status_code == 404
    assert anon_api.post(f"/api/v1/experiments/{experiment.pk}/start").status_code == 401
    assert submitted == []
