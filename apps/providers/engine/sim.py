"""The offline provider: a deterministic fake LLM with a latency model, for demos, tests and benches.

Text is a pure function of (model, prompt, seed, temperature, top_p), so a quality run is
repeatable; latency jitter and injected errors come from the adapter's own seeded stream, so a
performance run sees variation but the same run twice sees the same numbers.

The quality model is meant to be measurable with simple text metrics:

* temperature ≤ 0.8: every sentence is well formed ("The latency shapes the stable result.") and
  built around the prompt's key words;
* above that, a growing share of sentences are noise (made-up words, no capital, no full stop),
  all noise by temperature 1.7; a top_p near 1 adds a little noise once temperature passes 1.0;
* a low top_p narrows every word list and the set of sentence shapes, so the text repeats itself
  (fewer distinct bigrams) while staying well formed.
"""

import asyncio
import hashlib
import math
import random
import time
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from apps.providers.engine.types import (
    EndpointConfig,
    ErrorKind,
    GenerationRequest,
    GenerationResult,
    Kind,
    RequestError,
)

MODELS = {"sim-small": 0.5, "sim-medium": 1.0, "sim-large": 2.0}  # latency factor; other names get 1.0
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
    """How the simulated server behaves. Times in milliseconds."""

    ttft_ms: float = 80.0  # time to first token for an empty prompt
    per_token_ms: float = 0.05  # prefill cost per prompt token (≈ word)
    itl_ms: float = 12.0  # mean gap between two output tokens
    jitter: float = 0.15  # each delay is scaled by 1 ± jitter (uniform)
    error_rate: float = 0.0  # share of requests that fail (429, 5xx or a cut stream)
    zero_latency: bool = False  # no sleeping at all: as fast as possible, for benches
    tokens_per_chunk: int = 1  # >1 emulates servers that batch tokens into one chunk
    rng_seed: int = 0  # seeds the jitter and error stream (not the text)

    @classmethod
    def from_url(cls, url: str) -> "SimProfile":
        """A profile from a sim endpoint's base URL, e.g. `sim://local?ttft_ms=20&zero_latency=1`;
        unknown or malformed parameters raise ValueError so a typo is not silently ignored."""
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, raw in parse_qsl(urlsplit(url).query):
            kind = types.get(name)
            if kind is None:
                raise ValueError(f"unknown sim parameter {name!r}")
            if kind in (bool, "bool"):
                values[name] = raw.lower() in ("1", "true", "yes", "on")
            elif kind in (int, "int"):
                values[name] = int(raw)
            else:
                values[name] = float(raw)
        return cls(**values)


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


def generate_text(request: GenerationRequest, limit: int | None = None) -> tuple[list[str], str]:
    """The answer's tokens (words, the first without a leading space) and its finish reason.

    `limit` is how many tokens may be produced (max_tokens); with `ignore_eos` exactly that many."""
    temperature = 1.0 if request.temperature is None else request.temperature
    top_p = 1.0 if request.top_p is None else request.top_p
    prompt = prompt_text(request)
    digest = hashlib.sha256(repr((request.model, prompt, request.seed, temperature, top_p)).encode()).digest()
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


class SimAdapter:
    """Same interface as the HTTP adapters (`generate`, `list_models`); never touches the network.

    Each instance owns its jitter/error stream: one per endpoint, shared by its workers."""

    kind = Kind.SIM

    def __init__(self, config: EndpointConfig | None = None, profile: SimProfile | None = None):
        self.config = config or EndpointConfig(kind=Kind.SIM, base_url="sim://local")
        self.profile = profile or SimProfile.from_url(self.config.base_url)
        self._rng = random.Random(self.profile.rng_seed)

    def __repr__(self) -> str:
        return f"SimAdapter({self.profile!r})"

    def _scaled(self, ms: float) -> float:
        """`ms` with jitter, in seconds."""
        jitter = self.profile.jitter
        return max(0.0, ms * (1.0 + jitter * (2.0 * self._rng.random() - 1.0))) / 1000.0

    async def generate(self, session: Any, request: GenerationRequest) -> GenerationResult:
        """A simulated streamed completion; `session` is ignored."""
        profile = self.profile
        send = time.monotonic()
        result = GenerationResult(send_time=send)
        prompt_tokens = len(prompt_text(request).split())
        result.input_tokens = prompt_tokens
        tokens, finish = generate_text(request, request.max_tokens)
        factor = MODELS.get(request.model, 1.0)
        ttft_s = self._scaled((profile.ttft_ms + profile.per_token_ms * prompt_tokens) * factor)
        failure = self._failure(len(tokens))
        step = max(1, profile.tokens_per_chunk)
        chunks = ["".join(tokens[i : i + step]) for i in range(0, len(tokens), step)]

        if failure is not None and failure[0] != ErrorKind.CONNECTION:
            await self._sleep_until(send + ttft_s / 4)
            result.error = failure[1]
            result.end_time = time.monotonic()
            return result
        stop_after = failure[2] if failure is not None else len(chunks)

        if not request.stream:
            produced = len(tokens) if failure is None else stop_after * step
            total_s = ttft_s + sum(self._scaled(profile.itl_ms * factor) for _ in range(max(0, produced - 1)))
            await self._sleep_until(send + total_s)
            if failure is None:  # a cut response delivers nothing
                result.chunk_times.append(time.monotonic())
                result.chunk_tokens.append(max(1, len(tokens)))
        else:
            due = send + ttft_s
            for i in range(stop_after):
                carried = min(step, len(tokens) - i * step)
                if i:
                    due += self._scaled(profile.itl_ms * factor) * carried
                await self._sleep_until(due)
                result.chunk_times.append(time.monotonic())
                result.chunk_tokens.append(carried)
        if failure is not None:
            result.error = failure[1]
            result.text = "".join(chunks[:stop_after]) if request.stream else ""
            result.end_time = time.monotonic()
            return result
        result.text = "".join(tokens)
        result.output_tokens = len(tokens)
        result.token_source = "server"
        result.finish_reason = finish
        result.end_time = result.chunk_times[-1] if result.chunk_times else time.monotonic()
        return result

    async def _sleep_until(self, due: float) -> None:
        """Sleep to an absolute time, so event-loop lateness does not add up over a stream; always
        yields once, so zero-latency requests still interleave and can be cancelled."""
        if self.profile.zero_latency:
            await asyncio.sleep(0)
            return
        await asyncio.sleep(max(0.0, due - time.monotonic()))

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
        step = max(1, self.profile.tokens_per_chunk)
        chunks = max(1, math.ceil(tokens / step))
        cut = self._rng.randint(0, max(0, chunks - 1))
        error = RequestError(ErrorKind.CONNECTION, f"stream cut after {cut} chunks (simulated)")
        return error.kind, error, cut

    async def list_models(self, session: Any = None) -> list[str]:
        return list(MODELS)
