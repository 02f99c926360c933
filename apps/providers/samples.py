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
