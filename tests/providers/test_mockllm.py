"""The mock LLM server: OpenAI's wire format, the latencies it promises, injected failures, and
the management command's options. The server runs in the test's own event loop on a free port."""

import asyncio
import contextlib
import json
import random
import time

import aiohttp
import pytest
from aiohttp import web
from django.core.management.base import CommandError

from apps.providers.management.commands.mockllm import Command, profile_from_options
from apps.providers.mockllm import MockProfile, _chunk_ends, _deadlines, make_app, prompt_tokens
from tests.providers.virtual_time import LATE_OK_MS

FAST = {"ttft_ms": 5.0, "itl_ms": 1.0}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}


@contextlib.asynccontextmanager
async def serving(profile: MockProfile):
    runner = web.AppRunner(make_app(profile), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield session, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


async def read_events(response: aiohttp.ClientResponse) -> list[tuple[float, str]]:
    """(arrival time, data) of every SSE event, timed when its bytes arrived."""
    events, buffer = [], b""
    async for data in response.content.iter_any():
        arrived = time.monotonic()
        buffer += data
        *complete, buffer = buffer.split(b"\n\n")
        for event in complete:
            assert event.startswith(b"data: "), event
            events.append((arrived, event[6:].decode()))
    assert buffer == b"", "the stream ended inside an event"
    return events


def run(profile: MockProfile, scenario):
    """Serve `profile` and run `scenario(session, base_url)`, returning what it returns."""

    async def main():
        async with serving(profile) as (session, base):
            return await scenario(session, base)

    return asyncio.run(main())


def content_chunks(events: list[tuple[float, str]]) -> list[tuple[float, dict]]:
    chunks = [(t, json.loads(d)) for t, d in events if d != "[DONE]"]
    return [
        (t, c)
        for t, c in chunks
        if c["choices"] and (c["choices"][0].get("delta", {}).get("content") or c["choices"][0].get("text"))
    ]


class TestWireFormat:
    def test_chat_stream_is_sse_with_a_usage_chunk_and_done(self):
        async def scenario(session, base):
            body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
            async with session.post(f"{base}/chat/completions", json=body) as response:
                assert response.status == 200
                assert response.content_type == "text/event-stream"
                return await read_events(response)

        events = run(MockProfile(output_tokens=5, **FAST), scenario)
        assert events[-1][1] == "[DONE]"
        chunks = [json.loads(data) for _, data in events[:-1]]
        assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 7
        assert len({c["id"] for c in chunks}) == 1
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "tok "}
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:6]) == "tok " * 5
        assert chunks[5]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
        assert chunks[6]["choices"] == []
        assert chunks[6]["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
        assert all("usage" not in c for c in chunks[:6])  # running usage only when asked
        assert all(isinstance(c["llmbench_sent_at"], float) for c in chunks)

    def test_without_include_usage_there_is_no_usage_chunk(self):
        async def scenario(session, base):
            async with session.post(f"{base}/chat/completions", json={**CHAT, "stream": True}) as response:
                return await read_events(response)

        events = run(MockProfile(output_tokens=3, **FAST), scenario)
        assert [json.loads(d)["choices"] != [] for _, d in events[:-1]] == [True] * 4
        assert events[-1][1] == "[DONE]"

    def test_chat_without_stream_returns_one_body(self):
        async def scenario(session, base):
            async with session.post(f"{base}/chat/completions", json={**CHAT, "max_tokens": 4}) as response:
                return response.status, response.content_type, await response.json()

        status, content_type, body = run(MockProfile(**FAST), scenario)
        assert (status, content_type) == (200, "application/json")
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"] == {"role": "assistant", "content": "tok " * 4}
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}

    def test_models_lists_the_profiles_model(self):
        async def scenario(session, base):
            async with session.get(f"{base}/models") as response:
                return await response.json()

        body = run(MockProfile(model="mock-7b"), scenario)
        assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["mock-7b"]

    def test_completions_streamed_and_whole(self):
        async def scenario(session, base):
            body = {"model": "m", "prompt": "abcdefgh", "max_tokens": 3}
            async with session.post(f"{base}/completions", json={**body, "stream": True}) as response:
                events = await read_events(response)
            async with session.post(f"{base}/completions", json=body) as response:
                return events, await response.json()

        events, whole = run(MockProfile(**FAST), scenario)
        chunks = [json.loads(d) for _, d in events[:-1]]
        assert [c["object"] for c in chunks] == ["text_completion"] * 3
        assert [c["choices"][0]["text"] for c in chunks] == ["tok "] * 3
        assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "length"]
        assert events[-1][1] == "[DONE]"
        assert whole["choices"][0]["text"] == "tok " * 3
        assert whole["usage"]["prompt_tokens"] == 2

    def test_a_request_without_messages_is_a_400(self):
        async def scenario(session, base):
            async with session.post(f"{base}/chat/completions", json={"model": "m"}) as response:
                return response.status

        assert run(MockProfile(), scenario) == 400

    @pytest.mark.parametrize(
        ("fields", "count", "finish"),
        [
            ({}, 6, "stop"),
            ({"max_tokens": 4}, 4, "length"),
            ({"max_tokens": 9}, 6, "stop"),
            ({"max_tokens": 9, "ignore_eos": True}, 9, "length"),
            ({"max_completion_tokens": 2}, 2, "length"),
        ],
    )
    def test_max_tokens_and_ignore_eos(self, fields, count, finish):
        async def scenario(session, base):
            body = {**CHAT, **fields, "stream": True, "stream_options": {"include_usage": True}}
            async with session.post(f"{base}/chat/completions", json=body) as response:
                return [json.loads(d) for _, d in (await read_events(response))[:-1]]

        chunks = run(MockProfile(output_tokens=6, **FAST), scenario)
        assert chunks[-1]["usage"]["completion_tokens"] == count
        assert sum(bool(c["choices"] and c["choices"][0]["delta"].get("content")) for c in chunks) == count
        assert chunks[-2]["choices"][0]["finish_reason"] == finish


class TestTiming:
    def test_ttft_and_itl_match_the_profile(self):
        """Several streams at once: the first token after TTFT, then one every ITL, never early."""

        async def one(session, base):
            sent = time.monotonic()
            async with session.post(f"{base}/chat/completions", json={**CHAT, "stream": True}) as response:
                return sent, content_chunks(await read_events(response))

        async def scenario(session, base):
            return await asyncio.gather(*(one(session, base) for _ in range(4)))

        streams = run(MockProfile(ttft_ms=50, itl_ms=10, output_tokens=20), scenario)
        for sent, chunks in streams:
            arrivals = [t for t, _ in chunks]
            stamps = [c["llmbench_sent_at"] for _, c in chunks]
            assert len(chunks) == 20
            # Token k is due 50 + 10·k ms after the send: never early; late only by what a busy
            # machine's event loops add (generous, for a shared CI machine), and without drift.
            for k, (stamp, arrival) in enumerate(zip(stamps, arrivals, strict=True)):
                due_ms = 50 + 10 * k
                assert due_ms <= (stamp - sent) * 1000 <= (arrival - sent) * 1000 < due_ms + LATE_OK_MS
            assert (stamps[-1] - sent) * 1000 < 240 + LATE_OK_MS  # the last one is due on time too: no drift

    def test_send_stamps_are_monotonic_and_close_to_arrival(self):
        async def scenario(session, base):
            async with session.post(f"{base}/chat/completions", json={**CHAT, "stream": True}) as response:
                return content_chunks(await read_events(response))

        chunks = run(MockProfile(ttft_ms=5, itl_ms=3, output_tokens=20), scenario)
        stamps = [c["llmbench_sent_at"] for _, c in chunks]
        assert stamps == sorted(stamps)
        lags_ms = [(t - c["llmbench_sent_at"]) * 1000 for t, c in chunks]
        assert all(0 <= lag < LATE_OK_MS for lag in lags_ms), lags_ms  # one clock: arrival is never before the send

    def test_tokens_per_chunk_with_continuous_usage(self):
        """10 tokens, 4 per chunk: chunks of 4, 4, 2 tokens, each after as many ITLs as it carries."""

        async def scenario(session, base):
            options = {"include_usage": True, "continuous_usage_stats": True}
            body = {**CHAT, "stream": True, "stream_options": options}
            sent = time.monotonic()
            async with session.post(f"{base}/chat/completions", json=body) as response:
                return sent, content_chunks(await read_events(response))

        sent, chunks = run(MockProfile(ttft_ms=10, itl_ms=10, output_tokens=10, tokens_per_chunk=4), scenario)
        assert [c["choices"][0]["delta"]["content"] for _, c in chunks] == ["tok " * 4, "tok " * 4, "tok " * 2]
        assert [c["usage"]["completion_tokens"] for _, c in chunks] == [4, 8, 10]
        offsets_ms = [(c["llmbench_sent_at"] - sent) * 1000 for _, c in chunks]
        # Due at TTFT, then 4 ITLs later, then 2 more: never early, late only within the CI allowance.
        for offset, due in zip(offsets_ms, (10, 50, 70), strict=True):
            assert due <= offset < due + LATE_OK_MS, offsets_ms
        assert offsets_ms == sorted(offsets_ms)

    def test_prompt_length_adds_to_ttft(self):
        async def ttft(session, base, content):
            body = {"model": "m", "messages": [{"role": "user", "content": content}], "stream": True}
            sent = time.monotonic()
            async with session.post(f"{base}/chat/completions", json=body) as response:
                return (content_chunks(await read_events(response))[0][1]["llmbench_sent_at"] - sent) * 1000

        async def scenario(session, base):
            return await ttft(session, base, "abcd"), await ttft(session, base, "x" * 4000)

        short, long = run(MockProfile(ttft_ms=5, itl_ms=1, output_tokens=2, per_prompt_token_us=40), scenario)
        assert 5 <= short < 5 + LATE_OK_MS
        assert 45 <= long < 45 + LATE_OK_MS  # 1000 prompt tokens × 40 µs = 40 ms more

    def test_jitter_moves_deadlines_but_never_backwards(self):
        profile = MockProfile(ttft_ms=20, itl_ms=2, jitter_ms=5)
        deadlines = _deadlines(profile, random.Random(1), 100.0, 0.02, _chunk_ends(200, 1))
        assert deadlines == sorted(deadlines) and deadlines[0] >= 100.0
        nominal = [100.02 + k * 0.002 for k in range(200)]
        assert max(abs(d - n) for d, n in zip(deadlines, nominal, strict=True)) <= 0.005 + 1e-9
        assert deadlines != nominal

    def test_prompt_tokens_are_a_quarter_of_the_characters(self):
        assert prompt_tokens({"messages": [{"role": "user", "content": "x" * 9}]}) == 3
        assert prompt_tokens({"prompt": ["abcd", "efgh"]}) == 2
        assert prompt_tokens({"prompt": ""}) == 1


class TestFailures:
    def test_error_injection_sends_the_status_and_retry_after(self):
        async def scenario(session, base):
            async with session.post(f"{base}/chat/completions", json={**CHAT, "stream": True}) as response:
                return response.status, response.headers.get("Retry-After"), await response.json()

        status, retry_after, body = run(MockProfile(error_rate=1.0, error_status=429, retry_after_s=2.5), scenario)
        assert (status, retry_after) == (429, "2.5")
        assert body["error"]["type"] == "rate_limit_exceeded"
        status, retry_after, body = run(MockProfile(error_rate=1.0, error_status=503, retry_after_s=2.5), scenario)
        assert (status, retry_after) == (503, None)

    def test_the_error_rate_is_seeded(self):
        async def statuses(session, base):
            result = []
            for _ in range(40):
                async with session.post(f"{base}/chat/completions", json=CHAT) as response:
                    await response.read()
                    result.append(response.status)
            return result

        first = run(MockProfile(error_rate=0.5, ttft_ms=0, itl_ms=0, output_tokens=1, seed=7), statuses)
        again = run(MockProfile(error_rate=0.5, ttft_ms=0, itl_ms=0, output_tokens=1, seed=7), statuses)
        assert first == again
        assert 8 <= first.count(500) <= 32 and set(first) == {200, 500}

    def test_a_cut_stream_drops_the_connection_half_way(self):
        async def scenario(session, base):
            received = []
            with pytest.raises(aiohttp.ClientPayloadError):
                async with session.post(f"{base}/chat/completions", json={**CHAT, "stream": True}) as response:
                    async for line in response.content:
                        received.append(line)
            return received

        lines = run(MockProfile(cut_rate=1.0, output_tokens=10, **FAST), scenario)
        events = [line for line in lines if line.startswith(b"data: ")]
        assert len(events) == 5 and b"[DONE]" not in b"".join(lines)

    def test_a_cut_whole_response_never_arrives(self):
        async def scenario(session, base):
            with pytest.raises(aiohttp.ServerDisconnectedError):
                async with session.post(f"{base}/chat/completions", json=CHAT) as response:
                    await response.read()

        run(MockProfile(cut_rate=1.0, output_tokens=3, **FAST), scenario)


class TestCommand:
    def options(self, *argv: str) -> dict:
        return vars(Command().create_parser("manage.py", "mockllm").parse_args(list(argv)))

    def test_defaults_are_the_profiles_defaults(self):
        options = self.options()
        assert profile_from_options(options) == MockProfile()
        assert (options["host"], options["port"]) == ("127.0.0.1", 8001)

    def test_every_option_maps_to_the_profile(self):
        options = self.options(
            "--port", "9000", "--ttft-ms", "80", "--itl-ms", "5.5", "--output-tokens", "64", "--jitter-ms", "2",
            "--tokens-per-chunk", "3", "--error-rate", "0.1", "--error-status", "429", "--retry-after-s", "1.5",
            "--cut-rate", "0.05", "--per-prompt-token-us", "12", "--seed", "42", "--model", "llama",
        )  # fmt: skip
        assert options["port"] == 9000
        assert profile_from_options(options) == MockProfile(
            ttft_ms=80, itl_ms=5.5, output_tokens=64, jitter_ms=2, tokens_per_chunk=3, per_prompt_token_us=12,
            error_rate=0.1, error_status=429, retry_after_s=1.5, cut_rate=0.05, seed=42, model="llama",
        )  # fmt: skip

    @pytest.mark.parametrize(
        "argv",
        [("--error-rate", "1.5"), ("--itl-ms", "-1"), ("--tokens-per-chunk", "0"), ("--error-status", "200")],
    )
    def test_bad_values_are_refused(self, argv):
        with pytest.raises(CommandError):
            profile_from_options(self.options(*argv))
