"""Provider adapters: one streamed chat (or text) completion per call, timed on the monotonic clock.

Every vendor speaks SSE over HTTP; what differs is the request body, the auth header, the event
shapes and how the stream says it is finished. The shared loop here does the timing, the error
mapping and the clean-up, and each adapter only translates.

Decisions worth knowing:

* Errors are returned in `GenerationResult.error`, never raised: a load test must keep going.
  `asyncio.CancelledError` is the exception, and the connection is closed so the server stops.
* Every error message goes through `_scrub`: the key (and any extra header value) is removed even
  when a server echoes it back, and header lines are dropped. Gemini's key goes in the
  `x-goog-api-key` header, never in the URL, because URLs end up in exception text and logs.
* Only token-bearing chunks are timed (role-only and usage-only chunks are not tokens). Tokens
  per chunk come from a running usage total when the server sends one on every content chunk
  (vLLM's `continuous_usage_stats`, Gemini's usageMetadata), else 1.
* Reasoning deltas (`reasoning_content`/`reasoning`, Anthropic's `thinking_delta`, Gemini's `thought`
  parts) are tokens, so they are timed (TTFT is the first token of any kind), but they are not
  `text`: `text` is the answer a multi-turn session sends back as the assistant message.
  `first_output_time` is the first chunk with answer text (time to first output token).
* `cached_tokens` and `reasoning_tokens` are what the server's usage says; None when it says
  nothing (never 0 for "not reported"). Without a reasoning count in the usage, the reasoning
  tokens are counted from the chunks when any reasoning arrived.
* A stream that ends before its terminator (`[DONE]`, `message_stop`, a `finishReason`) is a
  CONNECTION error even if the HTTP body ended cleanly: the answer is incomplete.
* Finish reasons are the vendor's own words ("stop", "end_turn", "STOP" …).
"""

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
import orjson

from apps.providers.engine.callmetrics import call_metrics
from apps.providers.engine.sse import SSEParser
from apps.providers.engine.types import (
    EndpointConfig,
    ErrorKind,
    GenerationRequest,
    GenerationResult,
    Kind,
    RequestError,
)

ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_DEFAULT_MAX_TOKENS = 1024  # the Messages API requires max_tokens
MAX_MESSAGE_CHARS = 300  # of a vendor's error message; enough to say what went wrong
MAX_ERROR_BODY_BYTES = 64 * 1024
_HEADER_LINE = re.compile(
    r"(?i)\b(authorization|x-api-key|x-goog-api-key|api-key|cookie|proxy-authorization)\b\s*[:=]\s*(bearer\s+)?\S+"
)


@dataclass
class VendorError(RequestError):
    """A RequestError from an HTTP error response, with the server's `x-should-retry` verdict
    (None when absent), which the retry loop obeys."""

    should_retry: bool | None = None


class AdapterError(Exception):
    """Raised by `list_models` (generation never raises); `error.message` is safe to show."""

    def __init__(self, error: RequestError):
        self.error = error
        super().__init__(error.message)


def status_kind(status: int) -> ErrorKind:
    """The ErrorKind of an HTTP error status."""
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status in (401, 403):
        return ErrorKind.AUTH
    if status in (408, 409) or status >= 500:
        return ErrorKind.SERVER
    return ErrorKind.BAD_REQUEST


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, else `retry-after` as seconds or an
    HTTP-date. None when absent or unreadable; the retry policy decides what is too long."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return when.timestamp() - (time.time() if now is None else now)


def _should_retry_header(headers: Any) -> bool | None:
    value = (headers.get("x-should-retry") or "").strip().lower()
    return True if value == "true" else False if value == "false" else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def carry_request(result: GenerationResult, request: GenerationRequest) -> GenerationResult:
    """Copy the workload's bookkeeping from the request onto its result (every adapter, the
    simulator included, calls this): session and turn, the requested input length, and
    max_tokens as the requested output length. Returns `result`."""
    result.session_index = request.session_index
    result.turn_index = request.turn_index
    result.requested_input_tokens = request.requested_input_tokens
    result.requested_output_tokens = request.max_tokens
    return result


def chat_messages(request: GenerationRequest) -> list[dict[str, str]]:
    """The conversation of a chat API: the messages, or for endpoint="completions" the prompt as
    one user message (vendors without a text-completion API)."""
    if request.endpoint == "completions" and request.prompt is not None:
        return [{"role": "user", "content": request.prompt}]
    return request.messages


@dataclass(slots=True)
class _Stream:
    """What one response has produced so far; the vendor's event handler fills it in."""

    result: GenerationResult
    texts: list[str] = field(default_factory=list)
    done: bool = False  # the vendor's terminator arrived
    error: RequestError | None = None
    usage_seen: bool = False
    running: bool = True  # every content chunk so far carried a running output-token total
    last_total: int = 0
    last_event_time: float = 0.0
    reasoning_counted: int = 0  # tokens carried by reasoning chunks, for servers that report no count

    def content(
        self, arrived: float, text: str | None, total: int | None, stamp: Any = None, reasoning: bool = False
    ) -> None:
        """Record one token-bearing chunk: answer `text`, or `reasoning` (timed, never part of the
        text). `total` is the running output-token count the chunk carried, if any: it is trusted
        only while every content chunk has one, since a single total at the end (llama.cpp, Gemini)
        would otherwise land on the last chunk."""
        result = self.result
        result.chunk_times.append(arrived)
        if total is not None and self.running:
            tokens = max(1, total - self.last_total)
            self.last_total = total
        else:
            self.running = False
            tokens = 1
        result.chunk_tokens.append(tokens)
        if reasoning:
            self.reasoning_counted += tokens
        if text:
            self.texts.append(text)
            if result.first_output_time is None:
                result.first_output_time = arrived
                result.first_output_index = len(result.chunk_times) - 1
        if isinstance(stamp, int | float):
            result.server_send_times.append(float(stamp))

    def running_total(self, total: int | None) -> None:
        """A total seen on a chunk without content: tokens the client never saw as text."""
        if total is not None:
            self.last_total = total


class Adapter:
    """Streams one chat completion from one endpoint. Stateless apart from the config, so one
    instance serves any number of concurrent requests."""

    kind: ClassVar[Kind]
    terminator: ClassVar[str] = "the end of the stream"

    def __init__(self, config: EndpointConfig):
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self._secrets = tuple(
            sorted({s for s in (config.api_key, *config.extra_headers.values()) if len(s) >= 4}, key=len, reverse=True)
        )
        self._stream_timeout = aiohttp.ClientTimeout(
            total=config.total_timeout_s, sock_connect=config.connect_timeout_s, sock_read=config.read_timeout_s
        )
        # Without streaming the whole generation happens before the first byte, so only the
        # total deadline bounds it.
        self._whole_timeout = aiohttp.ClientTimeout(total=config.total_timeout_s, sock_connect=config.connect_timeout_s)
        self._calls = call_metrics(config.name)  # /metrics: every generation counted and timed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # --- what each vendor supplies -------------------------------------------------------------

    def _url(self, request: GenerationRequest) -> str:
        raise NotImplementedError

    def _auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        raise NotImplementedError

    def _on_event(self, event: str, data: str, arrived: float, stream: _Stream) -> None:
        """Handle one SSE event: record content, usage, the end, or an in-stream error."""
        raise NotImplementedError

    def _on_whole(self, body: Any, arrived: float, stream: _Stream) -> None:
        """Handle a non-streamed response body."""
        raise NotImplementedError

    def _models_url(self) -> str:
        raise NotImplementedError

    def models_url(self) -> str:
        """Where the endpoint lists its models (what /ready asks to see the endpoint answer)."""
        return self._models_url()

    def _models_page(self, body: Any) -> tuple[list[str], dict[str, str] | None]:
        """Model ids of one page and the query of the next page (None on the last)."""
        raise NotImplementedError

    # --- the shared machinery ------------------------------------------------------------------

    def headers(self, stream: bool = True) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
        headers.update(self._auth_headers())
        headers.update(self.config.extra_headers)
        return headers

    async def generate(self, session: aiohttp.ClientSession, request: GenerationRequest) -> GenerationResult:
        """Send `request` and read the answer; failures come back in `result.error`."""
        url = self._url(request)
        payload = json.dumps(self._body(request)).encode()
        headers = self.headers(request.stream)
        timeout = self._stream_timeout if request.stream else self._whole_timeout
        result = carry_request(GenerationResult(send_time=0.0), request)
        stream = _Stream(result)
        response: aiohttp.ClientResponse | None = None
        clean = False
        result.send_time = time.monotonic()
        try:
            response = await session.post(url, data=payload, headers=headers, timeout=timeout)
            if response.status >= 300:
                result.error = await self._http_error(response)
                clean = True
            elif request.stream and response.content_type != "application/json":
                clean = await self._read_stream(response, stream)
            else:
                await self._read_whole(response, stream)
                clean = stream.error is None
        except TimeoutError as exc:  # aiohttp's timeouts all subclass it
            stream.error = RequestError(ErrorKind.TIMEOUT, self._timeout_message(exc, response, stream))
        except (aiohttp.ClientError, OSError) as exc:
            stream.error = RequestError(ErrorKind.CONNECTION, self._connection_message(exc, response, stream))
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:  # a body we cannot follow
            stream.error = RequestError(ErrorKind.PROTOCOL, f"unexpected response ({type(exc).__name__})")
        except asyncio.CancelledError:
            if response is not None:
                response.close()  # the server sees the connection drop and can stop generating
            self._calls.failed(ErrorKind.CANCELLED, time.monotonic() - result.send_time)
            raise
        finally:
            if response is not None and not response.closed:
                if clean:
                    response.release()
                else:
                    response.close()
        end = time.monotonic()
        if result.error is None and stream.error is None and not stream.done:
            stream.error = RequestError(
                ErrorKind.CONNECTION,
                f"stream cut after {len(result.chunk_times)} chunks: it ended before {self.terminator}",
            )
        if result.error is None and stream.error is not None:
            result.error = stream.error
        result.text = "".join(stream.texts)
        if result.reasoning_tokens is None and stream.reasoning_counted:
            result.reasoning_tokens = stream.reasoning_counted
        if stream.usage_seen:
            result.token_source = "server"
        elif result.chunk_times and request.stream:
            result.output_tokens = sum(result.chunk_tokens)
            result.token_source = "counted"
        result.end_time = stream.last_event_time if result.error is None and stream.last_event_time else end
        if result.error is not None:
            result.error.message = self._scrub(result.error.message)
        self._calls.record(result.error, end - result.send_time)
        return result

    async def _read_stream(self, response: aiohttp.ClientResponse, stream: _Stream) -> bool:
        """Feed the body through the SSE parser. True when it was read to its end."""
        parser = SSEParser()
        on_event = self._on_event
        async for chunk in response.content.iter_any():
            arrived = time.monotonic()
            for event, data in parser.feed(chunk):
                stream.last_event_time = arrived
                on_event(event, data, arrived, stream)
                if stream.error is not None:
                    return False
        for event, data in parser.flush():
            stream.last_event_time = arrived = time.monotonic()
            on_event(event, data, arrived, stream)
        return stream.error is None

    async def _read_whole(self, response: aiohttp.ClientResponse, stream: _Stream) -> None:
        raw = await response.read()
        stream.last_event_time = arrived = time.monotonic()
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: a body nested absurdly deep
            stream.error = RequestError(ErrorKind.PROTOCOL, f"response is not JSON: {raw[:120]!r}")
            return
        if isinstance(body, dict) and body.get("error"):
            stream.error = self._body_error(body)
            return
        try:
            self._on_whole(body, arrived, stream)
        except (AttributeError, KeyError, IndexError, TypeError) as exc:
            stream.error = RequestError(ErrorKind.PROTOCOL, f"unexpected response shape ({type(exc).__name__})")
            return
        stream.done = True
        result = stream.result
        if stream.texts or result.output_tokens:
            result.chunk_times.append(arrived)
            result.chunk_tokens.append(max(1, result.output_tokens or 1))
        if any(stream.texts):
            result.first_output_time = arrived
            result.first_output_index = len(result.chunk_times) - 1 if result.chunk_times else None

    def _load(self, data: str, stream: _Stream) -> Any:
        """An event's JSON, or None after recording a protocol error."""
        try:
            return orjson.loads(data)  # every streamed event: several times faster than json.loads
        except (ValueError, RecursionError):
            count = len(stream.result.chunk_times)
            stream.error = RequestError(ErrorKind.PROTOCOL, f"unparsable JSON after {count} chunks: {data[:120]!r}")
            return None

    def _event_object(self, data: str, stream: _Stream) -> dict | None:
        """An event's JSON object, or None after recording why it is not a usable one."""
        chunk = self._load(data, stream)
        if chunk is None:
            return None
        if not isinstance(chunk, dict):
            stream.error = RequestError(ErrorKind.PROTOCOL, f"unexpected event: {data[:120]!r}")
            return None
        if chunk.get("error"):
            stream.error = self._body_error(chunk)
            return None
        return chunk

    async def _http_error(self, response: aiohttp.ClientResponse) -> RequestError:
        status = response.status
        parts: list[bytes] = []
        size = 0
        try:  # read() returns what is buffered, so loop to the end or the limit
            while size < MAX_ERROR_BODY_BYTES and (part := await response.content.read(MAX_ERROR_BODY_BYTES - size)):
                parts.append(part)
                size += len(part)
        except (aiohttp.ClientError, TimeoutError):
            pass  # the status alone still says what happened
        raw = b"".join(parts)
        detail = _vendor_message(raw)
        message = f"HTTP {status}: {detail}" if detail else f"HTTP {status} {response.reason or ''}".rstrip()
        return VendorError(
            kind=status_kind(status),
            message=message,
            status=status,
            retry_after_s=parse_retry_after(response.headers),
            should_retry=_should_retry_header(response.headers),
        )

    def _body_error(self, body: dict) -> RequestError:
        """An error object inside a 200 body or an SSE event."""
        error = body.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        code = code if isinstance(code, int) and code >= 400 else None
        kind = status_kind(code) if code else _error_type_kind(error)
        detail = _vendor_message(json.dumps(body).encode())
        return RequestError(kind, f"error event: {detail}", status=code)

    def _scrub(self, text: str) -> str:
        """`text` without secrets or header lines, on one line, at most MAX_MESSAGE_CHARS."""
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        text = _HEADER_LINE.sub(r"\1: [redacted]", text)
        text = " ".join(text.split())
        return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"

    def _timeout_message(self, exc: BaseException, response: aiohttp.ClientResponse | None, stream: _Stream) -> str:
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"connect timeout: no connection within {self.config.connect_timeout_s:g}s"
        if isinstance(exc, aiohttp.SocketTimeoutError):
            where = f"after {len(stream.result.chunk_times)} chunks" if response is not None else "before the headers"
            return f"read timeout: no data for {self.config.read_timeout_s:g}s {where}"
        return (
            f"total deadline of {self.config.total_timeout_s:g}s exceeded after {len(stream.result.chunk_times)} chunks"
        )

    def _connection_message(self, exc: BaseException, response: aiohttp.ClientResponse | None, stream: _Stream) -> str:
        name = type(exc).__name__
        if response is not None and response.status < 300:
            return f"stream cut after {len(stream.result.chunk_times)} chunks ({name})"
        # ClientResponseError's text carries the request; the others name host and OS error.
        detail = "" if isinstance(exc, aiohttp.ClientResponseError) else str(exc)
        return f"{name}: {detail}" if detail else name

    async def list_models(self, session: aiohttp.ClientSession) -> list[str]:
        """The endpoint's model ids. Raises AdapterError (with a scrubbed message) on failure."""
        models: list[str] = []
        params: dict[str, str] | None = {}
        for _ in range(20):  # pages; a bound so a server that always says "more" cannot loop us
            try:
                async with session.get(
                    self._models_url(), params=params, headers=self.headers(False), timeout=self._whole_timeout
                ) as response:
                    if response.status >= 300:
                        error = await self._http_error(response)
                        error.message = self._scrub(error.message)
                        raise AdapterError(error)
                    body = await response.json(content_type=None)
            except TimeoutError:
                error = RequestError(ErrorKind.TIMEOUT, f"no model list within {self.config.total_timeout_s:g}s")
                raise AdapterError(error) from None
            except aiohttp.ClientError as exc:
                message = self._scrub(self._connection_message(exc, None, _Stream(GenerationResult(0.0))))
                raise AdapterError(RequestError(ErrorKind.CONNECTION, message)) from None
            except ValueError:
                raise AdapterError(RequestError(ErrorKind.PROTOCOL, "the model list is not JSON")) from None
            try:
                page, params = self._models_page(body)
            except (AttributeError, KeyError, TypeError):
                raise AdapterError(RequestError(ErrorKind.PROTOCOL, "unexpected model list shape")) from None
            models.extend(page)
            if not params:
                break
        return models


def _vendor_message(raw: bytes) -> str:
    """The human part of an error body in any vendor's shape, else its text."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return raw.decode("utf-8", "replace").strip()
    if isinstance(body, list) and body:  # Gemini's JSON-array framing
        body = body[0]
    if not isinstance(body, dict):
        return str(body)
    error = body.get("error", body)
    if isinstance(error, str):
        return error
    if not isinstance(error, dict):
        return json.dumps(body)
    message = error.get("message") or error.get("detail") or body.get("detail") or ""
    if not isinstance(message, str):
        message = json.dumps(message)
    label = error.get("type") or error.get("status") or error.get("code")
    if isinstance(label, str) and label and label not in message:
        return f"{label}: {message}" if message else label
    return message or json.dumps(body)


_ERROR_TYPES = {
    # Anthropic's error types, OpenAI's types and codes, Gemini's statuses
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "rate_limit_exceeded": ErrorKind.RATE_LIMITED,
    "resource_exhausted": ErrorKind.RATE_LIMITED,
    "overloaded_error": ErrorKind.SERVER,
    "api_error": ErrorKind.SERVER,
    "server_error": ErrorKind.SERVER,
    "internal": ErrorKind.SERVER,
    "unavailable": ErrorKind.SERVER,
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.AUTH,
    "unauthenticated": ErrorKind.AUTH,
    "permission_denied": ErrorKind.AUTH,
    "invalid_api_key": ErrorKind.AUTH,
    "invalid_request_error": ErrorKind.BAD_REQUEST,
    "not_found_error": ErrorKind.BAD_REQUEST,
    "request_too_large": ErrorKind.BAD_REQUEST,
    "invalid_argument": ErrorKind.BAD_REQUEST,
    "not_found": ErrorKind.BAD_REQUEST,
    "badrequesterror": ErrorKind.BAD_REQUEST,
    "timeout_error": ErrorKind.TIMEOUT,
    "deadline_exceeded": ErrorKind.TIMEOUT,
}


def _error_type_kind(error: Any) -> ErrorKind:
    """The kind of an in-stream error by its type name; unknown ones are the server's fault."""
    if isinstance(error, dict):
        for key in ("type", "status", "code"):
            value = error.get(key)
            if isinstance(value, str) and value.lower() in _ERROR_TYPES:
                return _ERROR_TYPES[value.lower()]
    return ErrorKind.SERVER


class OpenAIAdapter(Adapter):
    """OpenAI chat completions and (endpoint="completions") text completions, and every server that
    copies them (vLLM, SGLang, TGI, llama.cpp, Ollama …). `base_url` includes the `/v1`.

    `stop` and `response_format` are OpenAI's own and go to every such server. The sampling extras
    of vLLM and SGLang (`top_k`, `min_p`, `repetition_penalty`, `min_tokens`, `ignore_eos`) go only
    to `openai_compatible` endpoints: OpenAI refuses unknown parameters."""

    kind = Kind.OPENAI
    terminator = "[DONE]"

    def __init__(self, config: EndpointConfig):
        super().__init__(config)
        self.compatible = config.kind == Kind.OPENAI_COMPATIBLE

    def _url(self, request: GenerationRequest) -> str:
        if request.endpoint == "completions":
            return f"{self.base_url}/completions"
        return f"{self.base_url}/chat/completions"

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        completions = request.endpoint == "completions"
        body: dict[str, Any] = {"model": request.model}
        if completions:
            # No prompt given: the messages' text in order, so a chat request can still be sent.
            body["prompt"] = request.prompt if request.prompt is not None else _joined_text(request.messages)
        else:
            body["messages"] = request.messages
        body["stream"] = request.stream
        if request.stream:
            body["stream_options"] = {"include_usage": True}
            if self.compatible:
                body["stream_options"]["continuous_usage_stats"] = True
        if request.max_tokens is not None:
            # OpenAI's reasoning models refuse max_tokens in chat; most other servers (and every
            # text-completion API) only know max_tokens.
            body["max_tokens" if self.compatible or completions else "max_completion_tokens"] = request.max_tokens
        names = _OPENAI_OPTIONS + _COMPATIBLE_OPTIONS if self.compatible else _OPENAI_OPTIONS
        for name in names:
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.ignore_eos and self.compatible:
            body["ignore_eos"] = True
        return body

    def _on_event(self, event: str, data: str, arrived: float, stream: _Stream) -> None:
        if data == "[DONE]":
            stream.done = True
            return
        chunk = self._event_object(data, stream)
        if chunk is None:
            return
        usage = chunk.get("usage")
        total = None
        if usage:
            total = _openai_usage(usage, stream.result)
            stream.usage_seen = True
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            if delta is None:  # a text completion's chunk
                text, reasoning, tools = choice.get("text"), None, None
            else:
                text = delta.get("content")
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                tools = delta.get("tool_calls")
            if text or reasoning or tools:
                stream.content(arrived, text, total, chunk.get("llmbench_sent_at"), reasoning=bool(reasoning))
            else:
                stream.running_total(total)
            if choice.get("finish_reason"):
                stream.result.finish_reason = choice["finish_reason"]
        else:
            stream.running_total(total)

    def _on_whole(self, body: Any, arrived: float, stream: _Stream) -> None:
        choice = body["choices"][0]
        message = choice.get("message")
        stream.texts.append((message.get("content") if message is not None else choice["text"]) or "")
        stream.result.finish_reason = choice.get("finish_reason")
        usage = body.get("usage")
        if usage:
            _openai_usage(usage, stream.result)
            stream.usage_seen = True

    def _models_url(self) -> str:
        return f"{self.base_url}/models"

    def _models_page(self, body: Any) -> tuple[list[str], dict[str, str] | None]:
        return [m["id"] for m in body["data"]], None


_OPENAI_OPTIONS = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "stop", "response_format")
_COMPATIBLE_OPTIONS = ("top_k", "min_p", "repetition_penalty", "min_tokens")


def _joined_text(messages: list[dict[str, str]]) -> str:
    return "".join(m.get("content") or "" for m in messages)


def _openai_usage(usage: Any, result: GenerationResult) -> int | None:
    """Take an OpenAI usage object into `result`; returns completion_tokens (a running total on
    vLLM's every chunk). Cached and reasoning counts are set only when the server reports them."""
    total = _int(usage.get("completion_tokens"))
    result.output_tokens = total
    result.input_tokens = _int(usage.get("prompt_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    if isinstance(prompt_details, dict) and (cached := _int(prompt_details.get("cached_tokens"))) is not None:
        result.cached_tokens = cached
    completion_details = usage.get("completion_tokens_details")
    if (
        isinstance(completion_details, dict)
        and (reasoning := _int(completion_details.get("reasoning_tokens"))) is not None
    ):
        result.reasoning_tokens = reasoning
    return total


class AnthropicAdapter(Adapter):
    """Anthropic Messages. `base_url` is the host (https://api.anthropic.com), without `/v1`.

    `stop` goes as `stop_sequences` and `top_k` as Anthropic's own `top_k`. Not supported here:
    `response_format` (Anthropic has no JSON mode in the Messages API this adapter speaks, and its
    structured outputs are a different contract) and vLLM's `min_p`, `repetition_penalty`,
    `min_tokens`, `ignore_eos`; they are not sent, and the workload editor offers them only for
    OpenAI-style endpoints. endpoint="completions" sends the prompt as one user message.
    `cache_read_input_tokens` is reported as `cached_tokens`; thinking deltas are reasoning."""

    kind = Kind.ANTHROPIC
    terminator = "message_stop"

    def _url(self, request: GenerationRequest) -> str:
        return f"{self.base_url}/v1/messages"

    def _auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return headers

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        messages = chat_messages(request)
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [m for m in messages if m["role"] != "system"],
            "max_tokens": request.max_tokens if request.max_tokens is not None else ANTHROPIC_DEFAULT_MAX_TOKENS,
            "stream": request.stream,
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.top_k is not None:
            body["top_k"] = request.top_k
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        return body  # no seed, penalties, ignore_eos or response_format in this API

    def _on_event(self, event: str, data: str, arrived: float, stream: _Stream) -> None:
        message = self._load(data, stream)
        if message is None:
            return
        if not isinstance(message, dict):
            stream.error = RequestError(ErrorKind.PROTOCOL, f"unexpected event: {data[:120]!r}")
            return
        kind = message.get("type") or event
        result = stream.result
        if kind == "content_block_delta":
            delta = message.get("delta") or {}
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                stream.content(arrived, delta.get("text"), None, message.get("llmbench_sent_at"))
            elif delta_type in ("thinking_delta", "input_json_delta"):
                thinking = delta_type == "thinking_delta"
                stream.content(arrived, None, None, message.get("llmbench_sent_at"), reasoning=thinking)
        elif kind == "message_start":
            usage = (message.get("message") or {}).get("usage") or {}
            result.input_tokens = _anthropic_input_tokens(usage)
            _anthropic_cached(usage, result)
        elif kind == "message_delta":
            usage = message.get("usage") or {}
            output = _int(usage.get("output_tokens"))
            if output is not None:
                result.output_tokens = output
                stream.usage_seen = True
            if usage.get("input_tokens") is not None:
                result.input_tokens = _anthropic_input_tokens(usage)
            _anthropic_cached(usage, result)
            reason = (message.get("delta") or {}).get("stop_reason")
            if reason:
                result.finish_reason = reason
        elif kind == "message_stop":
            stream.done = True
        elif kind == "error":
            stream.error = self._body_error(message)
        # ping, content_block_start/stop and unknown future events carry nothing we time

    def _on_whole(self, body: Any, arrived: float, stream: _Stream) -> None:
        stream.texts.extend(block.get("text", "") for block in body["content"] if block.get("type") == "text")
        stream.result.finish_reason = body.get("stop_reason")
        usage = body.get("usage") or {}
        stream.result.input_tokens = _anthropic_input_tokens(usage)
        _anthropic_cached(usage, stream.result)
        stream.result.output_tokens = _int(usage.get("output_tokens"))
        stream.usage_seen = stream.result.output_tokens is not None

    def _models_url(self) -> str:
        return f"{self.base_url}/v1/models"

    def _models_page(self, body: Any) -> tuple[list[str], dict[str, str] | None]:
        ids = [m["id"] for m in body["data"]]
        more = body.get("has_more") and body.get("last_id")
        return ids, {"limit": "1000", "after_id": body["last_id"]} if more else None


def _anthropic_input_tokens(usage: dict) -> int | None:
    """Prompt tokens including the cached ones, which Anthropic counts apart."""
    parts = [_int(usage.get(k)) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
    return None if parts[0] is None else sum(p for p in parts if p is not None)


def _anthropic_cached(usage: dict, result: GenerationResult) -> None:
    """Prompt tokens read from Anthropic's prompt cache, when the usage says."""
    cached = _int(usage.get("cache_read_input_tokens"))
    if cached is not None:
        result.cached_tokens = cached


class GeminiAdapter(Adapter):
    """Google Gemini (Generative Language API). `base_url` is the host, without `/v1beta`.

    `stop` goes as `stopSequences`, `top_k` as `topK`; `response_format` maps to
    `responseMimeType: application/json` (json_object) plus `responseJsonSchema` (json_schema).
    vLLM's `min_p`, `repetition_penalty`, `min_tokens` and `ignore_eos` are not supported and
    not sent. endpoint="completions" sends the prompt as one user message. `thoughtsTokenCount`
    is reported as `reasoning_tokens`, `cachedContentTokenCount` as `cached_tokens`; thought
    parts are reasoning."""

    kind = Kind.GEMINI
    terminator = "a finishReason"

    def _url(self, request: GenerationRequest) -> str:
        model = quote(request.model.removeprefix("models/"), safe="-._~")
        method = "streamGenerateContent?alt=sse" if request.stream else "generateContent"
        return f"{self.base_url}/v1beta/models/{model}:{method}"

    def _auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.config.api_key} if self.config.api_key else {}

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        messages = chat_messages(request)
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        contents = [
            {"role": "model" if m["role"] == "assistant" else "user", "parts": [{"text": m["content"]}]}
            for m in messages
            if m["role"] != "system"
        ]
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config: dict[str, Any] = {}
        for name, key in (
            ("max_tokens", "maxOutputTokens"),
            ("temperature", "temperature"),
            ("top_p", "topP"),
            ("seed", "seed"),
            ("frequency_penalty", "frequencyPenalty"),
            ("presence_penalty", "presencePenalty"),
            ("top_k", "topK"),
        ):
            value = getattr(request, name)
            if value is not None:
                config[key] = value
        if request.stop:
            config["stopSequences"] = list(request.stop)
        if request.response_format:
            config.update(_gemini_response_format(request.response_format))
        if config:
            body["generationConfig"] = config
        return body

    def _on_event(self, event: str, data: str, arrived: float, stream: _Stream) -> None:
        chunk = self._event_object(data, stream)
        if chunk is None:
            return
        self._take(chunk, arrived, stream, streamed=True)

    def _take(self, chunk: dict, arrived: float, stream: _Stream, streamed: bool) -> None:
        result = stream.result
        usage = chunk.get("usageMetadata")
        total = None
        if usage:
            total = _int(usage.get("candidatesTokenCount"))
            if usage.get("promptTokenCount") is not None:
                result.input_tokens = _int(usage.get("promptTokenCount"))
            if total is not None:
                thoughts = _int(usage.get("thoughtsTokenCount"))
                if thoughts is not None:
                    result.reasoning_tokens = thoughts
                total += thoughts or 0
                result.output_tokens = total
                stream.usage_seen = True
            cached = _int(usage.get("cachedContentTokenCount"))
            if cached is not None:
                result.cached_tokens = cached
        candidates = chunk.get("candidates") or []
        if not candidates:
            stream.running_total(total)
            blocked = (chunk.get("promptFeedback") or {}).get("blockReason")
            if blocked:  # the prompt was refused: a complete (empty) answer, not a cut stream
                result.finish_reason = blocked
                stream.done = True
            return
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
        if not streamed:
            stream.texts.append(text)
        elif any(p.get("text") or p.get("functionCall") for p in parts):
            thought = any(p.get("thought") and p.get("text") for p in parts)
            stream.content(arrived, text, total, chunk.get("llmbench_sent_at"), reasoning=thought)
        else:  # e.g. the closing chunk: finishReason and an empty part
            stream.running_total(total)
        if candidate.get("finishReason"):
            result.finish_reason = candidate["finishReason"]
            stream.done = True

    def _on_whole(self, body: Any, arrived: float, stream: _Stream) -> None:
        self._take(body, arrived, stream, streamed=False)

    def _models_url(self) -> str:
        return f"{self.base_url}/v1beta/models"

    def _models_page(self, body: Any) -> tuple[list[str], dict[str, str] | None]:
        ids = [m["name"].removeprefix("models/") for m in body.get("models", [])]
        token = body.get("nextPageToken")
        return ids, {"pageSize": "1000", "pageToken": token} if token else None


def _gemini_response_format(response_format: dict) -> dict[str, Any]:
    """OpenAI's response_format as Gemini generationConfig fields ("text" asks for nothing)."""
    kind = response_format.get("type")
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return {"responseMimeType": "application/json", **({"responseJsonSchema": schema} if schema else {})}
    return {}


def adapter_for(config: EndpointConfig) -> "Adapter":
    """The adapter of an endpoint's kind."""
    if config.kind in (Kind.OPENAI, Kind.OPENAI_COMPATIBLE):
        return OpenAIAdapter(config)
    if config.kind == Kind.ANTHROPIC:
        return AnthropicAdapter(config)
    if config.kind == Kind.GEMINI:
        return GeminiAdapter(config)
    if config.kind == Kind.SIM:
        from apps.providers.engine.sim import SimAdapter  # sim imports this module

        return SimAdapter(config)
    raise ValueError(f"no adapter for kind {config.kind!r}")
