"""Multi-turn sessions: the load engine for conversations (issue 13, design 0013 §3 and §5).

A session is a conversation of `n_turns(s)` turns sent one after another: turn t goes out after
turn t−1 returned plus a think time. The engine never sees text: `send_turn(s, t)` builds turn t of
session s from the history its caller keeps (the real earlier responses) and returns the result.
Sessions are numbered 0, 1, 2, … in the order they start; in open mode with `offsets_s`, session s
is the one due at offsets_s[s].

It runs on the machinery of `loadgen._Step`: the same per-request path (so send times, dispatch
delays, phases and cancellation are exactly those of `run_step`), the same drain, progress, loop-lag
probe and outcome. What it adds is when each turn is due:

* **Think time** (closed and open modes): turn t of session s is due at
  `end(turn t−1) + think_s(s, t)`, with no think before turn 0 (a negative think counts as 0).
  `scheduled_time` is that due time and the dispatch delay is `send − due`, as a closed-loop
  request is due at the end of its worker's previous one.
* **closed**: `concurrency` sessions active at all times; when one ends (completed, aborted or cut)
  its worker starts the next at once (turn 0 is due then). The ramp (PHASE_RAMP) lasts until
  `concurrency` sessions are active, i.e. the first turn 0s of the step.
* **open**: sessions arrive at `rate_rps` (constant or Poisson from `seed`: the level is session
  arrivals per second) or at `offsets_s` (trace sessions); turn 0 is due at the arrival. At most
  `max_sessions` (default MAX_ACTIVE_SESSIONS) are active at once; a later arrival waits for a free
  slot and the wait counts as its dispatch delay. With `offsets_s` the step also ends once every
  arrival has started and no session has a turn left to send (`duration_s`/`request_count` are then
  optional). No ramp.
* **user_centric** (AIPerf's user-centric rate): `users` users; user i first fires at
  `start + i · turn_gap_s / users`. Each next turn is due at `prev_send + turn_gap_s` and sent at
  `max(that, prev_end)` (it needs the previous answer), so lateness past the gap counts as dispatch
  delay. A session's last turn does not hold its user: the user's next session starts at
  `prev_send + turn_gap_s` while that turn is still running; an aborted session is replaced the same
  way. `think_s` is not used (the gap is the user's pace). No ramp.
* **Failures**: a failed turn ends its session (`sessions_aborted`; its later turns are not sent).
  A session whose next turn would come after the end of dispatching, or whose turn was cancelled, is
  neither completed nor aborted (`sessions_started − completed − aborted` were cut).
* **Stop**: `duration_s` and `request_count` count turns (requests) over all sessions, after the
  warm-up, exactly as in `run_step`: no turn due at or after the deadline is sent, nor any past the
  count. A session asleep in its think time is woken when dispatching ends, so the drain only waits
  for turns in flight (at most `drain_timeout_s`).
* **Warm-up** is counted in turns (the first `warmup_requests` turns sent, and turns due before
  `warmup_s`), as `run_step` counts requests; it extends the step the same way.
"""

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from apps.providers.engine.loadgen import (
    MIN_CONCURRENCY_SHARE,
    Clock,
    StepOutcome,
    StepProgress,
    _mean_busy,
    _Step,
    check_limits,
    checked_offsets,
)
from apps.providers.engine.types import GenerationResult

MAX_ACTIVE_SESSIONS = 10_000  # open mode: sessions active at once unless max_sessions says otherwise
POISSON_BATCH = 1024  # exponential gaps drawn at a time for Poisson session arrivals

SendTurn = Callable[[int, int], Awaitable[GenerationResult]]

_CUT, _COMPLETED, _ABORTED = 0, 1, 2


@dataclass
class SessionStepSpec:
    """One step of multi-turn sessions (the module docstring says what each mode does)."""

    mode: Literal["closed", "open", "user_centric"]
    concurrency: int = 1  # closed: sessions active at once
    rate_rps: float = 0.0  # open: session arrivals per second
    arrivals: Literal["constant", "poisson"] = "constant"
    seed: int = 0
    offsets_s: np.ndarray | None = None  # open: session start offsets from the step's start (trace sessions)
    users: int = 0  # user_centric
    turn_gap_s: float = 0.0  # user_centric: each user's pace, seconds between its turns' sends
    max_sessions: int | None = None  # open: most sessions active at once (None: MAX_ACTIVE_SESSIONS)
    duration_s: float | None = None  # of dispatching turns, after the warm-up
    request_count: int | None = None  # turns sent over all sessions, after the warm-up
    drain_timeout_s: float | None = None
    warmup_requests: int = 0  # turns
    warmup_s: float = 0.0

    def __post_init__(self):
        if self.mode not in ("closed", "open", "user_centric"):
            raise ValueError(f"mode must be 'closed', 'open' or 'user_centric', not {self.mode!r}")
        if self.offsets_s is not None:
            if self.mode != "open":
                raise ValueError("offsets_s is for open-mode sessions only")
            self.offsets_s = checked_offsets(self.offsets_s)
        check_limits(self, finite=self.offsets_s is not None)
        if self.mode == "closed" and self.concurrency < 1:
            raise ValueError("closed-mode sessions need concurrency ≥ 1")
        if self.mode == "open":
            if self.offsets_s is None and not self.rate_rps > 0:
                raise ValueError("open-mode sessions need rate_rps > 0 (or offsets_s)")
            if self.arrivals not in ("constant", "poisson"):
                raise ValueError(f"arrivals must be 'constant' or 'poisson', not {self.arrivals!r}")
            if self.max_sessions is not None and self.max_sessions < 1:
                raise ValueError("max_sessions must be at least 1")
        if self.mode == "user_centric":
            if self.users < 1:
                raise ValueError("user-centric sessions need users ≥ 1")
            if not (self.turn_gap_s > 0 and math.isfinite(self.turn_gap_s)):
                raise ValueError("user-centric sessions need turn_gap_s > 0")


def session_arrivals(spec: SessionStepSpec) -> Iterator[float]:
    """Open mode: session start offsets in seconds, first at 0 (or `offsets_s` as given). Constant
    arrivals are i/rate; Poisson gaps are exponential with mean 1/rate from `default_rng(seed)`."""
    if spec.offsets_s is not None:
        yield from spec.offsets_s.tolist()
        return
    if spec.arrivals == "constant":
        for i in itertools.count():
            yield i / spec.rate_rps
    rng, offset = np.random.default_rng(spec.seed), 0.0
    yield offset
    while True:
        for gap in rng.exponential(1 / spec.rate_rps, POISSON_BATCH).tolist():
            offset += gap
            yield offset


class _Sessions(_Step):
    """A running session step: `_Step` with turns due by session instead of by request."""

    def __init__(
        self,
        spec: SessionStepSpec,
        send_turn: SendTurn,
        n_turns: Callable[[int], int],
        think_s: Callable[[int, int], float],
        clock: Clock,
    ):
        super().__init__(spec, send_turn, clock)
        self.n_turns, self.think_s = n_turns, think_s
        self.next_session = 0
        self.started = self.completed = self.aborted = 0
        self.session_spans: list[tuple[float, float]] = []  # (start, end) of each session that ended
        self.senders = 0  # sessions that may still send a turn
        self.arrivals_done = False
        self.slot: asyncio.Future | None = None  # open mode: resolved when a session ends under the cap

    def ramp_over(self) -> bool:
        return self.sessions_active >= self.target

    # --- when a turn may go ----------------------------------------------------------------------

    def may_send(self, due: float) -> bool:
        """Whether a turn due at `due` is still to be sent (ends dispatching when it is not)."""
        if self.stopping or self.dispatched.is_set():
            return False
        deadline = self.deadline
        if deadline is not None and due >= deadline:
            self.end_dispatch(deadline)
            return False
        count = self.spec.request_count
        if count is not None and self.measured >= count:
            self.end_dispatch(self.now())
            return False
        return True

    async def wait_turn(self, due: float) -> bool:
        """Sleep until `due`; then whether the turn may go. Dispatching's end wakes the sleeper."""
        if due > self.now() and not await self.pause(self._sleep_until(due)):
            return False
        return self.may_send(due)

    async def _sleep_until(self, due: float) -> None:
        now = self.now
        while (wait := due - now()) > 0:  # uvloop timers can fire a little early
            await asyncio.sleep(wait)

    async def pause(self, waiting: Awaitable) -> bool:
        """Await `waiting` unless dispatching ends first (then False). Other cancellations propagate."""
        task = asyncio.current_task()
        self.sleepers.add(task)
        try:
            await waiting
        except asyncio.CancelledError:
            if self.stopping or not self.dispatched.is_set():
                raise
            task.uncancel()
            return False
        finally:
            self.sleepers.discard(task)
        return True

    # --- session bookkeeping ---------------------------------------------------------------------

    def session_begin(self) -> int:
        s = self.next_session
        self.next_session = s + 1
        self.started += 1
        self.sessions_active += 1
        self.senders += 1
        return s

    def sender_done(self) -> None:
        """A session will send no more turns; with a finished arrival list, the last one ends dispatching."""
        self.senders -= 1
        if self.arrivals_done and self.senders == 0:
            self.end_dispatch(self.now())

    def session_end(self, began: float, status: int) -> None:
        self.sessions_active -= 1
        self.session_spans.append((began, self.now()))
        if status == _COMPLETED:
            self.completed += 1
        elif status == _ABORTED:
            self.aborted += 1
        if self.slot is not None and not self.slot.done():
            self.slot.set_result(None)

    def turns_of(self, s: int) -> int:
        n = self.n_turns(s)
        if n < 1:
            raise ValueError(f"n_turns({s}) is {n}: a session needs at least one turn")
        return n

    async def run_session(self, s: int, due: float) -> None:
        """Closed and open modes: send session s's turns, turn 0 due at `due` (already checked)."""
        began, n, status, sending = self.now(), self.turns_of(s), _CUT, True
        try:
            end = due
            for t in range(n):
                if t:
                    due = end + max(0.0, self.think_s(s, t))
                    if not await self.wait_turn(due):
                        break
                if t == n - 1:
                    sending = False
                    self.sender_done()
                result = await self.one(s, due, due, t)
                if result is None:
                    break
                if result.error is not None:
                    status = _ABORTED
                    break
                end = result.end_time
            else:
                status = _COMPLETED
        finally:
            if sending:
                self.sender_done()
            self.session_end(began, status)

    # --- the three modes -------------------------------------------------------------------------

    def start_measuring(self) -> None:
        self.warm_until = self.start + self.spec.warmup_s
        if self.spec.warmup_requests == 0:
            self.begin_measuring(self.warm_until)

    async def session_worker(self) -> None:
        ready = self.now()
        while self.may_send(ready):
            await self.run_session(self.session_begin(), ready)
            ready = self.now()

    async def run_closed(self) -> None:
        spec = self.spec
        total = spec.warmup_requests + spec.request_count if spec.request_count is not None else spec.concurrency
        self.start_closed(min(spec.concurrency, total))
        workers = [asyncio.create_task(self.session_worker()) for _ in range(spec.concurrency)]
        self.tasks.update(workers)
        await asyncio.gather(*workers)

    async def run_open(self) -> None:
        spec, tasks = self.spec, self.tasks
        cap = spec.max_sessions or MAX_ACTIVE_SESSIONS
        self.start_measuring()
        loop = asyncio.get_running_loop()
        for offset in session_arrivals(spec):
            due = self.start + offset
            if not await self.wait_turn(due):
                break
            while self.sessions_active >= cap:  # wait for a slot; the wait shows as turn 0's dispatch delay
                self.slot = loop.create_future()
                if not await self.pause(self.slot):
                    break
            if not self.may_send(due):
                break
            task = asyncio.create_task(self.run_session(self.session_begin(), due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            self.arrivals_done = True
            if self.senders == 0:
                self.end_dispatch(self.now())
        while tasks:
            await asyncio.wait(list(tasks))

    async def run_users(self) -> None:
        spec = self.spec
        self.start_measuring()
        users = [
            asyncio.create_task(self.user(self.start + i * spec.turn_gap_s / spec.users)) for i in range(spec.users)
        ]
        self.tasks.update(users)
        await asyncio.gather(*users)
        while any(not task.done() for task in self.tasks):  # the sessions' last turns
            await asyncio.wait([task for task in self.tasks if not task.done()])

    async def user(self, due: float) -> None:
        """One user of the user-centric mode: sessions one after another at its own pace."""
        gap, tasks = self.spec.turn_gap_s, self.tasks
        while await self.wait_turn(due):
            s = self.session_begin()
            began, n, status, sending = self.now(), self.turns_of(s), _CUT, True
            try:
                for t in range(n):
                    if t and not await self.wait_turn(due):
                        break
                    fired = self.now()
                    if t == n - 1:  # the last turn runs on its own: the user's next session does not wait for it
                        sending, status = False, None
                        self.sender_done()
                        task = asyncio.create_task(self.last_turn(s, t, due, began))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                        due = fired + gap
                        break
                    result = await self.one(s, due, due, t)
                    if result is None:
                        return
                    due = fired + gap
                    if result.error is not None:
                        status = _ABORTED
                        break
            finally:
                if sending:
                    self.sender_done()
                if status is not None:
                    self.session_end(began, status)

    async def last_turn(self, s: int, t: int, due: float, began: float) -> None:
        status = _CUT
        try:
            result = await self.one(s, due, due, t)
            if result is not None:
                status = _COMPLETED if result.error is None else _ABORTED
        finally:
            self.session_end(began, status)

    # --- the outcome -----------------------------------------------------------------------------

    def concurrency_shortfall(self, concurrency: float, window_end: float) -> str:
        """Closed mode checks the sessions kept active, not the requests in flight (think time leaves
        fewer requests than sessions by design)."""
        spec, sessions = self.spec, self.sessions_held(window_end)
        total = spec.warmup_requests + spec.request_count if spec.request_count is not None else spec.concurrency
        target = min(spec.concurrency, total)
        if sessions < MIN_CONCURRENCY_SHARE * target:
            return f"achieved sessions {sessions:.1f} < {MIN_CONCURRENCY_SHARE:.0%} of {target}"
        return ""

    def sessions_held(self, window_end: float) -> float:
        spans = np.array(self.session_spans, dtype=float).reshape(-1, 2)
        return _mean_busy(spans, self.start, window_end)

    def outcome(self, end: float, cancelled: bool, dropped: int) -> StepOutcome:
        outcome = super().outcome(end, cancelled, dropped)
        outcome.sessions_started = self.started
        outcome.sessions_completed = self.completed
        outcome.sessions_aborted = self.aborted
        outcome.achieved_sessions = self.sessions_held(outcome.window_end)
        return outcome


async def run_sessions(
    spec: SessionStepSpec,
    send_turn: SendTurn,
    n_turns: Callable[[int], int],
    think_s: Callable[[int, int], float],
    *,
    on_progress: Callable[[StepProgress], None] | None = None,
    progress_interval_s: float = 0.5,
    cancel: asyncio.Event | None = None,
    clock: Clock = time.monotonic,
) -> StepOutcome:
    """Run one step of multi-turn sessions and return what it measured. `send_turn(s, t)` sends turn t
    of session s and returns its result (it should not raise: an exception becomes a failed turn);
    `n_turns(s)` (≥ 1) says how many turns session s has and `think_s(s, t)` the think time before its
    turn t ≥ 1, in seconds. Every result carries `session_index`, `turn_index`, `scheduled_time` (the
    due time) and `phase`. Progress, cancel and `clock` behave as in `run_step`."""
    step = _Sessions(spec, send_turn, n_turns, think_s, clock)
    body = {"closed": step.run_closed, "open": step.run_open, "user_centric": step.run_users}[spec.mode]
    return await step.drive(body, on_progress, progress_interval_s, cancel)
