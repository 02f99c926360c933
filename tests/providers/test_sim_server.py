"""The simulated server's capacity: a batch limit with a queue and a shared token budget, so TTFT
and ITL grow and throughput saturates past capacity, as on a real server.

Most tests run on a virtual clock (tests/providers/virtual_time.py): exact and instant whatever
the machine's load. The real-clock tests assert generous ratios only."""

import asyncio
import statistics
import threading

import numpy as np
import pytest

from apps.providers.engine.adapters import adapter_for
from apps.providers.engine.loadgen import StepSpec, run_step
from apps.providers.engine.sim import SimAdapter, SimProfile, server_for
from apps.providers.engine.types import EndpointConfig, GenerationRequest, GenerationResult, Kind
from tests.providers.virtual_time import run_virtual, virtual_clock

# Knee at 200 tok/s × 10 ms = 2 running requests; at most 4 run at once.
SMALL = SimProfile(ttft_ms=50, per_token_ms=0, itl_ms=10, jitter=0, max_batch=4, tokens_per_s=200)
TOKENS = 32


def ask(max_tokens: int = TOKENS, model: str = "sim-medium", words: int = 4) -> GenerationRequest:
    prompt = " ".join(["load"] * words)
    return GenerationRequest(model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                             ignore_eos=True, seed=1)  # fmt: skip


async def closed_loop(adapter: SimAdapter, concurrency: int, per_worker: int, request: GenerationRequest):
    """`concurrency` clients, each sending its next request when the previous one returned."""
    results: list[GenerationResult] = []

    async def client() -> None:
        for _ in range(per_worker):
            results.append(await adapter.generate(None, request))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results


def figures(results: list[GenerationResult]) -> dict[str, float]:
    """Mean TTFT, median ITL (ms) and output tokens/s over the whole run."""
    span_s = max(r.end_time for r in results) - min(r.send_time for r in results)
    return {
        "ttft": float(np.mean([r.ttft_ms for r in results])),
        "itl": statistics.median(g for r in results for g in r.itl_gaps_ms),
        "tps": sum(r.output_tokens for r in results) / span_s,
    }


def virtual_curve(profile: SimProfile, levels, request: GenerationRequest, per_worker: int = 6) -> dict[int, dict]:
    """The figures of a closed loop at each concurrency, on a virtual clock."""

    async def go():
        curve = {}
        for level in levels:
            adapter = SimAdapter(EndpointConfig(Kind.SIM, f"sim://curve-{level}"), profile, clock=virtual_clock)
            curve[level] = figures(await closed_loop(adapter, level, per_worker, request))
        return curve

    return run_virtual(go())


def test_below_capacity_latency_stays_at_baseline_and_throughput_grows():
    """Up to the token-budget knee TTFT and ITL are the profile's and throughput scales with clients."""
    curve = virtual_curve(SMALL, (1, 2), ask())
    for level in (1, 2):
        assert curve[level]["ttft"] == pytest.approx(50, abs=0.5)
        assert curve[level]["itl"] == pytest.approx(10, abs=0.1)
    assert curve[1]["tps"] == pytest.approx(TOKENS / (0.050 + (TOKENS - 1) * 0.010), rel=0.01)
    assert curve[2]["tps"] / curve[1]["tps"] > 1.95


def test_past_capacity_ttft_and_itl_grow_and_throughput_is_capped_at_the_budget():
    """Past the knee ITL grows to running/budget; past max_batch requests queue and TTFT grows,
    while output throughput stays at (just under) the token budget."""
    curve = virtual_curve(SMALL, (1, 4, 8, 16), ask())
    assert curve[4]["itl"] == pytest.approx(1000 * 4 / 200, abs=0.1)  # 4 running share 200 tok/s
    assert curve[16]["itl"] == pytest.approx(20, abs=0.1)  # never more than max_batch running
    assert curve[4]["ttft"] == pytest.approx(50, abs=0.5)  # no queue yet
    assert curve[8]["ttft"] > 5 * curve[1]["ttft"] and curve[16]["ttft"] > 2 * curve[8]["ttft"]
    for level in (4, 8, 16):
        assert 0.85 * 200 < curve[level]["tps"] <= 200 * 1.001, curve
    assert curve[16]["tps"] == pytest.approx(curve[4]["tps"], rel=0.05)


def test_the_default_server_saturates_between_1_and_16_clients():
    """The documented defaults: flat TTFT up to 8 clients then a queue; throughput flattens under
    400 tok/s (sim-medium) while the first steps grow almost linearly."""
    request = GenerationRequest(model="sim-medium", messages=[{"role": "user", "content": "word " * 20}],
                                max_tokens=128, ignore_eos=True, seed=1)  # fmt: skip
    curve = virtual_curve(SimProfile(), (1, 2, 4, 8, 16), request, per_worker=4)
    ttft, tps = {k: v["ttft"] for k, v in curve.items()}, {k: v["tps"] for k, v in curve.items()}
    assert 75 < ttft[1] < 90 and ttft[8] < 1.2 * ttft[1]
    assert ttft[16] > 10 * ttft[1]
    assert tps[2] > 1.8 * tps[1] and tps[4] > 3.5 * tps[1]
    assert tps[16] <= 400 and tps[16] < 1.1 * tps[8]
    assert curve[8]["itl"] > 1.4 * curve[1]["itl"]


def test_the_budget_scales_with_the_model_size():
    """A model with latency factor 2 (sim-large) gets half the tokens per second at saturation."""
    large = virtual_curve(SMALL, (8,), ask(model="sim-large"))[8]["tps"]
    small = virtual_curve(SMALL, (8,), ask(model="sim-small"))[8]["tps"]
    assert large <= 100 * 1.001 and small <= 400 * 1.001 and small > 3.5 * large


def test_a_cancelled_request_leaves_the_queue_and_frees_its_slot():
    """Cancelling a queued request or a running one leaves no slot taken and nobody waiting."""
    profile = SimProfile(ttft_ms=50, per_token_ms=0, itl_ms=10, jitter=0, max_batch=1, tokens_per_s=0)

    async def go():
        adapter = SimAdapter(EndpointConfig(Kind.SIM, "sim://cancel"), profile, clock=virtual_clock)
        running = asyncio.create_task(adapter.generate(None, ask()))
        queued = asyncio.create_task(adapter.generate(None, ask()))
        await asyncio.sleep(0.1)
        assert (adapter.server.running, adapter.server.queued) == (1, 1)
        queued.cancel()
        await asyncio.sleep(0)
        assert adapter.server.queued == 0
        first = await running
        alone = await adapter.generate(None, ask())  # nobody before it
        stuck = asyncio.create_task(adapter.generate(None, ask()))
        await asyncio.sleep(0.1)
        stuck.cancel()
        await asyncio.gather(stuck, return_exceptions=True)
        return first, alone, adapter.server

    first, alone, server = run_virtual(go())
    assert first.ttft_ms == pytest.approx(50) and alone.ttft_ms == pytest.approx(50)
    assert (server.running, server.queued) == (0, 0)


def test_endpoints_share_a_server_only_when_they_name_the_same_one():
    """Adapters of one sim URL share one server; another URL or profile is another server."""
    one = adapter_for(EndpointConfig(Kind.SIM, "sim://lab?max_batch=2"))
    assert adapter_for(EndpointConfig(Kind.SIM, "sim://lab?max_batch=2")).server is one.server
    assert adapter_for(EndpointConfig(Kind.SIM, "sim://other?max_batch=2")).server is not one.server
    assert adapter_for(EndpointConfig(Kind.SIM, "sim://lab?max_batch=3")).server is not one.server
    assert server_for(one.config, one.profile) is one.server


def test_capacity_settings_come_from_the_endpoint_url_and_bad_values_are_refused():
    """max_batch and tokens_per_s are read from the base URL; a negative value is an error."""
    profile = SimProfile.from_url("sim://local?max_batch=4&tokens_per_s=250")
    assert (profile.max_batch, profile.tokens_per_s) == (4, 250.0)
    assert profile.saturation_running == pytest.approx(250 * 12 / 1000)
    assert SimProfile().max_batch == 8 and SimProfile().tokens_per_s == 400.0
    assert SimProfile(itl_ms=1).itl_at_ms(1) == 2.5  # even one stream gets at most the budget
    assert SimProfile().itl_at_ms(8, "sim-large") == 40.0  # 8 share 400 tok/s: 20 ms, × factor 2
    for bad in ("max_batch=-1", "tokens_per_s=-5", "jitter=2", "tokens_per_chunk=0", "itl_ms=nan"):
        with pytest.raises(ValueError):
            SimProfile.from_url(f"sim://local?{bad}")


# --- real clock: the queue holds across threads and through the load engine ----------------------


def test_one_server_is_shared_by_threads_with_their_own_event_loops():
    """With one slot, a request from a second thread waits for the first thread's to finish."""
    profile = SimProfile(ttft_ms=150, per_token_ms=0, itl_ms=1, jitter=0, max_batch=1, tokens_per_s=0)
    config = EndpointConfig(Kind.SIM, "sim://threads")
    first: dict[str, GenerationResult] = {}
    worker = threading.Thread(
        target=lambda: first.setdefault("r", asyncio.run(SimAdapter(config, profile).generate(None, ask(4))))
    )
    worker.start()
    server = SimAdapter(config, profile).server
    for _ in range(500):  # until the first request holds the slot
        if server.running:
            break
        threading.Event().wait(0.01)
    second = asyncio.run(SimAdapter(config, profile).generate(None, ask(4)))
    worker.join(10)
    assert second.send_time < first["r"].end_time  # it was sent while the first one ran
    assert second.chunk_times[0] >= first["r"].end_time  # and started only after it
    assert second.ttft_ms > 150 and (server.running, server.queued) == (0, 0)


def test_the_load_engine_sees_ttft_grow_and_throughput_flatten():
    """Through run_step (the load sweeps' path), in real time: 8 clients on 2 slots wait in line."""
    profile = SimProfile(ttft_ms=30, per_token_ms=0, itl_ms=2, jitter=0, max_batch=2, tokens_per_s=0)
    adapter = SimAdapter(EndpointConfig(Kind.SIM, "sim://engine"), profile)
    request = ask(10)

    async def step(concurrency: int):
        spec = StepSpec(mode="closed", concurrency=concurrency, request_count=3 * concurrency)
        return await run_step(spec, lambda i: adapter.generate(None, request))

    one, eight = asyncio.run(step(1)), asyncio.run(step(8))
    assert float(np.mean(eight.ttft_ms())) > 2.5 * float(np.mean(one.ttft_ms()))
    assert eight.output_tokens_per_s < 3.5 * one.output_tokens_per_s  # 2 slots, not 8
