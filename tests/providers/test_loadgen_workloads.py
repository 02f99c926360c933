"""run_step for workloads (issue 13): trace offsets, warm-up by count and by seconds, and the phases and
steady window of every result. On the virtual clock (tests/providers/virtual_time.py): exact and instant."""

import asyncio

import numpy as np
import pytest

from apps.providers.engine.loadgen import StepOutcome, StepSpec, run_step, schedule
from apps.providers.samples import PHASE_RAMP, PHASE_STEADY, PHASE_WARMUP
from tests.providers.virtual_time import VirtualServer, run_virtual, virtual_clock


def run(spec: StepSpec, server: VirtualServer, **kwargs) -> StepOutcome:
    return run_virtual(run_step(spec, server.send, clock=virtual_clock, **kwargs))


def by_send(outcome: StepOutcome):
    return sorted(outcome.results, key=lambda r: r.send_time)


class TestTraceOffsets:
    def test_requests_go_out_exactly_at_their_offsets(self):
        offsets = np.array([0.0, 0.0, 0.05, 0.3, 0.31, 1.2])  # repeats allowed, as in Mooncake traces
        server = VirtualServer(ttft_s=0.1)
        outcome = run(StepSpec(mode="open", offsets_s=offsets), server)  # no rate, duration or count needed
        assert [key for key, _ in server.sent] == [(i,) for i in range(6)]  # request i is row i
        sends = [t - outcome.start_time for _, t in server.sent]
        assert sends == pytest.approx(offsets.tolist(), abs=1e-9)
        scheduled = sorted(r.scheduled_time - outcome.start_time for r in outcome.results)
        assert scheduled == pytest.approx(offsets.tolist(), abs=1e-9)
        assert outcome.dispatch_delay_p99_ms == pytest.approx(0, abs=1e-6) and outcome.client_kept_up
        assert outcome.achieved_rate_rps == pytest.approx(5 / 1.2)  # still computed from the sends
        # The window ends one median gap after the last offset.
        assert outcome.window_end - outcome.start_time == pytest.approx(1.2 + np.median(np.diff(offsets)))

    def test_schedule_returns_the_offsets_cut_by_duration_and_count(self):
        offsets = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
        assert schedule(StepSpec(mode="open", offsets_s=offsets)).tolist() == offsets.tolist()
        assert schedule(StepSpec(mode="open", offsets_s=offsets, duration_s=1.5)).tolist() == [0.0, 0.5, 1.0]
        assert schedule(StepSpec(mode="open", offsets_s=offsets, request_count=2)).tolist() == [0.0, 0.5]

    def test_a_speedup_scales_the_dispatch_times(self):
        """×speedup is the caller's: offsets divided by 4 go out four times as fast."""
        offsets = np.array([0.0, 0.4, 0.8, 2.0])
        server = VirtualServer(ttft_s=0.01)
        outcome = run(StepSpec(mode="open", offsets_s=offsets / 4), server)
        assert [t - outcome.start_time for _, t in server.sent] == pytest.approx([0.0, 0.1, 0.2, 0.5], abs=1e-9)

    def test_the_trace_warm_up_comes_from_its_front(self):
        offsets = np.arange(10) * 0.1
        spec = StepSpec(mode="open", offsets_s=offsets, warmup_requests=3, duration_s=0.45)
        assert schedule(spec).tolist() == pytest.approx(offsets[:8].tolist())  # 3 warm-up, then [0.3, 0.75)
        outcome = run(spec, VirtualServer(ttft_s=0.01, tokens=1))
        phases = [r.phase for r in by_send(outcome)]
        assert phases == [PHASE_WARMUP] * 3 + [PHASE_STEADY] * 5
        assert outcome.steady_start - outcome.start_time == pytest.approx(0.3)

    @pytest.mark.parametrize(
        "offsets, message",
        [
            ([0.0, 0.5, 0.2], r"offsets_s\[2\] \(0.2\) comes before offsets_s\[1\]"),
            ([0.0, -1.0], r"offsets_s\[1\] is -1.0"),
            ([0.0, float("nan")], r"offsets_s\[1\] is nan"),
            ([], "non-empty"),
            ([[0.0, 1.0]], "non-empty list"),
            (["soon"], "numbers of seconds"),
        ],
    )
    def test_bad_offsets_are_refused_by_index(self, offsets, message):
        with pytest.raises(ValueError, match=message):
            StepSpec(mode="open", offsets_s=offsets)

    def test_offsets_are_for_the_open_loop_only(self):
        with pytest.raises(ValueError, match="open-loop"):
            StepSpec(mode="closed", concurrency=2, duration_s=1, offsets_s=[0.0])


class TestWarmUp:
    def test_by_count_the_first_requests_sent_are_warm_up_and_the_count_comes_after(self):
        server = VirtualServer(ttft_s=0.05, tokens=1)
        outcome = run(StepSpec(mode="closed", concurrency=2, request_count=6, warmup_requests=4), server)
        results = by_send(outcome)
        assert len(results) == 10  # 4 warm-up + 6 measured
        assert [r.phase for r in results[:4]] == [PHASE_WARMUP] * 4
        assert PHASE_WARMUP not in [r.phase for r in results[4:]]

    def test_by_seconds_requests_due_before_the_end_of_warm_up_are_warm_up(self):
        spec = StepSpec(mode="open", rate_rps=10, duration_s=1.0, warmup_s=0.5)
        assert len(schedule(spec)) == 15  # the duration is counted after the warm-up
        outcome = run(spec, VirtualServer(ttft_s=0.01, tokens=1))
        results = by_send(outcome)
        assert [r.phase == PHASE_WARMUP for r in results] == [True] * 5 + [False] * 10
        assert outcome.steady_start - outcome.start_time == pytest.approx(0.5)
        # The window ends one gap after the last arrival (1.5), or with the step if every request finished sooner.
        assert outcome.window_end == pytest.approx(min(outcome.start_time + 1.5, outcome.end_time))

    def test_the_warm_up_extends_a_closed_step(self):
        server = VirtualServer(ttft_s=0.125, tokens=1)  # binary-exact times: no rounding at the boundaries
        outcome = run(StepSpec(mode="closed", concurrency=2, duration_s=0.5, warmup_s=0.375), server)
        assert outcome.window_end - outcome.start_time == 0.875
        results = by_send(outcome)
        sends = [r.send_time - outcome.start_time for r in results]
        assert sends == pytest.approx([k * 0.125 for k in range(7) for _ in "ab"], abs=1e-9)
        assert [r.phase == PHASE_WARMUP for r in results] == [True] * 6 + [False] * 8

    def test_count_and_seconds_together_end_when_both_are_met(self):
        """By count the warm-up would end with the 4th request (due at 0.125); by time at 0.3: the later one
        wins, and the measured part starts at 0.3, not at its first send (0.375)."""
        server = VirtualServer(ttft_s=0.125, tokens=1)
        spec = StepSpec(mode="closed", concurrency=2, duration_s=0.3, warmup_requests=3, warmup_s=0.3)
        outcome = run(spec, server)
        results = by_send(outcome)
        assert [r.phase == PHASE_WARMUP for r in results] == [True] * 6 + [False] * 4  # 0, .125, .25 | .375, .5
        assert outcome.steady_start - outcome.start_time == pytest.approx(0.3)
        assert outcome.window_end - outcome.start_time == pytest.approx(0.6)

    def test_a_long_count_warm_up_starts_measuring_when_the_first_request_past_it_is_due(self):
        server = VirtualServer(ttft_s=0.125, tokens=1)
        outcome = run(StepSpec(mode="closed", concurrency=2, duration_s=0.25, warmup_requests=4), server)
        assert outcome.steady_start - outcome.start_time == 0.25  # request 4 is due at 0.25
        assert outcome.window_end - outcome.start_time == 0.5
        assert [r.phase == PHASE_WARMUP for r in by_send(outcome)] == [True] * 4 + [False] * 4

    def test_poisson_arrivals_keep_their_times_when_a_warm_up_is_added(self):
        plain = schedule(StepSpec(mode="open", rate_rps=20, arrivals="poisson", seed=5, request_count=50))
        warm = schedule(
            StepSpec(mode="open", rate_rps=20, arrivals="poisson", seed=5, request_count=50, warmup_requests=10)
        )
        assert len(warm) == 60 and np.array_equal(warm[:50], plain)

    @pytest.mark.parametrize("fields", [{"warmup_requests": -1}, {"warmup_s": -0.5}, {"warmup_s": float("inf")}])
    def test_bad_warm_ups_are_refused(self, fields):
        with pytest.raises(ValueError, match="warmup"):
            StepSpec(mode="closed", concurrency=2, duration_s=1, **fields)


class TestPhasesAndSteadyWindow:
    def test_closed_loop_ramp_then_steady_and_no_request_is_dropped_for_finishing_late(self):
        server = VirtualServer(ttft_s=0.1, tokens=1)
        outcome = run(StepSpec(mode="closed", concurrency=4, duration_s=0.35), server)
        results = server.results  # in send order (the first four share a send time)
        assert len(results) == len(outcome.results) == 16
        # All 4 streams open at t=0: the first 3 sends found fewer than 4 in flight (ramp), the 4th reached it.
        assert [r.phase for r in results[:4]] == [PHASE_RAMP] * 3 + [PHASE_STEADY]
        # Sent at 0.1, 0.2 and 0.3 (finishing at 0.4, after the window end 0.35): all steady. Classing by finish
        # time would drop slow requests and keep fast ones.
        assert {r.phase for r in results[4:]} == {PHASE_STEADY}
        assert outcome.steady_count == 13 == sum(r.phase == PHASE_STEADY for r in outcome.results)
        assert outcome.steady_start == outcome.start_time and outcome.steady_end == outcome.window_end
        assert outcome.steady_concurrency == pytest.approx(4)

    def test_a_warm_up_that_covers_the_ramp_leaves_no_ramp(self):
        server = VirtualServer(ttft_s=0.1, tokens=1)
        outcome = run(StepSpec(mode="closed", concurrency=4, duration_s=0.3, warmup_requests=4), server)
        assert PHASE_RAMP not in {r.phase for r in outcome.results}
        assert sum(r.phase == PHASE_WARMUP for r in outcome.results) == 4

    def test_the_open_loop_has_no_ramp_and_keeps_what_outlives_the_window(self):
        server = VirtualServer(ttft_s=0.25, tokens=1)
        outcome = run(StepSpec(mode="open", rate_rps=10, duration_s=1.0), server)
        results = by_send(outcome)
        assert PHASE_RAMP not in {r.phase for r in results}
        # Window end at 1.0: requests sent at 0.8 and 0.9 finish at 1.05 and 1.15 and stay steady.
        assert [r.phase for r in results] == [PHASE_STEADY] * 10
        assert outcome.steady_count == 10

    def test_steady_throughput_is_taken_over_the_steady_window(self):
        server = VirtualServer(ttft_s=0.02, itl_s=0.01, tokens=9)  # 9 tokens in exactly 100 ms
        outcome = run(StepSpec(mode="closed", concurrency=5, duration_s=1.0, warmup_s=0.5), server)
        assert outcome.steady_end - outcome.steady_start == pytest.approx(1.0)
        assert outcome.steady_output_tokens_per_s == pytest.approx(5 * 9 / 0.1, rel=0.02)
        assert outcome.steady_concurrency == pytest.approx(5)
        steady = [r for r in outcome.results if r.phase == PHASE_STEADY]
        assert len(outcome.ttft_ms(steady=True)) == len(steady) < len(outcome.ttft_ms())
        assert outcome.e2e_ms(steady=True) == pytest.approx([100.0] * len(steady))

    def test_closed_loop_dispatch_delay_is_measured_from_the_previous_end(self):
        server = VirtualServer(ttft_s=0.05, tokens=1)
        outcome = run(StepSpec(mode="closed", concurrency=3, request_count=12), server)
        assert outcome.dispatch_delays_ms == pytest.approx([0.0] * 12, abs=1e-6)
        assert all(r.scheduled_time is None for r in outcome.results)

    def test_a_step_cancelled_in_its_warm_up_has_an_empty_steady_window(self):
        async def main():
            cancel = asyncio.Event()
            asyncio.get_running_loop().call_later(1.0, cancel.set)
            spec = StepSpec(mode="closed", concurrency=2, duration_s=1, warmup_s=5)
            return await run_step(spec, VirtualServer(ttft_s=0.25).send, cancel=cancel, clock=virtual_clock)

        outcome = run_virtual(main())
        assert outcome.cancelled and outcome.results and outcome.steady_count == 0
        assert {r.phase for r in outcome.results} == {PHASE_WARMUP}
        assert outcome.steady_start == outcome.steady_end and outcome.steady_output_tokens_per_s is None
