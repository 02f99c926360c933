"""Local aiohttp servers that speak the vendors' streaming wire formats, for the adapter tests.

One server answers all three dialects (OpenAI chat completions under /v1, Anthropic Messages
under /v1/messages, Gemini under /v1beta), driven by a `Script`: what to stream, how fast, and
what to break. Scripts queued in `server.queue` are used one per generation request (for retry
tests), then `server.script`. Every request is recorded, and so is a client that hangs up.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from apps.providers.engine.types import Kind


@dataclass
class Script:
    pieces: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    tokens: list[int] | None = None  # output tokens per piece; 1 each by default
    first_delay_s: float = 0.0  # before the first content chunk (after the headers and preamble)
    gap_s: float = 0.0  # between content chunks
    continuous_usage: bool = False  # a running usage total on every chunk, asked for or not
    final_usage: bool = True
    prompt_tokens: int = 7
    status: int = 200
    error_message: str = "something went wrong"
    error_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    echo_key: bool = False  # the error body repeats the key and the auth header it received
    cut_after: int | None = None  # drop the connection after this many content chunks
    end_after: int | None = None  # end the body cleanly after this many, without the terminator
    hang_after: int | None = None  # go silent after this many, for hang_s
    hang_s: float = 1.0
    error_event_after: int | None = None  # send the vendor's in-stream error event after this many
    error_event_type: str = "overloaded_error"
    bad_json_after: int | None = None  # send a broken event after this many
    bad_json_event: str = '{"choices": [{"delta": {"content": "x"'  # what the broken event says
    stamp: bool = True  # put llmbench_sent_at in content chunks
    crlf: bool = False  # CRLF line endings
    fragment: int | None = None  # write each event in slices of this many bytes

    def token_counts(self) -> list[int]:
        return self.tokens or [1] * len(self.pieces)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class MockLLMServer:
    def __init__(self, script: Script | None = None):
        self.script = script or Script()
        self.queue: list[Script] = []
        self.requests: list[Recorded] = []
        self.chunks_sent = 0
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self.models = {"openai": ["gpt-test", "gpt-mini"], "anthropic": ["claude-test"], "gemini": ["gemini-test"]}
        self._runner: web.AppRunner | None = None
        self.root = ""

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> "MockLLMServer":
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.openai_chat)
        app.router.add_post("/v1/messages", self.anthropic_messages)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_post("/v1beta/models/{target}", self.gemini_generate)
        app.router.add_get("/v1beta/models", self.gemini_models)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.root = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def base_url(self, kind: Kind) -> str:
        return f"{self.root}/v1" if kind in (Kind.OPENAI, Kind.OPENAI_COMPATIBLE) else self.root

    # --- shared --------------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Script:
        body = await request.json() if request.can_read_body else None
        self.requests.append(Recorded(request.method, request.path, dict(request.query), dict(request.headers), body))
        return self.queue.pop(0) if self.queue else self.script

    @staticmethod
    def _key(request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        return (
            auth.removeprefix("Bearer ")
            or request.headers.get("x-api-key")
            or request.headers.get("x-goog-api-key", "")
        )

    def _error_text(self, request: web.Request, script: Script) -> str:
        if not script.echo_key:
            return script.error_message
        key = self._key(request)
        auth = request.headers.get("Authorization") or request.headers.get("x-api-key") or ""
        return f"{script.error_message}: Incorrect API key provided: {key}. Request headers: Authorization: {auth}"

    async def _open_stream(self, request: web.Request, script: Script) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        return response

    async def _send(self, response: web.StreamResponse, script: Script, data: Any, event: str | None = None) -> None:
        text = (f"event: {event}\n" if event else "") + "data: " + (data if isinstance(data, str) else json.dumps(data))
        raw = (text + "\n\n").encode()
        if script.crlf:
            raw = raw.replace(b"\n", b"\r\n")
        if script.fragment:
            for i in range(0, len(raw), script.fragment):
                await response.write(raw[i : i + script.fragment])
                await asyncio.sleep(0.001)
        else:
            await response.write(raw)

    async def _interrupt(self, request: web.Request, response: web.StreamResponse, script: Script, sent: int) -> str:
        """What to do after `sent` content chunks: "" to go on, "cut" or "end" to stop."""
        if script.cut_after == sent:
            assert request.transport is not None
            request.transport.abort()
            return "cut"
        if script.end_after == sent:
            await response.write_eof()
            return "end"
        if script.hang_after == sent:
            await asyncio.sleep(script.hang_s)
        if script.bad_json_after == sent:
            await self._send(response, script, script.bad_json_event)
            await response.write_eof()
            return "end"
        return ""

    async def _stream(
        self, request: web.Request, script: Script, events, error_event: tuple[str | None, dict]
    ) -> web.StreamResponse:
        """Run an async generator of ("pre"|"content"|"post", event, data) through the script;
        `error_event` is the vendor's in-stream error, sent when the script asks for it."""
        response = await self._open_stream(request, script)
        sent = 0
        try:
            async for phase, event, data in events:
                if phase in ("content", "post") and script.error_event_after == sent:
                    await self._send(response, script, error_event[1], error_event[0])
                    await response.write_eof()
                    return response
                if phase == "content":
                    action = await self._interrupt(request, response, script, sent)
                    if action:
                        return response
                    await asyncio.sleep(script.first_delay_s if sent == 0 else script.gap_s)
                    if script.stamp:
                        data["llmbench_sent_at"] = time.monotonic()
                    await self._send(response, script, data, event)
                    sent += 1
                    self.chunks_sent += 1
                else:
                    if phase == "post" and await self._interrupt(request, response, script, sent):
                        return response
                    await self._send(response, script, data, event)
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects += 1
            self.disconnected.set()
            raise
        return response

    # --- OpenAI --------------------------------------------------------------------------------

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        script = await self._record(request)
        if script.status >= 300:
            body = {
                "error": {
                    "message": self._error_text(request, script),
                    "type": script.error_type or "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
            return web.json_response(body, status=script.status, headers=script.headers)
        body = self.requests[-1].body
        model = body["model"]
        options = body.get("stream_options") or {}
        continuous = script.continuous_usage or bool(options.get("continuous_usage_stats"))
        final_usage = script.final_usage and bool(options.get("include_usage"))
        counts = script.token_counts()
        if not body.get("stream"):
            await asyncio.sleep(script.first_delay_s + script.gap_s * max(0, len(script.pieces) - 1))
            return web.json_response(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(script.pieces)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": script.prompt_tokens,
                        "completion_tokens": sum(counts),
                        "total_tokens": script.prompt_tokens + sum(counts),
                    },
                }
            )

        def chunk(delta: dict, finish: str | None, total: int | None) -> dict:
            usage = None
            if continuous and total is not None:
                usage = {
                    "prompt_tokens": script.prompt_tokens,
                    "completion_tokens": total,
                    "total_tokens": script.prompt_tokens + total,
                }
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }

        async def events():
            yield "pre", None, chunk({"role": "assistant", "content": ""}, None, 0)
            total = 0
            for piece, count in zip(script.pieces, counts, strict=True):
                total += count
                yield "content", None, chunk({"content": piece}, None, total)
            yield "post", None, chunk({}, "stop", total)
            if final_usage:
                usage = {
                    "prompt_tokens": script.prompt_tokens,
                    "completion_tokens": total,
                    "total_tokens": script.prompt_tokens + total,
                }
                yield (
                    "post",
                    None,
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    },
                )
            yield "post", None, "[DONE]"

        error = {"error": {"message": script.error_message, "type": script.error_event_type, "code": None}}
        return await self._stream(request, script, events(), (None, error))

    async def list_models(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded(request.method, request.path, dict(request.query), dict(request.headers), None))
        script = self.script
        if script.status >= 300:
            return web.json_response({"error": {"message": self._error_text(request, script)}}, status=script.status)
        if "x-api-key" in request.headers or "anthropic-version" in request.headers:
            ids = self.models["anthropic"]
            if "after_id" not in request.query:  # two pages: the first holds the first model
                return web.json_response(
                    {"data": [{"id": ids[0], "type": "model"}], "has_more": True, "first_id": ids[0], "last_id": ids[0]}
                )
            return web.json_response(
                {"data": [{"id": "claude-second", "type": "model"}], "has_more": False, "last_id": "claude-second"}
            )
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models["openai"]]}
        )

    # --- Anthropic -----------------------------------------------------------------------------

    async def anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        script = await self._record(request)
        if script.status >= 300:
            body = {
                "type": "error",
                "error": {
                    "type": script.error_type or "invalid_request_error",
                    "message": self._error_text(request, script),
                },
            }
            return web.json_response(body, status=script.status, headers=script.headers)
        body = self.requests[-1].body
        total = sum(script.token_counts())
        usage_in = {"input_tokens": script.prompt_tokens, "output_tokens": 1}
        if not body.get("stream"):
            await asyncio.sleep(script.first_delay_s)
            return web.json_response(
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [{"type": "text", "text": "".join(script.pieces)}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": script.prompt_tokens, "output_tokens": total},
                }
            )

        async def events():
            message = {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": body["model"],
                "stop_reason": None,
                "usage": usage_in,
            }
            yield "pre", "message_start", {"type": "message_start", "message": message}
            yield (
                "pre",
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            yield "pre", "ping", {"type": "ping"}
            for piece in script.pieces:
                delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
                yield "content", "content_block_delta", delta
            yield "post", "content_block_stop", {"type": "content_block_stop", "index": 0}
            usage_out = {"output_tokens": total} if script.final_usage else {}
            delta = {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": usage_out,
            }
            yield "post", "message_delta", delta
            yield "post", "message_stop", {"type": "message_stop"}

        error = {"type": "error", "error": {"type": script.error_event_type, "message": script.error_message}}
        return await self._stream(request, script, events(), ("error", error))

    # --- Gemini --------------------------------------------------------------------------------

    async def gemini_generate(self, request: web.Request) -> web.StreamResponse:
        script = await self._record(request)
        model, _, method = request.match_info["target"].partition(":")
        if script.status >= 300:
            status = {
                400: "INVALID_ARGUMENT",
                401: "UNAUTHENTICATED",
                403: "PERMISSION_DENIED",
                404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED",
            }
            body = {
                "error": {
                    "code": script.status,
                    "message": self._error_text(request, script),
                    "status": status.get(script.status, "INTERNAL"),
                }
            }
            return web.json_response(body, status=script.status, headers=script.headers)
        counts = script.token_counts()
        total_all = sum(counts)

        def usage(total: int) -> dict:
            return {
                "promptTokenCount": script.prompt_tokens,
                "candidatesTokenCount": total,
                "totalTokenCount": script.prompt_tokens + total,
            }

        if method == "generateContent":
            await asyncio.sleep(script.first_delay_s)
            candidate = {
                "content": {"parts": [{"text": "".join(script.pieces)}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
            return web.json_response(
                {"candidates": [candidate], "usageMetadata": usage(total_all), "modelVersion": model}
            )
        if method != "streamGenerateContent" or request.query.get("alt") != "sse":
            return web.json_response(
                {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}, status=404
            )

        async def events():
            total = 0
            for piece, count in zip(script.pieces, counts, strict=True):
                total += count
                chunk: dict[str, Any] = {
                    "candidates": [{"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}],
                    "modelVersion": model,
                }
                if script.continuous_usage:
                    chunk["usageMetadata"] = usage(total)
                yield "content", None, chunk
            last: dict[str, Any] = {
                "candidates": [
                    {"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP", "index": 0}
                ],
                "modelVersion": model,
            }
            if script.final_usage:
                last["usageMetadata"] = usage(total)
            yield "post", None, last

        error = {"error": {"code": 503, "message": script.error_message, "status": "UNAVAILABLE"}}
        return await self._stream(request, script, events(), (None, error))

    async def gemini_models(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded(request.method, request.path, dict(request.query), dict(request.headers), None))
        if self.script.status >= 300:
            body = {"error": {"code": self.script.status, "message": self._error_text(request, self.script)}}
            return web.json_response(body, status=self.script.status)
        if "pageToken" not in request.query:
            return web.json_response({"models": [{"name": "models/gemini-test"}], "nextPageToken": "p2"})
        return web.json_response({"models": [{"name": "models/gemini-other"}]})


@asynccontextmanager
async def mock_server(script: Script | None = None, **script_fields: Any) -> AsyncIterator[MockLLMServer]:
    """A started server for one test: `script` or a Script built from `script_fields`."""
    server = await MockLLMServer(script or Script(**script_fields)).start()
    try:
        yield server
    finally:
        await server.close()
