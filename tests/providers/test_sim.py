"""The offline sim provider: determinism, the latency model, injected errors and the quality trend."""

import asyncio
import itertools
import re
import statistics
import time

import pytest

from apps.providers.engine.adapters import adapter_for
from apps.providers.engine.retry import RetryPolicy, generate_with_retry
from apps.providers.engine.sim import NOISE, SimAdapter, SimProfile, generate_text, keywords
from apps.providers.engine.types import RETRYABLE, EndpointConfig, ErrorKind, GenerationRequest, Kind
from tests.providers.virtual_time import LATE_OK_MS, run_virtual, virtual_clock

FAST = SimProfile(zero_latency=True)
PROMPTS = [
    "Explain how request batching affects latency and throughput in inference servers",
    "Describe the tradeoffs of quantization for small language models on laptops",
    "Why does prefix caching reduce time to first token for chat workloads",
    "Summarize the history of the printing press and its influence on literacy",
]


def ask(prompt: str = PROMPTS[0], **changes) -> GenerationRequest:
    fields = {"model": "sim-medium", "messages": [{"role": "user", "content": prompt}]}
    return GenerationRequest(**{**fields, **changes})


def run(adapter: SimAdapter, request: GenerationRequest):
    return asyncio.run(adapter.generate(None, request))


# --- simple text metrics -------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return text.split()


def well_formed_share(text: str) -> float:
    """Share of words inside sentences that start with a capital and end with a full stop."""
    sentences = re.findall(r"[A-Z][a-z ,']*\.", text)
    return sum(len(s.split()) for s in sentences) / max(1, len(words(text)))


def keyword_share(text: str, prompt: str) -> float:
    keys = set(keywords(prompt))
    return sum(w.strip(".,;").lower() in keys for w in words(text)) / max(1, len(words(text)))


def distinct_2(text: str) -> float:
    tokens = words(text)
    bigrams = list(itertools.pairwise(tokens))
    return len(set(bigrams)) / max(1, len(bigrams))


def mean_metric(metric, temperature: float, top_p: float = 1.0, seeds: int | None = 3) -> float:
    """The metric's mean over the prompts, 3 answers each: seeds 0, 1, … or, with `seeds=None`, unseeded."""
    values = []
    for prompt in PROMPTS:
        for seed in range(seeds) if seeds is not None else (None,) * 3:
            request = ask(prompt, temperature=temperature, top_p=top_p, seed=seed)
            text = "".join(generate_text(request)[0])
            values.append(metric(text, prompt) if metric is keyword_share else metric(text))
    return statistics.mean(values)


# --- determinism ---------------------------------------------------------------------------------


def test_same_request_same_answer_and_each_input_matters():
    adapter = SimAdapter(profile=FAST)
    first = run(adapter, ask(seed=1, temperature=0.7, top_p=0.9))
    again = run(SimAdapter(profile=FAST), ask(seed=1, temperature=0.7, top_p=0.9))
    assert first.ok and first.text == again.text and first.output_tokens == again.output_tokens
    for changed in (
        ask(seed=2, temperature=0.7, top_p=0.9),
        ask(seed=1, temperature=0.8, top_p=0.9),
        ask(seed=1, temperature=0.7, top_p=0.8),
        ask(PROMPTS[1], seed=1, temperature=0.7, top_p=0.9),
        ask(seed=1, temperature=0.7, top_p=0.9, model="sim-large"),
    ):
        assert run(adapter, changed).text != first.text


def test_without_a_seed_repetitions_of_a_request_differ():
    """Three answers to one request at temperature 0.7 and no seed are three different texts."""
    adapter = SimAdapter(profile=FAST)
    texts = [run(adapter, ask(temperature=0.7, top_p=0.9)).text for _ in range(3)]
    assert len(set(texts)) == 3, texts


def test_a_fixed_seed_or_greedy_decoding_repeats_the_answer():
    """With a seed, or at temperature 0 (greedy), the same request gets the same text."""
    adapter = SimAdapter(profile=FAST)
    assert len({run(adapter, ask(temperature=0.7, seed=11)).text for _ in range(3)}) == 1
    assert len({run(adapter, ask(temperature=0.0)).text for _ in range(3)}) == 1
    assert run(adapter, ask(temperature=0.7, seed=11)).text != run(adapter, ask(temperature=0.7, seed=12)).text


def test_unseeded_quality_still_follows_temperature():
    """Without a seed the answers vary, but their quality still falls as temperature rises."""
    formed = [mean_metric(well_formed_share, t, seeds=None) for t in (0.2, 1.1, 1.6)]
    assert formed[0] == 1.0 and formed[0] > formed[1] > formed[2], formed


def test_answers_are_well_formed_tokens_with_server_counts():
    result = run(SimAdapter(profile=FAST), ask(temperature=0.2))
    assert result.ok and result.token_source == "server" and result.finish_reason == "stop"
    assert result.output_tokens == len(result.chunk_times) == sum(result.chunk_tokens)
    assert 48 <= result.output_tokens <= 200 and result.text.endswith(".")
    assert result.input_tokens == len(PROMPTS[0].split())


def test_max_tokens_cuts_a_prefix_and_ignore_eos_fills_it():
    adapter = SimAdapter(profile=FAST)
    full = run(adapter, ask(temperature=0.2, seed=5))
    cut = run(adapter, ask(temperature=0.2, seed=5, max_tokens=10))
    assert full.text.startswith(cut.text) and cut.output_tokens == 10 and cut.finish_reason == "length"
    long = run(adapter, ask(temperature=0.2, seed=5, max_tokens=400, ignore_eos=True))
    assert long.output_tokens == 400 and long.finish_reason == "length"
    short = run(adapter, ask(temperature=0.2, seed=5, max_tokens=400))
    assert short.output_tokens == full.output_tokens and short.finish_reason == "stop"


def test_tokens_per_chunk():
    result = run(
        SimAdapter(profile=SimProfile(zero_latency=True, tokens_per_chunk=3)), ask(max_tokens=10, ignore_eos=True)
    )
    assert result.chunk_tokens == [3, 3, 3, 1] and result.output_tokens == 10
    assert len(result.itl_gaps_ms) == 7


# --- latency model -------------------------------------------------------------------------------


def virtual(profile: SimProfile) -> SimAdapter:
    """An adapter timed by the virtual clock of tests/providers/virtual_time.py: exact on a busy machine."""
    return SimAdapter(profile=profile, clock=virtual_clock)


def run_on_virtual_clock(profile: SimProfile, *requests: GenerationRequest):
    """The requests one after another through one adapter, on a virtual clock."""

    async def go():
        adapter = virtual(profile)
        return [await adapter.generate(None, request) for request in requests]

    return run_virtual(go())


def test_ttft_and_itl_follow_the_profile():
    """TTFT is ttft_ms + per_token_ms × prompt words, then one token every itl_ms, on an absolute schedule."""
    profile = SimProfile(ttft_ms=30, per_token_ms=1.0, itl_ms=5, jitter=0.0)
    prompt = " ".join(["word"] * 20)
    (result,) = run_on_virtual_clock(profile, ask(prompt, max_tokens=20, ignore_eos=True))
    assert result.ok and result.send_time < result.chunk_times[0] and result.chunk_times == sorted(result.chunk_times)
    assert result.ttft_ms == pytest.approx(50)  # 30 + 1 × 20 prompt tokens
    assert result.itl_gaps_ms == pytest.approx([5.0] * 19)
    assert result.e2e_ms == pytest.approx(50 + 19 * 5)


def test_ttft_and_itl_on_the_real_clock_are_never_early():
    """On the real clock delays are never shorter than the profile's (lateness is the machine's)."""
    profile = SimProfile(ttft_ms=30, per_token_ms=1.0, itl_ms=5, jitter=0.0)
    result = run(SimAdapter(profile=profile), ask(" ".join(["word"] * 20), max_tokens=20, ignore_eos=True))
    assert result.ttft_ms >= 50 and result.e2e_ms >= 50 + 19 * 5
    assert result.ttft_ms < 50 + LATE_OK_MS and result.e2e_ms < 145 + LATE_OK_MS


def test_longer_prompts_take_longer_to_first_token():
    profile = SimProfile(ttft_ms=10, per_token_ms=1.0, itl_ms=1, jitter=0.0)
    short, long = run_on_virtual_clock(
        profile, ask(" ".join(["a"] * 10), max_tokens=2), ask(" ".join(["a"] * 70), max_tokens=2)
    )
    assert long.ttft_ms - short.ttft_ms == pytest.approx(60)


def test_jitter_varies_latency_within_bounds():
    profile = SimProfile(ttft_ms=20, itl_ms=1, jitter=0.5, rng_seed=3)

    async def go():
        adapter = virtual(profile)
        return await asyncio.gather(*(adapter.generate(None, ask(max_tokens=2)) for _ in range(8)))

    ttfts = [r.ttft_ms for r in run_virtual(go())]
    assert all(10 <= t <= 30.01 for t in ttfts) and max(ttfts) - min(ttfts) > 3  # 20 ms (+ 2 prompt) ± 50 %


def test_model_size_scales_latency():
    profile = SimProfile(ttft_ms=20, itl_ms=1, jitter=0.0)
    small, large = run_on_virtual_clock(
        profile, ask(model="sim-small", max_tokens=2), ask(model="sim-large", max_tokens=2)
    )
    assert large.ttft_ms == pytest.approx(4 * small.ttft_ms)  # factors 0.5 and 2


def test_zero_latency_is_fast():
    adapter = SimAdapter(profile=FAST)

    async def go():
        return await asyncio.gather(*(adapter.generate(None, ask(seed=i)) for i in range(500)))

    started = time.perf_counter()
    results = asyncio.run(go())
    assert all(r.ok for r in results) and time.perf_counter() - started < 10  # ~0.5 s on a quiet machine


def test_non_streaming_is_one_chunk_at_the_end():
    profile = SimProfile(ttft_ms=10, itl_ms=1, jitter=0.0, per_token_ms=0, tokens_per_s=0)
    (result,) = run_on_virtual_clock(profile, ask(max_tokens=20, ignore_eos=True, stream=False))
    assert result.chunk_tokens == [20] and result.chunk_times == [result.end_time]
    assert result.ttft_ms == pytest.approx(10 + 19 * 1)


def test_cancellation_propagates():
    async def go():
        adapter = SimAdapter(profile=SimProfile(ttft_ms=5, itl_ms=20))
        task = asyncio.create_task(adapter.generate(None, ask(max_tokens=100, ignore_eos=True)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())


# --- errors --------------------------------------------------------------------------------------


def test_error_rate_and_kinds():
    adapter = SimAdapter(profile=SimProfile(zero_latency=True, error_rate=0.3, rng_seed=7))

    async def go():
        return [await adapter.generate(None, ask(max_tokens=8)) for _ in range(1000)]

    results = asyncio.run(go())
    errors = [r.error for r in results if r.error is not None]
    assert 0.25 < len(errors) / len(results) < 0.35
    assert {e.kind for e in errors} == {ErrorKind.RATE_LIMITED, ErrorKind.SERVER, ErrorKind.CONNECTION}
    assert all(e.kind in RETRYABLE for e in errors)
    assert all(e.retry_after_s == 0.05 for e in errors if e.kind == ErrorKind.RATE_LIMITED)
    cut = [r for r in results if r.error is not None and r.error.kind == ErrorKind.CONNECTION]
    assert all(f"stream cut after {len(r.chunk_times)} chunks" in r.error.message for r in cut)
    # The same seed gives the same run.
    again = SimAdapter(profile=SimProfile(zero_latency=True, error_rate=0.3, rng_seed=7))
    pattern = [r.error.kind if r.error else None for r in results[:50]]
    assert [r.error.kind if r.error else None for r in asyncio.run(_many(again, 50))] == pattern


async def _many(adapter: SimAdapter, count: int):
    return [await adapter.generate(None, ask(max_tokens=8)) for _ in range(count)]


def test_sim_errors_are_retried():
    adapter = SimAdapter(profile=SimProfile(zero_latency=True, error_rate=0.5, rng_seed=1))
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def go():
        policy = RetryPolicy(max_attempts=10, random=lambda: 0.0)
        return [await generate_with_retry(adapter, None, ask(), policy=policy, sleep=sleep) for _ in range(20)]

    results = asyncio.run(go())
    assert all(r.ok for r in results) and max(r.attempts for r in results) > 1
    assert sleeps and set(sleeps) <= {0.05, 0.5, 1.0, 2.0, 4.0, 8.0}


# --- quality -------------------------------------------------------------------------------------


def test_quality_falls_as_temperature_rises():
    formed = [mean_metric(well_formed_share, t) for t in (0.2, 1.0, 1.3, 1.7)]
    on_topic = [mean_metric(keyword_share, t) for t in (0.2, 1.0, 1.3, 1.7)]
    assert formed[0] == 1.0 and formed[0] > formed[1] > formed[2] > formed[3], formed
    assert formed[3] < 0.1
    assert on_topic[0] > on_topic[1] > on_topic[2] > on_topic[3], on_topic
    assert on_topic[0] > 0.1


def test_noise_words_only_at_high_temperature():
    calm = "".join(generate_text(ask(temperature=0.5, seed=3))[0]).split()
    wild = "".join(generate_text(ask(temperature=1.6, seed=3))[0]).split()
    assert not any(w.strip(",;") in NOISE for w in calm)
    assert sum(w.strip(",;") in NOISE for w in wild) > len(wild) / 4


def test_low_top_p_is_repetitive_but_well_formed():
    narrow = mean_metric(distinct_2, 0.7, top_p=0.1)
    wide = mean_metric(distinct_2, 0.7, top_p=0.9)
    assert narrow < 0.3 < wide, (narrow, wide)
    assert mean_metric(well_formed_share, 0.7, top_p=0.1) == 1.0


def test_top_p_near_one_adds_noise_past_temperature_one():
    near_one = mean_metric(well_formed_share, 1.2, top_p=1.0, seeds=25)
    assert near_one < mean_metric(well_formed_share, 1.2, top_p=0.95, seeds=25) - 0.05


# --- configuration -------------------------------------------------------------------------------


def test_profile_from_the_endpoint_url():
    config = EndpointConfig(Kind.SIM, "sim://local?ttft_ms=20&zero_latency=1&tokens_per_chunk=3&error_rate=0.1")
    adapter = adapter_for(config)
    assert isinstance(adapter, SimAdapter)
    assert adapter.profile == SimProfile(ttft_ms=20, zero_latency=True, tokens_per_chunk=3, error_rate=0.1)
    assert SimProfile.from_url("sim://local") == SimProfile()
    with pytest.raises(ValueError, match="bogus"):
        SimProfile.from_url("sim://local?bogus=1")


def test_list_models():
    assert asyncio.run(SimAdapter().list_models(None)) == ["sim-small", "sim-medium", "sim-large"]
