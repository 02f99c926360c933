"""The wire protocol of workloads (issue 13) over real HTTP: text completions, sampling extras,
reasoning deltas timed apart, cached prompt tokens, min_tokens and the mock's request log. The
mock runs in the test's own event loop on a free port; what it received is read back from it."""

import asyncio
import contextlib
import json

import aiohttp
import pytest
from aiohttp import web
from django.core.management.base import CommandError

from apps.providers.engine.adapters import adapter_for, carry_request
from apps.providers.engine.sim import SimAdapter
from apps.providers.engine.types import EndpointConfig, GenerationRequest, GenerationResult, Kind
from apps.providers.management.commands.mockllm import Command, profile_from_options
from apps.providers.mockllm import (
    BLOCK_CHARS,
    MockProfile,
    PrefixCache,
    RequestLog,
    clear_received,
    make_app,
    output_length,
    received_requests,
)
from tests.providers.servers import Script, mock_server

FAST = {"ttft_ms": 2.0, "itl_ms": 2.0}
EXTRAS = {
    "top_k": 20,
    "min_p": 0.05,
    "repetition_penalty": 1.1,
    "min_tokens": 4,
    "stop": ["\n\n", "END"],
    "response_format": {"type": "json_object"},
}


@contextlib.asynccontextmanager
async def serving(app: web.Application):
    """`app` on a free local port: yields (client session, base URL with /v1)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield session, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


def chat(content: str = "Say hello", **changes) -> GenerationRequest:
    return GenerationRequest(model="mock", messages=[{"role": "user", "content": content}], **changes)


def send(
    requests: list[GenerationRequest], profile: MockProfile | None = None, kind: Kind = Kind.OPENAI_COMPATIBLE
) -> tuple[list[GenerationResult], list[dict]]:
    """Send `requests` one after another to a fresh mock; the results and what the mock logged."""
    app = make_app(profile or MockProfile(**FAST))

    async def main():
        async with serving(app) as (session, base):
            adapter = adapter_for(EndpointConfig(kind=kind, base_url=base))
            return [await adapter.generate(session, request) for request in requests]

    results = asyncio.run(main())
    return results, received_requests(app)


# --- text completions ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Kind.OPENAI, Kind.OPENAI_COMPATIBLE])
def test_completions_stream_through_the_adapter(kind):
    """endpoint="completions" posts the prompt to /completions and reads choices[0].text."""
    request = chat(endpoint="completions", prompt="x" * 40, max_tokens=5)
    (result,), log = send([request], MockProfile(output_tokens=9, **FAST), kind)
    assert result.ok, result.error
    assert result.text == "tok " * 5
    assert (result.input_tokens, result.output_tokens, result.token_source) == (10, 5, "server")
    assert result.finish_reason == "length"
    assert len(result.chunk_times) == 5 and result.first_output_time == result.chunk_times[0]
    assert result.ttfot_ms == result.ttft_ms
    (entry,) = log
    assert entry["path"] == "/v1/completions"
    assert entry["body"]["prompt"] == "x" * 40 and "messages" not in entry["body"]
    assert entry["body"]["max_tokens"] == 5  # completions know max_tokens only, OpenAI's included


def test_completions_without_a_prompt_send_the_messages_text():
    request = GenerationRequest(
        model="mock", endpoint="completions", max_tokens=2,
        messages=[{"role": "system", "content": "abc"}, {"role": "user", "content": "def"}],
    )  # fmt: skip
    (result,), log = send([request])
    assert result.ok and log[0]["body"]["prompt"] == "abcdef"


def test_completions_whole_response():
    (result,), log = send([chat(endpoint="completions", prompt="abcd", max_tokens=3, stream=False)])
    assert result.ok, result.error
    assert result.text == "tok " * 3 and result.output_tokens == 3
    assert result.first_output_time == result.chunk_times[0] == result.end_time
    assert log[0]["body"]["stream"] is False and log[0]["path"] == "/v1/completions"


# --- sampling options ------------------------------------------------------------------------------


def test_extras_go_to_compatible_servers_and_only_stop_and_response_format_to_openai():
    (compatible,), compatible_log = send([chat(max_tokens=8, **EXTRAS)], kind=Kind.OPENAI_COMPATIBLE)
    (openai,), openai_log = send([chat(max_tokens=8, **EXTRAS)], kind=Kind.OPENAI)
    assert compatible.ok and openai.ok
    body = compatible_log[0]["body"]
    assert {name: body[name] for name in EXTRAS} == EXTRAS
    body = openai_log[0]["body"]
    assert body["stop"] == ["\n\n", "END"] and body["response_format"] == {"type": "json_object"}
    assert not {"top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos"} & body.keys()


def test_options_left_none_are_not_sent():
    (_,), log = send([chat(max_tokens=2)])
    assert not {*EXTRAS, "temperature", "seed"} & log[0]["body"].keys()


def test_json_schema_response_format_is_sent_as_given():
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    (_,), log = send([chat(max_tokens=2, response_format=schema)], kind=Kind.OPENAI)
    assert log[0]["body"]["response_format"] == schema


def recorded_body(kind: Kind, request: GenerationRequest) -> dict:
    async def main():
        async with mock_server(Script()) as server, aiohttp.ClientSession() as session:
            await adapter_for(EndpointConfig(kind=kind, base_url=server.base_url(kind))).generate(session, request)
            return server.requests[0].body

    return asyncio.run(main())


def test_anthropic_maps_stop_and_top_k_and_leaves_the_rest_out():
    body = recorded_body(Kind.ANTHROPIC, chat(max_tokens=8, **EXTRAS))
    assert body["stop_sequences"] == ["\n\n", "END"] and body["top_k"] == 20
    assert not {"stop", "response_format", "min_p", "repetition_penalty", "min_tokens"} & body.keys()


def test_gemini_maps_stop_top_k_and_json_mode():
    config = recorded_body(Kind.GEMINI, chat(max_tokens=8, **EXTRAS))["generationConfig"]
    assert config == {
        "maxOutputTokens": 8, "topK": 20, "stopSequences": ["\n\n", "END"], "responseMimeType": "application/json",
    }  # fmt: skip
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    config = recorded_body(Kind.GEMINI, chat(response_format=schema))["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}}


@pytest.mark.parametrize("kind", [Kind.ANTHROPIC, Kind.GEMINI])
def test_chat_only_vendors_send_a_completion_prompt_as_one_user_message(kind):
    body = recorded_body(kind, chat(endpoint="completions", prompt="Once upon"))
    if kind == Kind.ANTHROPIC:
        assert body["messages"] == [{"role": "user", "content": "Once upon"}]
    else:
        assert body["contents"] == [{"role": "user", "parts": [{"text": "Once upon"}]}]


# --- min_tokens and ignore_eos ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "count", "finish"),
    [
        ({"min_tokens": 8, "max_tokens": 20}, 8, "stop"),
        ({"min_tokens": 8, "max_tokens": 5}, 5, "length"),
        ({"min_tokens": 2, "max_tokens": 20}, 3, "stop"),
        ({"min_tokens": 8}, 8, "stop"),
        ({"ignore_eos": True, "max_tokens": 6}, 6, "length"),
    ],
)
def test_min_tokens_lengthens_the_answer_up_to_max_tokens(fields, count, finish):
    (result,), _ = send([chat(**fields)], MockProfile(output_tokens=3, **FAST))
    assert result.ok, result.error
    assert (result.output_tokens, len(result.chunk_times), result.finish_reason) == (count, count, finish)


def test_openai_kind_does_not_send_min_tokens_so_the_answer_keeps_its_length():
    (result,), _ = send([chat(min_tokens=8, max_tokens=20)], MockProfile(output_tokens=3, **FAST), Kind.OPENAI)
    assert result.output_tokens == 3


@pytest.mark.parametrize("fields", [{"min_tokens": "8"}, {"max_tokens": -1}, {"min_tokens": True}])
def test_the_mock_refuses_a_bad_length_field_naming_it(fields):
    async def main():
        async with serving(make_app(MockProfile(**FAST))) as (session, base):
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
            async with session.post(f"{base}/chat/completions", json=body) as response:
                return response.status, await response.json()

    status, body = asyncio.run(main())
    assert status == 400 and next(iter(fields)) in body["error"]["message"]


def test_output_length_rules():
    profile = MockProfile(output_tokens=10)
    assert output_length(profile, {"min_tokens": 0}) == (10, "stop")
    assert output_length(profile, {"min_tokens": 12, "max_tokens": 12}) == (12, "length")


# --- reasoning -------------------------------------------------------------------------------------


def test_reasoning_deltas_are_timed_but_not_text():
    profile = MockProfile(reasoning_tokens=4, output_tokens=3, ttft_ms=5, itl_ms=5)
    (result,), _ = send([chat()], profile)
    assert result.ok, result.error
    assert result.text == "tok " * 3  # what a multi-turn session sends back: the answer only
    assert result.reasoning_tokens == 4 and result.output_tokens == 7  # from the usage
    assert len(result.chunk_times) == 7 and result.first_output_time == result.chunk_times[4]
    assert result.ttft_ms < result.ttfot_ms
    assert result.ttfot_ms >= 5 + 4 * 5  # TTFT, then four reasoning ITLs before the answer: never early
    assert len(result.itl_gaps_ms) == 2 and min(result.itl_gaps_ms) >= 0  # over the 3 answer tokens only


def test_reasoning_with_several_tokens_a_chunk_and_running_usage():
    profile = MockProfile(reasoning_tokens=5, output_tokens=6, tokens_per_chunk=4, **FAST)
    (result,), _ = send([chat()], profile)
    assert result.ok, result.error
    assert result.chunk_tokens == [4, 1, 4, 2]  # reasoning 4+1, then the answer 4+2
    assert result.first_output_time == result.chunk_times[2]
    assert (result.reasoning_tokens, result.output_tokens, result.text) == (5, 11, "tok " * 6)


def test_reasoning_in_a_whole_response():
    (result,), _ = send([chat(stream=False)], MockProfile(reasoning_tokens=3, output_tokens=2, **FAST))
    assert result.ok, result.error
    assert (result.text, result.reasoning_tokens, result.output_tokens) == ("tok " * 2, 3, 5)


def test_text_completions_get_no_reasoning():
    (result,), _ = send([chat(endpoint="completions", prompt="abc")], MockProfile(reasoning_tokens=3, output_tokens=2))
    assert (result.text, result.reasoning_tokens, result.output_tokens) == ("tok " * 2, None, 2)


def test_without_reasoning_there_is_no_reasoning_count_and_ttfot_is_ttft():
    (result,), _ = send([chat()], MockProfile(output_tokens=3, **FAST))
    assert result.reasoning_tokens is None
    assert result.first_output_time == result.chunk_times[0] and result.ttfot_ms == result.ttft_ms


def canned_app(path: str, events: list[str]) -> web.Application:
    """A server that answers every POST to `path` with these SSE data lines."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for data in events:
            await response.write(f"data: {data}\n\n".encode())
            await asyncio.sleep(0.002)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post(path, handler)
    return app


def canned(kind: Kind, path: str, events: list[dict | str], request: GenerationRequest | None = None):
    app = canned_app(path, [e if isinstance(e, str) else json.dumps(e) for e in events])

    async def main():
        async with serving(app) as (session, base):
            root = base if kind in (Kind.OPENAI, Kind.OPENAI_COMPATIBLE) else base.removesuffix("/v1")
            adapter = adapter_for(EndpointConfig(kind=kind, base_url=root))
            return await adapter.generate(session, request or chat())

    return asyncio.run(main())


def openai_delta(**delta) -> dict:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def test_reasoning_is_counted_from_chunks_when_the_usage_has_no_count():
    """vLLM's newer `reasoning` field, and a usage without completion_tokens_details."""
    events = [
        openai_delta(role="assistant", reasoning="a"),
        openai_delta(reasoning="b"),
        openai_delta(reasoning="c"),
        openai_delta(content="Hi"),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": None}},
        "[DONE]",
    ]
    result = canned(Kind.OPENAI, "/v1/chat/completions", events)
    assert result.ok, result.error
    assert (result.text, result.reasoning_tokens, result.output_tokens) == ("Hi", 3, 4)
    assert result.cached_tokens is None  # a null details object is "not reported", not 0
    assert result.first_output_time == result.chunk_times[3]


def test_usage_details_are_read_when_present():
    events = [
        openai_delta(content="Hi"),
        {"choices": [], "usage": {
            "prompt_tokens": 30, "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 16}, "completion_tokens_details": {"reasoning_tokens": 0},
        }},
        "[DONE]",
    ]  # fmt: skip
    result = canned(Kind.OPENAI, "/v1/chat/completions", events)
    assert (result.cached_tokens, result.reasoning_tokens, result.input_tokens) == (16, 0, 30)


def test_anthropic_thinking_is_reasoning_and_cache_reads_are_cached_tokens():
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 40}}},
        {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": "ok"}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hello"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    result = canned(Kind.ANTHROPIC, "/v1/messages", events)
    assert result.ok, result.error
    assert (result.text, result.reasoning_tokens, result.cached_tokens, result.input_tokens) == ("Hello", 2, 40, 45)
    assert result.first_output_time == result.chunk_times[2] and result.ttft_ms < result.ttfot_ms


def test_gemini_thoughts_are_reasoning_with_the_servers_count():
    def chunk(parts, thoughts, finish=None):
        usage = {"promptTokenCount": 4, "candidatesTokenCount": 1, "thoughtsTokenCount": thoughts,
                 "cachedContentTokenCount": 2}  # fmt: skip
        candidate = {"content": {"role": "model", "parts": parts}, **({"finishReason": finish} if finish else {})}
        return {"candidates": [candidate], "usageMetadata": usage}

    events = [chunk([{"text": "thinking", "thought": True}], 6), chunk([{"text": "Hi"}], 6, "STOP")]
    result = canned(Kind.GEMINI, "/v1beta/models/mock:streamGenerateContent", events)
    assert result.ok, result.error
    assert (result.text, result.reasoning_tokens, result.cached_tokens) == ("Hi", 6, 2)
    assert result.first_output_time == result.chunk_times[1]


# --- prefix cache ----------------------------------------------------------------------------------

PREFIX = "".join(f"shared document line {i:04d}. " for i in range(256))[: BLOCK_CHARS * 100]  # 1,600 tokens


def test_a_shared_prefix_is_cached_and_cuts_ttft():
    profile = MockProfile(prefix_cache=True, ttft_ms=5, itl_ms=1, output_tokens=2, per_prompt_token_us=100)
    suffix_a, suffix_b = "a" * 400, "b" * 400
    unrelated = "z" * len(PREFIX + suffix_a)
    cold, warm, other = send([chat(PREFIX + suffix_a), chat(PREFIX + suffix_b), chat(unrelated)], profile)[0]
    assert all(r.ok for r in (cold, warm, other))
    assert cold.cached_tokens == 0 and other.cached_tokens == 0  # reported, and nothing cached yet
    assert warm.cached_tokens == len(PREFIX) // 4 == 1600
    # 1,700 prompt tokens × 100 µs = 170 ms cold; 100 tokens = 10 ms warm. A generous ratio, not timings.
    assert warm.ttft_ms < 0.5 * cold.ttft_ms
    assert warm.ttft_ms < 0.5 * other.ttft_ms


def test_without_the_cache_cached_tokens_are_not_reported():
    results, _ = send([chat(PREFIX), chat(PREFIX)], MockProfile(output_tokens=2, **FAST))
    assert [r.cached_tokens for r in results] == [None, None]


def test_completions_use_the_prefix_cache_too():
    profile = MockProfile(prefix_cache=True, output_tokens=1, **FAST)
    requests = [chat(endpoint="completions", prompt=PREFIX + s) for s in ("one", "two")]
    results, _ = send(requests, profile)
    assert [r.cached_tokens for r in results] == [0, 1600]


def test_prefix_cache_matches_only_true_prefixes_of_whole_blocks():
    cache = PrefixCache()
    a, b, c = "a" * BLOCK_CHARS, "b" * BLOCK_CHARS, "c" * BLOCK_CHARS
    assert cache.lookup_and_add(a + b + "tail") == 0
    assert cache.lookup_and_add(a + b + c) == 2 * BLOCK_CHARS
    assert cache.lookup_and_add(a + c) == BLOCK_CHARS  # block c after a alone was never seen
    assert cache.lookup_and_add(b + a) == 0  # the same blocks at other positions are not a prefix
    assert cache.lookup_and_add(a[:-1]) == 0  # a partial block is never cached
    assert cache.lookup_and_add("") == 0


def test_prefix_cache_is_bounded_and_evicts_the_tail_of_a_prefix_first():
    cache = PrefixCache(max_blocks=4)
    blocks = [ch * BLOCK_CHARS for ch in "abcdef"]
    cache.lookup_and_add("".join(blocks[:3]))
    cache.lookup_and_add("x" * BLOCK_CHARS * 2)
    assert len(cache) == 4
    assert cache.lookup_and_add("".join(blocks[:3])) == 2 * BLOCK_CHARS  # the tail block went first
    for i in range(50):
        cache.lookup_and_add(f"{i:08d}" * (BLOCK_CHARS // 8) * 3)
    assert len(cache) == 4


def test_the_prefix_cache_can_be_emptied_over_http():
    profile = MockProfile(prefix_cache=True, output_tokens=1, **FAST)
    app = make_app(profile)

    async def main():
        async with serving(app) as (session, base):
            adapter = adapter_for(EndpointConfig(kind=Kind.OPENAI_COMPATIBLE, base_url=base))
            first = await adapter.generate(session, chat(PREFIX))
            async with session.delete(base.removesuffix("/v1") + "/_mock/prefix_cache") as response:
                assert response.status == 204
            return first, await adapter.generate(session, chat(PREFIX))

    first, again = asyncio.run(main())
    assert (first.cached_tokens, again.cached_tokens) == (0, 0)


# --- the request log -------------------------------------------------------------------------------


def test_the_request_log_returns_exactly_the_bodies_sent():
    requests = [
        chat("first", max_tokens=2, **EXTRAS),
        chat(endpoint="completions", prompt="second", max_tokens=1),
        GenerationRequest(model="mock", messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                                  {"role": "user", "content": "third"}], stream=False),
    ]  # fmt: skip
    app = make_app(MockProfile(output_tokens=2, **FAST))

    async def main():
        async with serving(app) as (session, base):
            root = base.removesuffix("/v1")
            adapter = adapter_for(EndpointConfig(kind=Kind.OPENAI_COMPATIBLE, base_url=base))
            for request in requests:
                await adapter.generate(session, request)
            async with session.get(f"{root}/_mock/requests") as response:
                listed = await response.json()
            async with session.delete(f"{root}/_mock/requests") as response:
                status = response.status
            async with session.get(f"{root}/_mock/requests") as response:
                return adapter, listed, status, await response.json()

    adapter, listed, status, after = asyncio.run(main())
    assert [entry["body"] for entry in listed] == [adapter._body(request) for request in requests]
    assert [entry["path"] for entry in listed] == ["/v1/chat/completions", "/v1/completions", "/v1/chat/completions"]
    received = [entry["received"] for entry in listed]
    assert received == sorted(received) and all(isinstance(t, float) for t in received)
    assert (status, after, received_requests(app)) == (204, [], [])


def test_the_request_log_is_a_bounded_ring_and_can_be_cleared_in_process():
    requests = [chat(f"request {i}", max_tokens=1) for i in range(5)]
    app = make_app(MockProfile(request_log_size=2, **FAST))

    async def main():
        async with serving(app) as (session, base):
            adapter = adapter_for(EndpointConfig(kind=Kind.OPENAI_COMPATIBLE, base_url=base))
            for request in requests:
                await adapter.generate(session, request)

    asyncio.run(main())
    assert [e["body"]["messages"][0]["content"] for e in received_requests(app)] == ["request 3", "request 4"]
    clear_received(app)
    assert received_requests(app) == []


def test_the_request_log_is_bounded_by_bytes_too():
    log = RequestLog(max_entries=100, max_bytes=25)
    for i in range(4):
        log.append("/v1/completions", b'{"prompt": "%d"}' % i, float(i))  # 15 bytes each
    assert [e["body"] for e in log.entries()] == [{"prompt": "3"}]
    log.append("/v1/completions", b'{"prompt": "%s"}' % (b"x" * 40), 9.0)  # alone over the budget: still kept
    assert [e["received"] for e in log.entries()] == [9.0]
    assert RequestLog(max_entries=0).entries() == []


def test_refused_and_failed_requests_are_logged_too():
    results, log = send([chat(max_tokens=1)], MockProfile(error_rate=1.0, **FAST))
    assert results[0].error is not None and len(log) == 1


# --- bookkeeping onto the result and the sample ----------------------------------------------------


def test_to_sample_carries_the_workload_fields():
    profile = MockProfile(prefix_cache=True, reasoning_tokens=2, output_tokens=3, **FAST)
    requests = [
        chat(PREFIX, max_tokens=3, session_index=4, turn_index=1, requested_input_tokens=1600) for _ in range(2)
    ]
    results, _ = send(requests, profile)
    sample = results[1].to_sample(7, results[0].send_time)
    assert (sample.session_index, sample.turn_index) == (4, 1)
    assert (sample.requested_input_tokens, sample.requested_output_tokens) == (1600, 3)
    assert (sample.cached_tokens, sample.reasoning_tokens, sample.output_tokens) == (1600, 2, 5)
    assert sample.ttft_ms < sample.ttfot_ms < sample.e2e_ms
    assert len(sample.itl_ms) == 2  # ITL over the 3 answer tokens, not the 2 reasoning ones


def test_itl_starts_at_the_first_answer_chunk_even_when_it_arrives_with_the_last_reasoning_one():
    """Two reasoning chunks then three answer chunks, the first answer chunk read together with the last reasoning one
    (same time): ITL has the two gaps between answer chunks, not a 0 ms gap from the reasoning chunk."""
    result = GenerationResult(send_time=0.0, chunk_times=[0.010, 0.012, 0.012, 0.020, 0.030], chunk_tokens=[1] * 5,
                              first_output_time=0.012, first_output_index=2)  # fmt: skip
    assert result.itl_gaps_ms == pytest.approx([8.0, 10.0])


def test_failed_requests_keep_the_workload_fields():
    (result,), _ = send([chat(max_tokens=9, session_index=2, turn_index=0)], MockProfile(error_rate=1.0, **FAST))
    sample = result.to_sample(0, result.send_time)
    assert sample.error_code == "500"
    assert (sample.session_index, sample.turn_index, sample.requested_output_tokens) == (2, 0, 9)


def test_carry_request_copies_the_bookkeeping():
    request = chat(max_tokens=12, session_index=1, turn_index=3, requested_input_tokens=99)
    result = carry_request(GenerationResult(send_time=0.0), request)
    fields = ("session_index", "turn_index", "requested_input_tokens", "requested_output_tokens")
    assert tuple(getattr(result, name) for name in fields) == (1, 3, 99, 12)


def test_the_simulator_carries_the_bookkeeping_too():
    adapter = SimAdapter(EndpointConfig(kind=Kind.SIM, base_url="sim://local?zero_latency=1"))
    result = asyncio.run(adapter.generate(None, chat(max_tokens=4, session_index=5, turn_index=2)))
    assert (result.session_index, result.turn_index, result.requested_output_tokens) == (5, 2, 4)


# --- the management command ------------------------------------------------------------------------


def command_options(*argv: str) -> dict:
    return vars(Command().create_parser("manage.py", "mockllm").parse_args(list(argv)))


def test_the_command_maps_the_workload_options():
    options = command_options(
        "--prefix-cache", "--prefix-cache-blocks", "500", "--reasoning-tokens", "32", "--request-log-size", "50"
    )
    profile = profile_from_options(options)
    assert (profile.prefix_cache, profile.prefix_cache_blocks) == (True, 500)
    assert (profile.reasoning_tokens, profile.request_log_size) == (32, 50)
    defaults = profile_from_options(command_options())
    assert (defaults.prefix_cache, defaults.reasoning_tokens, defaults.request_log_size) == (False, 0, 10_000)


@pytest.mark.parametrize(
    "argv", [("--prefix-cache-blocks", "0"), ("--reasoning-tokens", "-1"), ("--request-log-size", "-5")]
)
def test_the_command_refuses_bad_workload_options(argv):
    with pytest.raises(CommandError):
        profile_from_options(command_options(*argv))


@pytest.mark.parametrize("messages", [None, "hello", ["hello"], [{"role": "user", "content": ["part"]}]])
def test_odd_messages_count_no_text_instead_of_failing(messages):
    async def main():
        async with serving(make_app(MockProfile(prefix_cache=True, **FAST))) as (session, base):
            body = {"model": "m", "messages": messages, "max_tokens": 1}
            async with session.post(f"{base}/chat/completions", json=body) as response:
                return response.status, await response.json()

    status, body = asyncio.run(main())
    assert status == 200 and body["usage"]["prompt_tokens"] == 1
