"""A local OpenAI-compatible server with known latencies, to check the load engine against.

It serves `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions`, streamed (SSE) or
not, and produces exactly the timing of its `MockProfile`, so whatever a client measures beyond it
is the client's (or the network's) doing:

* chunk k of a request is sent at arrival + TTFT + k·tokens_per_chunk·ITL (absolute deadlines on
  the monotonic clock, never accumulated sleeps, so a busy server is late once, not more and more).
  Arrival is when the handler starts (headers parsed); chunks are never sent early;
* every chunk carries `llmbench_sent_at`, `time.monotonic()` when it was written. CLOCK_MONOTONIC is
  shared by every process on a Linux machine, so a client on the same host can split a latency
  into the server's lateness and its own;
* per-chunk CPU is kept small (the JSON is preformatted into bytes, a chunk is a timer callback and
  one transport write), because at 256 streams × 100 tokens/s the mock, not the client, would
  otherwise be measured. Run it on a core of its own (bench/loadgen.py pins it).

Errors (a status, with Retry-After on 429) and cut streams (the connection dropped mid-stream) are
drawn from one `random.Random(seed)`: the same sequence of requests meets the same failures.

Workload features (issue 13), each off by default so the timing above is unchanged:

* `prefix_cache`: a prefix cache over blocks of BLOCK_CHARS characters of the prompt text (the
  messages' contents joined in order, or the completion prompt). Block i is keyed by everything up
  to its end, so only true prefixes match; the cached tokens (cached characters / 4) are taken off
  the prefill time (`per_prompt_token_us`) and reported as `usage.prompt_tokens_details.cached_tokens`.
* `reasoning_tokens`: chat answers start with that many `reasoning_content` deltas, counted in
  `completion_tokens` and in `completion_tokens_details.reasoning_tokens`. They come on top of the
  answer's length (max_tokens caps the answer only), so a workload's output length stays its own.
  Text completions have no reasoning field and get none.
* `min_tokens` in a request lengthens the answer to at least that many tokens (max_tokens still caps).
* Every request's body is kept in a bounded ring (`request_log_size` entries, REQUEST_LOG_MAX_BYTES),
  with its path and arrival time: `GET /_mock/requests` lists it, `DELETE /_mock/requests` clears
  it, and `received_requests(app)` reads it in-process. The ring keeps the raw bytes aiohttp already
  read (no copy, and bytes are not tracked by the garbage collector, whose full collections over
  10,000 parsed multi-turn bodies would pause every stream for tens of ms); they are parsed when
  read. `DELETE /_mock/prefix_cache` empties the cache.
"""

import asyncio
import contextlib
import gc
import json
import math
import random
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from aiohttp import web

TOKEN_TEXT = "tok "  # every output token; four characters, so a client's chars/4 guess is exact
REASONING_TEXT = "hmm "  # every reasoning token
BLOCK_CHARS = 64  # the prefix cache's block: 16 tokens at 4 characters a token
REQUEST_LOG_MAX_BYTES = 256 * 1024 * 1024  # the request log drops its oldest bodies past this
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class MockProfile:
    """What the mock does to every request."""

    ttft_ms: float = 50.0
    itl_ms: float = 10.0
    output_tokens: int = 128  # or the request's max_tokens when smaller (exactly max_tokens with ignore_eos)
    jitter_ms: float = 0.0  # each chunk's deadline moves by uniform(−jitter, +jitter), never before the previous one
    tokens_per_chunk: int = 1
    per_prompt_token_us: float = 0.0  # TTFT grows by this much per prompt token (prefill)
    error_rate: float = 0.0  # share of requests answered with error_status instead
    error_status: int = 500
    retry_after_s: float | None = None  # sent as Retry-After with a 429
    cut_rate: float = 0.0  # share of streams whose connection is dropped half-way
    seed: int = 0
    model: str = "mock"
    prefix_cache: bool = False  # remember prompt prefixes: cached tokens skip prefill and are reported
    prefix_cache_blocks: int = 100_000  # blocks of BLOCK_CHARS the cache keeps (least recently used go)
    reasoning_tokens: int = 0  # reasoning deltas before every chat answer
    request_log_size: int = 10_000  # request bodies kept for GET /_mock/requests (0: none)


class PrefixCache:
    """The prompt prefixes seen, as a bounded LRU set of block keys. Block i's key chains the keys
    before it, so it stands for the whole text up to the end of block i."""

    def __init__(self, max_blocks: int = 100_000):
        self.max_blocks = max_blocks
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def clear(self) -> None:
        self._blocks.clear()

    def lookup_and_add(self, text: str) -> int:
        """How many leading characters of `text` (whole blocks) were seen before; then remember
        every whole block of it."""
        blocks = self._blocks
        keys: list[int] = []
        key, cached_chars, matching = 0, 0, True
        for end in range(BLOCK_CHARS, len(text) + 1, BLOCK_CHARS):
            key = hash((key, text[end - BLOCK_CHARS : end]))
            if matching and key in blocks:
                cached_chars = end
            else:
                matching = False
            keys.append(key)
        # Most recent last, with a prompt's first block freshest: the tail of a prefix is evicted
        # before its head, so what survives is still a prefix.
        for key in reversed(keys):
            blocks[key] = None
            blocks.move_to_end(key)
        while len(blocks) > self.max_blocks:
            blocks.popitem(last=False)
        return cached_chars


class RequestLog:
    """The last requests received, oldest first, bounded by count and by bytes of body."""

    def __init__(self, max_entries: int, max_bytes: int = REQUEST_LOG_MAX_BYTES):
        self.max_entries, self.max_bytes = max(0, max_entries), max_bytes
        self._entries: deque[tuple[str, bytes, float]] = deque()
        self._bytes = 0

    def append(self, path: str, raw: bytes, received: float) -> None:
        if not self.max_entries:
            return
        entries = self._entries
        entries.append((path, raw, received))
        self._bytes += len(raw)
        while len(entries) > self.max_entries or (self._bytes > self.max_bytes and len(entries) > 1):
            self._bytes -= len(entries.popleft()[1])

    def entries(self) -> list[dict]:
        """`{"path", "body" (parsed JSON), "received" (monotonic seconds)}` per request."""
        return [{"path": path, "body": json.loads(raw), "received": received} for path, raw, received in self._entries]

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


PROFILE_KEY = web.AppKey("profile", MockProfile)
RNG_KEY = web.AppKey("rng", random.Random)
CACHE_KEY = web.AppKey("prefix_cache", PrefixCache)
LOG_KEY = web.AppKey("request_log", RequestLog)


def prompt_text(body: dict) -> str:
    """The prompt as one text: the messages' string contents joined in order, or the completion prompt."""
    if "messages" in body:
        messages = body["messages"] if isinstance(body["messages"], list) else ()
        return "".join(m["content"] for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str))
    prompt = body.get("prompt") or ""
    return prompt if isinstance(prompt, str) else "".join(p for p in prompt if isinstance(p, str))


def prompt_tokens(body: dict) -> int:
    """A tokenizer-free count: one token per 4 characters of prompt text (at least 1)."""
    return max(1, math.ceil(len(prompt_text(body)) / 4))


def output_length(profile: MockProfile, body: dict) -> tuple[int, str]:
    """How many tokens to send and the finish reason: the profile's count (at least the request's
    `min_tokens`), capped by max_tokens; with `ignore_eos` a request gets exactly its max_tokens."""
    natural = max(profile.output_tokens, body.get("min_tokens") or 0)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is None:
        return natural, "stop"
    limit = max(1, int(limit))
    if body.get("ignore_eos") or limit <= natural:
        return limit, "length"
    return natural, "stop"


def _bad_field(body: dict) -> str | None:
    """The first length field that is not a non-negative integer, with why."""
    for name in ("max_tokens", "max_completion_tokens", "min_tokens"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            return f"{name} must be a non-negative integer"
    return None


class _Reply:
    """One request's preformatted pieces. A chunk is `head` (everything up to the choices) + the
    running usage when asked + the stamp; heads are built once, usage and stamp at send time."""

    def __init__(self, body: dict, profile: MockProfile, chat: bool, request_id: str, cache: PrefixCache | None):
        self.chat, self.request_id = chat, request_id
        self.model = str(body.get("model") or profile.model)
        text = prompt_text(body)
        self.prompt_tokens = max(1, math.ceil(len(text) / 4))
        # None when the cache is off: the usage then says nothing, as vLLM's does by default.
        self.cached_tokens = None if cache is None else min(self.prompt_tokens, cache.lookup_and_add(text) // 4)
        self.count, self.finish_reason = output_length(profile, body)
        self.reasoning = profile.reasoning_tokens if chat else 0
        per_chunk = max(1, profile.tokens_per_chunk)
        self.content_ends = _chunk_ends(self.count, per_chunk)
        self.reasoning_ends = _chunk_ends(self.reasoning, per_chunk) if self.reasoning else []
        # Running output-token totals after each chunk, reasoning first.
        self.ends = self.content_ends
        if self.reasoning:
            self.ends = [*self.reasoning_ends, *(self.reasoning + end for end in self.content_ends)]
        options = body.get("stream_options") or {}
        self.include_usage = bool(options.get("include_usage"))
        self.continuous_usage = bool(options.get("continuous_usage_stats"))
        created = int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"
        self.prefix = (
            f'data: {{"id":"{request_id}","object":"{kind}","created":{created},"model":{json.dumps(self.model)},'
        )
        # `% (completion_tokens, total_tokens)` gives a running usage field.
        self.usage_template = b'"usage":{"prompt_tokens":%d,"completion_tokens":%%d,"total_tokens":%%d},' % (
            self.prompt_tokens
        )

    @property
    def completion_tokens(self) -> int:
        return self.reasoning + self.count

    def usage(self) -> dict:
        completion = self.completion_tokens
        usage: dict = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning}
        return usage

    def content_head(self, text: str, first: bool, finish: str | None, key: str = "content") -> bytes:
        """A chunk's head carrying `text` as `key` ("content" or "reasoning_content"; a text
        completion's chunk always has `text`)."""
        finish_json = "null" if finish is None else f'"{finish}"'
        if self.chat:
            role = '"role":"assistant",' if first else ""
            choice = f'{{"index":0,"delta":{{{role}"{key}":"{text}"}},"logprobs":null,"finish_reason":{finish_json}}}'
        else:
            choice = f'{{"index":0,"text":"{text}","logprobs":null,"finish_reason":{finish_json}}}'
        return f'{self.prefix}"choices":[{choice}],'.encode()

    def finish_head(self) -> bytes:
        """OpenAI's last choice chunk: an empty delta carrying the finish reason (chat only)."""
        choice = f'{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{self.finish_reason}"}}'
        return f'{self.prefix}"choices":[{choice}],'.encode()

    def usage_head(self) -> bytes:
        usage = json.dumps(self.usage(), separators=(",", ":"))
        return f'{self.prefix}"choices":[],"usage":{usage},'.encode()


def _chunk_ends(count: int, per_chunk: int) -> list[int]:
    """How many tokens have been sent after each chunk: per_chunk at a time, the last one shorter."""
    return [*range(per_chunk, count, per_chunk), count]


def _deadlines(profile: MockProfile, rng: random.Random, arrival: float, ttft_s: float, ends: list[int]) -> list[float]:
    """When each chunk is due: the slot of its last token, shifted so that the first chunk comes at
    TTFT and each later one after as many ITLs as it carries tokens (per-token ITL stays itl_ms)."""
    itl_s, per_chunk, base = profile.itl_ms / 1000, max(1, profile.tokens_per_chunk), arrival + ttft_s
    deadlines = [base + max(0, end - per_chunk) * itl_s for end in ends]
    if profile.jitter_ms:
        jitter_s, previous = profile.jitter_ms / 1000, arrival
        for index, due in enumerate(deadlines):
            previous = deadlines[index] = max(previous, due + rng.uniform(-jitter_s, jitter_s))
    return deadlines


async def _sleep_until(deadline: float) -> None:
    """Sleep to an absolute monotonic time. uvloop's timers run on a millisecond clock cached per
    loop iteration and can fire early, so check again rather than trust one sleep."""
    while (delay := deadline - time.monotonic()) > 0:
        await asyncio.sleep(delay)


def _error_response(profile: MockProfile) -> web.Response:
    status = profile.error_status
    headers = {}
    if status == 429 and profile.retry_after_s is not None:
        headers["Retry-After"] = f"{profile.retry_after_s:g}"
    kind = "rate_limit_exceeded" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": f"mockllm injected error {status}", "type": kind, "code": status}}
    return web.json_response(body, status=status, headers=headers)


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=400)


async def _generate(request: web.Request, chat: bool) -> web.StreamResponse:
    arrival = time.monotonic()
    app = request.app
    profile: MockProfile = app[PROFILE_KEY]
    rng: random.Random = app[RNG_KEY]
    try:
        raw = await request.read()  # aiohttp's own buffer: logging it copies nothing
        body = json.loads(raw)
    except ValueError:  # UnicodeDecodeError included
        return _bad_request("body is not JSON")
    app[LOG_KEY].append(request.path, raw, arrival)
    if not isinstance(body, dict) or ("messages" if chat else "prompt") not in body:
        return _bad_request(f"{'messages' if chat else 'prompt'} is required")
    if (problem := _bad_field(body)) is not None:
        return _bad_request(problem)
    # Draw both numbers for every request so one setting does not shift the other's sequence.
    failing, cutting = rng.random() < profile.error_rate, rng.random() < profile.cut_rate
    if failing:
        return _error_response(profile)
    request_id = f"{'chatcmpl' if chat else 'cmpl'}-{rng.getrandbits(48):012x}"
    reply = _Reply(body, profile, chat, request_id, app[CACHE_KEY] if profile.prefix_cache else None)
    prefill_tokens = reply.prompt_tokens - (reply.cached_tokens or 0)
    ttft_s = (profile.ttft_ms + prefill_tokens * profile.per_prompt_token_us / 1000) / 1000
    ends = reply.ends
    deadlines = _deadlines(profile, rng, arrival, ttft_s, ends)
    if body.get("stream"):
        return await _stream(request, reply, ends, deadlines, cut_after=len(ends) // 2 if cutting else None)
    await _sleep_until(deadlines[-1])
    if cutting and request.transport is not None:
        request.transport.abort()  # the client sees the connection close without an answer
    return _full_response(reply, TOKEN_TEXT * reply.count)


def _full_response(reply: _Reply, text: str) -> web.Response:
    if reply.chat:
        message = {"role": "assistant", "content": text}
        if reply.reasoning:
            message["reasoning_content"] = REASONING_TEXT * reply.reasoning
        choice = {"index": 0, "message": message, "finish_reason": reply.finish_reason}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reply.finish_reason}
    body = {
        "id": reply.request_id,
        "object": "chat.completion" if reply.chat else "text_completion",
        "created": int(time.time()),
        "model": reply.model,
        "choices": [choice],
        "usage": reply.usage(),
        "llmbench_sent_at": time.monotonic(),
    }
    return web.json_response(body)


class _Streamer:
    """Writes one stream's chunks from loop timer callbacks, straight to the transport.

    A coroutine per stream that sleeps between tokens costs a future, a timer and a task step per
    chunk; a callback costs the timer only. Headers are already sent (StreamResponse.prepare), so a
    chunk is framed here (HTTP/1.1 chunked encoding) and `write_eof` adds the terminating chunk.
    """

    def __init__(self, request: web.Request, chunked: bool, reply: _Reply, ends: list[int], deadlines: list[float],
                 cut_at: int | None):  # fmt: skip
        self.loop = asyncio.get_running_loop()
        self.transport = request.transport
        self.heads = _heads(reply)
        # Running usage (completion tokens so far) per chunk, None where a chunk has none.
        self.usage: list[int | None] | None = None
        if reply.continuous_usage:
            self.usage = [*ends, ends[-1]] if reply.chat else list(ends)
            self.usage += [None] * (len(self.heads) - len(self.usage))
            self.usage_template, self.prompt_tokens = reply.usage_template, reply.prompt_tokens
        self.deadlines = deadlines + [deadlines[-1]] * (len(self.heads) - len(deadlines))
        self.chunked, self.cut_at = chunked, cut_at
        self.index = 0
        self.done: asyncio.Future[bool] = self.loop.create_future()  # True when the stream ended normally

    def start(self) -> None:
        self._step()

    def _step(self) -> None:
        transport, heads, deadlines = self.transport, self.heads, self.deadlines
        if transport is None or transport.is_closing():
            return self._finish(False)
        now = time.monotonic()
        parts: list[bytes] = []
        stamp = b'"llmbench_sent_at":%.6f}\n\n' % now
        while self.index < len(heads) and deadlines[self.index] <= now:
            if self.index == self.cut_at:
                self._write(transport, parts)
                transport.abort()  # as a crashed server or a proxy would: no terminating chunk, no [DONE]
                return self._finish(False)
            if self.usage is not None and (done := self.usage[self.index]) is not None:
                parts.append(heads[self.index] + self.usage_template % (done, self.prompt_tokens + done) + stamp)
            else:
                parts.append(heads[self.index] + stamp)
            self.index += 1
        if self.index == len(heads):
            parts.append(DONE)
        self._write(transport, parts)
        if self.index == len(heads):
            return self._finish(True)
        # uvloop's timers run on a millisecond clock cached per loop iteration and may fire early:
        # the next step checks the deadline again and simply re-arms.
        self.loop.call_later(deadlines[self.index] - now, self._step)

    def _write(self, transport: asyncio.BaseTransport, parts: list[bytes]) -> None:
        if not parts:
            return
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        transport.write(b"%x\r\n%s\r\n" % (len(payload), payload) if self.chunked else payload)

    def _finish(self, ok: bool) -> None:
        if not self.done.done():
            self.done.set_result(ok)


def _segment(reply: _Reply, token_text: str, key: str, ends: list[int], role: bool, finish: str | None) -> list[bytes]:
    """The heads of a run of chunks of one kind: those in the middle share one bytes object; the
    first may carry the role, the last may be shorter and carry a completion's finish reason."""
    last = len(ends) - 1
    middle = reply.content_head(token_text * ends[0], False, None, key)
    heads = [middle] * len(ends)
    last_size = ends[last] - (ends[last - 1] if last else 0)
    heads[last] = reply.content_head(token_text * last_size, role and last == 0, finish, key)
    if last:
        heads[0] = reply.content_head(token_text * ends[0], role, None, key)
    return heads


def _heads(reply: _Reply) -> list[bytes]:
    """Every chunk's head, in sending order: the reasoning chunks, the answer's chunks, then
    OpenAI's finish chunk (chat) and the usage chunk (include_usage)."""
    heads: list[bytes] = []
    if reply.reasoning_ends:
        heads = _segment(reply, REASONING_TEXT, "reasoning_content", reply.reasoning_ends, True, None)
    finish = None if reply.chat else reply.finish_reason
    heads += _segment(reply, TOKEN_TEXT, "content", reply.content_ends, not heads, finish)
    if reply.chat:
        heads.append(reply.finish_head())
    if reply.include_usage:
        heads.append(reply.usage_head())
    return heads


async def _stream(
    request: web.Request, reply: _Reply, ends: list[int], deadlines: list[float], cut_after: int | None
) -> web.StreamResponse:
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    chunked = response.headers.get("Transfer-Encoding") == "chunked"  # `response.chunked` is only the explicit opt-in
    streamer = _Streamer(request, chunked, reply, ends, deadlines, cut_after)
    streamer.start()
    if await streamer.done:
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
    return response


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=True)


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=False)


def received_requests(app: web.Application) -> list[dict]:
    """What the mock received, oldest first: `{"path", "body" (parsed JSON), "received" (monotonic s)}`."""
    return app[LOG_KEY].entries()


def clear_received(app: web.Application) -> None:
    app[LOG_KEY].clear()


async def _requests_list(request: web.Request) -> web.Response:
    return web.json_response(received_requests(request.app))


async def _requests_clear(request: web.Request) -> web.Response:
    clear_received(request.app)
    return web.Response(status=204)


async def _prefix_cache_clear(request: web.Request) -> web.Response:
    request.app[CACHE_KEY].clear()
    return web.Response(status=204)


async def _models(request: web.Request) -> web.Response:
    model = request.app[PROFILE_KEY].model
    return web.json_response(
        {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "llmbench"}]}
    )


def make_app(profile: MockProfile) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)  # long prompts are part of what gets tested
    app[PROFILE_KEY] = profile
    app[RNG_KEY] = random.Random(profile.seed)
    app[CACHE_KEY] = PrefixCache(profile.prefix_cache_blocks)
    app[LOG_KEY] = RequestLog(profile.request_log_size)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_get("/_mock/requests", _requests_list)
    app.router.add_delete("/_mock/requests", _requests_clear)
    app.router.add_delete("/_mock/prefix_cache", _prefix_cache_clear)
    return app


def install_uvloop() -> bool:
    """Use uvloop's event loop policy when it is installed; says whether it is."""
    try:
        import uvloop
    except ImportError:
        return False
    with contextlib.suppress(Exception):
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return True
    return False


def run(host: str = "127.0.0.1", port: int = 8001, profile: MockProfile | None = None) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM). No access log: it would cost more CPU than a request.
    What is loaded by then (all of Django under manage.py) is frozen out of the garbage collector,
    so a full collection does not walk it in the middle of a stream."""
    install_uvloop()
    gc.collect()
    gc.freeze()
    web.run_app(make_app(profile or MockProfile()), host=host, port=port, access_log=None, print=None)
