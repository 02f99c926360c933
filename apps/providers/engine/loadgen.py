"""The load generator: one step of a performance run, closed loop (N streams) or open loop (a rate).

Pure asyncio, no Django. It only decides *when* requests start and keeps the results; `send(i)`
(an adapter bound to a request list) does the HTTP and the chunk parsing and returns a
`GenerationResult` timed on `time.monotonic()`. Per request the generator does a counter update,
two list appends and one task; it never touches a chunk, so its own cost does not show in the
latencies it reports.

Measurement choices (see shared/notes/measurement.md for the peers' failures they avoid):

* **Closed loop**: exactly `concurrency` workers, each sending its next request as soon as the
  previous one returned (llmperf #56: never wait for the slowest of a batch).
* **Open loop**: the arrival times are computed before the step starts and one dispatcher task
  starts each request at its time, whether or not earlier ones finished. A request carries
  `scheduled_time`, so latency can be reported from the schedule as well as from the send:
  a client or a concurrency cap that falls behind shows up as dispatch delay instead of vanishing
  (coordinated omission: guidellm #1048/#1053, vLLM #54101).
* **Dispatch delay** is `send_time − when the request was due`: the schedule in open loop, the end
  of the worker's previous request in closed loop. Its p99 above 10 ms, or an achieved concurrency
  under 95 % of the target, means the client (not the server) was the bottleneck:
  `client_kept_up` is False with the reason.
* **The measurement window** is [start, end of dispatching]: the drain after the last dispatch
  ramps concurrency down and would understate a steady state. Achieved concurrency, output
  tokens/s are taken over it (achieved rate is taken over the sends themselves).
* **Cancel** (the `cancel` event): dispatching stops at once and in-flight requests are cancelled.
  They are *not* results (a request cut by the user says nothing about the server, and as a failure
  it would inflate the error rate); `StepOutcome.cancelled_requests` counts them. The step returns
  within about a second with every request that had finished. Cancelling `run_step` itself
  cancels its requests too (and raises, as cancellation does).
* **Loop lag**: a probe task samples how late a 5 ms timer fires. Every timestamp is taken when its
  chunk is handled, so a busy loop makes every latency late by as much: its p99 is reported with
  the step (`loop_lag_p99_ms`) as a bound on the client's own error.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from apps.providers.engine.types import ErrorKind, GenerationResult, RequestError

log = logging.getLogger(__name__)

MAX_DISPATCH_DELAY_P99_MS = 10.0
MIN_CONCURRENCY_SHARE = 0.95
CANCEL_GRACE_S = 0.8  # how long cancelled requests get to unwind before the step returns without them
LOOP_PROBE_S = 0.005  # how often the event loop's lag is sampled
LIVE_ITL_WINDOW = 100_000  # live ITL p50 is over the latest gaps only, so a progress tick stays cheap

Send = Callable[[int], Awaitable[GenerationResult]]


@dataclass
class StepSpec:
    """One step. Closed loop keeps `concurrency` requests in flight; open loop starts requests at
    `rate_rps` (evenly spaced, or Poisson arrivals drawn from `seed`), at most `max_concurrency`
    at a time when set (later ones wait, and the wait counts as dispatch delay). The step stops
    dispatching after `duration_s` and/or `request_count`, whichever comes first, then waits for
    the requests in flight (at most `drain_timeout_s` when set; those still running are cancelled).
    There is no warm-up: every request is a result."""

    mode: Literal["closed", "open"] = "closed"
    concurrency: int = 1
    rate_rps: float = 0.0
    arrivals: Literal["constant", "poisson"] = "constant"
    seed: int = 0
    max_concurrency: int | None = None
    duration_s: float | None = None
    request_count: int | None = None
    drain_timeout_s: float | None = None

    def __post_init__(self):
        if self.mode not in ("closed", "open"):
            raise ValueError(f"mode must be 'closed' or 'open', not {self.mode!r}")
        if self.duration_s is None and self.request_count is None:
            raise ValueError("a step needs duration_s or request_count")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration_s must be positive")
        if self.request_count is not None and self.request_count < 1:
            raise ValueError("request_count must be at least 1")
        if self.mode == "closed" and self.concurrency < 1:
            raise ValueError("a closed-loop step needs concurrency ≥ 1")
        if self.mode == "open":
            if self.rate_rps <= 0:
                raise ValueError("an open-loop step needs rate_rps > 0")
            if self.arrivals not in ("constant", "poisson"):
                raise ValueError(f"arrivals must be 'constant' or 'poisson', not {self.arrivals!r}")
            if self.max_concurrency is not None and self.max_concurrency < 1:
                raise ValueError("max_concurrency must be at least 1")


def schedule(spec: StepSpec) -> np.ndarray:
    """Open loop: the send offsets in seconds from the step's start, first at 0. Constant arrivals
    are i/rate; Poisson gaps are exponential with mean 1/rate from `default_rng(seed)`, so the same
    seed gives the same schedule. Cut at `request_count` and before `duration_s`."""
    rate, count, duration = spec.rate_rps, spec.request_count, spec.duration_s
    if count is None:
        count = int(np.ceil(duration * rate))  # enough constant arrivals; Poisson draws more below
    if spec.arrivals == "constant":
        offsets = np.arange(count, dtype=float) / rate
    else:
        rng = np.random.default_rng(spec.seed)
        wanted = count if spec.request_count is not None else int(count + 10 * np.sqrt(count) + 10)
        offsets = np.concatenate(([0.0], np.cumsum(rng.exponential(1 / rate, wanted - 1))))
        while spec.request_count is None and offsets[-1] < duration:  # rare: the draw fell short
            offsets = np.concatenate((offsets, offsets[-1] + np.cumsum(rng.exponential(1 / rate, wanted))))
    if duration is not None:
        offsets = offsets[offsets < duration]
    return offsets[:count] if spec.request_count is not None else offsets


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


@dataclass
class StepOutcome:
    spec: StepSpec
    results: list[GenerationResult]  # finished requests in completion order; open loop: scheduled_time set
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

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r.error is not None)

    def ttft_ms(self, *, from_schedule: bool = False) -> np.ndarray:
        """TTFT of the successful requests; from the schedule it includes the dispatch delay."""
        return np.array(
            [(r.chunk_times[0] - _origin(r, from_schedule)) * 1000 for r in self.results if r.ok and r.chunk_times],
            dtype=float,
        )

    def e2e_ms(self, *, from_schedule: bool = False) -> np.ndarray:
        """End-to-end latency of the successful requests, from the send or from the schedule."""
        return np.array(
            [(_end(r) - _origin(r, from_schedule)) * 1000 for r in self.results if r.ok and _end(r) is not None],
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


class _Step:
    """The state of one running step; `run_step` is its public face."""

    def __init__(self, spec: StepSpec, send: Send):
        self.spec, self.send = spec, send
        self.results: list[GenerationResult] = []
        self.delays: list[float] = []  # seconds, per result
        self.cancelled_spans: list[tuple[float, float]] = []  # (dispatched, cancelled) of dropped requests
        self.tasks: set[asyncio.Task] = set()
        self.in_flight = self.failed = self.sent = 0
        self.first_send: float | None = None
        self.last_send: float | None = None
        self.start = self.window_end = 0.0
        self.limit: asyncio.Semaphore | None = None
        self.dispatched = asyncio.Event()  # set when no more requests will be sent: the drain begins
        self.stopping = False
        # Live statistics, updated from the results finished since the previous progress tick.
        self.seen = 0
        self.ttfts: list[float] = []
        self.tokens = 0
        self.itl_ring = np.empty(LIVE_ITL_WINDOW)
        self.itl_count = 0
        self.loop_lags: list[float] = []

    async def one(self, index: int, due: float, scheduled: float | None) -> None:
        """Send request `index` and keep its result. `due` is when it should have been sent."""
        self.in_flight += 1
        self.sent += 1
        dispatched = time.monotonic()
        try:
            result = await self.send(index)
        except asyncio.CancelledError:
            self.cancelled_spans.append((dispatched, time.monotonic()))
            raise
        except Exception as exc:  # a broken adapter must not take the step down: a failed result
            log.exception("send(%d) raised instead of returning a result", index)
            result = GenerationResult(
                send_time=dispatched,
                end_time=time.monotonic(),
                error=RequestError(ErrorKind.PROTOCOL, f"{type(exc).__name__}: {exc}"[:500]),
            )
        finally:
            self.in_flight -= 1
            if self.limit is not None:
                self.limit.release()
        if self.stopping or (result.error is not None and result.error.kind == ErrorKind.CANCELLED):
            self.cancelled_spans.append((dispatched, time.monotonic()))  # a cancelled request is not a result
            return
        if result.end_time is None:
            result.end_time = time.monotonic()
        result.scheduled_time = scheduled
        self.delays.append(result.send_time - due)
        if result.error is not None:
            self.failed += 1
        self.results.append(result)
        if self.first_send is None or result.send_time < self.first_send:
            self.first_send = result.send_time
        if self.last_send is None or result.send_time > self.last_send:
            self.last_send = result.send_time

    def end_dispatch(self, when: float) -> None:
        if not self.dispatched.is_set():
            self.window_end = when
            self.dispatched.set()

    async def closed_worker(self, deadline: float | None, count: int | None) -> None:
        ready = time.monotonic()
        while not self.stopping:
            if deadline is not None and ready >= deadline:
                return self.end_dispatch(deadline)
            if count is not None and self.sent >= count:
                return self.end_dispatch(ready)
            await self.one(self.sent, ready, None)
            ready = time.monotonic()

    async def run_closed(self) -> None:
        spec = self.spec
        deadline = None
        if spec.duration_s is not None:
            deadline = self.start + spec.duration_s
            timer = asyncio.get_running_loop().call_later(spec.duration_s, self.end_dispatch, deadline)
        workers = [
            asyncio.create_task(self.closed_worker(deadline, spec.request_count)) for _ in range(spec.concurrency)
        ]
        self.tasks.update(workers)
        try:
            await asyncio.gather(*workers)
        finally:
            if deadline is not None:
                timer.cancel()

    async def run_open(self) -> None:
        spec = self.spec
        if spec.max_concurrency is not None:
            self.limit = asyncio.Semaphore(spec.max_concurrency)
        start, tasks, offsets = self.start, self.tasks, schedule(spec)
        # The window ends where the schedule does: one mean gap after the last arrival, or at duration_s.
        planned_end = start + (offsets[-1] + 1 / spec.rate_rps if offsets.size else 0.0)
        if spec.duration_s is not None:
            planned_end = min(planned_end, start + spec.duration_s)
        for index, offset in enumerate(offsets.tolist()):
            due = start + offset
            while (wait := due - time.monotonic()) > 0:  # uvloop timers can fire a little early
                await asyncio.sleep(wait)
            if self.limit is not None:
                await self.limit.acquire()
            task = asyncio.create_task(self.one(index, due, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        self.end_dispatch(max(planned_end, time.monotonic()))
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
        elapsed = time.monotonic() - self.start
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
        )

    async def probe_loop(self) -> None:
        """Sample how late a timer fires. A timestamp taken when a chunk is handled is late by as
        much as the loop was busy, so this bounds every latency's error (it costs ~200 wake-ups/s)."""
        lags = self.loop_lags
        while True:
            due = time.monotonic() + LOOP_PROBE_S
            await asyncio.sleep(LOOP_PROBE_S)
            lags.append(time.monotonic() - due)

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

    def outcome(self, end: float, cancelled: bool, dropped: int) -> StepOutcome:
        spec, results = self.spec, self.results
        window_end = min(self.window_end, end) if self.dispatched.is_set() else end
        window = max(window_end - self.start, 1e-9)
        spans = [(r.send_time, _end(r) or end) for r in results] + self.cancelled_spans
        busy = np.array(spans, dtype=float).reshape(-1, 2)
        overlap = np.clip(np.minimum(busy[:, 1], window_end) - np.maximum(busy[:, 0], self.start), 0, None)
        concurrency = float(overlap.sum() / window)
        rate = 0.0
        if len(results) > 1 and self.last_send is not None and self.first_send is not None:
            rate = (len(results) - 1) / max(self.last_send - self.first_send, 1e-9)
        delays_ms = np.array(self.delays, dtype=float) * 1000
        p50 = p99 = None
        if delays_ms.size:
            p50, p99 = (float(v) for v in np.percentile(delays_ms, (50, 99)))
        tokens = _tokens_within(results, self.start, window_end)
        reasons = []
        if p99 is not None and p99 > MAX_DISPATCH_DELAY_P99_MS:
            reasons.append(f"dispatch delay p99 {p99:.1f} ms > {MAX_DISPATCH_DELAY_P99_MS:g} ms")
        if spec.mode == "closed" and not cancelled:
            target = min(spec.concurrency, spec.request_count or spec.concurrency)
            if concurrency < MIN_CONCURRENCY_SHARE * target:
                reasons.append(f"achieved concurrency {concurrency:.1f} < {MIN_CONCURRENCY_SHARE:.0%} of {target}")
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
) -> StepOutcome:
    """Run one step and return what it measured. `send(i)` sends the i-th request (0, 1, 2, ...) and
    returns its result; it should not raise (an exception becomes a failed result). `on_progress`
    gets a `StepProgress` every `progress_interval_s` and once at the end. Setting `cancel` stops
    the step: see the module docstring for what happens to requests in flight."""
    step = _Step(spec, send)
    step.start = time.monotonic()
    body = asyncio.create_task(step.run_closed() if spec.mode == "closed" else step.run_open())
    dispatched = asyncio.ensure_future(step.dispatched.wait())
    cancelled_wait = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    reporter = asyncio.create_task(step.report(on_progress, progress_interval_s)) if on_progress else None
    probe = asyncio.create_task(step.probe_loop())
    stop_on = {cancelled_wait} - {None}
    dropped = 0
    try:
        await asyncio.wait({body, dispatched, *stop_on}, return_when=asyncio.FIRST_COMPLETED)
        if not body.done() and not (cancel is not None and cancel.is_set()):  # dispatching is over: drain
            await asyncio.wait({body, *stop_on}, timeout=spec.drain_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if not body.done():  # cancelled, or the drain timed out
            dropped = await step.cancel_in_flight(body)
        elif not body.cancelled():
            body.result()  # re-raise a bug in the generator itself
    finally:
        if not body.done():  # run_step itself was cancelled: take the requests down with it
            step.stopping = True
            for task in (body, *step.tasks):
                task.cancel()
        for waiter in (dispatched, cancelled_wait, reporter, probe):
            if waiter is not None:
                waiter.cancel()
        if reporter is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
    end = time.monotonic()
    if on_progress is not None:
        step.emit(on_progress)
    return step.outcome(end, cancel is not None and cancel.is_set(), dropped)
