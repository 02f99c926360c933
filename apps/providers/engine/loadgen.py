"""The load generator: one step of a performance run, closed loop (N streams) or open loop (a rate
or given offsets). Multi-turn sessions reuse its machinery (sessions.py).

Pure asyncio, no Django. It only decides *when* requests start and keeps the results; `send(i)`
(an adapter bound to a request list) does the HTTP and the chunk parsing and returns a
`GenerationResult` timed on `time.monotonic()`. Per request the generator does a few counter
updates and comparisons, two list appends and one task; it never touches a chunk, so its own cost
does not show in the latencies it reports.

Measurement choices (see shared/notes/measurement.md for the peers' failures they avoid):

* **Closed loop**: exactly `concurrency` workers, each sending its next request as soon as the
  previous one returned (llmperf #56: never wait for the slowest of a batch).
* **Open loop**: the arrival times are computed before the step starts (from `rate_rps`, or given
  as `offsets_s` for trace replay) and one dispatcher task starts each request at its time, whether
  or not earlier ones finished. A request carries `scheduled_time`, so latency can be reported from
  the schedule as well as from the send: a client or a concurrency cap that falls behind shows up as
  dispatch delay instead of vanishing (coordinated omission: guidellm #1048/#1053, vLLM #54101).
* **Dispatch delay** is `send_time − when the request was due`: the schedule in open loop, the end
  of the worker's previous request in closed loop. Its p99 above 10 ms, or an achieved concurrency
  under 95 % of the target, means the client (not the server) was the bottleneck:
  `client_kept_up` is False with the reason.
* **Warm-up** (`warmup_requests`, `warmup_s`): the first `warmup_requests` requests sent, and every
  request due before `start + warmup_s`, are warm-up. They are sent, timed and returned like the
  others (`phase = PHASE_WARMUP`; the results layer leaves them out of the statistics). The warm-up
  *extends* the step: `duration_s` and `request_count` count the measured part after it. The
  measured part begins at `start + warmup_s`, or when request number `warmup_requests` (0-based,
  the first one past the count) is due if that is later; dispatching stops `duration_s` after that
  moment or once `request_count` requests past the warm-up were sent.
* **Phases** (`result.phase`, apps.providers.samples): warm-up as above; closed loop only, *ramp*
  for a request sent after the warm-up while the number in flight had not yet reached the target
  concurrency (the request that reaches it is steady); otherwise *steady*. Requests are classed by
  their send time only: a class chosen by finish time (e.g. "finished after dispatching stopped") would
  keep the fast requests of the last moments and drop the slow ones. The drain after the last dispatch
  is left out as time (rates and concurrency below), not as requests; PHASE_DRAIN stays unused here.
* **The measurement window** is [start, end of dispatching]: the drain after the last dispatch
  ramps concurrency down and would understate a steady state. Achieved concurrency, output
  tokens/s are taken over it (achieved rate is taken over the sends themselves), warm-up included.
  **The steady window** is [steady_start, steady_end]: from the later of the warm-up's end and the
  moment the target concurrency was first reached (closed loop), to the end of dispatching.
  `steady_concurrency` and `steady_output_tokens_per_s` are taken over it.
* **Cancel** (the `cancel` event): dispatching stops at once and in-flight requests are cancelled.
  They are *not* results (a request cut by the user says nothing about the server, and as a failure
  it would inflate the error rate); `StepOutcome.cancelled_requests` counts them. The step returns
  within about a second with every request that had finished. Cancelling `run_step` itself
  cancels its requests too (and raises, as cancellation does).
* **Loop lag**: a probe task samples how late a 5 ms timer fires. Every timestamp is taken when its
  chunk is handled, so a busy loop makes every latency late by as much: its p99 is reported with
  the step (`loop_lag_p99_ms`) as a bound on the client's own error.
* **Clock**: `clock` (default `time.monotonic`) must be the clock `send` stamps its results with;
  tests pass the virtual clock of tests/providers/virtual_time.py.
"""

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from apps.providers.engine.types import ErrorKind, GenerationResult, RequestError
from apps.providers.samples import PHASE_RAMP, PHASE_STEADY, PHASE_WARMUP

log = logging.getLogger(__name__)

MAX_DISPATCH_DELAY_P99_MS = 10.0
MIN_CONCURRENCY_SHARE = 0.95
CANCEL_GRACE_S = 0.8  # how long cancelled requests get to unwind before the step returns without them
LOOP_PROBE_S = 0.005  # how often the event loop's lag is sampled
LIVE_ITL_WINDOW = 100_000  # live ITL p50 is over the latest gaps only, so a progress tick stays cheap

Send = Callable[[int], Awaitable[GenerationResult]]
Clock = Callable[[], float]


def checked_offsets(offsets: Any) -> np.ndarray:
    """`offsets_s` as a float array, or a ValueError naming the first bad entry."""
    try:
        array = np.array(offsets, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"offsets_s must be numbers of seconds: {exc}") from None
    if array.ndim != 1 or array.size == 0:
        raise ValueError("offsets_s must be a non-empty list of offsets in seconds")
    bad = np.flatnonzero(~np.isfinite(array) | (array < 0))
    if bad.size:
        raise ValueError(f"offsets_s[{bad[0]}] is {array[bad[0]]}: offsets must be finite and ≥ 0")
    back = np.flatnonzero(np.diff(array) < 0)
    if back.size:
        i = back[0] + 1
        raise ValueError(f"offsets_s[{i}] ({array[i]:g}) comes before offsets_s[{i - 1}] ({array[i - 1]:g}): sort them")
    return array


def check_limits(spec: Any, *, finite: bool) -> None:
    """The stop, warm-up and drain fields shared by StepSpec and SessionStepSpec. `finite`: the step
    ends by itself (given offsets), so it needs neither `duration_s` nor `request_count`."""
    if spec.duration_s is None and spec.request_count is None and not finite:
        raise ValueError("a step needs duration_s or request_count")
    if spec.duration_s is not None and not spec.duration_s > 0:
        raise ValueError("duration_s must be positive")
    if spec.request_count is not None and spec.request_count < 1:
        raise ValueError("request_count must be at least 1")
    if spec.warmup_requests < 0:
        raise ValueError("warmup_requests must be 0 or more")
    if not (spec.warmup_s >= 0 and math.isfinite(spec.warmup_s)):
        raise ValueError("warmup_s must be a finite number of seconds ≥ 0")
    if spec.drain_timeout_s is not None and not spec.drain_timeout_s >= 0:
        raise ValueError("drain_timeout_s must be 0 or more")


@dataclass
class StepSpec:
    """One step. Closed loop keeps `concurrency` requests in flight; open loop starts requests at
    `rate_rps` (evenly spaced, or Poisson arrivals drawn from `seed`) or at the given `offsets_s`
    (seconds from the step's start, ascending: trace replay; any speed-up is the caller's), at most
    `max_concurrency` at a time when set (later ones wait, and the wait counts as dispatch delay).

    The step stops dispatching after `duration_s` and/or `request_count`, whichever comes first
    (with `offsets_s`, also when the offsets run out: then neither is required), then waits for the
    requests in flight (at most `drain_timeout_s` when set; those still running are cancelled).

    Warm-up: the first `warmup_requests` requests sent and those due before `warmup_s` are warm-up
    results (`PHASE_WARMUP`). The warm-up comes *on top of* the step: `duration_s` and
    `request_count` count the measured part after it (see the module docstring for where it begins),
    so a step of 60 s with a 10 s warm-up dispatches for about 70 s. With `offsets_s` the warm-up is
    taken from the front of the trace, and the measured part is cut from what follows."""

    mode: Literal["closed", "open"] = "closed"
    concurrency: int = 1
    rate_rps: float = 0.0
    arrivals: Literal["constant", "poisson"] = "constant"
    seed: int = 0
    max_concurrency: int | None = None
    duration_s: float | None = None
    request_count: int | None = None
    drain_timeout_s: float | None = None
    offsets_s: np.ndarray | None = None
    warmup_requests: int = 0
    warmup_s: float = 0.0

    def __post_init__(self):
        if self.mode not in ("closed", "open"):
            raise ValueError(f"mode must be 'closed' or 'open', not {self.mode!r}")
        if self.offsets_s is not None:
            if self.mode != "open":
                raise ValueError("offsets_s is for open-loop steps only")
            self.offsets_s = checked_offsets(self.offsets_s)
        check_limits(self, finite=self.offsets_s is not None)
        if self.mode == "closed" and self.concurrency < 1:
            raise ValueError("a closed-loop step needs concurrency ≥ 1")
        if self.mode == "open":
            if self.offsets_s is None and not self.rate_rps > 0:
                raise ValueError("an open-loop step needs rate_rps > 0 (or offsets_s)")
            if self.rate_rps < 0:
                raise ValueError("rate_rps must not be negative")
            if self.arrivals not in ("constant", "poisson"):
                raise ValueError(f"arrivals must be 'constant' or 'poisson', not {self.arrivals!r}")
            if self.max_concurrency is not None and self.max_concurrency < 1:
                raise ValueError("max_concurrency must be at least 1")


def warmup_split(offsets: np.ndarray, warmup_requests: int, warmup_s: float) -> tuple[int, float | None]:
    """How many of the ascending `offsets` are warm-up, and the offset where the measured part begins
    (None when every offset is warm-up)."""
    size = len(offsets)
    warm = min(size, max(warmup_requests, int(np.searchsorted(offsets, warmup_s, side="left"))))
    if warmup_requests == 0:
        return warm, warmup_s
    if warmup_requests >= size:
        return warm, None
    return warm, max(warmup_s, float(offsets[warmup_requests]))


def _arrival_offsets(spec: StepSpec, size: int) -> np.ndarray:
    """The first `size` arrivals of the spec's process, first at 0 (a longer draw extends a shorter one)."""
    if spec.arrivals == "constant":
        return np.arange(size, dtype=float) / spec.rate_rps
    rng = np.random.default_rng(spec.seed)
    return np.concatenate(([0.0], np.cumsum(rng.exponential(1 / spec.rate_rps, size - 1))))


def _cut(spec: StepSpec, offsets: np.ndarray, drawn: bool) -> tuple[np.ndarray, bool]:
    """The offsets the step dispatches: the warm-up, then the measured part cut by duration and count.
    The flag says whether the cut is known (a drawn schedule may need more arrivals to tell)."""
    warm, begin = warmup_split(offsets, spec.warmup_requests, spec.warmup_s)
    if begin is None:
        return offsets, not drawn
    end = len(offsets)
    if spec.duration_s is not None:
        end = max(warm, int(np.searchsorted(offsets, begin + spec.duration_s, side="left")))
    counted = spec.request_count is not None and end >= warm + spec.request_count
    if spec.request_count is not None:
        end = min(end, warm + spec.request_count)
    return offsets[:end], not drawn or end < len(offsets) or counted


def schedule(spec: StepSpec) -> np.ndarray:
    """Open loop: the send offsets in seconds from the step's start, warm-up included. Constant
    arrivals are i/rate; Poisson gaps are exponential with mean 1/rate from `default_rng(seed)`, so
    the same seed gives the same schedule; `offsets_s` are taken as given. Cut at `request_count`
    and before `duration_s` (both counted after the warm-up)."""
    if spec.offsets_s is not None:
        return _cut(spec, spec.offsets_s, drawn=False)[0]
    rate = spec.rate_rps
    size = spec.warmup_requests + math.ceil(spec.warmup_s * rate) + 1
    if spec.request_count is not None:
        size += spec.request_count
    else:
        expected = math.ceil(spec.duration_s * rate)
        size += expected + (int(10 * math.sqrt(expected) + 10) if spec.arrivals == "poisson" else 0)
    while True:
        offsets, known = _cut(spec, _arrival_offsets(spec, size), drawn=True)
        if known:
            return offsets
        size *= 2  # rare: a Poisson draw fell short


@dataclass
class StepProgress:
    """A live view of a running step. `requests_done` counts finished requests, failed included."""

    requests_done: int
    requests_failed: int
    in_flight: int
    elapsed_s: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    itl_p50_ms: float | None  # over the latest LIVE_ITL_WINDOW per-token gaps
    output_tokens_per_s: float  # output tokens of finished requests / elapsed
    sessions_active: int = 0  # multi-turn steps: sessions started and not yet ended


@dataclass
class StepOutcome:
    spec: Any  # StepSpec, or sessions.SessionStepSpec
    results: list[GenerationResult]  # finished requests in completion order; phase (and open loop scheduled_time) set
    start_time: float
    end_time: float
    window_end: float  # the end of dispatching: the measurement window is [start_time, window_end]
    achieved_concurrency: float  # time-weighted mean of requests in flight over the window
    achieved_rate_rps: float  # sends per second, between the first and the last send
    dispatch_delay_p50_ms: float | None
    dispatch_delay_p99_ms: float | None
    output_tokens_per_s: float  # output tokens of successful requests arrived within the window / window
    client_kept_up: bool
    kept_up_reason: str  # why not, or "" when it kept up
    cancelled: bool = False
    cancelled_requests: int = 0  # in flight when the step was cancelled (or its drain timed out): not results
    loop_lag_p99_ms: float | None = None  # how late the event loop woke up: a bound on every timestamp's error
    dispatch_delays_ms: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    # The steady window (module docstring): empty (start == end) when the step never got there.
    steady_start: float = 0.0
    steady_end: float = 0.0
    steady_count: int = 0  # results in PHASE_STEADY, failed included
    steady_concurrency: float | None = None  # time-weighted mean in flight over the steady window
    steady_output_tokens_per_s: float | None = None  # output tokens arrived within the steady window / its length
    # Multi-turn steps (run_sessions); 0 / None for run_step.
    sessions_started: int = 0
    sessions_completed: int = 0  # every turn returned without error
    sessions_aborted: int = 0  # a turn failed: the later ones were not sent
    achieved_sessions: float | None = None  # time-weighted mean of sessions active over the window

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r.error is not None)

    def ttft_ms(self, *, from_schedule: bool = False, steady: bool = False) -> np.ndarray:
        """TTFT of the successful requests (steady phase only if asked); from the schedule it includes
        the dispatch delay."""
        return np.array(
            [
                (r.chunk_times[0] - _origin(r, from_schedule)) * 1000
                for r in self.results
                if r.ok and r.chunk_times and (not steady or r.phase == PHASE_STEADY)
            ],
            dtype=float,
        )

    def e2e_ms(self, *, from_schedule: bool = False, steady: bool = False) -> np.ndarray:
        """End-to-end latency of the successful requests (steady phase only if asked), from the send or
        from the schedule."""
        return np.array(
            [
                (_end(r) - _origin(r, from_schedule)) * 1000
                for r in self.results
                if r.ok and _end(r) is not None and (not steady or r.phase == PHASE_STEADY)
            ],
            dtype=float,
        )


def _origin(result: GenerationResult, from_schedule: bool) -> float:
    return result.scheduled_time if from_schedule and result.scheduled_time is not None else result.send_time


def _end(result: GenerationResult) -> float | None:
    if result.end_time is not None:
        return result.end_time
    return result.chunk_times[-1] if result.chunk_times else None


def _output_tokens(result: GenerationResult) -> int:
    if result.output_tokens is not None:
        return result.output_tokens
    return sum(result.chunk_tokens) if result.chunk_tokens else len(result.chunk_times)


def _gaps_ms(result: GenerationResult) -> np.ndarray:
    """Per-token gaps as in `GenerationResult.itl_gaps_ms`, vectorised."""
    times = result.chunk_times
    if len(times) < 2:
        return np.empty(0)
    gaps = np.diff(np.asarray(times)) * 1000
    tokens = np.ones(len(gaps), dtype=np.int64)
    given = result.chunk_tokens[1 : len(times)]
    if given:
        tokens[: len(given)] = np.maximum(1, given)
    return np.repeat(gaps / tokens, tokens)


def _mean_busy(spans: np.ndarray, begin: float, end: float) -> float:
    """Time-weighted mean number of (start, end) spans open over [begin, end]."""
    overlap = np.clip(np.minimum(spans[:, 1], end) - np.maximum(spans[:, 0], begin), 0, None)
    return float(overlap.sum() / max(end - begin, 1e-9))


class _Step:
    """The state of one running step; `run_step` is its public face (sessions.py subclasses it)."""

    def __init__(self, spec: Any, send: Callable[..., Awaitable[GenerationResult]], clock: Clock):
        self.spec, self.send, self.now = spec, send, clock
        self.results: list[GenerationResult] = []
        self.delays: list[float] = []  # seconds, per result
        self.cancelled_spans: list[tuple[float, float]] = []  # (dispatched, cancelled) of dropped requests
        self.tasks: set[asyncio.Task] = set()
        self.sleepers: set[asyncio.Task] = set()  # tasks waiting to dispatch: woken (cancelled) when dispatching ends
        self.in_flight = self.failed = self.sent = 0
        self.first_send: float | None = None
        self.last_send: float | None = None
        self.start = self.window_end = 0.0
        self.limit: asyncio.Semaphore | None = None
        self.dispatched = asyncio.Event()  # set when no more requests will be sent: the drain begins
        self.stopping = False
        # Warm-up, ramp and the measured part (module docstring).
        self.warm_count = spec.warmup_requests  # dispatches [0, warm_count) are warm-up
        self.warm_until = -math.inf  # so is anything due before this
        self.measured = 0  # dispatches after the warm-up
        self.measure_start: float | None = None
        self.deadline: float | None = None  # dispatching stops here (known once the warm-up is over)
        self.timer: asyncio.TimerHandle | None = None
        self.ramping = False  # closed loop: the target concurrency was not reached yet
        self.target = 0
        self.reached_at: float | None = None
        self.sessions_active = 0
        # Live statistics, updated from the results finished since the previous progress tick.
        self.seen = 0
        self.ttfts: list[float] = []
        self.tokens = 0
        self.itl_ring = np.empty(LIVE_ITL_WINDOW)
        self.itl_count = 0
        self.loop_lags: list[float] = []

    async def one(self, index: int, due: float, scheduled: float | None, turn: int = -1) -> GenerationResult | None:
        """Send request `index` (with `turn` ≥ 0: turn `turn` of session `index`) and keep its result,
        which it returns (None when the request was cancelled). `due` is when it should have been sent."""
        self.in_flight += 1
        ordinal = self.sent
        self.sent = ordinal + 1
        dispatched = self.now()
        if ordinal == self.warm_count and self.measure_start is None:
            self.begin_measuring(max(self.warm_until, due))
        if self.ramping and self.ramp_over():
            self.ramping = False
            self.reached_at = dispatched
        if ordinal < self.warm_count or due < self.warm_until:
            phase = PHASE_WARMUP
        else:
            self.measured += 1
            phase = PHASE_RAMP if self.ramping else PHASE_STEADY
        try:
            result = await (self.send(index) if turn < 0 else self.send(index, turn))
        except asyncio.CancelledError:
            self.cancelled_spans.append((dispatched, self.now()))
            raise
        except Exception as exc:  # a broken adapter must not take the step down: a failed result
            log.exception("send raised instead of returning a result (request %d, turn %d)", index, turn)
            result = GenerationResult(
                send_time=dispatched,
                end_time=self.now(),
                error=RequestError(ErrorKind.PROTOCOL, f"{type(exc).__name__}: {exc}"[:500]),
            )
        finally:
            self.in_flight -= 1
            if self.limit is not None:
                self.limit.release()
        if self.stopping or (result.error is not None and result.error.kind == ErrorKind.CANCELLED):
            self.cancelled_spans.append((dispatched, self.now()))  # a cancelled request is not a result
            return None
        if result.end_time is None:
            result.end_time = self.now()
        result.scheduled_time = scheduled
        result.phase = phase
        if turn >= 0:
            result.session_index, result.turn_index = index, turn
        self.delays.append(result.send_time - due)
        if result.error is not None:
            self.failed += 1
        self.results.append(result)
        if self.first_send is None or result.send_time < self.first_send:
            self.first_send = result.send_time
        if self.last_send is None or result.send_time > self.last_send:
            self.last_send = result.send_time
        return result

    def ramp_over(self) -> bool:
        return self.in_flight >= self.target

    def begin_measuring(self, when: float) -> None:
        """The warm-up is over at `when`: the measured part, and the clock of `duration_s`, start there."""
        self.measure_start = when
        if self.spec.duration_s is not None:
            self.deadline = when + self.spec.duration_s
            wait = max(0.0, self.deadline - self.now())
            self.timer = asyncio.get_running_loop().call_later(wait, self.end_dispatch, self.deadline)

    def end_dispatch(self, when: float) -> None:
        if not self.dispatched.is_set():
            self.window_end = when
            self.dispatched.set()
            for task in list(self.sleepers):
                task.cancel()

    def start_closed(self, target: int) -> None:
        """Closed-loop bookkeeping at the start: the warm-up by time, the ramp's target."""
        spec = self.spec
        self.target, self.ramping = target, True
        self.warm_until = self.start + spec.warmup_s
        if spec.warmup_requests == 0:
            self.begin_measuring(self.warm_until)

    async def closed_worker(self, count: int | None) -> None:
        ready = self.now()
        while not self.stopping:
            deadline = self.deadline
            if deadline is not None and ready >= deadline:
                return self.end_dispatch(deadline)
            if count is not None and self.measured >= count:
                return self.end_dispatch(ready)
            await self.one(self.sent, ready, None)
            ready = self.now()

    async def run_closed(self) -> None:
        spec = self.spec
        total = spec.warmup_requests + spec.request_count if spec.request_count is not None else spec.concurrency
        self.start_closed(min(spec.concurrency, total))
        workers = [asyncio.create_task(self.closed_worker(spec.request_count)) for _ in range(spec.concurrency)]
        self.tasks.update(workers)
        await asyncio.gather(*workers)

    async def run_open(self) -> None:
        spec = self.spec
        if spec.max_concurrency is not None:
            self.limit = asyncio.Semaphore(spec.max_concurrency)
        start, tasks, offsets = self.start, self.tasks, schedule(spec)
        self.warm_count, begin = warmup_split(offsets, spec.warmup_requests, spec.warmup_s)
        self.measure_start = None if begin is None else start + begin
        # The window ends where the schedule does: one mean gap after the last arrival, or at the end
        # of the measured part's duration.
        gap = 1 / spec.rate_rps if spec.rate_rps > 0 else 0.0
        if not gap and offsets.size > 1:
            gap = float(np.median(np.diff(offsets)))
        planned_end = start + (offsets[-1] + gap if offsets.size else 0.0)
        if spec.duration_s is not None and begin is not None:
            planned_end = min(planned_end, start + begin + spec.duration_s)
        now = self.now
        for index, offset in enumerate(offsets.tolist()):
            due = start + offset
            while (wait := due - now()) > 0:  # uvloop timers can fire a little early
                await asyncio.sleep(wait)
            if self.limit is not None:
                await self.limit.acquire()
            task = asyncio.create_task(self.one(index, due, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        self.end_dispatch(max(planned_end, now()))
        while tasks:
            await asyncio.wait(list(tasks))

    def progress(self) -> StepProgress:
        new = self.results[self.seen :]
        self.seen = len(self.results)
        for result in new:
            if result.error is not None:
                continue
            if result.chunk_times:
                self.ttfts.append((result.chunk_times[0] - result.send_time) * 1000)
            self.tokens += _output_tokens(result)
            gaps = _gaps_ms(result)[-LIVE_ITL_WINDOW:]
            at = self.itl_count % LIVE_ITL_WINDOW
            head = min(len(gaps), LIVE_ITL_WINDOW - at)
            self.itl_ring[at : at + head] = gaps[:head]
            self.itl_ring[: len(gaps) - head] = gaps[head:]
            self.itl_count += len(gaps)
        elapsed = self.now() - self.start
        ttft_p50 = ttft_p95 = itl_p50 = None
        if self.ttfts:
            ttft_p50, ttft_p95 = (float(v) for v in np.percentile(self.ttfts, (50, 95)))
        if self.itl_count:
            itl_p50 = float(np.percentile(self.itl_ring[: min(self.itl_count, LIVE_ITL_WINDOW)], 50))
        return StepProgress(
            requests_done=len(self.results),
            requests_failed=self.failed,
            in_flight=self.in_flight,
            elapsed_s=elapsed,
            ttft_p50_ms=ttft_p50,
            ttft_p95_ms=ttft_p95,
            itl_p50_ms=itl_p50,
            output_tokens_per_s=self.tokens / elapsed if elapsed > 0 else 0.0,
            sessions_active=self.sessions_active,
        )

    async def probe_loop(self) -> None:
        """Sample how late a timer fires. A timestamp taken when a chunk is handled is late by as
        much as the loop was busy, so this bounds every latency's error (it costs ~200 wake-ups/s)."""
        lags, now = self.loop_lags, self.now
        while True:
            due = now() + LOOP_PROBE_S
            await asyncio.sleep(LOOP_PROBE_S)
            lags.append(now() - due)

    async def report(self, on_progress: Callable[[StepProgress], None], interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.emit(on_progress)

    def emit(self, on_progress: Callable[[StepProgress], None]) -> None:
        try:
            on_progress(self.progress())
        except Exception:  # a broken live page must not stop a run
            log.exception("on_progress raised")

    async def cancel_in_flight(self, body: asyncio.Task) -> int:
        """Stop dispatching and cancel whatever is still running; give it CANCEL_GRACE_S in all to
        unwind (what does not is left behind). Returns how many requests were dropped."""
        self.stopping = True
        before = len(self.cancelled_spans)
        pending = [body, *(task for task in self.tasks if not task.done())]
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=CANCEL_GRACE_S)
        # Requests whose task had not started yet never reached `one`: they were not sent.
        return len(self.cancelled_spans) - before

    async def drive(
        self,
        body: Callable[[], Awaitable[None]],
        on_progress: Callable[[StepProgress], None] | None,
        progress_interval_s: float,
        cancel: asyncio.Event | None,
    ) -> StepOutcome:
        """Run `body` (the dispatching and the drain) to the end, a cancel, or the drain timeout."""
        self.start = self.now()
        task = asyncio.create_task(body())
        dispatched = asyncio.ensure_future(self.dispatched.wait())
        cancelled_wait = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        reporter = asyncio.create_task(self.report(on_progress, progress_interval_s)) if on_progress else None
        probe = asyncio.create_task(self.probe_loop())
        stop_on = {cancelled_wait} - {None}
        dropped = 0
        try:
            await asyncio.wait({task, dispatched, *stop_on}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and not (cancel is not None and cancel.is_set()):  # dispatching is over: drain
                await asyncio.wait(
                    {task, *stop_on}, timeout=self.spec.drain_timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
            if not task.done():  # cancelled, or the drain timed out
                dropped = await self.cancel_in_flight(task)
            elif not task.cancelled():
                task.result()  # re-raise a bug in the generator itself
        finally:
            if not task.done() or any(not t.done() for t in self.tasks):  # cancelled itself, or a bug
                self.stopping = True
                for pending in (task, *self.tasks):
                    pending.cancel()
            if self.timer is not None:
                self.timer.cancel()
            for waiter in (dispatched, cancelled_wait, reporter, probe):
                if waiter is not None:
                    waiter.cancel()
            if reporter is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
        end = self.now()
        if on_progress is not None:
            self.emit(on_progress)
        return self.outcome(end, cancel is not None and cancel.is_set(), dropped)

    def concurrency_shortfall(self, concurrency: float, window_end: float) -> str:
        """Closed loop: why the load held was short of the target ("" when it was not)."""
        spec = self.spec
        target = min(spec.concurrency, spec.request_count or spec.concurrency)
        if concurrency < MIN_CONCURRENCY_SHARE * target:
            return f"achieved concurrency {concurrency:.1f} < {MIN_CONCURRENCY_SHARE:.0%} of {target}"
        return ""

    def outcome(self, end: float, cancelled: bool, dropped: int) -> StepOutcome:
        spec, results = self.spec, self.results
        window_end = min(self.window_end, end) if self.dispatched.is_set() else end
        window = max(window_end - self.start, 1e-9)
        spans = [(r.send_time, _end(r) or end) for r in results] + self.cancelled_spans
        busy = np.array(spans, dtype=float).reshape(-1, 2)
        concurrency = _mean_busy(busy, self.start, window_end)
        rate = 0.0
        if len(results) > 1 and self.last_send is not None and self.first_send is not None:
            rate = (len(results) - 1) / max(self.last_send - self.first_send, 1e-9)
        delays_ms = np.array(self.delays, dtype=float) * 1000
        p50 = p99 = None
        if delays_ms.size:
            p50, p99 = (float(v) for v in np.percentile(delays_ms, (50, 99)))
        tokens = _tokens_within(results, self.start, window_end)
        # Requests are classed by when they were sent, never by when they finished: leaving out those that
        # outlived the window would keep fast requests and drop slow ones (a survivorship bias). The drain is
        # left out as *time*: the window's rates and concurrency end where dispatching ended.
        steady_count = sum(1 for result in results if result.phase == PHASE_STEADY)
        steady_start = window_end
        if self.measure_start is not None:
            reached = self.reached_at if self.reached_at is not None else (window_end if self.ramping else -math.inf)
            steady_start = min(max(self.measure_start, reached), window_end)
        steady_concurrency = steady_tokens_per_s = None
        if window_end > steady_start:
            steady_concurrency = _mean_busy(busy, steady_start, window_end)
            steady_tokens_per_s = _tokens_within(results, steady_start, window_end) / (window_end - steady_start)
        reasons = []  # why the client (not the server) may have been the bottleneck
        if p99 is not None and p99 > MAX_DISPATCH_DELAY_P99_MS:
            reasons.append(f"dispatch delay p99 {p99:.1f} ms > {MAX_DISPATCH_DELAY_P99_MS:g} ms")
        if spec.mode == "closed" and not cancelled:
            reasons += filter(None, [self.concurrency_shortfall(concurrency, window_end)])
        return StepOutcome(
            spec=spec,
            results=results,
            start_time=self.start,
            end_time=end,
            window_end=window_end,
            achieved_concurrency=concurrency,
            achieved_rate_rps=rate,
            dispatch_delay_p50_ms=p50,
            dispatch_delay_p99_ms=p99,
            output_tokens_per_s=tokens / window,
            client_kept_up=not reasons,
            kept_up_reason="; ".join(reasons),
            cancelled=cancelled,
            cancelled_requests=dropped,
            dispatch_delays_ms=delays_ms,
            loop_lag_p99_ms=float(np.percentile(self.loop_lags, 99)) * 1000 if self.loop_lags else None,
            steady_start=steady_start,
            steady_end=window_end,
            steady_count=steady_count,
            steady_concurrency=steady_concurrency,
            steady_output_tokens_per_s=steady_tokens_per_s,
        )


def _tokens_within(results: list[GenerationResult], start: float, end: float) -> float:
    """Output tokens of successful requests that arrived in [start, end]: by chunk when chunks were
    timed, else all at the request's end."""
    total = 0.0
    for result in results:
        if result.error is not None:
            continue
        times = result.chunk_times
        if not times:
            finished = _end(result)
            total += _output_tokens(result) if finished is not None and start <= finished <= end else 0
            continue
        if start <= times[0] and times[-1] <= end:  # the common case: no per-chunk work
            total += _output_tokens(result)
            continue
        arrived = np.asarray(times)
        inside = (arrived >= start) & (arrived <= end)
        counts = np.asarray(result.chunk_tokens, dtype=float) if len(result.chunk_tokens) == len(times) else None
        total += float(counts[inside].sum()) if counts is not None else float(inside.sum())
    return total


async def run_step(
    spec: StepSpec,
    send: Send,
    *,
    on_progress: Callable[[StepProgress], None] | None = None,
    progress_interval_s: float = 0.5,
    cancel: asyncio.Event | None = None,
    clock: Clock = time.monotonic,
) -> StepOutcome:
    """Run one step and return what it measured. `send(i)` sends the i-th request (0, 1, 2, ...,
    warm-up included; with `offsets_s`, request i is due at offsets_s[i]) and returns its result;
    it should not raise (an exception becomes a failed result). `on_progress` gets a `StepProgress`
    every `progress_interval_s` and once at the end. Setting `cancel` stops the step: see the module
    docstring for what happens to requests in flight."""
    step = _Step(spec, send, clock)
    return await step.drive(
        step.run_closed if spec.mode == "closed" else step.run_open, on_progress, progress_interval_s, cancel
    )
