"""The provider adapters against local servers speaking each vendor's wire format over real HTTP."""

import asyncio
import time

import aiohttp
import pytest

from apps.providers.engine.adapters import (
    AdapterError,
    AnthropicAdapter,
    GeminiAdapter,
    OpenAIAdapter,
    adapter_for,
    parse_retry_after,
    status_kind,
)
from apps.providers.engine.sim import SimAdapter
from apps.providers.engine.sse import SSEParser, iter_sse
from apps.providers.engine.types import EndpointConfig, ErrorKind, GenerationRequest, GenerationResult, Kind
from tests.providers.servers import MockLLMServer, Script, mock_server

KINDS = [Kind.OPENAI, Kind.OPENAI_COMPATIBLE, Kind.ANTHROPIC, Kind.GEMINI]
CANARY = "sk-canary-0123456789"
TEXT = "Hello, world!"


def make_request(**changes) -> GenerationRequest:
    fields = {
        "model": "test-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
        "max_tokens": 16,
        "temperature": 0.5,
    }
    return GenerationRequest(**{**fields, **changes})


def make_config(server: MockLLMServer, kind: Kind, **changes) -> EndpointConfig:
    return EndpointConfig(kind=kind, base_url=server.base_url(kind), api_key=CANARY, **changes)


def generate(
    kind: Kind, script: Script | None = None, request: GenerationRequest | None = None, **config_changes
) -> tuple[GenerationResult, MockLLMServer]:
    """One request against a fresh server; the result and the server (for what it recorded)."""

    async def go():
        async with mock_server(script or Script()) as server, aiohttp.ClientSession() as session:
            adapter = adapter_for(make_config(server, kind, **config_changes))
            return await adapter.generate(session, request or make_request()), server

    return asyncio.run(go())


# --- SSE parser ------------------------------------------------------------------------------------


def test_sse_parser_handles_fields_comments_and_multiline_data():
    parser = SSEParser()
    events = parser.feed(b': keep-alive\n\nevent: message_start\ndata: {"a":\ndata: 1}\nid: 7\nretry: 10\n\ndata:x\n\n')
    assert events == [("message_start", '{"a":\n1}'), ("", "x")]
    assert parser.pending == 0


def test_sse_parser_joins_events_split_anywhere_including_crlf():
    raw = b"\xef\xbb\xbfevent: ping\r\ndata: {}\r\n\r\ndata: hello\r\n\r\ndata: [DONE]\r\n\r\n"
    for size in (1, 2, 3, 5, 8, len(raw)):
        parser = SSEParser()
        events = []
        for i in range(0, len(raw), size):
            events.extend(parser.feed(raw[i : i + size]))
        assert events == [("ping", "{}"), ("", "hello"), ("", "[DONE]")], size


def test_sse_parser_flush_keeps_a_complete_last_line_and_drops_a_cut_one():
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]\n") == []
    assert parser.flush() == [("", "[DONE]")]
    parser = SSEParser()
    assert parser.feed(b'data: {"cut": "he') == []
    assert parser.flush() == []


def test_iter_sse_stamps_events_with_their_arrival_time():
    async def chunks():
        yield b"data: 1\n\nda"
        await asyncio.sleep(0.02)
        yield b"ta: 2\n\n"

    async def go():
        return [event async for event in iter_sse(chunks())]

    before = time.monotonic()
    events = asyncio.run(go())
    assert [e.data for e in events] == ["1", "2"]
    assert before <= events[0].time and events[1].time - events[0].time >= 0.015


def test_sse_and_event_handling_stay_cheap_per_chunk():
    """The measurement notes budget ~30-40 µs per chunk for parsing and JSON; allow a slow CI."""
    config = EndpointConfig(kind=Kind.OPENAI_COMPATIBLE, base_url="http://x/v1")
    adapter = OpenAIAdapter(config)
    chunk = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
        b'"delta":{"content":" word"},"finish_reason":null}],"usage":{"prompt_tokens":5,"completion_tokens":%d}}\n\n'
    )
    from apps.providers.engine.adapters import _Stream

    stream = _Stream(GenerationResult(send_time=0.0))
    parser = SSEParser()
    count = 5000
    payloads = [chunk % (i + 1) for i in range(count)]
    started = time.process_time()  # CPU time of this process: other work on the machine does not count
    for payload in payloads:
        arrived = time.monotonic()
        for event, data in parser.feed(payload):
            adapter._on_event(event, data, arrived, stream)
    per_chunk_us = (time.process_time() - started) / count * 1e6
    assert stream.result.chunk_tokens == [1] * count
    assert per_chunk_us < 150, per_chunk_us


# --- helpers -------------------------------------------------------------------------------------


def test_status_kinds():
    assert status_kind(429) == ErrorKind.RATE_LIMITED
    assert status_kind(401) == status_kind(403) == ErrorKind.AUTH
    assert status_kind(408) == status_kind(409) == status_kind(500) == status_kind(529) == ErrorKind.SERVER
    assert status_kind(400) == status_kind(404) == status_kind(422) == status_kind(413) == ErrorKind.BAD_REQUEST


def test_parse_retry_after_prefers_ms_then_seconds_then_http_date():
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == pytest.approx(10)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_adapter_for_each_kind():
    assert isinstance(adapter_for(EndpointConfig(Kind.OPENAI, "http://h/v1")), OpenAIAdapter)
    assert isinstance(adapter_for(EndpointConfig(Kind.OPENAI_COMPATIBLE, "http://h/v1")), OpenAIAdapter)
    assert isinstance(adapter_for(EndpointConfig(Kind.ANTHROPIC, "http://h")), AnthropicAdapter)
    assert isinstance(adapter_for(EndpointConfig(Kind.GEMINI, "http://h")), GeminiAdapter)
    assert isinstance(adapter_for(EndpointConfig(Kind.SIM, "sim://local")), SimAdapter)


# --- happy path ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_stream_happy_path(kind):
    result, server = generate(kind, Script(gap_s=0.005))
    assert result.ok, result.error
    assert result.text == TEXT
    assert len(result.chunk_times) == 4 and result.chunk_times == sorted(result.chunk_times)
    assert result.send_time < result.chunk_times[0] <= result.chunk_times[-1] <= result.end_time
    assert (result.input_tokens, result.output_tokens, result.token_source) == (7, 4, "server")
    assert result.finish_reason == {"anthropic": "end_turn", "gemini": "STOP"}.get(kind, "stop")
    # The mock stamps each content chunk as it sends it: before it arrives, after we sent.
    assert len(result.server_send_times) == 4
    assert all(result.send_time < s <= t for s, t in zip(result.server_send_times, result.chunk_times, strict=True))
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_request_wire_format(kind):
    request = make_request(top_p=0.9, seed=3, ignore_eos=True, frequency_penalty=0.1)
    _, server = generate(kind, request=request)
    sent = server.requests[0]
    body, headers = sent.body, sent.headers
    assert CANARY not in sent.path and CANARY not in str(sent.query)
    if kind in (Kind.OPENAI, Kind.OPENAI_COMPATIBLE):
        assert sent.path == "/v1/chat/completions"
        assert headers["Authorization"] == f"Bearer {CANARY}"
        assert body["messages"] == request.messages and body["stream"] is True
        assert body["stream_options"]["include_usage"] is True
        assert (body["top_p"], body["seed"], body["frequency_penalty"], body["temperature"]) == (0.9, 3, 0.1, 0.5)
        if kind == Kind.OPENAI_COMPATIBLE:
            assert body["stream_options"]["continuous_usage_stats"] is True
            assert body["ignore_eos"] is True and body["max_tokens"] == 16
        else:
            assert "continuous_usage_stats" not in body["stream_options"] and "ignore_eos" not in body
            assert body["max_completion_tokens"] == 16
    elif kind == Kind.ANTHROPIC:
        assert sent.path == "/v1/messages"
        assert headers["x-api-key"] == CANARY and headers["anthropic-version"] == "2023-06-01"
        assert "Authorization" not in headers
        assert body["system"] == "Be brief." and body["messages"] == [{"role": "user", "content": "Say hello"}]
        assert (body["max_tokens"], body["temperature"], body["top_p"], body["stream"]) == (16, 0.5, 0.9, True)
        assert "seed" not in body and "ignore_eos" not in body
    else:
        assert sent.path == "/v1beta/models/test-model:streamGenerateContent" and sent.query == {"alt": "sse"}
        assert headers["x-goog-api-key"] == CANARY and "Authorization" not in headers
        assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert body["contents"] == [{"role": "user", "parts": [{"text": "Say hello"}]}]
        assert body["generationConfig"] == {
            "maxOutputTokens": 16,
            "temperature": 0.5,
            "topP": 0.9,
            "seed": 3,
            "frequencyPenalty": 0.1,
        }


def test_anthropic_max_tokens_defaults_to_1024():
    _, server = generate(Kind.ANTHROPIC, request=make_request(max_tokens=None, temperature=None))
    assert server.requests[0].body["max_tokens"] == 1024 and "temperature" not in server.requests[0].body


@pytest.mark.parametrize("kind", KINDS)
def test_chunk_timing_follows_the_server(kind):
    result, _ = generate(kind, Script(first_delay_s=0.05, gap_s=0.02))
    assert result.ok, result.error
    assert 45 <= result.ttft_ms < 200, result.ttft_ms
    gaps = result.itl_gaps_ms
    assert len(gaps) == 3 and all(15 <= g < 120 for g in gaps), gaps
    assert result.e2e_ms >= result.ttft_ms + 55


@pytest.mark.parametrize("kind", KINDS)
def test_several_tokens_in_one_chunk_with_running_usage(kind):
    result, _ = generate(kind, Script(tokens=[1, 3, 2, 1], continuous_usage=True))
    assert result.ok, result.error
    assert result.output_tokens == 7 and result.token_source == "server"
    if kind == Kind.ANTHROPIC:
        # Anthropic's stream carries no per-chunk count: 1 per delta, the total from message_delta.
        assert result.chunk_tokens == [1, 1, 1, 1]
    else:
        assert result.chunk_tokens == [1, 3, 2, 1]
        assert len(result.itl_gaps_ms) == 6


@pytest.mark.parametrize("kind", KINDS)
def test_final_usage_without_running_usage_counts_one_per_chunk(kind):
    script = Script(tokens=[2, 2, 2, 2])
    result, _ = generate(kind, script)
    assert result.ok and result.output_tokens == 8 and result.token_source == "server"
    # openai_compatible asks for continuous usage and the mock, like vLLM, sends it.
    assert result.chunk_tokens == ([2, 2, 2, 2] if kind == Kind.OPENAI_COMPATIBLE else [1, 1, 1, 1])


@pytest.mark.parametrize("kind", KINDS)
def test_without_usage_tokens_are_counted(kind):
    result, _ = generate(kind, Script(final_usage=False))
    assert result.ok, result.error
    if kind == Kind.OPENAI_COMPATIBLE:  # running usage still came on every chunk
        assert result.token_source == "server"
    else:
        assert (result.output_tokens, result.token_source, result.chunk_tokens) == (4, "counted", [1, 1, 1, 1])


@pytest.mark.parametrize("kind", KINDS)
def test_crlf_and_fragmented_writes(kind):
    result, _ = generate(kind, Script(crlf=True, fragment=7, pieces=["Grüße", " 👋", " done"]))
    assert result.ok, result.error
    assert result.text == "Grüße 👋 done" and len(result.chunk_times) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_non_streaming(kind):
    result, server = generate(kind, Script(first_delay_s=0.03), request=make_request(stream=False))
    assert result.ok, result.error
    assert result.text == TEXT and result.output_tokens == 4 and result.token_source == "server"
    assert result.chunk_times == [result.end_time] and result.chunk_tokens == [4]
    assert result.ttft_ms >= 25
    body = server.requests[0].body
    if kind == Kind.GEMINI:
        assert server.requests[0].path.endswith(":generateContent")
    else:
        assert body["stream"] is False and "stream_options" not in body


@pytest.mark.parametrize("kind", KINDS)
def test_list_models(kind):
    async def go():
        async with mock_server() as server, aiohttp.ClientSession() as session:
            return await adapter_for(make_config(server, kind)).list_models(session), server

    models, server = asyncio.run(go())
    expected = {
        Kind.ANTHROPIC: ["claude-test", "claude-second"],
        Kind.GEMINI: ["gemini-test", "gemini-other"],
    }.get(kind, ["gpt-test", "gpt-mini"])
    assert models == expected
    assert all(CANARY not in r.path and CANARY not in str(r.query) for r in server.requests)


# --- errors --------------------------------------------------------------------------------------

STATUS_KINDS = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTH,
    404: ErrorKind.BAD_REQUEST,
    429: ErrorKind.RATE_LIMITED,
    500: ErrorKind.SERVER,
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", sorted(STATUS_KINDS))
def test_http_errors_map_to_kinds_with_the_vendor_message(kind, status):
    script = Script(status=status, error_message=f"model test-model says no ({status})", headers={"retry-after": "3"})
    result, _ = generate(kind, script)
    error = result.error
    assert error is not None and not result.ok
    assert error.kind == STATUS_KINDS[status] and error.status == status and error.code == str(status)
    assert error.message.startswith(f"HTTP {status}: ")
    assert f"model test-model says no ({status})" in error.message
    assert error.retry_after_s == 3.0
    assert result.chunk_times == [] and result.end_time >= result.send_time


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [400, 401, 429, 500])
def test_an_echoed_key_never_leaks(kind, status):
    result, server = generate(kind, Script(status=status, echo_key=True, error_message="denied"))
    assert CANARY in str(server.requests[0].headers)  # the server did get it …
    message = result.error.message
    assert "denied" in message and "[redacted]" in message
    for text in (
        message,
        repr(result),
        repr(result.error),
        repr(make_config(server, kind)),
        str(result.to_sample(0, 0.0)),
    ):
        assert CANARY not in text and "Bearer" not in text
    config = make_config(server, kind)
    assert repr(adapter_for(config)).count(CANARY) == 0 and config.key_hint == "…6789"


def test_scrub_removes_secrets_and_header_lines():
    config = EndpointConfig(Kind.OPENAI, "http://h/v1", api_key=CANARY, extra_headers={"X-Org-Token": "org-secret-123"})
    adapter = adapter_for(config)
    text = f"bad key {CANARY}; org org-secret-123\nAuthorization: Bearer abc.def x-goog-api-key=zzz " + "y" * 400
    scrubbed = adapter._scrub(text)
    assert CANARY not in scrubbed and "org-secret-123" not in scrubbed and "abc.def" not in scrubbed
    assert "zzz" not in scrubbed and "\n" not in scrubbed and len(scrubbed) == 300
    assert "extra_headers" not in repr(config) and "org-secret" not in repr(config)


@pytest.mark.parametrize("kind", KINDS)
def test_list_models_error_is_scrubbed(kind):
    async def go():
        async with mock_server(Script(status=401, echo_key=True)) as server, aiohttp.ClientSession() as session:
            with pytest.raises(AdapterError) as caught:
                await adapter_for(make_config(server, kind)).list_models(session)
            return caught.value

    error = asyncio.run(go())
    assert error.error.kind == ErrorKind.AUTH and CANARY not in str(error) and CANARY not in repr(error.error)
    assert error.__cause__ is None


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_cut_mid_way_is_a_connection_error(kind):
    result, _ = generate(kind, Script(cut_after=2, gap_s=0.005))
    assert result.error is not None and result.error.kind == ErrorKind.CONNECTION
    assert result.error.message.startswith("stream cut after 2 chunks")
    assert len(result.chunk_times) == 2 and result.text == "Hello,"


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_that_ends_before_its_terminator_is_cut(kind):
    result, _ = generate(kind, Script(end_after=3))
    assert result.error is not None and result.error.kind == ErrorKind.CONNECTION
    assert "stream cut after 3 chunks" in result.error.message


@pytest.mark.parametrize("kind", KINDS)
def test_read_gap_longer_than_read_timeout(kind):
    started = time.monotonic()
    result, _ = generate(kind, Script(hang_after=2, hang_s=3.0), read_timeout_s=0.1)
    assert result.error is not None and result.error.kind == ErrorKind.TIMEOUT
    assert result.error.message.startswith("read timeout") and "after 2 chunks" in result.error.message
    # gave up long before the server went on (generous bounds: a busy machine is slow, never early)
    assert len(result.chunk_times) == 2 and result.end_time - result.chunk_times[-1] < 2.0
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("kind", KINDS)
def test_total_deadline(kind):
    result, _ = generate(kind, Script(pieces=["a"] * 20, gap_s=0.02), total_timeout_s=0.15)
    assert result.error is not None and result.error.kind == ErrorKind.TIMEOUT
    assert result.error.message.startswith("total deadline of 0.15s")
    assert 0 < len(result.chunk_times) < 20


@pytest.mark.parametrize("kind", KINDS)
def test_in_stream_error_event(kind):
    result, _ = generate(
        kind, Script(error_event_after=2, error_message="Overloaded", error_event_type="overloaded_error")
    )
    assert result.error is not None and result.error.kind == ErrorKind.SERVER
    assert "Overloaded" in result.error.message and len(result.chunk_times) == 2


def test_anthropic_in_stream_rate_limit_error():
    script = Script(error_event_after=1, error_event_type="rate_limit_error", error_message="slow down")
    result, _ = generate(Kind.ANTHROPIC, script)
    assert result.error.kind == ErrorKind.RATE_LIMITED and "rate_limit_error: slow down" in result.error.message


@pytest.mark.parametrize("kind", KINDS)
def test_unparsable_json_is_a_protocol_error(kind):
    result, _ = generate(kind, Script(bad_json_after=1))
    assert result.error is not None and result.error.kind == ErrorKind.PROTOCOL
    assert "unparsable JSON after 1 chunks" in result.error.message


@pytest.mark.parametrize("kind", KINDS)
def test_an_event_nested_too_deep_for_the_parser_is_a_protocol_error(kind):
    # A server answering with JSON nested 100,000 deep made json.loads raise RecursionError,
    # which is no ValueError: the request blew up instead of being recorded as failed.
    result, _ = generate(kind, Script(bad_json_after=1, bad_json_event="[" * 100_000 + "]" * 100_000))
    assert result.error is not None and result.error.kind == ErrorKind.PROTOCOL
    assert "unparsable JSON after 1 chunks" in result.error.message


@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused(kind):
    async def go():
        server = await MockLLMServer().start()
        config = make_config(server, kind, connect_timeout_s=1)
        await server.close()
        async with aiohttp.ClientSession() as session:
            return await adapter_for(config).generate(session, make_request())

    result = asyncio.run(go())
    assert result.error is not None and result.error.kind == ErrorKind.CONNECTION
    assert CANARY not in result.error.message


@pytest.mark.parametrize("kind", KINDS)
def test_cancellation_propagates_and_closes_the_connection(kind):
    async def go():
        async with mock_server(Script(pieces=["x"] * 50, gap_s=0.02)) as server, aiohttp.ClientSession() as session:
            adapter = adapter_for(make_config(server, kind))
            task = asyncio.create_task(adapter.generate(session, make_request()))
            while server.chunks_sent < 2:
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(server.disconnected.wait(), 1.0)
            return server

    server = asyncio.run(go())
    assert server.disconnects == 1 and server.chunks_sent < 10
