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

Capacity (issue 14; docs/mockllm-capacity.md), off unless `max_batch` or `token_budget_per_s` is set:

* at most `max_batch` requests run at once; later ones wait first come, first served, and the wait
  is part of their TTFT. Once admitted, the first token comes after ttft_ms + prefill, each next
  one after max(itl_ms, 1000·running/token_budget_per_s) ms (a chunk of k tokens after k such
  gaps), `running` taken when that chunk is scheduled, i.e. when the one before it is due. A
  request runs from admission until its last token. This is the simulator's model
  (apps/providers/engine/sim.py); the differences are listed in the doc;
* with the budget on, a stream's deadlines are computed one at a time (still absolute: each one
  from the nominal deadline before it, never from when a chunk actually went out);
* `known_capacity_rps` is the closed form of the largest evenly spaced arrival rate that meets
  given TTFT/TPOT thresholds in steady state.

Known answers (issue 15; docs/mockllm-known-answers.md), off unless `answer_key` is set: when the last user
message (or the completion prompt) asks a question of the key, the answer text is the one
apps/providers/engine/knownanswer.py gives (right for exactly round(accuracy × items) items per subject,
chosen by `answer_seed`) instead of "tok tok …"; streamed, it is spread over the same chunks. Token counts
and timing are unchanged, and any other prompt is answered as before.

`GET /metrics` speaks Prometheus with vLLM's metric names (labelled model_name). The figures are
plain counters of the app's `_Server`, turned into metric families only when scraped, so a chunk
costs a bucket increment and no lock. With `run(..., workers=N)` N processes share the port
(SO_REUSEPORT); each has its own capacity, counters and caches. Every response names its process
in `X-Mock-Pid`.
"""

import asyncio
import contextlib
import gc
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import signal
import time
from bisect import bisect_left, bisect_right
from collections import OrderedDict, deque
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from apps.providers.engine.knownanswer import KnownAnswerBook, known_answers, last_user_text, spread

TOKEN_TEXT = "tok "  # every output token; four characters, so a client's chars/4 guess is exact
REASONING_TEXT = "hmm "  # every reasoning token
BLOCK_CHARS = 64  # the prefix cache's block: 16 tokens at 4 characters a token
REQUEST_LOG_MAX_BYTES = 256 * 1024 * 1024  # the request log drops its oldest bodies past this
CHECK_CLIENT_S = 0.05  # a stream waiting longer than this for its next chunk looks at its connection meanwhile
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# vLLM's histogram bounds (vllm/v1/metrics/loggers.py), in seconds.
TTFT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                  40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
TPOT_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
                  80.0)  # fmt: skip
E2E_BUCKETS_S = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
                 960.0, 1920.0, 7680.0)  # fmt: skip


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
    max_batch: int | None = None  # requests served at once, the rest queue FCFS (None: no limit)
    token_budget_per_s: float | None = None  # output tokens/s shared by the running requests (None: no limit)
    kv_cache_tokens: int = 262_144  # what vllm:gpu_cache_usage_perc divides the running tokens by
    # Known answers (knownanswer.py): key file(s) in JSON Lines, "" for none.
    answer_key: str | tuple[str, ...] = ""
    answer_accuracy: float | dict[str, float] | str = 1.0  # a share, or per subject ({"math": 0.9, "*": 0.7})
    answer_style: str = "auto"  # auto | cot | letter | gsm8k
    no_answer_rate: float = 0.0  # share of each subject's items answered with nothing extractable
    answer_seed: int = 0

    @property
    def capacity_on(self) -> bool:
        return self.max_batch is not None or self.token_budget_per_s is not None


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


class _Histogram:
    """A Prometheus histogram as plain numbers: counts per bucket (the last one is +Inf) and a sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds, self.counts, self.total = bounds, [0] * (len(bounds) + 1), 0.0

    def observe(self, value: float, weight: int = 1) -> None:
        """`weight` observations of `value` (le buckets: a value on a bound counts in that bucket)."""
        self.counts[bisect_left(self.bounds, value)] += weight
        self.total += value * weight

    def family(self, name: str, documentation: str, model: str) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=["model_name"])
        cumulative, buckets = 0, []
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric([model], buckets, self.total)
        return family


class _Flight:
    """One admitted request, while it holds a slot: what it holds in the KV cache and how it ends."""

    __slots__ = ("arrival", "deadlines", "ends", "finish_reason", "prompt_tokens", "released", "server")

    def __init__(self, server: "_Server", arrival: float, reply: "_Reply", deadlines: list[float]):
        self.server, self.arrival, self.prompt_tokens = server, arrival, reply.prompt_tokens
        self.ends, self.deadlines, self.finish_reason = reply.ends, deadlines, reply.finish_reason
        self.released = False

    def tokens_held(self, now: float) -> int:
        """Prompt plus the output tokens due by `now` (those the server has generated)."""
        due = min(bisect_right(self.deadlines, now), len(self.ends))
        return self.prompt_tokens + (self.ends[due - 1] if due else 0)

    def release(self, now: float, tokens_sent: int, ok: bool) -> None:
        """The request is over (its last token sent, cut, or its client gone): count it, free its slot."""
        if self.released:
            return
        self.released = True
        server = self.server
        server.generation_tokens += tokens_sent
        if ok:
            server.success[self.finish_reason] = server.success.get(self.finish_reason, 0) + 1
            server.e2e.observe(now - self.arrival)
        server.active.discard(self)
        server.release()


class _Server:
    """One app's engine state: the running requests and the FCFS queue (max_batch), and the
    counters /metrics reports. One event loop touches it, so it needs no lock."""

    def __init__(self, profile: MockProfile):
        self.max_batch = profile.max_batch
        self.running = 0
        self.waiting: deque[asyncio.Future[float]] = deque()
        self.active: set[_Flight] = set()
        self.prompt_tokens = self.generation_tokens = 0
        self.prefix_queries = self.prefix_hits = 0
        self.success: dict[str, int] = {}
        self.ttft = _Histogram(TTFT_BUCKETS_S)
        self.tpot = _Histogram(TPOT_BUCKETS_S)
        self.e2e = _Histogram(E2E_BUCKETS_S)

    def admit_now(self) -> bool:
        """Take a slot if one is free and nobody waits for it."""
        if self.waiting or (self.max_batch is not None and self.running >= self.max_batch):
            return False
        self.running += 1
        return True

    async def wait_for_slot(self) -> float:
        """Queue for a slot; returns when the slot was freed (monotonic s), which is when this
        request was admitted. A cancelled wait leaves the queue, or gives back a slot handed to it."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    self.waiting.remove(waiter)
            raise

    def release(self) -> None:
        """Free a slot: straight to the longest-waiting request, else `running` drops."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(time.monotonic())
                return
        self.running -= 1


class _Collector:
    """Builds vLLM-named metric families from a `_Server` at scrape time."""

    def __init__(self, server: _Server, profile: MockProfile):
        self.server, self.profile = server, profile

    def collect(self):
        server, model = self.server, self.profile.model

        def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, documentation, labels=["model_name"])
            family.add_metric([model], value)
            return family

        def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, documentation, labels=["model_name"])
            family.add_metric([model], value)
            return family

        now = time.monotonic()
        held = sum(flight.tokens_held(now) for flight in server.active)
        yield gauge("vllm:num_requests_running", "Number of requests in model execution batches.", server.running)
        yield gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", len(server.waiting))
        yield gauge(
            "vllm:gpu_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            min(1.0, held / max(1, self.profile.kv_cache_tokens)),
        )
        if self.profile.prefix_cache:
            yield counter("vllm:prefix_cache_queries", "Prefix cache queries, in tokens.", server.prefix_queries)
            yield counter("vllm:prefix_cache_hits", "Prefix cache hits, in tokens.", server.prefix_hits)
        yield counter("vllm:prompt_tokens", "Number of prefill tokens processed.", server.prompt_tokens)
        yield counter("vllm:generation_tokens", "Number of generation tokens processed.", server.generation_tokens)
        success = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=["model_name", "finished_reason"],
        )
        for reason in sorted({"stop", "length", *server.success}):
            success.add_metric([model, reason], server.success.get(reason, 0))
        yield success
        yield server.ttft.family("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                                 model)  # fmt: skip
        yield server.tpot.family(
            "vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", model
        )
        yield server.e2e.family("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                                model)  # fmt: skip


def known_capacity_rps(
    profile: MockProfile,
    *,
    output_tokens: int,
    prompt_tokens: int = 1,
    tpot_max_ms: float | None = None,
    ttft_max_ms: float | None = None,
) -> float:
    """The largest constant (evenly spaced) arrival rate, in requests/s, at which every request
    meets the thresholds in steady state (docs/mockllm-capacity.md derives it). `output_tokens` is
    every token a request streams (a chat answer's reasoning tokens included), `prompt_tokens` its
    uncached prompt. TPOT is the client's: (E2E − TTFT) / (output_tokens − 1). Jitter, errors and
    cuts are left out. inf when nothing limits the rate; 0 when a threshold is below the baseline."""
    n = output_tokens
    if n < 1:
        raise ValueError("output_tokens must be at least 1")
    t0 = (profile.ttft_ms + prompt_tokens * profile.per_prompt_token_us / 1000) / 1000
    i0 = profile.itl_ms / 1000
    m = n - min(max(1, profile.tokens_per_chunk), n)  # tokens after the first chunk, each one gap d
    budget, batch = profile.token_budget_per_s, profile.max_batch
    if ttft_max_ms is not None and ttft_max_ms / 1000 < t0:
        return 0.0
    # Saturation: N = λ·s running (Little), s = t0 + m·d, d = max(i0, N/T); N ≤ max_batch and λ < T/m.
    capacity = math.inf
    if batch is not None:
        gap = max(i0, batch / budget) if budget else i0
        capacity = batch / (t0 + m * gap) if t0 + m * gap > 0 else math.inf
    elif budget and m:
        capacity = budget / m  # a supremum: at it the running count never settles
    if tpot_max_ms is not None and n > 1 and m:
        y = tpot_max_ms / 1000 * (n - 1) / m  # the largest gap d that keeps the client's TPOT within
        if y < i0:
            return 0.0
        if budget:  # d ≤ y ⟺ N ≤ y·T ⟺ λ ≤ y·T / (t0 + m·y)
            capacity = min(capacity, y * budget / (t0 + m * y))
    return capacity


PROFILE_KEY = web.AppKey("profile", MockProfile)
RNG_KEY = web.AppKey("rng", random.Random)
CACHE_KEY = web.AppKey("prefix_cache", PrefixCache)
LOG_KEY = web.AppKey("request_log", RequestLog)
SERVER_KEY = web.AppKey("server", _Server)
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
ANSWERS_KEY = web.AppKey("known_answers", KnownAnswerBook)


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
        self.answer: str | None = None  # the known answer's text, when the prompt asks a key question
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


class _Pace:
    """A stream's deadlines under a token budget, one at a time: chunk k is due a nominal
    carried·max(itl, running/budget) after chunk k−1's nominal deadline, `running` read when
    k−1 is due; jitter offsets (drawn at arrival) move each one, never before the one before."""

    __slots__ = ("budget", "ends", "itl_s", "jitter", "last", "nominal", "server")

    def __init__(self, server: _Server, profile: MockProfile, ends: list[int], jitter: list[float] | None,
                 first_nominal: float, floor: float):  # fmt: skip
        self.server, self.itl_s, self.budget = server, profile.itl_ms / 1000, profile.token_budget_per_s
        self.ends, self.jitter, self.nominal = ends, jitter, first_nominal
        self.last = max(floor, first_nominal + jitter[0]) if jitter else first_nominal

    def next(self, index: int) -> float:
        """When chunk `index` is due (chunks past the tokens share the last token's deadline)."""
        ends = self.ends
        if index < len(ends):
            gap = self.server.running / self.budget
            if gap < self.itl_s:
                gap = self.itl_s
            self.nominal += (ends[index] - ends[index - 1]) * gap
            due = self.nominal + self.jitter[index] if self.jitter else self.nominal
            if due > self.last:
                self.last = due
        return self.last


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
    server = app[SERVER_KEY]
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
    if (book := app.get(ANSWERS_KEY)) is not None:
        reply.answer = book.reply(last_user_text(body["messages"]) if chat else prompt_text(body))
    prefill_tokens = reply.prompt_tokens - (reply.cached_tokens or 0)
    ttft_s = (profile.ttft_ms + prefill_tokens * profile.per_prompt_token_us / 1000) / 1000
    ends = reply.ends
    # Every random draw happens here, in arrival order, whatever the queue does afterwards.
    jitter: list[float] | None = None
    if profile.token_budget_per_s is None:
        deadlines = _deadlines(profile, rng, arrival, ttft_s, ends)
    elif profile.jitter_ms:
        jitter_s = profile.jitter_ms / 1000
        jitter = [rng.uniform(-jitter_s, jitter_s) for _ in ends]
    admitted = arrival if server.admit_now() else await server.wait_for_slot()
    server.prompt_tokens += reply.prompt_tokens
    if reply.cached_tokens is not None:
        server.prefix_queries += reply.prompt_tokens
        server.prefix_hits += reply.cached_tokens
    pace = None
    if profile.token_budget_per_s is not None:
        pace = _Pace(server, profile, ends, jitter, admitted + ttft_s, admitted)
        deadlines = [pace.last]
    elif admitted != arrival:  # the whole schedule starts when the queue let it in
        deadlines = [due + (admitted - arrival) for due in deadlines]
    flight = _Flight(server, arrival, reply, deadlines)
    server.active.add(flight)
    try:
        if body.get("stream"):
            return await _stream(request, reply, flight, pace, cut_after=len(ends) // 2 if cutting else None)
        return await _whole(request, reply, flight, pace, cutting)
    finally:
        flight.release(time.monotonic(), 0, False)  # only if something went wrong: otherwise released already


async def _whole(
    request: web.Request, reply: _Reply, flight: _Flight, pace: _Pace | None, cutting: bool
) -> web.Response:
    """A non-streamed answer, sent when its last token is due. Its tokens are timed as a stream's
    would be (one at a time under a budget), and count in the TTFT/TPOT histograms when due."""
    deadlines, ends = flight.deadlines, reply.ends
    if pace is not None:
        for index in range(1, len(ends)):
            await _sleep_until(deadlines[-1])
            deadlines.append(pace.next(index))
    await _sleep_until(deadlines[-1])
    server = flight.server
    server.ttft.observe(deadlines[0] - flight.arrival)
    for index in range(1, len(ends)):
        carried = ends[index] - ends[index - 1]
        server.tpot.observe((deadlines[index] - deadlines[index - 1]) / carried, carried)
    if cutting and request.transport is not None:
        request.transport.abort()  # the client sees the connection close without an answer
    flight.release(time.monotonic(), reply.completion_tokens, not cutting)
    return _full_response(reply, TOKEN_TEXT * reply.count if reply.answer is None else reply.answer)


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
    Under a token budget (`pace`) the next deadline is computed when a chunk goes out.
    """

    def __init__(self, request: web.Request, chunked: bool, reply: _Reply, flight: _Flight, pace: _Pace | None,
                 cut_at: int | None):  # fmt: skip
        self.loop = asyncio.get_running_loop()
        self.transport = request.transport
        self.heads = _heads(reply)
        ends = self.ends = reply.ends
        # Running usage (completion tokens so far) per chunk, None where a chunk has none.
        self.usage: list[int | None] | None = None
        if reply.continuous_usage:
            self.usage = [*ends, ends[-1]] if reply.chat else list(ends)
            self.usage += [None] * (len(self.heads) - len(self.usage))
            self.usage_template, self.prompt_tokens = reply.usage_template, reply.prompt_tokens
        self.flight, self.pace = flight, pace
        self.deadlines = deadlines = flight.deadlines  # the flight reads it too (tokens held)
        if pace is None:  # the finish and usage chunks go with the last token
            deadlines.extend([deadlines[-1]] * (len(self.heads) - len(deadlines)))
        self.chunked, self.cut_at = chunked, cut_at
        self.index = 0
        self.last_sent = 0.0
        self.done: asyncio.Future[bool] = self.loop.create_future()  # True when the stream ended normally

    def start(self) -> None:
        self._step()

    def _step(self) -> None:
        transport, heads, deadlines, pace = self.transport, self.heads, self.deadlines, self.pace
        if transport is None or transport.is_closing():
            return self._finish(False, time.monotonic())
        now = time.monotonic()
        parts: list[bytes] = []
        stamp = b'"llmbench_sent_at":%.6f}\n\n' % now
        start = self.index
        while self.index < len(heads) and deadlines[self.index] <= now:
            if self.index == self.cut_at:
                self._write(transport, parts)
                transport.abort()  # as a crashed server or a proxy would: no terminating chunk, no [DONE]
                self._observe(start, now)
                return self._finish(False, now)
            if self.usage is not None and (done := self.usage[self.index]) is not None:
                parts.append(heads[self.index] + self.usage_template % (done, self.prompt_tokens + done) + stamp)
            else:
                parts.append(heads[self.index] + stamp)
            self.index += 1
            if pace is not None and self.index < len(heads):
                deadlines.append(pace.next(self.index))
        if self.index == len(heads):
            parts.append(DONE)
        self._write(transport, parts)
        if self.index > start:
            self._observe(start, now)
        if self.index == len(heads):
            return self._finish(True, now)
        # uvloop's timers run on a millisecond clock cached per loop iteration and may fire early:
        # the next step checks the deadline again and simply re-arms. A long wait (TTFT, a slow
        # budget) is cut into CHECK_CLIENT_S pieces, so a client that left stops counting as running.
        self.loop.call_later(min(deadlines[self.index] - now, CHECK_CLIENT_S), self._step)

    def _observe(self, start: int, now: float) -> None:
        """TTFT when the first chunk went out; every token sent since the last send gets an equal
        share of the gap (as the client's ITL does), the first chunk's tokens none."""
        ends, server = self.ends, self.flight.server
        before = ends[min(start, len(ends)) - 1] if start else 0
        sent = ends[min(self.index, len(ends)) - 1] if self.index else 0
        if start == 0 and self.index:
            server.ttft.observe(now - self.flight.arrival)
            if sent > ends[0]:
                server.tpot.observe(0.0, sent - ends[0])  # chunks late enough to leave with the first
        elif sent > before:
            server.tpot.observe((now - self.last_sent) / (sent - before), sent - before)
        self.last_sent = now

    def _write(self, transport: asyncio.BaseTransport, parts: list[bytes]) -> None:
        if not parts:
            return
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        transport.write(b"%x\r\n%s\r\n" % (len(payload), payload) if self.chunked else payload)

    def stop(self, now: float) -> None:
        """The request is over before its end (its handler was cancelled)."""
        self._finish(False, now)

    def _finish(self, ok: bool, now: float) -> None:
        ends = self.ends
        self.flight.release(now, ends[min(self.index, len(ends)) - 1] if self.index else 0, ok)
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
    if reply.answer is None:
        heads += _segment(reply, TOKEN_TEXT, "content", reply.content_ends, not heads, finish)
    else:  # the known answer spread over the same chunks, one head each
        pieces, role = spread(reply.answer, len(reply.content_ends)), not heads
        heads += [reply.content_head(json.dumps(piece)[1:-1], role and i == 0, finish if i == len(pieces) - 1 else None)
                  for i, piece in enumerate(pieces)]  # fmt: skip
    if reply.chat:
        heads.append(reply.finish_head())
    if reply.include_usage:
        heads.append(reply.usage_head())
    return heads


async def _stream(
    request: web.Request, reply: _Reply, flight: _Flight, pace: _Pace | None, cut_after: int | None
) -> web.StreamResponse:
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    chunked = response.headers.get("Transfer-Encoding") == "chunked"  # `response.chunked` is only the explicit opt-in
    streamer = _Streamer(request, chunked, reply, flight, pace, cut_after)
    streamer.start()
    try:
        ok = await streamer.done
    except asyncio.CancelledError:  # the client left (serve() cancels the handler then): count what it got
        streamer.stop(time.monotonic())
        raise
    if ok:
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


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _name_the_process(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Mock-Pid"] = str(os.getpid())  # which worker answered (run(..., workers=N))


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
    app[SERVER_KEY] = server = _Server(profile)
    book = known_answers(profile.answer_key, accuracy=profile.answer_accuracy, style=profile.answer_style,
                         no_answer_rate=profile.no_answer_rate, seed=profile.answer_seed)  # fmt: skip
    if book is not None:
        app[ANSWERS_KEY] = book
    # The app's own registry: several apps in one process (tests) keep their own counters.
    app[REGISTRY_KEY] = registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(server, profile))
    app.on_response_prepare.append(_name_the_process)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_get("/_mock/requests", _requests_list)
    app.router.add_delete("/_mock/requests", _requests_clear)
    app.router.add_delete("/_mock/prefix_cache", _prefix_cache_clear)
    app.router.add_get("/metrics", _metrics)
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


def serve(host: str, port: int, profile: MockProfile, *, reuse_port: bool = False) -> None:
    """Serve in this process until interrupted (Ctrl-C or SIGTERM). No access log: it would cost more
    CPU than a request. What is loaded by then (all of Django under manage.py) is frozen out of the
    garbage collector, so a full collection does not walk it in the middle of a stream."""
    install_uvloop()
    gc.collect()
    gc.freeze()
    # handler_cancellation: a client that hangs up while its request waits (queue, TTFT, a whole
    # answer) leaves the running and waiting counts at once, as it would leave vLLM's.
    web.run_app(
        make_app(profile), host=host, port=port, access_log=None, print=None, reuse_port=reuse_port or None,
        handler_cancellation=True,
    )  # fmt: skip


class _Stop(Exception):
    """SIGTERM reached the parent of the workers."""


def _raise_stop(signum, frame):
    raise _Stop


def _worker(host: str, port: int, profile: MockProfile) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # until run_app installs its own: the parent's raises
    serve(host, port, profile, reuse_port=True)


def run(host: str = "127.0.0.1", port: int = 8001, profile: MockProfile | None = None, workers: int = 1) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM). With `workers` > 1, that many forked processes
    share the port (SO_REUSEPORT: the kernel spreads connections over them), each with its own
    capacity and counters; SIGTERM or Ctrl-C to this process stops them all, and if one of them dies
    the others are stopped and RuntimeError says which."""
    profile = profile or MockProfile()
    if workers <= 1:
        serve(host, port, profile)
        return
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_worker, args=(host, port, profile), daemon=True) for _ in range(workers)]
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    ended: list = []  # the workers that ended on their own
    try:
        for child in children:
            child.start()
        ended = multiprocessing.connection.wait([child.sentinel for child in children])
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the shutdown short
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: run_app shuts the worker down cleanly
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join()
        signal.signal(signal.SIGTERM, previous)
    # Read after join: a worker's sentinel can fire before its exit code is there to read.
    failed = [child.exitcode for child in children if child.sentinel in ended]
    if failed:
        raise RuntimeError(f"a mockllm worker exited with code {failed[0]}; the others were stopped")
