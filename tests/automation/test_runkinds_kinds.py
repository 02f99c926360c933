"""Run kinds beyond experiments: load sweeps, benchmark runs and capacity searches repeated through their own
services and run to completion in the test; a benchmark run that is queued reads as pending; every kind's page."""

import pytest

from apps.automation import runkinds
from apps.automation.runkinds import RepeatRefused, RunRef
from apps.batches.models import LoadSweep
from apps.benchmarks.models import BenchmarkRun
from apps.benchmarks.services import TargetSpec, benchmark_run_create
from apps.capacity.models import CapacitySearch
from tests.automation.test_runkinds_support import drain, record_submissions
from tests.batches.helpers import sim_endpoint
from tests.batches.test_sweeps import make_sweep
from tests.benchmarks.test_runner import Mocks, make_suite, mock_endpoint, write_key
from tests.capacity.helpers import make_search

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def submitted(monkeypatch):
    """The runs' tasks, recorded instead of queued (drain() runs them)."""
    return record_submissions(monkeypatch)


@pytest.fixture
def mocks():
    """Known-answer mockllm servers (closed after the test)."""
    servers = Mocks()
    yield servers
    servers.close()


def test_a_load_sweep_is_repeated_with_its_steps_and_runs(team, member, submitted):
    """Same levels, step size and workload; the steps run and store a performance run each."""
    template = make_sweep(team, levels=[1, 2], step_request_count=6)
    ref = runkinds.run_repeat(kind="load_sweep", run_id=template.pk, user=member)
    repeat = LoadSweep.objects.get(pk=ref.run_id)
    assert (repeat.levels, repeat.step_request_count, repeat.variant_id) == ([1, 2], 6, template.variant_id)
    assert repeat.steps.count() == 2 and runkinds.run_state(ref) == "pending"
    drain(submitted)
    assert runkinds.run_state(ref) == "completed"
    assert all(step.run_id for step in repeat.steps.all())
    assert runkinds.run_url(ref) == f"/batches/load/{ref.run_id}/"


def test_a_load_sweep_takes_another_endpoint(team, submitted):
    """The override replaces the sweep's endpoint and model."""
    template = make_sweep(team)
    other = sim_endpoint(team, "other", model_names=["sim-large"])
    ref = runkinds.run_repeat(kind="load_sweep", run_id=template.pk, endpoint_id=other.pk, model="sim-large")
    repeat = LoadSweep.objects.get(pk=ref.run_id)
    assert (repeat.endpoint_id, repeat.model) == (other.pk, "sim-large")


def test_a_capacity_searchs_own_sweep_is_not_a_load_sweep(team):
    """The probes' sweep of a capacity search cannot be repeated as a load sweep."""
    search = make_search(team)
    with pytest.raises(LoadSweep.DoesNotExist):
        runkinds.template_get(team=team, kind="load_sweep", run_id=search.sweep_id)


def test_a_benchmark_run_is_repeated_and_scores_against_mockllm(team, member, submitted, mocks, tmp_path):
    """Same suite, subset and settings; queued reads as pending; the repeat runs to completion."""
    suite = make_suite(team)
    key = write_key(suite, tmp_path / "key.jsonl")
    endpoint = mock_endpoint(team, mocks.start(key, 0.8))
    template = benchmark_run_create(team=team, user=None, suite=suite, targets=[TargetSpec(endpoint, "mock")],
                                    subset_size=20, subset_seed=3, name="nightly mmlu-pro")  # fmt: skip
    ref = runkinds.run_repeat(kind="benchmark_run", run_id=template.pk, user=member)
    repeat = BenchmarkRun.objects.get(pk=ref.run_id)
    assert (repeat.subset_size, repeat.subset_seed, repeat.item_count, repeat.status) == (20, 3, 20, "queued")
    assert runkinds.run_state(ref) == "pending"
    drain(submitted)
    assert runkinds.run_state(ref) == "completed"
    assert repeat.answers.count() == 20
    assert runkinds.run_url(ref) == f"/benchmarks/runs/{ref.run_id}/"
    assert runkinds.run_title(ref) == f"Benchmark run #{ref.run_id} · nightly mmlu-pro"


def test_a_benchmark_override_the_endpoint_does_not_serve_is_refused(team, mocks, tmp_path):
    """The override's model is checked against the endpoint's models and refused naming the model field."""
    suite = make_suite(team)
    endpoint = mock_endpoint(team, mocks.start(write_key(suite, tmp_path / "key.jsonl"), 0.8))
    template = benchmark_run_create(team=team, user=None, suite=suite, targets=[TargetSpec(endpoint, "mock")])
    with pytest.raises(RepeatRefused) as excinfo:
        runkinds.run_repeat(kind="benchmark_run", run_id=template.pk, model="not-served")
    assert "model" in excinfo.value.message_dict


def test_a_capacity_search_is_repeated_with_its_slo_and_finds_a_capacity(team, member, submitted):
    """Same SLO and search space; the repeat runs probe after probe to an answer."""
    fast = sim_endpoint(team, name="fast", model_names=["sim-small"])  # every level meets the SLO: 2 probes
    template = make_search(team, endpoint=fast, model="sim-small", probe_duration_s=1, start_level=32, max_level=64,
                           slo={"objectives": [{"metric": "ttft_ms", "percentile": 50, "max_ms": 100}]})  # fmt: skip
    ref = runkinds.run_repeat(kind="capacity_search", run_id=template.pk, user=member)
    repeat = CapacitySearch.objects.get(pk=ref.run_id)
    assert (repeat.slo, repeat.space, repeat.max_level) == (template.slo, "rate", 64)
    assert repeat.sweep_id != template.sweep_id and runkinds.run_state(ref) == "pending"
    drain(submitted)
    assert runkinds.run_state(ref) == "completed"
    repeat.refresh_from_db()
    assert repeat.capacity is not None
    assert runkinds.run_url(RunRef("capacity_search", repeat.pk)) == f"/capacity/{repeat.pk}/"
