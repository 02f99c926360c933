"""The per-request sample every producer of performance data hands over: the load engine (live
sweeps) and the file importers of apps.hardware. It lives here, below hardware, so the engine
never imports the app that stores its results."""

from dataclasses import dataclass


@dataclass
class ParsedSample:
    """One request as the tool recorded it."""

    index: int
    error_code: str = ""  # "" = success; else the tool's code or a short class ("http_500", "timeout" …)
    error_message: str = ""
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    itl_ms: list[float] | None = None  # every inter-token gap, when the tool has them
    mean_itl_ms: float | None = None  # the per-request mean, when the tool only has that
    start_offset_ms: float | None = None  # send time from the start of the run, when known
    # Workloads (issue 13). None when the tool or the workload does not say.
    session_index: int | None = None  # multi-turn: which session (0-based)
    turn_index: int | None = None  # multi-turn: which turn of its session (0-based); single-turn requests: None
    requested_input_tokens: int | None = None  # the length the workload asked for (content tokens)
    requested_output_tokens: int | None = None  # max_tokens sent
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens; None = not reported (never 0)
    reasoning_tokens: int | None = None  # usage.completion_tokens_details.reasoning_tokens
    ttfot_ms: float | None = None  # time to the first *output* (non-reasoning) token; equals TTFT without reasoning
    phase: int | None = None  # PHASE_*: steady (0), warm-up (1), ramp-up (2), drain (3); None = not classified


PHASE_STEADY, PHASE_WARMUP, PHASE_RAMP, PHASE_DRAIN = 0, 1, 2, 3
PHASE_NAMES = {PHASE_STEADY: "steady", PHASE_WARMUP: "warm-up", PHASE_RAMP: "ramp-up", PHASE_DRAIN: "drain"}
