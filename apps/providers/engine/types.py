"""The contract between the load engine, the provider adapters and the rest of llmbench.

Everything here is plain data: no Django, no secrets in reprs. Times are `time.monotonic()`
seconds (CLOCK_MONOTONIC, shared by every process on the machine, so a local mock server's send
stamps are comparable), converted to milliseconds only when a sample is made.
"""

import bisect
from dataclasses import dataclass, field
from enum import StrEnum

from apps.providers.samples import ParsedSample


class Kind(StrEnum):
    OPENAI = "openai"
    OPENAI_COMPATIBLE = "openai_compatible"  # vLLM, SGLang, TGI, llama.cpp, Ollama, Together, LM Studio
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    SIM = "sim"


class ErrorKind(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429
    AUTH = "auth"  # 401, 403: the key was refused; a run stops
    BAD_REQUEST = "bad_request"  # 400, 404, 422 and other 4xx that retrying cannot fix
    SERVER = "server"  # 5xx, 408, 409
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    CONNECTION = "connection"  # refused, reset, DNS, a stream cut before its end
    PROTOCOL = "protocol"  # a body or event that does not follow the vendor's format
    CIRCUIT_OPEN = "circuit_open"  # not sent: the endpoint kept failing


RETRYABLE = {ErrorKind.RATE_LIMITED, ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.CONNECTION}


@dataclass(frozen=True)
class EndpointConfig:
    """Where requests go. `api_key` lives only in memory; repr() never shows it."""

    kind: Kind
    base_url: str
    api_key: str = field(default="", repr=False)
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0  # longest silence allowed between two chunks
    total_timeout_s: float = 600.0
    extra_headers: dict[str, str] = field(default_factory=dict, repr=False)
    name: str = ""  # the endpoint's name: the label of its calls in /metrics (callmetrics.py)

    @property
    def key_hint(self) -> str:
        """The last 4 characters of the key, the only part ever shown."""
        return f"…{self.api_key[-4:]}" if self.api_key else ""


@dataclass
class GenerationRequest:
    """One chat completion (or, with endpoint="completions", one text completion of `prompt`) to stream.
    Parameters left None are not sent."""

    model: str
    messages: list[dict[str, str]]  # [{"role": "system" | "user" | "assistant", "content": "..."}]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    ignore_eos: bool = False  # sent only to servers that understand it (openai_compatible)
    stream: bool = True
    endpoint: str = "chat"  # "chat" (/chat/completions) or "completions" (/completions, OpenAI-compatible only)
    prompt: str | None = None  # endpoint="completions": the whole prompt text (messages are ignored)
    # Sampling extras of OpenAI-compatible servers (vLLM, SGLang); sent only to them.
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int | None = None
    # OpenAI standard: sent to every OpenAI-style server.
    stop: list[str] | None = None
    response_format: dict | None = None  # {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}
    # Bookkeeping copied onto the result, never sent.
    session_index: int | None = None
    turn_index: int | None = None
    requested_input_tokens: int | None = None


@dataclass
class RequestError:
    """A normalized failure. `message` is safe to store and show: it never contains the key."""

    kind: ErrorKind
    message: str
    status: int | None = None
    retry_after_s: float | None = None

    @property
    def code(self) -> str:
        """What a sample stores as its error code: the HTTP status when there is one."""
        return str(self.status) if self.status else self.kind.value


@dataclass
class GenerationResult:
    """What one request did, timed on the monotonic clock.

    `chunk_times[i]` is when the i-th token-bearing chunk (answer or reasoning) arrived and `chunk_tokens[i]` how
    many tokens it carried (from the server's running usage when it sends one, else 1).
    """

    send_time: float
    chunk_times: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    text: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    token_source: str = ""  # "server" (usage field) or "counted" (chunks)
    finish_reason: str | None = None
    end_time: float | None = None
    error: RequestError | None = None
    attempts: int = 1
    server_send_times: list[float] = field(default_factory=list)  # stamps a local mock puts in chunks
    scheduled_time: float | None = None  # open loop: when the schedule wanted it sent
    # `chunk_times` holds every token-bearing chunk, reasoning included (TTFT is the first token of any kind);
    # `first_output_time` is the first chunk with *content* (not reasoning): time to first output token.
    first_output_time: float | None = None
    # Its index in `chunk_times`: the last reasoning chunk and the first answer chunk can arrive in one read and share
    # a time, so the time alone cannot say where the answer starts.
    first_output_index: int | None = None
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens; None when not reported
    reasoning_tokens: int | None = None  # usage.completion_tokens_details.reasoning_tokens (or counted deltas)
    # Copied from the request / set by the engine.
    session_index: int | None = None
    turn_index: int | None = None
    requested_input_tokens: int | None = None
    requested_output_tokens: int | None = None
    phase: int | None = None  # apps.providers.samples.PHASE_*

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ttft_ms(self) -> float | None:
        return (self.chunk_times[0] - self.send_time) * 1000 if self.chunk_times else None

    @property
    def ttfot_ms(self) -> float | None:
        """Time to the first output (non-reasoning) token."""
        return (self.first_output_time - self.send_time) * 1000 if self.first_output_time is not None else None

    @property
    def e2e_ms(self) -> float | None:
        end = self.end_time if self.end_time is not None else (self.chunk_times[-1] if self.chunk_times else None)
        return None if end is None else (end - self.send_time) * 1000

    @property
    def itl_gaps_ms(self) -> list[float]:
        """Per-token gaps: the gap before a chunk of k tokens counts as k gaps of gap/k. Extra
        tokens of the first chunk add no gap (they arrived with the first token)."""
        gaps: list[float] = []
        first = 1
        if self.first_output_index is not None:
            # A reasoning model: ITL is over output (answer) tokens, from the first one on.
            first = self.first_output_index + 1
        elif self.first_output_time is not None and self.chunk_times and self.first_output_time != self.chunk_times[0]:
            # (a result without the index, e.g. from an older shard worker: the first chunk at that time)
            first = bisect.bisect_left(self.chunk_times, self.first_output_time) + 1
        for i in range(first, len(self.chunk_times)):
            gap_ms = (self.chunk_times[i] - self.chunk_times[i - 1]) * 1000
            tokens = max(1, self.chunk_tokens[i] if i < len(self.chunk_tokens) else 1)
            gaps.extend([gap_ms / tokens] * tokens)
        return gaps

    def to_sample(self, index: int, start_of_run: float) -> ParsedSample:
        """A performance-run sample; a failed request keeps its error and no latency."""
        start_offset_ms = (self.send_time - start_of_run) * 1000
        workload = dict(
            session_index=self.session_index,
            turn_index=self.turn_index,
            requested_input_tokens=self.requested_input_tokens,
            requested_output_tokens=self.requested_output_tokens,
            phase=self.phase,
        )
        if self.error is not None:
            return ParsedSample(
                index=index,
                error_code=self.error.code,
                error_message=self.error.message[:2000],
                input_tokens=self.input_tokens,
                start_offset_ms=start_offset_ms,
                **workload,
            )
        return ParsedSample(
            index=index,
            ttft_ms=self.ttft_ms,
            e2e_ms=self.e2e_ms,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            itl_ms=self.itl_gaps_ms,
            start_offset_ms=start_offset_ms,
            cached_tokens=self.cached_tokens,
            reasoning_tokens=self.reasoning_tokens,
            ttfot_ms=self.ttfot_ms,
            **workload,
        )
