"""Sharded steps (issue 14): the shares, the merge, creating a sweep with shards and trials, and real worker
processes meeting at the database barrier against mockllm (one run per step, no request sent twice, the start
skew stored), and a killed shard failing its step cleanly."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.tasks import async_task

from apps.batches.models import LoadSweep, LoadSweepStep, Status, StepShard
from apps.batches.runner import _Live
from apps.batches.services import sweep_create
from apps.batches.shards import ShardPart, merge, outcome_pack, outcome_unpack, share_spec
from apps.hardware.models import PerformanceRun, RequestSample
from apps.providers.engine.loadgen import StepOutcome, StepSpec, schedule
from apps.providers.engine.sessions import SessionStepSpec
from apps.providers.engine.types import ErrorKind, GenerationResult, RequestError
from apps.providers.mockllm import MockProfile
from apps.providers.samples import PHASE_RAMP, PHASE_STEADY, PHASE_WARMUP
from tests.batches.test_workload_sweeps import endpoint_for, serving, synthetic, tokenizer, user_text, workload
from tests.cluster import ROOT, database_url, wait_for
from tests.factories import HardwareProfileFactory, ModelVariantFactory

# --- shares -------------------------------------------------------------------------------------------------------


def test_closed_loop_concurrency_and_counts_split_as_evenly_as_possible():
    spec = StepSpec(mode="closed", concurrency=5, request_count=7, warmup_requests=3)
    shares = [share_spec(spec, k, 2) for k in range(2)]
    assert [s.concurrency for s in shares] == [3, 2]
    assert [s.warmup_requests for s in shares] == [2, 1]
    # Shard k sends the plan's requests k, k+2, …: together exactly requests 0..9, the first 3 as warm-up.
    assert [s.warmup_requests + s.request_count for s in shares] == [5, 5]
    assert sum(s.request_count for s in shares) == 7
    assert share_spec(spec, 0, 1) is spec


def test_a_share_with_nothing_to_send_is_refused():
    with pytest.raises(ValueError, match="at least 3 concurrent requests"):
        share_spec(StepSpec(mode="closed", concurrency=2, duration_s=5), 2, 3)
    with pytest.raises(ValueError, match="requests per step"):
        share_spec(StepSpec(mode="closed", concurrency=4, request_count=1), 1, 2)
    with pytest.raises(ValueError, match="scheduled requests"):
        share_spec(StepSpec(mode="open", rate_rps=0.5, duration_s=1), 1, 2)


@pytest.mark.parametrize("arrivals", ["constant", "poisson"])
def test_open_loop_shards_divide_the_one_schedule_between_them(arrivals):
    spec = StepSpec(mode="open", rate_rps=40, arrivals=arrivals, seed=5, duration_s=2, warmup_requests=5)
    whole = schedule(spec)
    shares = [share_spec(spec, k, 3) for k in range(3)]
    for k, share in enumerate(shares):
        np.testing.assert_array_equal(schedule(share), whole[k::3])  # shard k: arrivals k, k+3, …
    merged = np.sort(np.concatenate([schedule(s) for s in shares]))
    np.testing.assert_array_equal(merged, whole)  # constant arrivals interleave instead of firing 3 at once
    assert [s.warmup_requests for s in shares] == [2, 2, 1]


def test_trace_offsets_go_to_every_nth_shard():
    spec = StepSpec(mode="open", offsets_s=[0.0, 0.1, 0.15, 0.4, 0.5], request_count=4)
    assert schedule(share_spec(spec, 0, 2)).tolist() == [0.0, 0.15]
    assert schedule(share_spec(spec, 1, 2)).tolist() == [0.1, 0.4]


def test_sessions_split_by_users_streams_or_their_own_arrivals():
    closed = SessionStepSpec(mode="closed", concurrency=3, request_count=9)
    assert [share_spec(closed, k, 2).concurrency for k in range(2)] == [2, 1]
    users = SessionStepSpec(mode="user_centric", users=4, turn_gap_s=1, duration_s=5)
    assert [share_spec(users, k, 2).users for k in range(2)] == [2, 2]
    rate = SessionStepSpec(mode="open", rate_rps=10, arrivals="poisson", seed=1, duration_s=5)
    shares = [share_spec(rate, k, 2) for k in range(2)]
    assert [s.rate_rps for s in shares] == [5, 5] and shares[0].seed != shares[1].seed
    trace = SessionStepSpec(mode="open", offsets_s=[0, 1, 2], duration_s=5)
    assert share_spec(trace, 1, 2).offsets_s.tolist() == [1.0]


# --- a shard's outcome through the database ------------------------------------------------------------------------


def result(send: float, ttft: float = 0.05, e2e: float = 0.2, phase: int = PHASE_STEADY, **kw) -> GenerationResult:
    chunks = [send + ttft, send + (ttft + e2e) / 2, send + e2e]
    return GenerationResult(
        send_time=send, chunk_times=chunks, chunk_tokens=[1, 1, 1], output_tokens=3, end_time=send + e2e,
        server_send_times=[send + ttft - 0.001], phase=phase, **kw,
    )  # fmt: skip


def outcome(start: float, results: list[GenerationResult], **kw) -> StepOutcome:
    figures = dict(
        end_time=start + 2.0, window_end=start + 1.5, achieved_concurrency=2.0, achieved_rate_rps=3.0,
        dispatch_delay_p50_ms=0.1, dispatch_delay_p99_ms=0.5, output_tokens_per_s=10.0, client_kept_up=True,
        kept_up_reason="", dispatch_delays_ms=np.full(len(results), 0.2), steady_start=start + 0.1,
        steady_end=start + 1.5, loop_lag_p99_ms=0.4,
    )  # fmt: skip
    return StepOutcome(spec=None, results=results, start_time=start, **(figures | kw))


def test_an_outcome_survives_the_database_round_trip():
    failed = GenerationResult(send_time=3.0, end_time=3.5, error=RequestError(ErrorKind.SERVER, "boom", status=503))
    original = outcome(1.0, [result(1.0, session_index=2, turn_index=1), failed], cancelled_requests=2)
    live = _Live(cancel=None, auth_refused="no", notes=["a note"])
    back, auth_refused, notes = outcome_unpack(outcome_pack(original, live))
    assert back.results == original.results and back.results[1].error.kind is ErrorKind.SERVER
    assert back.cancelled_requests == 2 and back.window_end == original.window_end
    np.testing.assert_array_equal(back.dispatch_delays_ms, original.dispatch_delays_ms)
    assert (auth_refused, notes) == ("no", ["a note"])


# --- the merge -----------------------------------------------------------------------------------------------------


def test_merge_moves_each_shard_onto_the_coordinators_clock_and_recomputes_the_figures():
    barrier = 1_700_000_000.0
    # Shard 0 started 1 ms after the barrier at monotonic 100.0; shard 1 (another clock) 3 ms after, at 5000.0.
    zero = outcome(100.0, [result(100.0), result(100.5, phase=PHASE_WARMUP)], steady_start=100.2)
    one = outcome(
        5000.0, [result(5000.0, session_index=0), result(5000.2, session_index=1, phase=PHASE_RAMP)],
        client_kept_up=False, kept_up_reason="dispatch delay p99 12.0 ms > 10 ms", loop_lag_p99_ms=2.5,
        achieved_concurrency=1.5, window_end=5001.8, steady_start=5000.3,
    )  # fmt: skip
    one.dispatch_delays_ms = np.array([1.0, 30.0])
    merged, alignment = merge("spec", [ShardPart(1, one, barrier, barrier + 0.003),
                                       ShardPart(0, zero, barrier, barrier + 0.001)], 2)  # fmt: skip
    assert len(merged.results) == 4 and merged.spec == "spec"
    shift = 100.0 - 0.001 + 0.003 - 5000.0  # shard 1's start lands 2 ms after shard 0's
    sends = sorted(r.send_time for r in merged.results)
    assert sends == pytest.approx([100.0, 100.002, 100.202, 100.5])
    moved = next(r for r in merged.results if r.session_index == 1)  # shard 1's session 0 is the plan's session 1
    assert moved.chunk_times[0] == pytest.approx(5000.0 + 0.05 + shift)
    assert moved.server_send_times[0] == pytest.approx(5000.0 + 0.049 + shift) and moved.ttft_ms == pytest.approx(50)
    assert {r.session_index for r in merged.results} == {None, 1, 3}
    assert merged.start_time == 100.0 and merged.window_end == pytest.approx(5001.8 + shift)
    assert merged.achieved_concurrency == 3.5
    assert merged.achieved_rate_rps == pytest.approx(3 / 0.5)  # (sends − 1) over first to last send
    assert merged.dispatch_delay_p99_ms == pytest.approx(np.percentile([0.2, 0.2, 1.0, 30.0], 99))
    assert not merged.client_kept_up and merged.kept_up_reason == "shard 2: dispatch delay p99 12.0 ms > 10 ms"
    assert merged.loop_lag_p99_ms == 2.5
    assert merged.steady_start == pytest.approx(100.302) and merged.steady_end == pytest.approx(100.0 + 1.5)
    assert merged.steady_count == 2
    assert alignment == {"shards": 2, "start_skew_ms": [1.0, 3.0], "max_skew_ms": 3.0, "spread_ms": 2.0,
                         "barrier": "database"}  # fmt: skip


def test_merge_needs_every_shard():
    with pytest.raises(ValueError, match=r"expected 0\.\.1"):
        merge(None, [ShardPart(0, outcome(1.0, [result(1.0)]), 0.0, 0.0)], 2)


# --- creating a sweep with shards and trials -----------------------------------------------------------------------


def api_body(team, **fields) -> dict:
    from apps.providers.models import ProviderEndpoint

    endpoint = ProviderEndpoint.objects.create(team=team, name="sim", kind="sim", model_names=["sim-small"])
    body = {"name": "api", "endpoint": endpoint.pk, "model": "sim-small", "variant": ModelVariantFactory(team=team).pk,
            "mode": "closed", "levels": [2, 4], "step_request_count": 8}  # fmt: skip
    return body | fields


@pytest.mark.django_db
class TestCreating:
    def test_steps_run_each_levels_trials_in_turn(self, member_api, team):
        response = member_api.post("/api/v1/sweeps", api_body(team, trials=3, shards=2), format="json")
        assert response.status_code == 201, response.json()
        sweep = LoadSweep.objects.get(pk=response.json()["id"])
        assert (sweep.shards, sweep.trials) == (2, 3)
        steps = list(sweep.steps.order_by("index").values_list("index", "level", "trial"))
        assert steps == [(0, 2, 0), (1, 2, 1), (2, 2, 2), (3, 4, 0), (4, 4, 1), (5, 4, 2)]

    def test_left_out_they_are_one(self, member_api, team):
        response = member_api.post("/api/v1/sweeps", api_body(team), format="json")
        sweep = LoadSweep.objects.get(pk=response.json()["id"])
        assert (sweep.shards, sweep.trials, sweep.steps.count()) == (1, 1, 2)

    @pytest.mark.parametrize(
        ("fields", "field", "words"),
        [
            ({"shards": 17}, "shards", "At most 16"),
            ({"shards": 0}, "shards", "At least 1"),
            ({"shards": 3}, "shards", "smallest level is 2"),  # closed loop: a stream per shard at every level
            ({"mode": "open", "levels": [5], "step_request_count": 2, "shards": 3}, "shards", "3 requests per step"),
            ({"trials": 11}, "trials", "At most 10"),
            ({"trials": 0}, "trials", "At least 1"),
            ({"trials": "many"}, "trials", "whole number"),
        ],
    )
    def test_bad_values_are_400_naming_the_field(self, member_api, team, fields, field, words):
        response = member_api.post("/api/v1/sweeps", api_body(team, **fields), format="json")
        assert response.status_code == 400 and field in response.json(), response.json()
        assert words in str(response.json()[field])
        assert not LoadSweep.objects.exists()

    def test_open_loop_may_have_more_shards_than_its_smallest_rate(self, member_api, team):
        body = api_body(team, mode="open", levels=[1.5], step_request_count=None, step_duration_s=10, shards=4)
        assert member_api.post("/api/v1/sweeps", body, format="json").status_code == 201

    def test_the_form_page_says_what_both_do(self, member_client):
        page = member_client.get(reverse("batches:sweep-new")).content.decode()
        assert "Runs of each level" in page and "Worker processes per step" in page
        assert "equal share of the load" in page

    def test_the_form_refuses_too_many_shards_in_words(self, member_client, team):
        body = api_body(team, shards=9, levels="4,8")
        body["target"] = f"{body.pop('endpoint')}:{body.pop('model')}"
        response = member_client.post(reverse("batches:sweep-new"), body)
        assert response.status_code == 400
        assert "9 worker processes need at least 9 concurrent requests" in response.content.decode()

    def test_a_viewer_or_anonymous_cannot_create_one(self, viewer_api, anon_api, team):
        body = api_body(team, shards=2)
        assert viewer_api.post("/api/v1/sweeps", body, format="json").status_code == 403
        assert anon_api.post("/api/v1/sweeps", body, format="json").status_code == 401
        assert not LoadSweep.objects.exists()


# --- real worker processes -----------------------------------------------------------------------------------------

CHAT = "/v1/chat/completions"


def start_workers(log: Path) -> subprocess.Popen:
    """`manage.py qcluster` with two task workers against the test database: the sweep's task (the
    coordinator, shard 1) takes one, the queued shard 2 the other. The ORM broker, whatever this process uses."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {"DATABASE_URL": database_url(), "Q_WORKERS": "2", "Q_TIMEOUT_S": "120", "Q_RETRY_S": "150",
            "BATCH_CHUNK_S": "1", "LOG_LEVEL": "WARNING"}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop_workers(cluster: subprocess.Popen) -> None:
    os.killpg(cluster.pid, signal.SIGKILL)
    cluster.wait(timeout=10)


def sharded_sweep(team, mock, **fields) -> LoadSweep:
    wl = workload(team, synthetic(), tokenizer=tokenizer(team))
    defaults = {
        "name": "sharded", "endpoint": endpoint_for(team, mock), "model": "mock", "variant": ModelVariantFactory(team=team),
        "hardware": HardwareProfileFactory(team=team), "mode": "closed", "workload_version": wl.latest, "shards": 2,
    }  # fmt: skip
    sweep = sweep_create(team=team, user=None, **(defaults | fields))
    async_task("apps.batches.tasks.load_sweep_run", sweep.pk, broker=ORM(list_key=Conf.PREFIX))
    return sweep


def alive(cluster: subprocess.Popen, log: Path):
    """For wait_for's `between`: stop waiting at once when the cluster died."""

    def check() -> None:
        if cluster.poll() is not None:
            raise AssertionError(f"qcluster exited with {cluster.returncode}: {log.read_text()[-3000:]}")

    return check


def finished(sweep: LoadSweep) -> LoadSweep | None:
    sweep.refresh_from_db()
    return sweep if sweep.is_finished else None


@pytest.mark.django_db(transaction=True)
class TestWorkerProcesses:
    def test_two_workers_send_each_step_together_and_store_one_run(self, team, tmp_path):
        from apps.batches.traffic import build_sweep_plan, stored_calibration

        log = tmp_path / "workers.log"
        with serving(MockProfile(ttft_ms=20, itl_ms=2, output_tokens=8)) as mock:
            sweep = sharded_sweep(team, mock, levels=[2, 4], step_request_count=10)
            cluster = start_workers(log)
            try:
                wait_for(lambda: finished(sweep), 120, lambda: f"the sweep to finish (log: {log.read_text()[-3000:]})",
                         between=alive(cluster, log))  # fmt: skip
            finally:
                stop_workers(cluster)
            texts = [user_text(r["body"]) for r in mock.received(CHAT)]
        assert sweep.status == Status.COMPLETED, sweep.error
        # Exactly the plan's requests of both steps (0..19), each sent once, by one shard or the other.
        plan = build_sweep_plan(sweep, stored_calibration(sweep.token_calibration))
        assert Counter(texts) == Counter(plan.request(i, 0, []).messages[-1]["content"] for i in range(20))
        assert PerformanceRun.objects.count() == 2
        for step in sweep.steps.order_by("index"):
            assert step.status == Status.COMPLETED and RequestSample.objects.filter(run=step.run).count() == 10
            shards = list(step.shards.order_by("index"))
            assert [(s.attempt, s.index, s.status) for s in shards] == [(1, 0, "completed"), (1, 1, "completed")]
            assert shards[0].worker != shards[1].worker  # two processes
            assert shards[0].start_at_epoch == shards[1].start_at_epoch
            alignment = step.shard_alignment
            assert alignment["shards"] == 2 and alignment["attempt"] == 1 and len(alignment["start_skew_ms"]) == 2
            assert alignment["start_skew_ms"] == pytest.approx([s.skew_ms for s in shards], abs=1e-3)
            assert 0 <= alignment["max_skew_ms"] < 50, alignment  # the bench holds it to 5 ms on a quiet machine
            assert step.achieved_concurrency > 0.5 * step.level

    def test_a_killed_shard_fails_the_step_and_stores_nothing(self, team, tmp_path):
        log = tmp_path / "workers.log"
        with serving(MockProfile(ttft_ms=20, itl_ms=5, output_tokens=40)) as mock:
            sweep = sharded_sweep(team, mock, levels=[2], step_duration_s=40)
            cluster = start_workers(log)
            try:
                second = wait_for(
                    lambda: StepShard.objects.filter(step__sweep=sweep, index=1, started_at_epoch__isnull=True,
                                                     start_at_epoch__isnull=False).first(),
                    60, lambda: f"shard 2 to start (log: {log.read_text()[-3000:]})", between=alive(cluster, log),
                )  # fmt: skip
                time.sleep(1.0)
                os.kill(int(second.worker.rpartition(":")[2]), signal.SIGKILL)  # that worker only
                killed_at = time.monotonic()
                wait_for(lambda: finished(sweep), 60, lambda: f"the sweep to fail (log: {log.read_text()[-3000:]})")
                noticed_s = time.monotonic() - killed_at
            finally:
                stop_workers(cluster)
        assert sweep.status == Status.FAILED and "shard 2 of 2 stopped reporting" in sweep.error, sweep.error
        assert noticed_s < 30  # the coordinator cancelled its own share instead of running out its 40 s
        step = LoadSweepStep.objects.get(sweep=sweep)
        assert step.status == Status.FAILED and step.run is None and step.shard_alignment == {}
        assert not PerformanceRun.objects.exists()
        assert set(StepShard.objects.filter(step=step).values_list("status", flat=True)) == {Status.FAILED}

    def test_a_cancel_reaches_every_shard_and_keeps_what_both_sent(self, team, tmp_path):
        from apps.batches.services import sweep_cancel

        log = tmp_path / "workers.log"
        with serving(MockProfile(ttft_ms=20, itl_ms=5, output_tokens=40)) as mock:
            sweep = sharded_sweep(team, mock, levels=[2], step_duration_s=40)
            cluster = start_workers(log)
            try:
                wait_for(lambda: StepShard.objects.filter(step__sweep=sweep, started_at_epoch__isnull=True,
                                                          start_at_epoch__isnull=False).count() == 2,
                         60, lambda: f"both shards to start (log: {log.read_text()[-3000:]})",
                         between=alive(cluster, log))  # fmt: skip
                time.sleep(2.0)
                sweep_cancel(sweep=sweep)
                cancelled_at = time.monotonic()
                wait_for(lambda: finished(sweep), 30, lambda: f"the sweep to stop (log: {log.read_text()[-3000:]})",
                         between=alive(cluster, log))  # fmt: skip
                stopped_s = time.monotonic() - cancelled_at
            finally:
                stop_workers(cluster)
            sent = len(mock.received(CHAT))
        assert sweep.status == Status.CANCELLED and stopped_s < 10, (sweep.status, sweep.error, stopped_s)
        step = LoadSweepStep.objects.get(sweep=sweep)
        assert step.status == Status.CANCELLED and step.shard_alignment["shards"] == 2
        stored = RequestSample.objects.filter(run=step.run).count()
        # Both shards' finished requests are in the one run; those cut by the cancel are not results.
        assert stored <= sent and {s.status for s in step.shards.all()} == {Status.COMPLETED}
        second = outcome_unpack(bytes(step.shards.get(index=1).results))[0]
        assert second.cancelled and 0 < len(second.results) < stored  # shard 2's part and shard 1's
