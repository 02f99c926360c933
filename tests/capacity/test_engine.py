"""The capacity search's pure parts: Wilson intervals, the judge's counts and verdicts, saturation signs, and
the ramp/bisect decisions against an oracle with a known capacity."""

import math

import numpy as np
import pytest

from apps.capacity.engine import search as engine
from apps.capacity.engine.judge import FAIL, PASS, UNDECIDED, Tally, judge, min_requests, tally, wilson
from apps.capacity.engine.saturation import saturation_signals
from apps.capacity.engine.slo import SloInvalid, describe_slo, validate_slo
from apps.hardware.stats import SampleColumns

P95_TTFT = {"objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": 500}], "max_error_rate": 0.01,
            "attainment": None, "confidence": 0.95}  # fmt: skip


def columns(ttft, *, e2e=None, out=None, errors=0, gaps=None, start=None) -> SampleColumns:
    """Successful requests with these TTFTs (ms), then `errors` failed ones."""
    n = len(ttft)
    e2e = e2e if e2e is not None else [t + 100 for t in ttft]
    out = out if out is not None else [11] * n
    start = start if start is not None else list(np.arange(n + errors) * 10.0)
    rows = [("", ttft[i], e2e[i], 10, out[i], None, None if gaps is None else np.array(gaps[i]), start[i])
            for i in range(n)]  # fmt: skip
    rows += [("http_500", None, None, 10, None, None, None, start[n + j]) for j in range(errors)]
    return SampleColumns.from_rows(rows)


def test_wilson_matches_the_published_interval():
    low, high = wilson(95, 100, 0.95)
    assert math.isclose(low, 0.8882, abs_tol=2e-4) and math.isclose(high, 0.9785, abs_tol=2e-4)
    assert wilson(0, 0, 0.95) == (0.0, 1.0)
    low, high = wilson(0, 50, 0.95)
    assert low < 1e-12 and 0 < high < 0.1


def test_the_fewest_requests_can_show_a_share_met_and_one_fewer_all_met_cannot_by_much():
    n = min_requests(P95_TTFT)
    assert wilson(n, n, 0.95)[0] >= 0.95  # all met: a pass
    assert wilson(72, 72, 0.95)[0] < 0.95  # z²·p/(1−p) = 73: below it even a clean record cannot pass
    p99 = {**P95_TTFT, "objectives": [{"metric": "ttft_ms", "percentile": 99, "max_ms": 500}]}
    assert min_requests(p99) > 4 * n


def test_a_latency_objective_passes_fails_or_stays_undecided_on_its_interval():
    fast = tally(columns([100.0] * 200), P95_TTFT)
    assert fast.met["p95_ttft_ms"] == (200, 200)
    assert judge(fast, P95_TTFT)[0] == PASS
    slow = tally(columns([100.0] * 150 + [900.0] * 50), P95_TTFT)
    assert judge(slow, P95_TTFT)[0] == FAIL  # 75% met, far below 95%
    borderline = tally(columns([100.0] * 95 + [900.0] * 5), P95_TTFT)
    verdict, rows = judge(borderline, P95_TTFT)
    assert verdict == UNDECIDED and rows[0].low < 0.95 < rows[0].high
    # More trials of the same level narrow the interval: pooled, the same share is still undecided only
    # while the interval straddles the target.
    pooled = borderline + borderline + borderline
    assert pooled.met["p95_ttft_ms"] == (285, 300)


def test_failed_requests_stay_out_of_latency_shares_and_count_in_the_error_budget():
    counts = tally(columns([100.0] * 100, errors=10), P95_TTFT)
    assert counts.met["p95_ttft_ms"] == (100, 100) and counts.errors == 10 and counts.requests == 110
    verdict, rows = judge(counts, P95_TTFT)
    errors = next(r for r in rows if r.key == "errors")
    assert errors.verdict == FAIL and errors.low > 0.01 and verdict == FAIL


def test_the_error_budget_fails_only_on_evidence_and_a_zero_budget_on_any_error():
    one_in_200 = tally(columns([100.0] * 199, errors=1), P95_TTFT)
    assert next(r for r in judge(one_in_200, P95_TTFT)[1] if r.key == "errors").verdict == PASS
    strict = {**P95_TTFT, "max_error_rate": 0.0}
    assert judge(one_in_200, strict)[0] == FAIL


def test_attainment_counts_failed_requests_as_misses_and_needs_every_threshold():
    slo = validate_slo({"objectives": [{"metric": "ttft_ms", "percentile": 50, "max_ms": 500},
                                       {"metric": "e2e_ms", "percentile": 50, "max_ms": 1000}],
                        "attainment": 0.9, "max_error_rate": 0.5})  # fmt: skip
    ttft = [100.0] * 80 + [600.0] * 10 + [100.0] * 10
    e2e = [200.0] * 80 + [700.0] * 10 + [2000.0] * 10  # 10 miss TTFT, 10 others miss E2E only
    counts = tally(columns(ttft, e2e=e2e, errors=5), slo)
    assert counts.met["attainment"] == (80, 105)


def test_tpot_leaves_out_one_token_answers_and_itl_pools_gaps_over_requests():
    slo = validate_slo({"objectives": [{"metric": "tpot_ms", "percentile": 90, "max_ms": 20},
                                       {"metric": "itl_ms", "percentile": 90, "max_ms": 20}]})  # fmt: skip
    gaps = [[10.0] * 10] * 50 + [[10.0] * 5 + [50.0] * 5] * 50  # half the gaps of half the requests are slow
    counts = tally(columns([50.0] * 100, e2e=[150.0] * 50 + [350.0] * 50, gaps=gaps), slo)
    assert counts.met["p90_tpot_ms"] == (50, 100)  # (350 − 50) / 10 = 30 ms per token misses
    assert counts.met["p90_itl_ms"] == (75, 100)  # 75% of the gaps, counted over 100 requests
    single = tally(columns([50.0] * 10, e2e=[60.0] * 10, out=[1] * 10), slo)
    assert single.met["p90_tpot_ms"] == (0, 0)


def test_tallies_round_trip_and_add():
    a = Tally(10, 1, {"k": (8, 9)})
    assert Tally.from_dict(a.as_dict()) == a
    assert (a + Tally(5, 0, {"k": (5, 5), "j": (1, 2)})).met == {"k": (13, 14), "j": (1, 2)}


def test_the_slo_is_validated_with_every_problem_named():
    with pytest.raises(SloInvalid) as caught:
        validate_slo({"objectives": [{"metric": "ttfx", "percentile": 96, "max_ms": -1}], "max_error_rate": 2,
                      "confidence": 0.5, "extra": 1})  # fmt: skip
    assert set(caught.value.errors) == {"slo", "objectives[0].metric", "objectives[0].percentile",
                                        "objectives[0].max_ms", "max_error_rate", "confidence"}  # fmt: skip
    with pytest.raises(SloInvalid):
        validate_slo({"objectives": []})
    normal = validate_slo({"objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": 500},
                                          {"metric": "tpot_ms", "percentile": 95, "max_ms": 50}]})  # fmt: skip
    assert describe_slo(normal) == "p95 TTFT ≤ 500 ms, p95 TPOT ≤ 50 ms, errors ≤ 1%"


def _open_loop(rate_rps: float, service_rps: float, n: int = 300, service_ms: float = 200.0) -> SampleColumns:
    """A FCFS server of one queue: requests sent at `rate_rps`, served at most `service_rps`."""
    start = np.arange(n) * 1000.0 / rate_rps
    free, ttft = 0.0, []
    for s in start:
        begin = max(s, free)
        free = begin + 1000.0 / service_rps
        ttft.append(begin - s + 20.0)
    return columns(ttft, e2e=[t + service_ms for t in ttft], start=list(start))


def test_a_server_keeping_up_shows_no_saturation_and_a_growing_queue_does():
    assert saturation_signals(_open_loop(10, 20), open_loop=True) == []
    reasons = saturation_signals(_open_loop(30, 20), open_loop=True)
    assert any("in flight kept growing" in r for r in reasons)
    assert any("time to first token rose" in r for r in reasons)


def _oracle(capacity: float):
    def verdict(level: float) -> str:
        return engine.PASS if level <= capacity else engine.FAIL

    return verdict


def _run(cfg: engine.SearchConfig, verdict) -> tuple[engine.Done, list[engine.Judged]]:
    probes: list[engine.Judged] = []
    while not isinstance(step := engine.next_step(cfg, probes), engine.Done):
        probes.append(engine.Judged(step.level, step.trial, step.phase, verdict(step.level)))
        assert len(probes) <= 100
    return step, probes


@pytest.mark.parametrize("capacity", [0.5, 3.3, 41.8, 300.0, 1000.0])
def test_the_search_brackets_a_known_capacity_within_the_tolerance(capacity):
    cfg = engine.SearchConfig(start=4, max_level=1024, tolerance=0.05, integer=False, max_probes=40)
    done, probes = _run(cfg, _oracle(capacity))
    assert done.reason == "bracket"
    assert done.low <= capacity < done.high
    assert (done.high - done.low) <= 0.05 * done.low
    assert len(probes) <= 14
    assert [p.phase for p in probes[:2]] == ["ramp", "ramp"]


def test_every_level_met_ends_at_the_maximum_and_none_met_ends_below_the_start():
    cfg = engine.SearchConfig(start=4, max_level=100, tolerance=0.05, integer=False)
    done, probes = _run(cfg, _oracle(1e9))
    assert (done.reason, done.low, done.high) == ("max_level", 100, None)
    assert [p.level for p in probes] == [4, 8, 16, 32, 64, 100]
    done, _ = _run(cfg, _oracle(0.0))
    assert done.reason == "below_start" and done.low is None


def test_concurrency_levels_are_whole_and_the_bracket_ends_at_neighbours():
    cfg = engine.SearchConfig(start=1, max_level=512, tolerance=0.01, integer=True)
    done, probes = _run(cfg, _oracle(37))
    assert all(p.level == int(p.level) for p in probes)
    assert (done.low, done.high) == (37, 38)


def test_planned_and_extra_trials_repeat_the_level_and_undecided_counts_as_missed():
    cfg = engine.SearchConfig(start=10, max_level=100, tolerance=0.05, integer=False, repetitions=2,
                              max_extra_trials=1)  # fmt: skip
    first = engine.Judged(10, 0, "ramp", engine.trial_verdict(cfg, 1, engine.PASS, False))
    assert first.verdict == engine.MORE
    assert engine.next_step(cfg, [first]) == engine.Probe(10, 1, "ramp")
    assert engine.trial_verdict(cfg, 2, engine.UNDECIDED, False) == engine.MORE  # one extra trial left
    assert engine.next_step(cfg, [first, engine.Judged(10, 1, "ramp", engine.MORE)]) == engine.Probe(10, 2, "extend")
    assert engine.trial_verdict(cfg, 3, engine.UNDECIDED, False) == engine.UNDECIDED
    probes = [engine.Judged(10, 0, "ramp", engine.PASS), engine.Judged(20, 0, "ramp", engine.UNDECIDED)]
    assert engine.next_step(cfg, probes) == engine.Probe(15, 0, "bisect")


def test_a_client_limited_level_stops_the_search_and_the_budget_too():
    cfg = engine.SearchConfig(start=10, max_level=1000, tolerance=0.05, integer=False, max_probes=3)
    assert engine.trial_verdict(cfg, 1, engine.PASS, True) == engine.MORE  # tried again first
    probes = [engine.Judged(10, 0, "ramp", engine.PASS), engine.Judged(20, 0, "ramp", engine.CLIENT)]
    assert engine.next_step(cfg, probes).reason == "client"
    probes = [engine.Judged(level, 0, "ramp", engine.PASS) for level in (10, 20, 40)]
    done = engine.next_step(cfg, probes)
    assert (done.reason, done.low, done.high) == ("budget", 40, None)


def test_a_pass_above_a_miss_is_reported_and_the_lowest_miss_bounds_the_bracket():
    probes = [engine.Judged(10, 0, "ramp", engine.PASS), engine.Judged(20, 0, "ramp", engine.FAIL),
              engine.Judged(15, 0, "bisect", engine.FAIL), engine.Judged(12.5, 0, "bisect", engine.PASS)]  # fmt: skip
    probes.append(engine.Judged(30, 0, "ramp", engine.PASS))
    low, high, above = engine.bracket(engine.level_verdicts(probes))
    assert (low, high, above) == (12.5, 15, (30,))


def test_a_throughput_plateau_marks_closed_loop_saturation():
    assert engine.plateau(16, 105.0, [(4, 50.0), (8, 100.0)]) != ""
    assert engine.plateau(16, 180.0, [(4, 50.0), (8, 100.0)]) == ""
    assert engine.plateau(16, None, [(8, 100.0)]) == ""
    assert math.isclose(wilson(1, 1, 0.95)[1], 1.0)
