"""The mock's capacity model (issue 14): a FCFS queue past max_batch, a shared token budget, the
closed-form capacity checked against load driven through the product's loadgen, vLLM-named
Prometheus metrics, several worker processes on one port, and the command's new flags. The mock
runs in the test's own event loop on a free port, except for the worker test (a real manage.py)."""

import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from django.core.management import call_command
from django.core.management.base import CommandError
from prometheus_client.parser import text_string_to_metric_families

from apps.providers.engine.adapters import adapter_for
from apps.providers.engine.loadgen import StepSpec, run_step
from apps.providers.engine.types import EndpointConfig, GenerationRequest, Kind
from apps.providers.management.commands.mockllm import Command, profile_from_options, workers_from_options
from apps.providers.mockllm import (
    E2E_BUCKETS_S,
    TPOT_BUCKETS_S,
    TTFT_BUCKETS_S,
    MockProfile,
    known_capacity_rps,
    make_app,
    received_requests,
)
from apps.providers.mockllm import run as run_workers
from tests.providers.virtual_time import LATE_OK_MS

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}
ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def serving(profile: MockProfile, **runner_options):
    """`profile` on a free local port: yields (session, base URL with /v1, the app)."""
    app = make_app(profile)
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            yield session, f"http://127.0.0.1:{runner.addresses[0][1]}/v1", app
    finally:
        await runner.cleanup()


def run(profile: MockProfile, scenario):
    async def main():
        async with serving(profile) as (session, base, _):
            return await scenario(session, base)

    return asyncio.run(main())


async def stream(session, base, body=None, path="chat/completions") -> tuple[float, list[dict]]:
    """(send time, every data chunk but [DONE]) of one streamed request."""
    sent = time.monotonic()
    async with session.post(f"{base}/{path}", json={**(body or CHAT), "stream": True}) as response:
        assert response.status == 200
        text = (await response.read()).decode()
    events = [e[6:] for e in text.split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return sent, [json.loads(e) for e in events[:-1]]


def token_stamps(chunks: list[dict]) -> list[float]:
    """Send stamps of the token-bearing chunks (answer or reasoning)."""
    stamps = []
    for chunk in chunks:
        choice = chunk["choices"][0] if chunk["choices"] else {}
        delta = choice.get("delta", {})
        if delta.get("content") or delta.get("reasoning_content") or choice.get("text"):
            stamps.append(chunk["llmbench_sent_at"])
    return stamps


async def scrape(session, base) -> dict:
    """/metrics parsed: {sample name: {labels (sorted tuple): value}}."""
    async with session.get(base.removesuffix("/v1") + "/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    samples: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples[name][tuple(sorted({"model_name": "mock", **labels}.items()))]


async def until(condition, timeout_s: float = 5.0) -> None:
    """Wait for `condition()` (a coroutine function) to hold."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class TestClosedForm:
    """known_capacity_rps against numbers worked out by hand (docs/mockllm-capacity.md)."""

    BASE = {"ttft_ms": 20.0, "itl_ms": 5.0}

    def test_nothing_limits_a_mock_without_capacity(self):
        assert known_capacity_rps(MockProfile(**self.BASE), output_tokens=40, tpot_max_ms=8) == math.inf

    def test_budget_alone_saturates_at_budget_over_decode_tokens(self):
        # λ < T/(n−1) = 2000/39
        assert known_capacity_rps(MockProfile(**self.BASE, token_budget_per_s=2000), output_tokens=40) == pytest.approx(
            2000 / 39
        )

    def test_batch_alone_is_batch_over_service_time(self):
        # s = 20 ms + 39 × 5 ms = 215 ms: 4 slots serve 4 / 0.215 = 18.60 requests/s
        profile = MockProfile(**self.BASE, max_batch=4)
        assert known_capacity_rps(profile, output_tokens=40) == pytest.approx(18.6047, abs=1e-4)

    def test_batch_and_budget_take_the_slower_gap_at_full_batch(self):
        # At N = 20 the gap is max(5 ms, 20/2000 s = 10 ms): s = 0.02 + 39 × 0.01 = 0.41 s, λ = 48.78
        profile = MockProfile(**self.BASE, max_batch=20, token_budget_per_s=2000)
        assert known_capacity_rps(profile, output_tokens=40) == pytest.approx(20 / 0.41)

    def test_a_tpot_threshold_binds_before_saturation(self):
        # TPOT ≤ 8 ms ⟺ N ≤ 0.008 × 2000 = 16 ⟺ λ ≤ 16 / (0.02 + 39 × 0.008) = 48.19 < 48.78
        profile = MockProfile(**self.BASE, max_batch=20, token_budget_per_s=2000)
        assert known_capacity_rps(profile, output_tokens=40, tpot_max_ms=8) == pytest.approx(16 / 0.332)
        assert known_capacity_rps(profile, output_tokens=40, tpot_max_ms=12) == pytest.approx(20 / 0.41)

    def test_thresholds_below_the_baseline_are_never_met(self):
        profile = MockProfile(**self.BASE, max_batch=20, token_budget_per_s=2000)
        assert known_capacity_rps(profile, output_tokens=40, tpot_max_ms=4.9) == 0.0
        assert known_capacity_rps(profile, output_tokens=40, ttft_max_ms=19.9) == 0.0
        assert known_capacity_rps(profile, output_tokens=40, ttft_max_ms=20) == pytest.approx(20 / 0.41)

    def test_prefill_and_chunks_enter_the_service_time(self):
        # t0 = 20 ms + 200 tokens × 100 µs = 40 ms; 4 tokens a chunk leaves 36 tokens after the first chunk.
        profile = MockProfile(**self.BASE, max_batch=4, per_prompt_token_us=100, tokens_per_chunk=4)
        assert known_capacity_rps(profile, output_tokens=40, prompt_tokens=200) == pytest.approx(
            4 / (0.04 + 36 * 0.005)
        )

    def test_a_one_token_answer_is_bound_by_ttft_only(self):
        profile = MockProfile(**self.BASE, max_batch=2, token_budget_per_s=10)
        assert known_capacity_rps(profile, output_tokens=1, tpot_max_ms=1) == pytest.approx(2 / 0.02)


def over_step(profile: MockProfile, rate_rps: float, *, output_tokens: int, duration_s: float):
    """Drive the mock at a constant rate through loadgen.run_step and the OpenAI adapter: the per-request
    TTFT and TPOT (ms) of the successful requests, and the mock's /metrics at the end."""

    async def main():
        async with serving(profile) as (session, base, _):
            adapter = adapter_for(EndpointConfig(kind=Kind.OPENAI_COMPATIBLE, base_url=base))
            request = GenerationRequest(
                model="mock", messages=[{"role": "user", "content": "hi"}], max_tokens=output_tokens, ignore_eos=True
            )
            spec = StepSpec(mode="open", rate_rps=rate_rps, duration_s=duration_s)
            outcome = await run_step(spec, lambda _index: adapter.generate(session, request))
            return outcome, await scrape(session, base)

    outcome, samples = asyncio.run(main())
    ok = [r for r in outcome.results if r.ok]
    assert len(ok) == len(outcome.results) >= rate_rps * duration_s * 0.9
    assert {r.output_tokens for r in ok} == {output_tokens}
    ttft = np.array([r.ttft_ms for r in ok])
    tpot = np.array([(r.e2e_ms - r.ttft_ms) / (r.output_tokens - 1) for r in ok])
    return ttft, tpot, samples


def server_ttft_over(samples: dict, bound_s: float) -> float:
    """How many first tokens the server sent later than `bound_s` after arrival (a vLLM bucket bound)."""
    within = value(samples, "vllm:time_to_first_token_seconds_bucket", le=f"{bound_s:g}")
    return value(samples, "vllm:time_to_first_token_seconds_count") - within


class TestKnownCapacity:
    """10 % under the closed form every request meets the thresholds; 10 % over, p95 does not."""

    def test_a_tpot_bound_capacity(self):
        """T = 2000 tok/s, 40 tokens, ITL 5 ms, TTFT 20 ms, TPOT ≤ 8 ms: 48.19 requests/s."""
        profile = MockProfile(ttft_ms=20, itl_ms=5, token_budget_per_s=2000)
        capacity = known_capacity_rps(profile, output_tokens=40, tpot_max_ms=8)
        assert capacity == pytest.approx(48.19, abs=0.01)
        _, tpot, _ = over_step(profile, 0.9 * capacity, output_tokens=40, duration_s=2.5)
        # Under it the running count stays at or below ITL × budget = 10: no token waits for the budget.
        assert np.percentile(tpot, 95) <= 8
        assert np.percentile(tpot, 50) == pytest.approx(5, abs=0.5)
        _, tpot, _ = over_step(profile, 1.1 * capacity, output_tokens=40, duration_s=2.5)
        assert np.percentile(tpot, 95) > 8

    def test_a_batch_bound_capacity_queues_into_ttft(self):
        """4 slots, each request 20 + 39 × 5 = 215 ms, TTFT ≤ 100 ms: 18.60 requests/s."""
        profile = MockProfile(ttft_ms=20, itl_ms=5, max_batch=4)
        capacity = known_capacity_rps(profile, output_tokens=40, ttft_max_ms=100)
        assert capacity == pytest.approx(18.60, abs=0.01)
        ttft, tpot, samples = over_step(profile, 0.9 * capacity, output_tokens=40, duration_s=2.5)
        assert np.percentile(ttft, 95) <= 100
        assert server_ttft_over(samples, 0.25) == 0  # nobody queued (a 230 ms margin for a busy machine)
        ttft, tpot, samples = over_step(profile, 1.1 * capacity, output_tokens=40, duration_s=2.5)
        # The queue grows by 10 % of the rate: the wait, and so TTFT, grows through the step ...
        assert np.percentile(ttft, 95) > 100
        assert server_ttft_over(samples, 0.1) >= 10  # ... on the server's clock too: the wait is TTFT
        # ... while a running request's tokens keep their pace.
        assert np.percentile(tpot, 95) < 8


class TestCapacityTiming:
    def test_a_request_past_max_batch_waits_for_a_slot(self):
        """One slot: the second request's first token comes TTFT after the first one's last token."""

        async def scenario(session, base):
            return await asyncio.gather(stream(session, base), stream(session, base))

        profile = MockProfile(ttft_ms=20, itl_ms=10, output_tokens=4, max_batch=1)
        (sent_a, a), (sent_b, b) = run(profile, scenario)
        first, second = sorted([token_stamps(a), token_stamps(b)])
        sent = min(sent_a, sent_b)
        assert 50 <= (first[-1] - sent) * 1000 < 50 + LATE_OK_MS
        # Admitted when the slot was freed (after the first one's last send), then a full TTFT and ITLs.
        for k, stamp in enumerate(second):
            assert stamp >= first[-1] + 0.020 + 0.010 * k
        assert (second[-1] - sent) * 1000 < 100 + LATE_OK_MS

    def test_the_queue_is_first_come_first_served(self):
        async def main():
            async with serving(MockProfile(ttft_ms=10, itl_ms=5, output_tokens=3, max_batch=1)) as (session, base, app):
                tasks = []
                for index in range(4):
                    body = {"model": "m", "messages": [{"role": "user", "content": f"request {index}"}]}
                    tasks.append(asyncio.create_task(stream(session, base, body)))

                    async def arrived(count=index + 1):
                        return len(received_requests(app)) == count

                    await until(arrived)  # the arrival order under test
                return await asyncio.gather(*tasks)

        results = asyncio.run(main())
        firsts = [token_stamps(chunks)[0] for _, chunks in results]
        assert firsts == sorted(firsts)
        lasts = [token_stamps(chunks)[-1] for _, chunks in results]
        assert all(first >= last + 0.010 for first, last in zip(firsts[1:], lasts, strict=False))

    def test_running_requests_share_the_token_budget(self):
        """Two streams under a 100 tokens/s budget: while both run each gap is 2/100 s, not the 1 ms ITL."""

        profile = MockProfile(ttft_ms=50, itl_ms=1, output_tokens=6, token_budget_per_s=100)

        async def main():
            async with serving(profile) as (session, base, app):
                streams = await asyncio.gather(stream(session, base), stream(session, base))
                return streams, [entry["received"] for entry in received_requests(app)]

        streams, arrivals = asyncio.run(main())
        # The second arrived within the first one's TTFT, and it ends later: the first one's every gap
        # is scheduled with two running, so its tokens are due at arrival + 50 + 20·k ms.
        assert arrivals[1] - arrivals[0] < 0.050
        first = min((token_stamps(chunks) for _, chunks in streams), key=lambda stamps: stamps[0])
        assert len(first) == 6
        for k, stamp in enumerate(first):
            assert stamp >= arrivals[0] + 0.050 + 0.020 * k
        assert (first[-1] - arrivals[0]) * 1000 < 150 + LATE_OK_MS

    def test_a_lone_request_is_bound_by_itl_not_the_budget(self):
        async def scenario(session, base):
            return await stream(session, base)

        profile = MockProfile(ttft_ms=5, itl_ms=10, output_tokens=5, token_budget_per_s=1000)
        sent, chunks = run(profile, scenario)
        stamps = token_stamps(chunks)
        assert all(stamp >= sent + 0.005 + 0.010 * k for k, stamp in enumerate(stamps))
        assert (stamps[-1] - sent) * 1000 < 45 + LATE_OK_MS

    def test_a_whole_answer_is_timed_like_a_stream(self):
        async def scenario(session, base):
            async def whole():
                sent = time.monotonic()
                async with session.post(f"{base}/chat/completions", json=CHAT) as response:
                    return (time.monotonic() - sent) * 1000, await response.json()

            return await asyncio.gather(whole(), whole())

        profile = MockProfile(ttft_ms=5, itl_ms=1, output_tokens=6, token_budget_per_s=100, max_batch=1)
        (first_ms, first), (second_ms, second) = sorted(run(profile, scenario), key=lambda pair: pair[0])
        assert first["usage"]["completion_tokens"] == second["usage"]["completion_tokens"] == 6
        # Alone in the one slot: 5 ms + 5 gaps of max(1 ms, 1/100 s); the second waits for all of it.
        assert 55 <= first_ms < 55 + LATE_OK_MS
        assert 110 <= second_ms < 110 + LATE_OK_MS

    def test_chunking_jitter_reasoning_and_cache_keep_working(self):
        """Capacity on: a chunk of k tokens waits k gaps, jitter never reorders, reasoning deltas come first
        and count, a repeated prompt is served from the prefix cache."""

        async def scenario(session, base):
            options = {"include_usage": True, "continuous_usage_stats": True}
            body = {"model": "m", "messages": [{"role": "user", "content": "x" * 256}], "stream_options": options}
            first = await stream(session, base, body)
            again = await stream(session, base, body)
            return first, again

        profile = MockProfile(
            ttft_ms=5, itl_ms=2, output_tokens=6, tokens_per_chunk=2, jitter_ms=1, reasoning_tokens=2,
            prefix_cache=True, token_budget_per_s=1000, max_batch=2,
        )  # fmt: skip
        (sent, first), (_, again) = run(profile, scenario)
        deltas = [c["choices"][0]["delta"] for c in first if c["choices"]]
        assert deltas[0] == {"role": "assistant", "reasoning_content": "hmm hmm "}
        assert [d.get("content") for d in deltas[1:4]] == ["tok tok "] * 3
        assert [c["usage"]["completion_tokens"] for c in first if c["choices"]][:4] == [2, 4, 6, 8]
        assert first[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2}
        stamps = token_stamps(first)
        assert stamps == sorted(stamps)
        # The last chunk is due after TTFT and 3 chunks of 2 tokens × max(2 ms, 1/1000 s), ± 1 ms of jitter.
        assert (stamps[-1] - sent) * 1000 >= 5 + 3 * 2 * 2 - 1
        assert first[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
        assert again[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 64}

    def test_errors_take_no_slot_and_cut_streams_give_theirs_back(self):
        async def scenario(session, base):
            statuses = []
            for _ in range(3):  # one slot: a cut stream that kept it would block the next one for good
                with contextlib.suppress(aiohttp.ClientPayloadError):
                    async with session.post(f"{base}/chat/completions", json={**CHAT, "stream": True}) as response:
                        statuses.append(response.status)
                        await response.read()
            return statuses, await scrape(session, base)

        statuses, samples = run(MockProfile(ttft_ms=1, itl_ms=1, output_tokens=4, cut_rate=1, max_batch=1), scenario)
        assert statuses == [200] * 3
        assert value(samples, "vllm:num_requests_running") == 0
        assert value(samples, "vllm:request_success_total", finished_reason="stop") == 0
        assert value(samples, "vllm:generation_tokens_total") == 3 * 2  # cut half-way
        statuses, samples = run(MockProfile(error_rate=1, max_batch=1, token_budget_per_s=10), scenario)
        assert statuses == [500] * 3
        assert value(samples, "vllm:num_requests_running") == 0

    def test_errors_keep_their_seeded_sequence_with_capacity_on(self):
        async def statuses(session, base):
            result = []
            for _ in range(30):
                async with session.post(f"{base}/chat/completions", json=CHAT) as response:
                    await response.read()
                    result.append(response.status)
            return result

        common = {"error_rate": 0.5, "ttft_ms": 0, "itl_ms": 0, "output_tokens": 2, "seed": 3, "jitter_ms": 1}
        plain = run(MockProfile(**common), statuses)
        assert run(MockProfile(**common, max_batch=1, token_budget_per_s=1e6), statuses) == plain
        assert set(plain) == {200, 500}


class TestMetrics:
    def test_counters_and_histograms_after_some_requests(self):
        async def scenario(session, base):
            for _ in range(3):
                await stream(session, base)
            async with session.post(f"{base}/chat/completions", json={**CHAT, "max_tokens": 2}) as response:
                await response.read()
            return await scrape(session, base)

        samples = run(MockProfile(ttft_ms=30, itl_ms=2, output_tokens=5), scenario)
        assert value(samples, "vllm:prompt_tokens_total") == 4 * 3  # "hello there": 3 tokens each
        assert value(samples, "vllm:generation_tokens_total") == 3 * 5 + 2
        assert value(samples, "vllm:request_success_total", finished_reason="stop") == 3
        assert value(samples, "vllm:request_success_total", finished_reason="length") == 1
        assert value(samples, "vllm:num_requests_running") == 0
        assert value(samples, "vllm:num_requests_waiting") == 0
        assert value(samples, "vllm:gpu_cache_usage_perc") == 0
        assert "vllm:prefix_cache_queries_total" not in samples  # only with the prefix cache on
        # TTFT from arrival to the first send: ≥ 30 ms, so none in the buckets up to 20 ms.
        assert value(samples, "vllm:time_to_first_token_seconds_count") == 4
        assert value(samples, "vllm:time_to_first_token_seconds_bucket", le="0.02") == 0
        assert value(samples, "vllm:time_to_first_token_seconds_bucket", le="+Inf") == 4
        assert value(samples, "vllm:time_to_first_token_seconds_sum") >= 4 * 0.030
        # One observation per token after the first: 3 × 4 + 1.
        assert value(samples, "vllm:time_per_output_token_seconds_count") == 13
        assert (
            0
            < value(samples, "vllm:time_per_output_token_seconds_sum")
            < value(samples, "vllm:e2e_request_latency_seconds_sum")
        )
        assert value(samples, "vllm:e2e_request_latency_seconds_count") == 4

    def test_buckets_are_vllms(self):
        samples = run(MockProfile(), scrape)
        for name, bounds in (
            ("vllm:time_to_first_token_seconds", TTFT_BUCKETS_S),
            ("vllm:time_per_output_token_seconds", TPOT_BUCKETS_S),
            ("vllm:e2e_request_latency_seconds", E2E_BUCKETS_S),
        ):
            found = [dict(labels)["le"] for labels in samples[f"{name}_bucket"]]
            assert [float(le) for le in found] == [*bounds, math.inf]
        assert TTFT_BUCKETS_S[:4] == (0.001, 0.005, 0.01, 0.02) and E2E_BUCKETS_S[-1] == 7680.0
        assert TPOT_BUCKETS_S[:3] == (0.01, 0.025, 0.05)

    def test_queue_running_and_cache_usage_while_requests_are_held(self):
        """Three requests, one slot: one runs, two wait; the running one holds its prompt and tokens so far."""

        async def scenario(session, base):
            tasks = [asyncio.create_task(stream(session, base)) for _ in range(3)]

            async def held():
                samples = await scrape(session, base)
                return value(samples, "vllm:num_requests_waiting") == 2 and value(
                    samples, "vllm:gpu_cache_usage_perc"
                ) == pytest.approx((3 + 1) / 100)

            await until(held)
            during = await scrape(session, base)
            await asyncio.gather(*tasks)
            return during, await scrape(session, base)

        # The running one holds 3 prompt tokens and its first output token for 300 ms.
        profile = MockProfile(ttft_ms=0, itl_ms=300, output_tokens=2, max_batch=1, kv_cache_tokens=100)
        during, after = run(profile, scenario)
        assert value(during, "vllm:num_requests_running") == 1
        assert value(after, "vllm:num_requests_waiting") == value(after, "vllm:num_requests_running") == 0
        assert value(after, "vllm:gpu_cache_usage_perc") == 0
        # The two that queued waited a whole request (≥ 300 ms) before their first token.
        assert server_ttft_over(after, 0.25) == 2

    def test_a_client_that_hangs_up_stops_running_within_the_check_interval(self):
        """Mid-TTFT (2 s), without handler cancellation: the stream notices at its next 50 ms check."""

        async def main():
            async with serving(MockProfile(ttft_ms=2000, output_tokens=3)) as (session, base, _):
                client = asyncio.create_task(stream(session, base))

                async def running(count):
                    return value(await scrape(session, base), "vllm:num_requests_running") == count

                await until(lambda: running(1))
                client.cancel()
                left = time.monotonic()
                await until(lambda: running(0))
                return time.monotonic() - left

        assert asyncio.run(main()) < 1.0

    def test_a_client_that_hangs_up_in_the_queue_leaves_it(self):
        """With handler cancellation (as manage.py serves): a queued request that lost its client leaves the
        queue at once, and the running one frees its slot."""

        async def main():
            profile = MockProfile(ttft_ms=5000, output_tokens=3, max_batch=1)
            async with serving(profile, handler_cancellation=True) as (session, base, _):
                clients = [asyncio.create_task(stream(session, base)) for _ in range(2)]

                async def counts(running, waiting):
                    samples = await scrape(session, base)
                    now_running = value(samples, "vllm:num_requests_running")
                    return (now_running, value(samples, "vllm:num_requests_waiting")) == (running, waiting)

                await until(lambda: counts(1, 1))
                for client in clients:
                    client.cancel()
                await until(lambda: counts(0, 0), timeout_s=2.0)  # long before the 5 s TTFT

        asyncio.run(main())

    def test_prefix_cache_counts_tokens(self):
        async def scenario(session, base):
            body = {"model": "m", "messages": [{"role": "user", "content": "y" * 200}]}
            for _ in range(2):
                async with session.post(f"{base}/chat/completions", json=body) as response:
                    await response.read()
            return await scrape(session, base)

        samples = run(MockProfile(ttft_ms=0, itl_ms=0, output_tokens=1, prefix_cache=True), scenario)
        assert value(samples, "vllm:prefix_cache_queries_total") == 2 * 50
        assert value(samples, "vllm:prefix_cache_hits_total") == 48  # 3 whole blocks of 64 characters

    def test_two_apps_in_one_process_keep_their_own_counters(self):
        async def main():
            async with serving(MockProfile(ttft_ms=0, itl_ms=0, output_tokens=3)) as (session, base, _):
                await stream(session, base)
                async with serving(MockProfile(ttft_ms=0, itl_ms=0, output_tokens=3)) as (other, other_base, _):
                    return await scrape(session, base), await scrape(other, other_base)

        mine, theirs = asyncio.run(main())
        assert value(mine, "vllm:generation_tokens_total") == 3
        assert value(theirs, "vllm:generation_tokens_total") == 0

    def test_the_model_name_labels_every_metric(self):
        samples = run(MockProfile(model="llama-3"), scrape)
        assert samples["vllm:num_requests_running"] == {(("model_name", "llama-3"),): 0.0}


def free_reusable_port() -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket that holds a free port for the workers to share."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    return holder


class TestWorkers:
    def test_two_workers_share_the_port_and_stop_on_sigterm(self):
        holder = free_reusable_port()
        port = holder.getsockname()[1]
        command = [sys.executable, "manage.py", "mockllm", "--workers", "2", "--port", str(port)]
        command += ["--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "1"]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            pids = asyncio.run(self.pids_answering(port, want=2))
            assert len(pids) == 2 and process.pid not in pids
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=20)
        finally:
            holder.close()
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, err.decode()
        assert b"2 workers" in out
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # reaped by the command, not left behind

    async def pids_answering(self, port: int, want: int, timeout_s: float = 30.0) -> set[int]:
        """The X-Mock-Pid of answers on fresh connections, until `want` distinct ones answered."""
        pids: set[int] = set()
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        while len(pids) < want:
            assert time.monotonic() < deadline, f"only {pids} answered"
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
                try:
                    async with session.post(url, json=CHAT) as response:
                        assert response.status == 200
                        pids.add(int(response.headers["X-Mock-Pid"]))
                except aiohttp.ClientConnectionError:  # not listening yet
                    await asyncio.sleep(0.05)
        return pids

    def test_a_worker_that_cannot_bind_stops_the_command(self):
        """The port is held by a listener without SO_REUSEPORT: both workers fail, run() says so."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(RuntimeError, match="worker exited with code 1"):
                run_workers("127.0.0.1", taken.getsockname()[1], MockProfile(), workers=2)

    def test_one_process_names_itself_too(self):
        async def scenario(session, base):
            async with session.get(f"{base}/models") as response:
                return response.headers["X-Mock-Pid"]

        assert run(MockProfile(), scenario) == str(os.getpid())


class TestCommand:
    def options(self, *argv: str) -> dict:
        return vars(Command().create_parser("manage.py", "mockllm").parse_args(list(argv)))

    def test_capacity_is_off_by_default(self):
        options = self.options()
        profile = profile_from_options(options)
        assert (profile.max_batch, profile.token_budget_per_s, profile.capacity_on) == (None, None, False)
        assert profile.kv_cache_tokens == 262_144 and workers_from_options(options) == 1

    def test_the_capacity_flags_map_to_the_profile(self):
        options = self.options(
            "--max-batch", "16", "--token-budget-per-s", "2500.5", "--kv-cache-tokens", "4096", "--workers", "3"
        )
        profile = profile_from_options(options)
        assert profile == MockProfile(max_batch=16, token_budget_per_s=2500.5, kv_cache_tokens=4096)
        assert profile.capacity_on and workers_from_options(options) == 3

    @pytest.mark.parametrize(
        ("argv", "flag"),
        [
            (("--max-batch", "0"), "--max-batch"),
            (("--token-budget-per-s", "0"), "--token-budget-per-s"),
            (("--token-budget-per-s", "-5"), "--token-budget-per-s"),
            (("--token-budget-per-s", "inf"), "--token-budget-per-s"),
            (("--token-budget-per-s", "nan"), "--token-budget-per-s"),
            (("--kv-cache-tokens", "0"), "--kv-cache-tokens"),
        ],
    )
    def test_bad_capacity_values_name_their_flag(self, argv, flag):
        with pytest.raises(CommandError, match=flag):
            profile_from_options(self.options(*argv))

    def test_zero_workers_are_refused_before_serving(self):
        with pytest.raises(CommandError, match="--workers"):
            call_command("mockllm", "--workers", "0")
