"""Multi-turn sessions (run_sessions): turn order, think time, aborts, the three modes' schedules, stops,
cancel, warm-up and phases. On the virtual clock (tests/providers/virtual_time.py), so due times and
dispatch delays are checked exactly; one test runs on the real clock."""

import asyncio
import itertools
import time
from collections import defaultdict

import numpy as np
import pytest

from apps.providers.engine.loadgen import StepOutcome, StepProgress
from apps.providers.engine.sessions import SessionStepSpec, run_sessions, session_arrivals
from apps.providers.engine.types import GenerationResult
from apps.providers.samples import PHASE_RAMP, PHASE_STEADY, PHASE_WARMUP
from tests.providers.virtual_time import LATE_OK_MS, VirtualServer, run_virtual, virtual_clock


def run(spec, server, n_turns=lambda s: 3, think_s=lambda s, t: 0.0, **kwargs) -> StepOutcome:
    return run_virtual(run_sessions(spec, server.send_turn, n_turns, think_s, clock=virtual_clock, **kwargs))


def by_session(results) -> dict[int, list[GenerationResult]]:
    sessions = defaultdict(list)
    for result in sorted(results, key=lambda r: r.send_time):
        sessions[result.session_index].append(result)
    return sessions


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at once (an end at t closes before a start at t)."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    peak = level = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


class TestTurns:
    def test_turns_go_in_order_each_after_the_previous_returned(self):
        server = VirtualServer(ttft_s=0.05, tokens=2)
        outcome = run(SessionStepSpec(mode="closed", concurrency=3, request_count=30), server, n_turns=lambda s: 4)
        sessions = by_session(outcome.results)
        assert all(r.ok for r in outcome.results) and len(outcome.results) == 30
        for turns in sessions.values():
            assert [r.turn_index for r in turns] == list(range(len(turns)))
            for before, after in itertools.pairwise(turns):
                assert after.send_time >= before.end_time
        # Sessions are numbered in start order.
        firsts = [sessions[s][0].send_time for s in sorted(sessions)]
        assert sorted(sessions) == list(range(len(sessions))) and firsts == sorted(firsts)
        # Three sessions in lockstep, 10 turns each: two whole sessions and two turns of a third (cut).
        assert outcome.sessions_started == len(sessions) == 9 and outcome.sessions_completed == 6

    def test_think_time_is_due_after_the_previous_end_and_none_before_turn_0(self):
        calls = []

        def think(s: int, t: int) -> float:
            calls.append((s, t))
            return 0.25 * t + 0.125 * s

        server = VirtualServer(ttft_s=0.0625, tokens=1)
        spec = SessionStepSpec(mode="closed", concurrency=1, request_count=9)
        outcome = run(spec, server, n_turns=lambda s: 3, think_s=think)
        assert all(t >= 1 for _, t in calls)  # never asked for a think before turn 0
        for s, turns in by_session(outcome.results).items():
            for t in (1, 2):
                due = turns[t - 1].end_time + 0.25 * t + 0.125 * s
                assert turns[t].scheduled_time == due and turns[t].send_time == pytest.approx(due, abs=1e-9)
        # Turn 0 of the next session goes as soon as the previous session ended: no think.
        sessions = by_session(outcome.results)
        assert sessions[1][0].send_time == sessions[0][2].end_time
        assert outcome.dispatch_delays_ms == pytest.approx([0.0] * 9, abs=1e-9)

    def test_a_late_turn_shows_as_dispatch_delay(self):
        """A think of 0.1 s, then the loop blocked past it: the turn goes 50 ms late, and its delay says so."""

        async def then_block(s: int, t: int) -> GenerationResult:
            result = await server.send_turn(s, t)
            if t == 0:
                loop = asyncio.get_running_loop()
                loop.call_soon(loop.stall, 0.15)
            return result

        server = VirtualServer(ttft_s=0.0625, tokens=1)
        spec = SessionStepSpec(mode="closed", concurrency=1, request_count=2)
        outcome = run_virtual(run_sessions(spec, then_block, lambda s: 2, lambda s, t: 0.1, clock=virtual_clock))
        first, second = by_session(outcome.results)[0]
        assert second.scheduled_time == first.end_time + 0.1
        assert (second.send_time - second.scheduled_time) * 1000 == pytest.approx(50)
        assert outcome.dispatch_delays_ms.tolist() == pytest.approx([0, 50])

    def test_a_failed_turn_aborts_its_session(self):
        server = VirtualServer(ttft_s=0.05, tokens=1, fail={(1, 1)})
        outcome = run(SessionStepSpec(mode="closed", concurrency=2, request_count=12), server, n_turns=lambda s: 4)
        sent = [key for key, _ in server.sent]
        assert (1, 1) in sent and (1, 2) not in sent and (1, 3) not in sent
        assert outcome.sessions_aborted == 1 and outcome.failed == 1
        assert outcome.sessions_completed == 2  # sessions 0 and 2; session 3 was cut by the count
        assert len(outcome.results) == 12  # the aborted session's worker went on with the next session

    def test_a_send_that_raises_aborts_its_session(self):
        async def broken(s: int, t: int) -> GenerationResult:
            raise RuntimeError("history bug")

        outcome = run_virtual(
            run_sessions(
                SessionStepSpec(mode="closed", concurrency=2, request_count=4),
                broken,
                lambda s: 3,
                lambda s, t: 0.0,
                clock=virtual_clock,
            )
        )
        assert outcome.failed == 4 and outcome.sessions_aborted == 4 and outcome.sessions_completed == 0
        assert {r.turn_index for r in outcome.results} == {0}

    def test_a_session_without_turns_is_a_caller_bug(self):
        with pytest.raises(ValueError, match=r"n_turns\(0\) is 0"):
            run(SessionStepSpec(mode="closed", concurrency=2, request_count=4), VirtualServer(), n_turns=lambda s: 0)


class TestClosed:
    def test_sessions_in_flight_reach_the_target_and_never_exceed_it(self):
        server = VirtualServer(ttft_s=0.05, tokens=3)
        spec = SessionStepSpec(mode="closed", concurrency=5, duration_s=3.0)
        outcome = run(spec, server, n_turns=lambda s: 1 + s % 4, think_s=lambda s, t: 0.1 + 0.01 * (s % 7))
        spans = [(turns[0].send_time, turns[-1].end_time) for turns in by_session(outcome.results).values()]
        assert peak_overlap(spans) == 5
        assert outcome.achieved_sessions == pytest.approx(5, rel=0.01)
        assert server.peak <= 5 and outcome.achieved_concurrency < 5  # think time leaves requests fewer
        assert outcome.client_kept_up, outcome.kept_up_reason  # sessions held, not requests, are checked

    def test_the_first_turns_ramp_and_turns_outliving_the_window_stay_steady(self):
        server = VirtualServer(ttft_s=0.15, tokens=1)
        outcome = run(SessionStepSpec(mode="closed", concurrency=4, duration_s=1.0), server, n_turns=lambda s: 3)
        results = server.results  # send order
        assert [r.phase for r in results[:4]] == [PHASE_RAMP] * 3 + [PHASE_STEADY]
        ends_late = [r for r in results if r.end_time > outcome.window_end]
        assert ends_late and {r.phase for r in ends_late} == {PHASE_STEADY}
        assert outcome.steady_count == sum(r.phase == PHASE_STEADY for r in results) == len(results) - 3

    def test_a_session_asleep_at_the_deadline_is_woken_and_cut(self):
        server = VirtualServer(ttft_s=0.1, tokens=1)
        spec = SessionStepSpec(mode="closed", concurrency=2, duration_s=1.0)
        outcome = run(spec, server, n_turns=lambda s: 5, think_s=lambda s, t: 100.0)
        assert outcome.end_time - outcome.start_time == pytest.approx(1.0)  # no waiting out a 100 s think
        assert len(outcome.results) == 2 and outcome.sessions_started == 2
        assert outcome.sessions_completed == outcome.sessions_aborted == 0  # both cut


class TestOpen:
    def test_sessions_arrive_on_the_schedule(self):
        server = VirtualServer(ttft_s=0.05, tokens=1)
        outcome = run(SessionStepSpec(mode="open", rate_rps=8, duration_s=1.0), server, n_turns=lambda s: 2)
        sessions = by_session(outcome.results)
        starts = [sessions[s][0].send_time - outcome.start_time for s in sorted(sessions)]
        assert starts == pytest.approx([k / 8 for k in range(8)], abs=1e-9)
        assert [sessions[s][0].scheduled_time - outcome.start_time for s in sorted(sessions)] == starts
        assert PHASE_RAMP not in {r.phase for r in outcome.results}

    def test_poisson_arrivals_are_seeded(self):
        spec = SessionStepSpec(mode="open", rate_rps=20, arrivals="poisson", seed=3, request_count=2000)
        first = list(zip(range(2000), session_arrivals(spec), strict=False))
        again = list(zip(range(2000), session_arrivals(spec), strict=False))
        gaps = np.diff([offset for _, offset in first])
        assert first == again and first[0][1] == 0 and gaps.mean() == pytest.approx(1 / 20, rel=0.06)
        server = VirtualServer(ttft_s=0.01, tokens=1)
        outcome = run(SessionStepSpec(mode="open", rate_rps=20, arrivals="poisson", seed=3, duration_s=1.0), server)
        sessions = by_session(outcome.results)
        starts = [sessions[s][0].send_time - outcome.start_time for s in sorted(sessions)]
        assert starts == pytest.approx([offset for _, offset in first[: len(starts)]], abs=1e-9)
        assert first[len(starts)][1] >= 1.0  # every arrival inside the duration started

    def test_trace_sessions_start_at_their_offsets_and_the_step_ends_with_them(self):
        offsets = np.array([0.0, 0.0625, 0.5, 2.0])
        server = VirtualServer(ttft_s=0.125, tokens=1)
        spec = SessionStepSpec(mode="open", offsets_s=offsets)  # no duration or count: the trace is the step
        outcome = run(spec, server, n_turns=lambda s: 2, think_s=lambda s, t: 0.25)
        sessions = by_session(outcome.results)
        starts = [sessions[s][0].send_time - outcome.start_time for s in range(4)]
        assert starts == pytest.approx(offsets.tolist(), abs=1e-9)
        assert outcome.sessions_started == outcome.sessions_completed == 4 and len(outcome.results) == 8
        assert outcome.window_end - outcome.start_time == pytest.approx(2.375, abs=1e-9)  # the last turn's dispatch

    def test_the_session_cap_delays_arrivals_and_counts_the_wait(self):
        server = VirtualServer(ttft_s=0.5, tokens=1)
        spec = SessionStepSpec(mode="open", rate_rps=10, max_sessions=2, request_count=4)
        outcome = run(spec, server, n_turns=lambda s: 1)
        sends = [t - outcome.start_time for _, t in server.sent]
        assert sends == pytest.approx([0.0, 0.1, 0.5, 0.6])  # arrivals at 0.2, 0.3 waited for a free slot
        assert server.peak == 2
        assert sorted(outcome.dispatch_delays_ms) == pytest.approx([0, 0, 300, 300])


class TestUserCentric:
    def test_each_user_keeps_its_turn_gap(self):
        server = VirtualServer(ttft_s=0.25, tokens=1)
        spec = SessionStepSpec(mode="user_centric", users=4, turn_gap_s=1.0, duration_s=3.0)
        outcome = run(spec, server, n_turns=lambda s: 2)
        starts = defaultdict(list)  # user i fires at i/4 + k
        for result in outcome.results:
            starts[round((result.send_time - outcome.start_time) % 1.0, 9)].append(result.send_time)
        assert sorted(starts) == [0.0, 0.25, 0.5, 0.75]
        for times in starts.values():
            assert np.diff(sorted(times)) == pytest.approx([1.0] * (len(times) - 1))
        assert len(outcome.results) == 12 and outcome.dispatch_delays_ms == pytest.approx([0.0] * 12, abs=1e-9)

    def test_a_turn_slower_than_the_gap_goes_at_the_previous_end_and_the_lateness_is_a_dispatch_delay(self):
        server = VirtualServer(ttft_s=1.5, tokens=1)
        spec = SessionStepSpec(mode="user_centric", users=1, turn_gap_s=1.0, request_count=2)
        outcome = run(spec, server, n_turns=lambda s: 3)
        first, second = by_session(outcome.results)[0]
        assert second.send_time == first.end_time == pytest.approx(first.send_time + 1.5, abs=1e-9)
        assert second.scheduled_time == pytest.approx(first.send_time + 1.0, abs=1e-9)
        assert outcome.dispatch_delays_ms.tolist() == pytest.approx([0.0, 500.0])

    def test_the_next_session_does_not_wait_for_the_last_turn(self):
        server = VirtualServer(ttft_s=1.5, tokens=1)
        spec = SessionStepSpec(mode="user_centric", users=1, turn_gap_s=1.0, request_count=3)
        outcome = run(spec, server, n_turns=lambda s: 1)  # one-turn sessions: a fixed rate of 1/s
        assert [t - outcome.start_time for _, t in server.sent] == [0.0, 1.0, 2.0]
        assert [key for key, _ in server.sent] == [(0, 0), (1, 0), (2, 0)]
        assert server.peak == 2 and outcome.sessions_completed == 3


class TestStopCancelWarmUp:
    def test_request_count_counts_turns_over_all_sessions(self):
        server = VirtualServer(ttft_s=0.05, tokens=1)
        outcome = run(SessionStepSpec(mode="closed", concurrency=3, request_count=10), server, n_turns=lambda s: 4)
        assert len(server.sent) == len(outcome.results) == 10

    def test_duration_stops_turns_due_after_it(self):
        server = VirtualServer(ttft_s=0.125, tokens=1)
        spec = SessionStepSpec(mode="closed", concurrency=2, duration_s=1.0)
        outcome = run(spec, server, n_turns=lambda s: 3, think_s=lambda s, t: 0.125)
        assert all(r.scheduled_time < outcome.start_time + 1.0 for r in outcome.results)
        assert outcome.window_end == outcome.start_time + 1.0
        assert max(r.send_time for r in outcome.results) > outcome.start_time + 0.75

    def test_cancel_returns_promptly_without_the_cancelled_turns(self):
        async def main():
            cancel = asyncio.Event()
            asyncio.get_running_loop().call_later(0.5, cancel.set)
            server = VirtualServer(ttft_of=lambda key: 0.1 if key[1] == 0 else 30.0)  # turn 1 hangs
            outcome = await run_sessions(
                SessionStepSpec(mode="closed", concurrency=3, duration_s=60), server.send_turn, lambda s: 2,
                lambda s, t: 0.0, cancel=cancel, clock=virtual_clock,
            )  # fmt: skip
            return outcome, server

        outcome, server = run_virtual(main())
        assert outcome.cancelled and outcome.end_time - outcome.start_time < 0.5 + 0.81
        assert len(outcome.results) == 3 and {r.turn_index for r in outcome.results} == {0}
        assert outcome.cancelled_requests == 3 and server.in_flight == 0
        assert outcome.sessions_completed == outcome.sessions_aborted == 0

    def test_drain_timeout_cancels_stragglers(self):
        server = VirtualServer(ttft_s=10.0)
        spec = SessionStepSpec(mode="open", rate_rps=4, duration_s=1.0, drain_timeout_s=0.5)
        outcome = run(spec, server)
        assert outcome.results == [] and outcome.cancelled_requests == 4 and not outcome.cancelled
        assert outcome.end_time - outcome.start_time < 2.5

    def test_warm_up_by_count_is_the_first_turns_sent(self):
        server = VirtualServer(ttft_s=0.05, tokens=1)
        spec = SessionStepSpec(mode="closed", concurrency=2, request_count=6, warmup_requests=5)
        run(spec, server, n_turns=lambda s: 3)
        assert [r.phase == PHASE_WARMUP for r in server.results] == [True] * 5 + [False] * 6

    def test_warm_up_by_seconds_is_the_turns_due_before_it_and_extends_the_step(self):
        server = VirtualServer(ttft_s=0.125, tokens=1)
        spec = SessionStepSpec(mode="user_centric", users=2, turn_gap_s=0.25, duration_s=0.5, warmup_s=0.5)
        outcome = run(spec, server, n_turns=lambda s: 2)
        for result in outcome.results:
            assert (result.phase == PHASE_WARMUP) == (result.scheduled_time < outcome.start_time + 0.5)
        assert sum(r.phase == PHASE_WARMUP for r in outcome.results) == 4
        assert outcome.window_end - outcome.start_time == 1.0 and outcome.steady_start - outcome.start_time == 0.5

    def test_progress_reports_active_sessions(self):
        seen: list[StepProgress] = []
        server = VirtualServer(ttft_s=0.05, tokens=1)
        spec = SessionStepSpec(mode="closed", concurrency=3, duration_s=1.0)
        run(spec, server, n_turns=lambda s: 3, think_s=lambda s, t: 0.2, on_progress=seen.append,
            progress_interval_s=0.1)  # fmt: skip
        assert [p.sessions_active for p in seen[:3]] == [3, 3, 3] and seen[-1].sessions_active == 0
        assert seen[0].in_flight == 0  # at 0.1 s every session is thinking before its turn 1

    def test_on_the_real_clock_think_time_is_never_early(self):
        async def send_turn(s: int, t: int) -> GenerationResult:
            result = GenerationResult(send_time=time.monotonic())
            await asyncio.sleep(0.02)
            result.end_time = time.monotonic()
            return result

        spec = SessionStepSpec(mode="closed", concurrency=4, request_count=16)
        outcome = asyncio.run(run_sessions(spec, send_turn, lambda s: 4, lambda s, t: 0.03))
        later_turns = [r for r in outcome.results if r.turn_index > 0]
        delays_ms = [(r.send_time - r.scheduled_time) * 1000 for r in later_turns]
        assert len(later_turns) == 12 and min(delays_ms) >= 0 and max(delays_ms) < LATE_OK_MS


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"mode": "closed", "concurrency": 2}, "duration_s or request_count"),
        ({"mode": "closed", "concurrency": 0, "duration_s": 1}, "concurrency"),
        ({"mode": "open", "duration_s": 1}, "rate_rps"),
        ({"mode": "open", "rate_rps": 2, "duration_s": 1, "arrivals": "bursty"}, "arrivals"),
        ({"mode": "open", "rate_rps": 2, "duration_s": 1, "max_sessions": 0}, "max_sessions"),
        ({"mode": "open", "offsets_s": [1.0, 0.5]}, r"offsets_s\[1\]"),
        ({"mode": "closed", "concurrency": 2, "duration_s": 1, "offsets_s": [0.0]}, "open-mode"),
        ({"mode": "user_centric", "users": 0, "turn_gap_s": 1, "duration_s": 1}, "users"),
        ({"mode": "user_centric", "users": 2, "turn_gap_s": 0, "duration_s": 1}, "turn_gap_s"),
        ({"mode": "closed", "concurrency": 2, "duration_s": 1, "warmup_requests": -1}, "warmup_requests"),
        ({"mode": "closed", "concurrency": 2, "duration_s": 1, "drain_timeout_s": -1}, "drain_timeout_s"),
        ({"mode": "sideways", "duration_s": 1}, "mode"),
    ],
)
def test_bad_specs_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        SessionStepSpec(**fields)
