"""The offline provider: a fake LLM server with a latency model and a capacity, for demos, tests
and benches. The model is documented in docs/metrics.md ("The simulator"); in short:

Text. Like a real server, sampling is random unless a `seed` is given: with a seed (or at
temperature 0, greedy decoding) the text is a pure function of (model, prompt, seed, temperature,
top_p), so the same request gives the same answer; without one every request draws its own
answer, so repetitions of an item differ. The quality model is meant to be measurable with simple
text metrics:

* temperature ≤ 0.8: every sentence is well formed ("The latency shapes the stable result.") and
  built around the prompt's key words;
* above that, a growing share of sentences are noise (made-up words, no capital, no full stop),
  all noise by temperature 1.7; a top_p near 1 adds a little noise once temperature passes 1.0;
* a low top_p narrows every word list and the set of sentence shapes, so the text repeats itself
  (fewer distinct bigrams) while staying well formed.

Latency and capacity. A simulated server (one per sim base URL and profile in a process, shared by
every adapter, thread and event loop) runs at most `max_batch` requests at once; later ones wait in
a first-come-first-served queue, and the wait is part of their time to first token. Once admitted,
the first token comes after (ttft_ms + per_token_ms × prompt words) × model factor; each next token
after model factor × max(itl_ms, 1000 × running / tokens_per_s) ms, where `running` is how many
requests the server holds at that moment: the running requests share a decode budget of
`tokens_per_s` output tokens per second (for a factor-1 model). Every delay is scaled by
1 ± jitter. So below capacity TTFT and ITL stay at their baseline and throughput grows with
concurrency; past tokens_per_s × itl_ms / 1000 running requests ITL grows and output throughput
stays at tokens_per_s / factor; past max_batch requests TTFT grows by the queueing time.
Latency jitter and injected errors come from the adapter's own seeded stream (`rng_seed`), so a
run sees variation but the same seeded run twice, one request at a time, sees the same numbers.
`zero_latency` turns off every delay and the capacity (for benches and demo data).

Known answers (docs/mockllm-known-answers.md): with `answer_key=/abs/path/key.jsonl` (repeat it for several
suites) a prompt asking a key question is answered by apps/providers/engine/knownanswer.py at
`answer_accuracy`, `answer_style`, `no_answer_rate` and `answer_seed`, instead of the text above; its words are
the tokens, timed as any others. Each key file is read once per path and modification time.
"""

import asyncio
import hashlib
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from apps.providers.engine.adapters import carry_request
from apps.providers.engine.callmetrics import call_metrics
from apps.providers.engine.knownanswer import KnownAnswerBook, known_answers, last_user_text, word_tokens
from apps.providers.engine.types import (
    EndpointConfig,
    ErrorKind,
    GenerationRequest,
    GenerationResult,
    Kind,
    RequestError,
)

MODELS = {"sim-small": 0.5, "sim-medium": 1.0, "sim-large": 2.0}  # latency factor; other names get 1.0
_unseeded = random.SystemRandom()  # what an unseeded request samples from: never the same twice
NATURAL_TOKENS = (48, 160)  # an answer's length when max_tokens does not cut it

_STOPWORD_TEXT = """about above after again against also because been before being below between both cannot
could does doing down during each every from further have having here into itself just more most much must only
other over same should some such than that their them then there these they this those through under until very
what when where which while whom will with would your yours please write explain describe tell give make short
brief answer question"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
NOUNS = ("system", "result", "method", "process", "model", "value", "pattern", "signal", "design", "measure")
VERBS = ("shapes", "supports", "explains", "improves", "defines", "reflects", "drives", "connects")
ADJECTIVES = ("clear", "stable", "careful", "simple", "useful", "precise", "broad", "steady")
ADVERBS = ("clearly", "reliably", "directly", "often", "carefully", "consistently")
NOISE = ("zorb", "klt", "wibble", "qua", "fnord", "blix", "gax", "snee", "plork", "vrem", "oxt", "jub")
TEMPLATES = (
    "The {k} {v} the {a} {n}.",
    "In practice, {k} {v} every {n} {d}.",
    "A {a} {k} {v} the {n}.",
    "This is why {k} matters for the {n}.",
    "Each {n} {v} the {k} {d}.",
    "Over time, the {k} becomes {a} and {v} the {n}.",
    "We see that {k} {v} a {a} {n}.",
    "Because of {k}, the {n} stays {a}.",
)


@dataclass(frozen=True)
class SimProfile:
    """How the simulated server behaves. Times in milliseconds; set any field in the endpoint's
    base URL, e.g. `sim://local?max_batch=4&tokens_per_s=200`."""

    ttft_ms: float = 80.0  # time to first token for an empty prompt, once admitted
    per_token_ms: float = 0.05  # prefill cost per prompt token (≈ word)
    itl_ms: float = 12.0  # gap between two output tokens while the server is below its token budget
    jitter: float = 0.15  # each delay is scaled by 1 ± jitter (uniform)
    error_rate: float = 0.0  # share of requests that fail (429, 5xx or a cut stream)
    zero_latency: bool = False  # no sleeping and no capacity at all: as fast as possible, for benches
    tokens_per_chunk: int = 1  # >1 emulates servers that batch tokens into one chunk
    rng_seed: int = 0  # seeds the jitter and error stream (not the text)
    max_batch: int = 8  # requests the server runs at once; later ones queue (0 = no limit)
    tokens_per_s: float = 400.0  # output tokens/s shared by the running requests, factor-1 model (0 = no limit)
    # Known answers: absolute paths of answer key files (JSON Lines), and how they are answered.
    answer_key: tuple[str, ...] = ()
    answer_accuracy: float | str = 1.0  # a share, or per subject: '{"math": 0.9, "*": 0.7}' or "math:0.9,*:0.7"
    answer_style: str = "auto"  # auto | cot | letter | gsm8k
    no_answer_rate: float = 0.0
    answer_seed: int = 0

    def __post_init__(self):
        for name in ("ttft_ms", "per_token_ms", "itl_ms", "jitter", "error_rate", "max_batch", "tokens_per_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"sim parameter {name} must be a number, 0 or more")
        if self.jitter > 1 or self.error_rate > 1:
            raise ValueError("sim parameters jitter and error_rate must be at most 1")
        if self.tokens_per_chunk < 1:
            raise ValueError("sim parameter tokens_per_chunk must be 1 or more")
        self._check_answers()

    def _check_answers(self) -> None:
        """Check the known-answer parameters, loading the key files (cached), so a bad one is refused at once."""
        if isinstance(self.answer_key, str):  # SimProfile(answer_key="/one/key.jsonl")
            object.__setattr__(self, "answer_key", (self.answer_key,) if self.answer_key else ())
        defaults = {"answer_accuracy": 1.0, "answer_style": "auto", "no_answer_rate": 0.0, "answer_seed": 0}
        if not self.answer_key:
            given = [name for name, default in defaults.items() if getattr(self, name) != default]
            if given:
                raise ValueError(f"sim parameter {given[0]} needs answer_key (the path of an answer key file)")
            return
        for path in self.answer_key:
            if not path.startswith("/"):
                raise ValueError(f"sim parameter answer_key must be an absolute path, not {path!r}")
        if self.answer_style not in ("auto", "cot", "letter", "gsm8k"):
            raise ValueError("sim parameter answer_style must be auto, cot, letter or gsm8k")
        if not (math.isfinite(self.no_answer_rate) and 0 <= self.no_answer_rate <= 1):
            raise ValueError("sim parameter no_answer_rate must be a number between 0 and 1")
        try:
            self.known_answers()
        except ValueError as error:
            name = "answer_accuracy" if "accuracy" in str(error) else "answer_key"
            raise ValueError(f"sim parameter {name}: {error}") from None

    def known_answers(self) -> KnownAnswerBook | None:
        """The answer keys' known answers (None without answer_key); ValueError for a bad file or setting."""
        return known_answers(self.answer_key, accuracy=self.answer_accuracy, style=self.answer_style,
                             no_answer_rate=self.no_answer_rate, seed=self.answer_seed)  # fmt: skip

    @property
    def saturation_running(self) -> float:
        """How many running requests use up the token budget: past it, ITL grows (inf: never)."""
        return self.tokens_per_s * self.itl_ms / 1000 if self.tokens_per_s > 0 else math.inf

    def itl_at_ms(self, running: int, model: str = "sim-medium") -> float:
        """The gap between two tokens of `model` while `running` requests run (before jitter)."""
        gap = self.itl_ms
        if self.tokens_per_s > 0:
            gap = max(gap, 1000.0 * running / self.tokens_per_s)
        return gap * MODELS.get(model, 1.0)

    @classmethod
    def from_url(cls, url: str) -> "SimProfile":
        """A profile from a sim endpoint's base URL, e.g. `sim://local?ttft_ms=20&zero_latency=1`;
        unknown or malformed parameters raise ValueError so a typo is not silently ignored."""
        parts = urlsplit(url)
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, raw in parse_qsl(parts.query, keep_blank_values=True):
            kind = types.get(name)
            if kind is None:
                raise ValueError(f"unknown sim parameter {name!r}")
            if name == "answer_key":  # may be given once per answer key file
                values[name] = (*values.get(name, ()), raw)
                continue
            try:
                if name in ("answer_accuracy", "answer_style"):  # text, checked by the profile
                    values[name] = raw
                elif kind in (bool, "bool"):
                    values[name] = raw.lower() in ("1", "true", "yes", "on")
                elif kind in (int, "int"):
                    values[name] = int(raw)
                else:
                    values[name] = float(raw)
            except ValueError:
                raise ValueError(f"sim parameter {name} must be a number, not {raw!r}") from None
        return cls(**values)


def check_sim_url(url: str, *, answer_key_dirs: tuple[str, ...] | None = None) -> SimProfile:
    """The profile of a simulator base URL a user typed (empty, or sim://…); ValueError saying why not.
    With `answer_key_dirs` (the SIM_ANSWER_KEY_DIRS setting), an answer key must lie inside one of them: a
    user may not point the server at any file it can read."""
    if url and urlsplit(url).scheme != "sim":
        raise ValueError("A simulator URL is empty or starts with sim://, e.g. sim://local?max_batch=8")
    if answer_key_dirs is not None:
        allowed = [os.path.realpath(d) for d in answer_key_dirs]
        for path in parse_qs(urlsplit(url).query).get("answer_key", []):
            real = os.path.realpath(path)
            if not any(os.path.commonpath([real, d]) == d for d in allowed):
                raise ValueError(
                    "sim parameter answer_key must be a file in "
                    + " or ".join(answer_key_dirs)
                    + " (the SIM_ANSWER_KEY_DIRS setting)"
                )
    return SimProfile.from_url(url)


def prompt_text(request: GenerationRequest) -> str:
    return "\n".join(m.get("content", "") for m in request.messages)


def keywords(text: str, limit: int = 12) -> list[str]:
    """The prompt's key words: lower-case words of 4+ letters that are not stop words, in order."""
    seen: dict[str, None] = {}
    for word in text.lower().split():
        word = "".join(c for c in word if c.isalpha())
        if len(word) >= 4 and word not in _STOPWORDS:
            seen.setdefault(word)
        if len(seen) >= limit:
            break
    return list(seen) or ["topic"]


def coherence(temperature: float, top_p: float) -> float:
    """The share of well-formed, on-topic sentences: 1 up to temperature 0.8, 0 from 1.7."""
    value = 1.0 - max(0.0, temperature - 0.8) / 0.9
    if top_p > 0.98 and temperature > 1.0:
        value -= 0.15
    return min(1.0, max(0.0, value))


def is_reproducible(request: GenerationRequest) -> bool:
    """Whether the same request always gets the same text: with a seed, or greedy (temperature 0)."""
    return request.seed is not None or request.temperature == 0


def generate_text(request: GenerationRequest, limit: int | None = None) -> tuple[list[str], str]:
    """The answer's tokens (words, the first without a leading space) and its finish reason.

    `limit` is how many tokens may be produced (max_tokens); with `ignore_eos` exactly that many.
    Without a seed (and above temperature 0) every call samples a new answer, as a server does."""
    temperature = 1.0 if request.temperature is None else request.temperature
    top_p = 1.0 if request.top_p is None else request.top_p
    prompt = prompt_text(request)
    draw = None if is_reproducible(request) else _unseeded.getrandbits(64)
    digest = hashlib.sha256(repr((request.model, prompt, request.seed, temperature, top_p, draw)).encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    share = min(1.0, max(0.05, top_p))

    def pool(words: tuple[str, ...] | list[str]) -> list[str]:
        return list(words[: max(1, math.ceil(len(words) * share))])

    keys, nouns, verbs, adjectives, adverbs = (pool(w) for w in (keywords(prompt), NOUNS, VERBS, ADJECTIVES, ADVERBS))
    templates = pool(TEMPLATES)
    chaos = 1.0 - coherence(temperature, top_p)
    # Whole sentences up to a natural length (or to the limit when EOS is ignored), then the cut:
    # a smaller max_tokens gives a prefix of the same answer.
    goal = limit if limit is not None and request.ignore_eos else rng.randint(*NATURAL_TOKENS)
    words: list[str] = []
    while len(words) < goal:
        if rng.random() >= chaos:
            sentence = rng.choice(templates).format(
                k=rng.choice(keys),
                n=rng.choice(nouns),
                v=rng.choice(verbs),
                a=rng.choice(adjectives),
                d=rng.choice(adverbs),
            )
            words.extend(sentence.split())
        else:
            for _ in range(rng.randint(4, 9)):
                words.append(rng.choice(NOISE if rng.random() < 0.6 else rng.choice((NOUNS, VERBS, ADJECTIVES))))
            if rng.random() < 0.3:
                words[-1] += rng.choice((",", ";"))
    cut = limit is not None and len(words) >= limit and (request.ignore_eos or len(words) > limit)
    if limit is not None:
        words = words[:limit]
    tokens = [words[0], *(" " + w for w in words[1:])] if words else []
    return tokens, "length" if cut else "stop"


class SimServer:
    """The capacity of one simulated server: at most `max_batch` requests run at once (0: no limit),
    the rest wait first come, first served. Shared by every SimAdapter of the same endpoint in the
    process, whatever their thread or event loop; `running` counts the admitted requests."""

    def __init__(self, max_batch: int):
        self.max_batch = max_batch
        self.running = 0
        self._waiting: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = deque()
        self._lock = threading.Lock()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    async def acquire(self) -> None:
        """Wait for a slot; a cancelled wait leaves the queue (or passes on a slot it was given)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._waiting and (self.max_batch <= 0 or self.running < self.max_batch):
                self.running += 1
                return
            entry = (loop, loop.create_future())
            self._waiting.append(entry)
        try:
            await entry[1]
        except asyncio.CancelledError:
            with self._lock:
                handed_over = entry not in self._waiting
                if not handed_over:
                    self._waiting.remove(entry)
            # A slot handed over but not yet delivered is passed on by _deliver; one delivered
            # just before the cancel is ours to give back.
            if handed_over and entry[1].done() and not entry[1].cancelled():
                self.release()
            raise

    def release(self) -> None:
        """Free a slot: it goes straight to the longest-waiting request, else `running` drops."""
        while True:
            with self._lock:
                if not self._waiting:
                    self.running -= 1
                    return
                loop, waiter = self._waiting.popleft()
            try:
                loop.call_soon_threadsafe(self._deliver, waiter)
                return
            except RuntimeError:  # that waiter's event loop is closed: try the next one
                continue

    def _deliver(self, waiter: asyncio.Future) -> None:
        if waiter.done():  # cancelled meanwhile: the slot goes on to the next in line
            self.release()
        else:
            waiter.set_result(None)


_servers: dict[tuple[str, SimProfile], SimServer] = {}
_servers_lock = threading.Lock()


def server_for(config: EndpointConfig, profile: SimProfile) -> SimServer:
    """This process's simulated server of an endpoint: sim endpoints with the same base URL and
    profile are one server (as two endpoints naming one real server are); `sim://a` and `sim://b`
    are two."""
    key = (config.base_url.rstrip("/"), profile)
    with _servers_lock:
        server = _servers.get(key)
        if server is None:
            server = _servers[key] = SimServer(profile.max_batch)
        return server


class SimAdapter:
    """Same interface as the HTTP adapters (`generate`, `list_models`); never touches the network.

    Each instance owns its jitter/error stream: one per endpoint, shared by its workers. `clock`
    (seconds, time.monotonic by default) and asyncio's sleep time every request; tests give an
    event loop with a virtual clock and its `time`."""

    kind = Kind.SIM

    def __init__(
        self,
        config: EndpointConfig | None = None,
        profile: SimProfile | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config or EndpointConfig(kind=Kind.SIM, base_url="sim://local")
        self.profile = profile or SimProfile.from_url(self.config.base_url)
        self.server = server_for(self.config, self.profile)
        self._rng = random.Random(self.profile.rng_seed)
        self._clock = clock
        self.known = self.profile.known_answers()
        self._calls = call_metrics(self.config.name)  # /metrics counts simulated calls like real ones

    def __repr__(self) -> str:
        return f"SimAdapter({self.profile!r})"

    def _scaled(self, ms: float) -> float:
        """`ms` with jitter, in seconds."""
        jitter = self.profile.jitter
        return max(0.0, ms * (1.0 + jitter * (2.0 * self._rng.random() - 1.0))) / 1000.0

    async def generate(self, session: Any, request: GenerationRequest) -> GenerationResult:
        """A simulated completion, streamed or not; `session` is ignored."""
        started = self._clock()
        try:
            result = await self._generate(request)
        except asyncio.CancelledError:
            self._calls.failed(ErrorKind.CANCELLED, self._clock() - started)
            raise
        self._calls.record(result.error, (result.end_time or self._clock()) - result.send_time)
        return result

    async def _generate(self, request: GenerationRequest) -> GenerationResult:
        profile = self.profile
        send = self._clock()
        result = carry_request(GenerationResult(send_time=send), request)
        prompt_tokens = len(prompt_text(request).split())
        result.input_tokens = prompt_tokens
        answer = None
        if self.known is not None:
            asked = (request.prompt or "") if request.endpoint == "completions" else last_user_text(request.messages)
            answer = self.known.reply(asked)
        if answer is not None:  # the whole known answer, whatever max_tokens says: its accuracy is exact
            tokens, finish = word_tokens(answer), "stop"
        else:
            tokens, finish = generate_text(request, request.max_tokens)
        failure = self._failure(len(tokens))
        if failure is not None and failure[0] != ErrorKind.CONNECTION:  # refused at the door: no slot
            await self._sleep_until(send + self._scaled(profile.ttft_ms) / 4)
            result.error = failure[1]
            result.end_time = self._clock()
            return result
        if profile.zero_latency:
            await self._stream(request, result, tokens, send, failure)
        else:
            await self.server.acquire()
            try:
                await self._stream(request, result, tokens, self._clock(), failure)
            finally:
                self.server.release()
        if failure is not None:
            result.error = failure[1]
            result.end_time = self._clock()
            return result
        result.text = "".join(tokens)
        result.output_tokens = len(tokens)
        result.token_source = "server"
        result.finish_reason = finish
        result.end_time = result.chunk_times[-1] if result.chunk_times else self._clock()
        return result

    async def _stream(
        self,
        request: GenerationRequest,
        result: GenerationResult,
        tokens: list[str],
        admitted: float,
        failure: tuple[ErrorKind, RequestError, int] | None,
    ) -> None:
        """Prefill, then one chunk after another on an absolute schedule; a non-streamed answer
        arrives whole at the end, a cut one delivers what it streamed (nothing when not streamed)."""
        profile = self.profile
        factor = MODELS.get(request.model, 1.0)
        step = profile.tokens_per_chunk
        chunks = ["".join(tokens[i : i + step]) for i in range(0, len(tokens), step)]
        stop_after = failure[2] if failure is not None else len(chunks)
        due = admitted + self._scaled((profile.ttft_ms + profile.per_token_ms * (result.input_tokens or 0)) * factor)
        for i in range(stop_after):
            carried = min(step, len(tokens) - i * step)
            if i:
                due += self._scaled(profile.itl_at_ms(self.server.running, request.model)) * carried
            await self._sleep_until(due)
            if request.stream:
                result.chunk_times.append(self._clock())
                result.chunk_tokens.append(carried)
        if failure is not None:
            result.text = "".join(chunks[:stop_after]) if request.stream else ""
        elif not request.stream:
            await self._sleep_until(due)
            result.chunk_times.append(self._clock())
            result.chunk_tokens.append(max(1, len(tokens)))

    async def _sleep_until(self, due: float) -> None:
        """Sleep to an absolute time, so event-loop lateness does not add up over a stream; always
        yields once, so zero-latency requests still interleave and can be cancelled."""
        if self.profile.zero_latency:
            await asyncio.sleep(0)
            return
        await asyncio.sleep(max(0.0, due - self._clock()))

    def _failure(self, tokens: int) -> tuple[ErrorKind, RequestError, int] | None:
        """Whether this request fails, how, and after how many chunks (cut streams only)."""
        if self.profile.error_rate <= 0 or self._rng.random() >= self.profile.error_rate:
            return None
        roll = self._rng.random()
        if roll < 0.5:
            error = RequestError(
                ErrorKind.RATE_LIMITED, "HTTP 429: simulated rate limit", status=429, retry_after_s=0.05
            )
            return error.kind, error, 0
        if roll < 0.8:
            error = RequestError(ErrorKind.SERVER, "HTTP 503: simulated overload", status=503)
            return error.kind, error, 0
        chunks = max(1, math.ceil(tokens / self.profile.tokens_per_chunk))
        cut = self._rng.randint(0, max(0, chunks - 1))
        error = RequestError(ErrorKind.CONNECTION, f"stream cut after {cut} chunks (simulated)")
        return error.kind, error, cut

    async def list_models(self, session: Any = None) -> list[str]:
        return list(MODELS)
