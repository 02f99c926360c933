"""The workload preview: histograms, turns, prefix share, trace span and warnings, on plans with known answers."""

import json
import time

import numpy as np
import pytest

from apps.workloads.engine.plan import PlannedSession, PlannedTurn, RequestPlan, build_plan
from apps.workloads.engine.preview import ESTIMATED_WARNING, MULTI_TURN_WARNING, preview
from apps.workloads.engine.spec import normalize, validate_spec
from apps.workloads.formats.traces import parse_llmbench_trace
from tests.workloads.files import llmbench_trace


def _spec(**fields) -> dict:
    assert validate_spec(fields) == []
    return normalize(fields)


def _plan(sessions: list[PlannedSession], **kwargs) -> RequestPlan:
    options = {"length_basis": "tokenizer", "model": "m", "request_options": {"endpoint": "chat"}} | kwargs
    return RequestPlan(sessions, multi_turn=any(len(s.turns) > 1 for s in sessions), **options)


def test_fixed_lengths_give_one_bin_and_exact_figures(test_counter):
    """Fixed input and output lengths: one histogram bin holding every request, mean = p50 = p99 = the value."""
    spec = _spec(
        source="synthetic",
        input_tokens={"dist": "fixed", "value": 120},
        output_tokens={"dist": "fixed", "value": 30},
    )
    plan = build_plan(spec, count=80, model="m", counter=test_counter)
    result = preview(plan, test_counter)
    assert (result["requests"], result["sessions"], result["sampled_sessions"]) == (80, 80, 80)
    assert result["turns"] == {"mean": 1.0, "max": 1}
    assert result["input_tokens"]["histogram"]["counts"] == [80]
    assert result["input_tokens"]["histogram"]["edges"] == [120, 121]  # whole tokens: [120, 121)
    assert (result["input_tokens"]["mean"], result["input_tokens"]["p50"], result["input_tokens"]["p99"]) == (
        120.0,
        120.0,
        120.0,
    )
    assert result["output_tokens"]["histogram"]["counts"] == [80] and result["output_tokens"]["mean"] == 30.0
    assert result["prefix_share"] < 0.03  # distinct openings: at most the "Request" tag's first tokens are shared
    assert result["basis"] == "tokens" and result["length_basis"] == "tokenizer"
    assert result["warnings"] == [] and "trace" not in result
    json.dumps(result)  # JSON-able as it is


def test_histograms_have_at_most_30_bins_and_count_every_request(test_counter):
    """A wide distribution is binned into ≤ 30 bins whose counts add up to the sampled requests."""
    spec = _spec(
        source="synthetic",
        input_tokens={"dist": "uniform", "min": 1, "max": 2000},
        output_tokens={"dist": "uniform", "min": 1, "max": 500},
    )
    plan = build_plan(spec, count=300, model="m", counter=test_counter)
    result = preview(plan, test_counter, sample=200)
    for key in ("input_tokens", "output_tokens"):
        histogram = result[key]["histogram"]
        assert len(histogram["counts"]) == 30 and len(histogram["edges"]) == 31 and sum(histogram["counts"]) == 200
    expected = [s.turns[0].requested_input_tokens for s in plan.sessions[:200]]
    assert result["input_tokens"]["p50"] == pytest.approx(float(np.percentile(expected, 50)))
    assert result["sampled_sessions"] == 200 and result["requests"] == 300


def test_prefix_share_by_characters_on_a_hand_made_plan():
    """Without a tokenizer the share is measured on bytes: "abcd", "abXY", "zzzz", "abcdQQ" share 0, 2, 0 and 4."""
    texts = ["abcd", "abXY", "zzzz", "abcdQQ"]
    plan = _plan(
        [PlannedSession(i, None, [PlannedTurn(text, 5, None, 0.0)]) for i, text in enumerate(texts)],
        length_basis="estimated",
    )
    result = preview(plan, None)
    assert result["prefix_share"] == pytest.approx((0 + 2 + 0 + 4) / 18)
    assert result["basis"] == "characters"
    assert result["input_tokens"]["mean"] == pytest.approx((1 + 1 + 1 + 2) / 4)  # ceil(chars / 4)
    assert ESTIMATED_WARNING in result["warnings"]


def test_prefix_share_by_tokens_with_a_shared_system_prompt(test_counter):
    """Every request after the first repeats the 100-token system prefix: the share is about 99/100 · 100/150."""
    spec = _spec(
        source="synthetic",
        input_tokens={"dist": "fixed", "value": 50},
        output_tokens={"dist": "fixed", "value": 10},
        prefix={"buckets": [{"weight": 1, "count": 1, "tokens": 100}], "placement": "system"},
    )
    plan = build_plan(spec, count=100, model="m", counter=test_counter)
    result = preview(plan, test_counter)
    assert result["input_tokens"]["mean"] == 150.0
    assert result["prefix_share"] == pytest.approx(99 / 100 * 100 / 150, abs=0.02)


def test_multi_turn_inputs_assume_responses_of_max_tokens_and_say_so():
    """Turn inputs grow by the previous response (its max_tokens) and the new message; a later turn shares its
    previous request: inputs 10, 16, 24 and share (10 + 16) / 50."""
    turns = [
        PlannedTurn("first", 5, 10, 0.0),
        PlannedTurn("abcd", 6, None, 1.0),  # 1 token by chars / 4
        PlannedTurn("abcdefgh", 7, None, 1.0),  # 2 tokens
    ]
    plan = _plan([PlannedSession(0, "sys", turns)], length_basis="calibrated")
    result = preview(plan, None)
    assert result["requests"] == 3 and result["turns"] == {"mean": 3.0, "max": 3}
    assert result["input_tokens"]["mean"] == pytest.approx(50 / 3)
    histogram = result["input_tokens"]["histogram"]  # one-token bins from 10 to 24
    assert histogram["edges"][0] == 10 and histogram["edges"][-1] == 25 and sum(histogram["counts"]) == 3
    assert [histogram["edges"][i] for i, c in enumerate(histogram["counts"]) if c] == [10, 16, 24]
    assert result["output_tokens"]["mean"] == 6.0
    assert result["prefix_share"] == pytest.approx(26 / 50)
    assert result["warnings"] == [MULTI_TURN_WARNING]


def test_trace_preview_has_the_span_and_rate_after_speedup():
    """A trace preview gives the replayed span (last offset) and requests per second over it; skips and notes
    come through from the plan."""
    rows = [{"timestamp_ms": t, "input_tokens": 20, "output_tokens": 4} for t in (0, 1000, 2000, 3000, 4000, 60000)]
    dataset = parse_llmbench_trace(llmbench_trace(rows))
    spec = _spec(source="trace", trace={"speedup": 2, "window_end_s": 10})
    result = preview(build_plan(spec, count=100, model="m", dataset=dataset), None)
    assert result["trace"] == {"duration_s": 2.0, "mean_rate_rps": 2.5}
    assert result["skipped"] == {"outside_window": 1}
    assert result["requests"] == 5


def test_preview_of_500_long_requests_is_fast(test_counter):
    """500 requests of ~1,000 tokens with a tokenizer preview in well under a second."""
    spec = _spec(
        source="synthetic",
        input_tokens={"dist": "uniform", "min": 500, "max": 1500},
        output_tokens={"dist": "fixed", "value": 64},
        prefix={"buckets": [{"weight": 1, "count": 4, "tokens": 256}]},
    )
    plan = build_plan(spec, count=500, model="m", counter=test_counter)
    started = time.perf_counter()
    result = preview(plan, test_counter)
    elapsed = time.perf_counter() - started
    assert result["requests"] == 500 and 0.1 < result["prefix_share"] < 0.3
    assert elapsed < 0.5, f"{elapsed:.3f} s"
    started = time.perf_counter()
    preview(plan, None)
    assert time.perf_counter() - started < 0.5
