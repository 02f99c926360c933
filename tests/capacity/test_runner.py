"""Capacity searches run against the simulator: the answer brackets a known saturation, every probe is a stored
run judged once, cancel and resume, a lost worker's probe is run again (never recorded twice), an undecided level
gets more trials and is reported, and the cost at the SLO."""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.batches.models import LoadSweep, LoadSweepStep
from apps.capacity.engine import search as engine
from apps.capacity.models import CapacityProbe, CapacitySearch, Status
from apps.capacity.runner import record_probe, run_search, search_result
from apps.capacity.services import capacity_cancel, capacity_start, progress_payload, searches_recover_stalled
from apps.hardware.models import PerformanceRun
from apps.hardware.parsed import ParsedRun, ParsedSample
from apps.hardware.services import RunTarget, run_store
from tests.batches.helpers import FAST, sim_endpoint
from tests.capacity.helpers import SIM_SATURATION_RPS, make_search
from tests.factories import HardwareProfileFactory
from tests.threaded import closing_connection

pytestmark = pytest.mark.django_db(transaction=True)
P50_TTFT = {"objectives": [{"metric": "ttft_ms", "percentile": 50, "max_ms": 100}], "max_error_rate": 0.01}


@pytest.fixture
def queued(monkeypatch):
    """The tasks the capacity services and runner queue, instead of queueing them."""
    calls: list[tuple] = []
    monkeypatch.setattr("apps.capacity.services.job_submit", lambda **kw: calls.append((kw["func"], *kw["args"])))
    monkeypatch.setattr("apps.capacity.runner.job_submit", lambda **kw: calls.append((kw["func"], *kw["args"])))
    return calls


def fast_search(team, **fields):
    """Every level meets the SLO (no latency): the search ramps 4, 8, 16, 32 and ends at the maximum."""
    endpoint = sim_endpoint(team, name="fast", base_url=FAST, model_names=["sim-small"])
    fields = {"slo": P50_TTFT, "start_level": 4, "max_level": 32, "probe_duration_s": 1, **fields}
    return make_search(team, endpoint=endpoint, model="sim-small", **fields)


def test_a_search_brackets_the_simulators_saturation_and_stores_each_probe_as_a_run(team, queued):
    hardware = HardwareProfileFactory(team=team, hourly_cost_usd=2.0, accelerator_count=2)
    search = make_search(team, start_level=8, slo=P50_TTFT, hardware=hardware)
    capacity_start(search=search)
    assert run_search(search.pk) == Status.COMPLETED
    search.refresh_from_db()
    result = search.result
    # A queue growing by under 5% of the rate barely shows in a probe of seconds: the bracket holds the
    # saturation point to within the tolerance.
    assert result["low"] <= SIM_SATURATION_RPS * 1.05 and result["high"] >= SIM_SATURATION_RPS * 0.95, result
    assert result["low"] <= search.capacity <= result["high"]
    assert (result["high"] - result["low"]) <= 0.1 * result["low"]
    probes = list(search.probes.order_by("index"))
    assert [p.level for p in probes[:3]] == [8, 16, 32] and probes[2].verdict == engine.SATURATED
    assert [p.index for p in probes] == list(range(len(probes)))
    runs = PerformanceRun.objects.filter(sweep_step__sweep=search.sweep)
    assert runs.count() == len(probes) == search.sweep.steps.count()
    assert all(p.step.run_id for p in probes) and all(r.is_simulated for r in runs)
    # The figures at capacity are the highest passing level's, and the cost follows from them.
    at_low = [p for p in probes if p.level == result["low"]]
    assert result["output_tps"] == pytest.approx(at_low[0].figures["output_tps"])
    assert search.output_tps_per_gpu == pytest.approx(result["output_tps"] / 2)
    assert search.cost_per_1m_output_usd == pytest.approx(2.0 / (result["output_tps"] * 3600) * 1e6)
    assert search.is_simulated and LoadSweep.objects.get(pk=search.sweep_id).managed_by == "capacity"
    payload = progress_payload(search)
    assert payload["status"] == "completed" and payload["bracket"] == {"low": result["low"], "high": result["high"]}


def test_every_level_meeting_the_slo_ends_at_the_maximum(team, queued):
    search = fast_search(team)
    capacity_start(search=search)
    assert run_search(search.pk) == Status.COMPLETED
    search.refresh_from_db()
    assert [p.level for p in search.probes.order_by("index")] == [4, 8, 16, 32]
    assert search.result["reason"] == "max_level" and search.capacity == 32 and search.capacity_high is None


def test_cancel_keeps_the_judged_probes_and_resume_goes_on_from_them(team, queued):
    search = fast_search(team, max_level=64)
    capacity_start(search=search)
    worker = threading.Thread(target=closing_connection(run_search), args=(search.pk,))
    worker.start()
    deadline = timezone.now() + timedelta(seconds=60)
    while CapacityProbe.objects.filter(search=search).count() < 2 and timezone.now() < deadline:
        worker.join(0.05)
    capacity_cancel(search=search)
    worker.join(30)
    search.refresh_from_db()
    assert search.status == Status.CANCELLED
    kept = list(search.probes.order_by("index").values_list("pk", "level"))
    assert 2 <= len(kept) < 5
    capacity_start(search=search)  # resume
    assert queued[-1][0] == "apps.capacity.tasks.capacity_run"
    assert run_search(search.pk) == Status.COMPLETED
    probes = list(search.probes.order_by("index").values_list("pk", "level"))
    assert probes[: len(kept)] == kept and [level for _, level in probes] == [4, 8, 16, 32, 64]
    # The probe cut by the cancel stays a run of its own, but is no probe.
    assert PerformanceRun.objects.filter(sweep_step__sweep=search.sweep).count() in (5, 6)


def test_a_lost_worker_is_picked_up_again_and_runs_the_lost_probe_once(team, queued):
    search = fast_search(team)
    capacity_start(search=search)
    run_search(search.pk)
    search.refresh_from_db()
    # Simulate a worker killed during the third probe: its step has no run, the heartbeats stopped.
    third = search.probes.get(index=2)
    step = third.step
    third.delete()
    CapacityProbe.objects.filter(search=search, index=3).delete()
    PerformanceRun.objects.filter(sweep_step__sweep=search.sweep, sweep_step__index__gte=2).delete()
    LoadSweepStep.objects.filter(sweep=search.sweep, index=3).delete()
    LoadSweepStep.objects.filter(pk=step.pk).update(status=Status.RUNNING)
    stale = timezone.now() - timedelta(minutes=5)
    CapacitySearch.objects.filter(pk=search.pk).update(status=Status.RUNNING, lease="dead", heartbeat_at=stale,
                                                       result={}, finished_at=None)  # fmt: skip
    LoadSweep.objects.filter(pk=search.sweep_id).update(heartbeat_at=stale)
    assert searches_recover_stalled() == 1
    assert queued[-1] == ("apps.capacity.tasks.capacity_run", search.pk, "")
    assert run_search(search.pk, "") == Status.COMPLETED
    probes = list(search.probes.order_by("index"))
    assert [p.level for p in probes] == [4, 8, 16, 32]
    assert probes[2].step_id == step.pk  # the lost probe's own step, run again
    assert PerformanceRun.objects.filter(sweep_step__sweep=search.sweep).count() == 4


def test_a_fresh_search_is_not_taken_by_a_second_task(team, queued):
    search = fast_search(team)
    CapacitySearch.objects.filter(pk=search.pk).update(status=Status.RUNNING, lease="live", heartbeat_at=timezone.now())
    assert run_search(search.pk, "") == "running elsewhere"
    assert not search.probes.exists()


def test_a_search_whose_worker_keeps_dying_fails_resumably(team, queued):
    search = fast_search(team)
    stale = timezone.now() - timedelta(minutes=5)
    CapacitySearch.objects.filter(pk=search.pk).update(status=Status.RUNNING, lease="x", heartbeat_at=stale,
                                                       recoveries=3)  # fmt: skip
    assert searches_recover_stalled() == 1
    search.refresh_from_db()
    assert search.status == Status.FAILED and "Resume" in search.error and not queued


def test_a_chunk_hands_the_search_to_the_next_task_with_its_lease(team, queued, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 10}  # a 5 s chunk: one 1 s probe fits, then 4 s
    search = fast_search(team, max_level=1024)
    capacity_start(search=search)
    assert run_search(search.pk) == "continued"
    search.refresh_from_db()
    lease = search.lease
    assert queued[-1] == ("apps.capacity.tasks.capacity_run", search.pk, lease) and search.status == Status.RUNNING
    done_before = search.probes.count()
    assert run_search(search.pk, lease) in ("continued", Status.COMPLETED)
    assert search.probes.count() > done_before


def _samples(ttft_ms: list[float]) -> list[ParsedSample]:
    return [ParsedSample(index=i, ttft_ms=t, e2e_ms=t + 100, input_tokens=10, output_tokens=11,
                         start_offset_ms=i * 10.0) for i, t in enumerate(ttft_ms)]  # fmt: skip


def _stored_step(search, index: int, level: float, trial: int, ttft_ms: list[float]) -> LoadSweepStep:
    parsed = ParsedRun(source_format="llmbench_live", name=f"probe {index}", samples=_samples(ttft_ms))
    run = run_store(team=search.team, parsed=parsed, target=RunTarget(search.variant, None, None))
    return LoadSweepStep.objects.create(sweep=search.sweep, index=index, level=level, trial=trial, run=run,
                                        status=Status.COMPLETED, client_kept_up=True)  # fmt: skip


def test_a_level_at_the_edge_of_the_slo_gets_extra_trials_and_is_reported_undecided(team):
    slo = {"objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": 500}], "max_error_rate": 0.01}
    search = make_search(team, slo=slo, repetitions=1, max_extra_trials=2)
    search = CapacitySearch.objects.get(pk=search.pk)
    edge = [100.0] * 95 + [900.0] * 5  # exactly 95% meet the threshold: no number of trials decides it
    probes: list[CapacityProbe] = []
    for trial in range(3):
        probe = engine.Probe(20.0, trial, "ramp" if trial == 0 else "extend")
        recorded = record_probe(search, probe, probes, _stored_step(search, trial, 20.0, trial, edge))
        probes.append(recorded)
    assert [p.verdict for p in probes] == [engine.MORE, engine.MORE, engine.UNDECIDED]
    pooled = probes[-1].judgement["objectives"][0]
    assert (pooled["met"], pooled["n"]) == (285, 300) and pooled["low"] < 0.95 < pooled["high"]
    assert probes[-1].judgement["trials_pooled"] == 3
    # The level counts as missing the SLO, and the answer says it stayed undecided.
    passing = record_probe(search, engine.Probe(10.0, 0, "ramp"), probes,
                           _stored_step(search, 3, 10.0, 0, [100.0] * 120))  # fmt: skip
    probes.append(passing)
    assert passing.verdict == engine.PASS
    result = search_result(search, probes, engine.Done(10.0, 20.0, "bracket"))
    assert result["undecided_levels"] == [20.0] and result["low"] == 10.0
    assert result["capacity"] == 15.0  # undecided at the high end: the middle of the bracket


def test_a_hosted_endpoints_cost_comes_from_its_token_prices(team):
    endpoint = sim_endpoint(team, name="hosted", price_input_per_1m_usd=0.5, price_output_per_1m_usd=1.5)
    search = make_search(team, endpoint=endpoint)
    probes = [record_probe(search, engine.Probe(10.0, 0, "ramp"), [],
                           _stored_step(search, 0, 10.0, 0, [100.0] * 120))]  # fmt: skip
    result = search_result(search, probes, engine.Done(10.0, None, "max_level"))
    assert result["cost_per_1m_output_usd"] == pytest.approx(1.5 + 0.5 * 10 / 11)
    assert "token prices" in result["cost_basis"]


def test_a_search_sends_its_workload_and_each_probe_sends_requests_of_its_own(team, queued):
    from apps.hardware.models import RequestSample
    from apps.workloads.services import workload_create

    spec = {"source": "synthetic", "seed": 3, "input_tokens": {"dist": "uniform", "min": 20, "max": 60},
            "output_tokens": {"dist": "uniform", "min": 3, "max": 8}}  # fmt: skip
    workload = workload_create(team=team, user=None, name="w", spec=spec)
    search = fast_search(team, workload_version=workload.latest, max_level=8)
    capacity_start(search=search)
    assert run_search(search.pk) == Status.COMPLETED, CapacitySearch.objects.get(pk=search.pk).error
    runs = list(PerformanceRun.objects.filter(sweep_step__sweep=search.sweep).order_by("sweep_step__index"))
    assert len(runs) == 2 and all(r.workload_version_id == workload.latest.pk for r in runs)
    lengths = RequestSample.objects.filter(run__in=runs).values_list("requested_output_tokens", flat=True)
    assert lengths and all(3 <= n <= 8 for n in lengths)


@pytest.fixture
def capacity_mockllm():
    """mockllm over HTTP with a capacity: 4 requests at once, the rest queued (no token budget)."""
    from aiohttp import web

    from apps.providers.mockllm import MockProfile, make_app
    from tests.threaded import running_in_thread

    profile = MockProfile(ttft_ms=20, itl_ms=5, output_tokens=20, max_batch=4, request_log_size=0)

    async def start():
        runner = web.AppRunner(make_app(profile))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    async def stop(runner):
        await runner.cleanup()

    with running_in_thread(start, stop) as runner:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1", profile


def test_a_search_against_mockllm_brackets_its_known_capacity(team, queued, capacity_mockllm):
    from apps.providers.mockllm import known_capacity_rps
    from apps.providers.models import ProviderEndpoint

    url, profile = capacity_mockllm
    capacity = known_capacity_rps(profile, output_tokens=20, ttft_max_ms=100)  # 4 / (0.020 + 19 × 0.005) ≈ 34.8
    endpoint = ProviderEndpoint.objects.create(team=team, name="mock", kind="openai_compatible", base_url=url)
    search = make_search(team, endpoint=endpoint, model="mock", start_level=8, slo=P50_TTFT, probe_duration_s=2)
    capacity_start(search=search)
    assert run_search(search.pk) == Status.COMPLETED, CapacitySearch.objects.get(pk=search.pk).error
    search.refresh_from_db()
    low, high = search.capacity_low, search.capacity_high
    assert low <= capacity * 1.05 and high >= capacity * 0.95, (low, high, capacity)
    assert not search.is_simulated and search.probes.count() <= 12
