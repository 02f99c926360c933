"""Sharded steps (issue 14): one load step split across N worker processes, on any machines that share the
database and the task queue (docs/sharding.md).

`run_sharded(sweep, step, config, plan)` runs in the sweep's own process (the coordinator) for a step of a
sweep with `shards > 1`. It creates the attempt's StepShard rows, queues shards 1..N-1 as django-q2 tasks
(`apps.batches.tasks.load_step_shard` → `shard_run`), runs shard 0 itself, and returns the merged outcome as
if one process had run the whole step: (StepOutcome, runner._Live, alignment for LoadSweepStep.shard_alignment).

* **Shares** (`share_spec`): shard k sends the plan's requests k, k + N, k + 2N … (runner.Share). Closed loop:
  the concurrency, request count and warm-up requests split as evenly as possible (the lower shards take
  the extra one). Open loop: the step's whole schedule (constant, Poisson or a trace) is computed once and
  shard k takes every N-th arrival from the k-th, so the shards together send exactly the schedule one
  process would have sent. (Independent streams of rate/N would do for Poisson, but with constant arrivals
  they would fire N requests at the same instant; one split schedule avoids that, and a sharded step stays
  comparable with an unsharded one of the same seed.) Multi-turn sessions split the same way where the
  arrivals are given (traces); with a rate each shard draws its own stream at rate/N.
* **Barrier**: every shard prepares (sweep, adapter config, workload plan), then marks itself ready. The
  last one ready sets the shared start, `time.time() + LEAD_S`, with one conditional UPDATE of the
  attempt's first row (`start_at_epoch IS NULL`: two shards releasing at once cannot set two instants).
  Each shard polls until it sees it, and `run_step_async` waits for that wall-clock instant (its last 2 ms
  spin). Each shard records when its load generator actually started (`started_at_epoch`, converted from
  the monotonic clock through one (time.time(), time.monotonic()) pair); the difference is its start skew.
* **Clocks**: the start is wall-clock time, so shards on different machines need synchronised clocks
  (NTP/chrony); their offset adds to the stored alignment error without showing in it.
* **Losing a shard**: every shard writes a heartbeat each HEARTBEAT_S and watches the others. A shard that
  is not ready within READY_TIMEOUT_S, stops beating for LOST_AFTER_S, or fails, fails the attempt: the
  coordinator marks the other rows failed (the shards still running see it and cancel their requests),
  marks the step failed and raises ShardFailed, whose message ("shard 2 of 2 stopped reporting …") becomes
  the sweep's error. Nothing is half-stored: the run is written only by the coordinator, after the merge,
  in `runner._store_step`'s transaction. A resumed sweep runs the step again as a new attempt.
* **Cancel**: the sweep's cancel flag reaches every shard through `run_step_async`'s own pulse.
"""

import asyncio
import contextlib
import dataclasses
import math
import os
import socket
import time
import zlib
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import orjson
from asgiref.sync import sync_to_async
from django.db import connection
from django.db.models import Max
from django.utils import timezone
from django_q.tasks import async_task

from apps.batches import runner, traffic
from apps.batches.models import LoadSweep, LoadSweepStep, Status, StepShard
from apps.batches.services import HEARTBEAT_S
from apps.providers.engine.loadgen import StepOutcome, StepSpec, _end, _mean_busy, _tokens_within, schedule
from apps.providers.engine.sessions import SessionStepSpec
from apps.providers.engine.types import EndpointConfig, ErrorKind, GenerationResult, RequestError
from apps.providers.samples import PHASE_STEADY
from apps.workloads.engine.plan import RequestPlan

LEAD_S = 0.25  # from the release to the shared start: every waiter polls the start well within it
BARRIER_POLL_S = 0.01  # how often a waiting shard reads the barrier (the start itself is timed by a spin)
READY_TIMEOUT_S = 60.0  # every shard ready by then, or the attempt fails (too few free task workers)
LOST_AFTER_S = 10.0  # a shard silent this long is lost
COLLECT_POLL_S = 0.1
ARRIVAL_SEED_STRIDE = 7919  # a prime: shard k's own arrival stream (sessions at a rate) uses seed + k·stride


class ShardFailed(Exception):
    """A shard of the attempt failed, was lost or never started; the message says which and why."""


# --- shares -----------------------------------------------------------------------------------------------------


def _split(total: int, count: int, index: int) -> int:
    """Shard `index`'s part of `total` split as evenly as possible (the lower shards take the remainder)."""
    return total // count + (1 if index < total % count else 0)


def _split_requests(warmup: int, measured: int | None, count: int, index: int) -> tuple[int, int | None]:
    """Warm-up and measured requests of shard `index`, so that the shards send the plan's first warmup +
    measured requests exactly: shard k sends k, k + N … of them, the first `_split(warmup)` as warm-up."""
    warm = _split(warmup, count, index)
    if measured is None:
        return warm, None
    return warm, _split(warmup + measured, count, index) - warm


def _refuse(what: str, total, count: int) -> ValueError:
    return ValueError(f"A step split across {count} shards needs at least {count} {what} (this one has {total:g}).")


def share_spec(spec: StepSpec | SessionStepSpec, index: int, count: int) -> StepSpec | SessionStepSpec:
    """Shard `index` of `count`'s part of `spec` (module docstring); a ValueError when it would send nothing."""
    if count == 1:
        return spec
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    warm, measured = _split_requests(spec.warmup_requests, spec.request_count, count, index)
    if measured is not None and measured < 1:
        raise _refuse("requests per step", spec.request_count, count)
    if isinstance(spec, SessionStepSpec):
        return _share_sessions(spec, index, count, warm, measured)
    if spec.mode == "closed":
        concurrency = _split(spec.concurrency, count, index)
        if concurrency < 1:
            raise _refuse("concurrent requests", spec.concurrency, count)
        return dataclasses.replace(spec, concurrency=concurrency, warmup_requests=warm, request_count=measured)
    whole = schedule(spec)  # already cut by the warm-up, duration and count: the shares only divide it
    offsets = whole[index::count]
    if not offsets.size:
        raise _refuse("scheduled requests", whole.size, count)
    # rate_rps stays the step's: with offsets it only sets where the window ends (one mean gap after the last
    # arrival), and the merged window ends where the whole schedule's would.
    return dataclasses.replace(
        spec, offsets_s=offsets, request_count=None, warmup_requests=warm,
        max_concurrency=None if spec.max_concurrency is None else max(1, math.ceil(spec.max_concurrency / count)),
    )  # fmt: skip


def _share_sessions(spec: SessionStepSpec, index: int, count: int, warm: int, turns: int | None) -> SessionStepSpec:
    """Sessions split by whole sessions; turns (the request count, the warm-up) as evenly as possible."""
    changes: dict = {"warmup_requests": warm, "request_count": turns}
    if spec.mode == "closed":
        changes["concurrency"] = _split(spec.concurrency, count, index)
        if changes["concurrency"] < 1:
            raise _refuse("concurrent sessions", spec.concurrency, count)
    elif spec.mode == "user_centric":
        changes["users"] = _split(spec.users, count, index)
        if changes["users"] < 1:
            raise _refuse("users", spec.users, count)
    elif spec.offsets_s is not None:
        changes["offsets_s"] = spec.offsets_s[index::count]
        if not changes["offsets_s"].size:
            raise _refuse("sessions", spec.offsets_s.size, count)
    else:
        changes |= {"rate_rps": spec.rate_rps / count, "seed": spec.seed + index * ARRIVAL_SEED_STRIDE}
        if spec.max_sessions is not None:
            changes["max_sessions"] = max(1, math.ceil(spec.max_sessions / count))
    return dataclasses.replace(spec, **changes)


# --- a shard's outcome in the database ------------------------------------------------------------------------

_RESULT_FIELDS = {f.name for f in dataclasses.fields(GenerationResult)}
_OUTCOME_FIGURES = [f.name for f in dataclasses.fields(StepOutcome) if f.name not in ("spec", "results", "dispatch_delays_ms")]  # fmt: skip


def outcome_pack(outcome: StepOutcome, live: "runner._Live") -> bytes:
    """A shard's outcome as compressed JSON (never pickle: the coordinator reads what other processes wrote)."""
    body = {name: getattr(outcome, name) for name in _OUTCOME_FIGURES}
    body |= {"results": outcome.results, "dispatch_delays_ms": outcome.dispatch_delays_ms,
             "auth_refused": live.auth_refused, "notes": live.notes}  # fmt: skip
    return zlib.compress(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), 6)


def outcome_unpack(blob: bytes) -> tuple[StepOutcome, str, list[str]]:
    """(outcome, auth_refused, notes) of `outcome_pack`; the outcome's spec is left None."""
    body = orjson.loads(zlib.decompress(blob))
    results = []
    for item in body.pop("results"):
        error = item.get("error")
        if error is not None:
            item["error"] = RequestError(
                kind=ErrorKind(error["kind"]), message=error["message"], status=error.get("status"),
                retry_after_s=error.get("retry_after_s"),
            )  # fmt: skip
        results.append(GenerationResult(**{k: v for k, v in item.items() if k in _RESULT_FIELDS}))
    figures = {name: body[name] for name in _OUTCOME_FIGURES if name in body}
    delays = np.array(body["dispatch_delays_ms"], dtype=float)
    outcome = StepOutcome(spec=None, results=results, dispatch_delays_ms=delays, **figures)
    return outcome, body.get("auth_refused", ""), list(body.get("notes", []))


# --- the merge --------------------------------------------------------------------------------------------------


@dataclass
class ShardPart:
    """One shard's outcome, on its own monotonic clock, and when it started against the shared start."""

    index: int
    outcome: StepOutcome
    start_at_epoch: float  # the shared start (wall clock)
    started_at_epoch: float  # when this shard's load generator started (wall clock)

    @property
    def skew_s(self) -> float:
        return self.started_at_epoch - self.start_at_epoch


def _shift(result: GenerationResult, by: float) -> None:
    """Move every time of `result` by `by` seconds (onto the coordinator's clock)."""
    result.send_time += by
    result.chunk_times = [t + by for t in result.chunk_times]
    result.server_send_times = [t + by for t in result.server_send_times]  # a local mock's stamps travel along
    for name in ("end_time", "scheduled_time", "first_output_time"):
        if (value := getattr(result, name)) is not None:
            setattr(result, name, value + by)


def merge(spec, parts: list[ShardPart], count: int) -> tuple[StepOutcome, dict]:
    """The step's outcome from its shards' (shard 0's clock is the step's), and the alignment record.

    Shard k's times move onto shard 0's monotonic clock through the wall clock: its start lands `skew_k`
    after the shared start, which lies `skew_0` before shard 0's start. Then the figures are taken as
    loadgen takes them, over the merged requests: the window runs from the earliest start to the latest end
    of dispatching; the steady window is the shards' common one (every shard steady); the achieved
    concurrency is the sum of the shards' (each over its own window, requests cut by a cancel included);
    dispatch delays are pooled; the client kept up only if every shard did."""
    parts = sorted(parts, key=lambda p: p.index)
    if [p.index for p in parts] != list(range(count)):
        raise ValueError(f"merging shards {[p.index for p in parts]}, expected 0..{count - 1}")
    origin = parts[0].outcome.start_time - parts[0].skew_s  # the shared start on shard 0's clock
    results: list[GenerationResult] = []
    starts, ends, window_ends, steady_starts, steady_ends = [], [], [], [], []
    for part in parts:
        o = part.outcome
        by = origin + part.skew_s - o.start_time
        for result in o.results:
            _shift(result, by)
            if result.session_index is not None:  # the shard's session s is the plan's s·N + k
                result.session_index = result.session_index * count + part.index
        results += o.results
        starts.append(o.start_time + by)
        ends.append(o.end_time + by)
        window_ends.append(o.window_end + by)
        steady_starts.append(o.steady_start + by)
        steady_ends.append(o.steady_end + by)
    results.sort(key=lambda r: _end(r) or r.send_time)  # completion order, as one process returns them
    start, end, window_end = min(starts), max(ends), max(window_ends)
    window = max(window_end - start, 1e-9)
    sends = [r.send_time for r in results]
    rate = (len(sends) - 1) / max(max(sends) - min(sends), 1e-9) if len(sends) > 1 else 0.0
    delays = np.concatenate([p.outcome.dispatch_delays_ms for p in parts]).astype(float)
    p50 = p99 = None
    if delays.size:
        p50, p99 = (float(v) for v in np.percentile(delays, (50, 99)))
    steady_start, steady_end = max(steady_starts), min(steady_ends)
    steady_concurrency = steady_tokens_per_s = None
    if steady_end > steady_start:
        spans = np.array([(r.send_time, _end(r) or end) for r in results], dtype=float).reshape(-1, 2)
        steady_concurrency = _mean_busy(spans, steady_start, steady_end)
        steady_tokens_per_s = _tokens_within(results, steady_start, steady_end) / (steady_end - steady_start)
    else:
        steady_start = steady_end = window_end
    reasons = [f"shard {p.index + 1}: {p.outcome.kept_up_reason}" for p in parts if not p.outcome.client_kept_up]
    lags = [p.outcome.loop_lag_p99_ms for p in parts if p.outcome.loop_lag_p99_ms is not None]
    held = [p.outcome.achieved_sessions for p in parts if p.outcome.achieved_sessions is not None]
    merged = StepOutcome(
        spec=spec,
        results=results,
        start_time=start,
        end_time=end,
        window_end=window_end,
        achieved_concurrency=sum(p.outcome.achieved_concurrency for p in parts),
        achieved_rate_rps=rate,
        dispatch_delay_p50_ms=p50,
        dispatch_delay_p99_ms=p99,
        output_tokens_per_s=_tokens_within(results, start, window_end) / window,
        client_kept_up=not reasons,
        kept_up_reason="; ".join(reasons),
        cancelled=any(p.outcome.cancelled for p in parts),
        cancelled_requests=sum(p.outcome.cancelled_requests for p in parts),
        loop_lag_p99_ms=max(lags) if lags else None,
        dispatch_delays_ms=delays,
        steady_start=steady_start,
        steady_end=steady_end,
        steady_count=sum(1 for r in results if r.phase == PHASE_STEADY),
        steady_concurrency=steady_concurrency,
        steady_output_tokens_per_s=steady_tokens_per_s,
        sessions_started=sum(p.outcome.sessions_started for p in parts),
        sessions_completed=sum(p.outcome.sessions_completed for p in parts),
        sessions_aborted=sum(p.outcome.sessions_aborted for p in parts),
        achieved_sessions=sum(held) if held else None,
    )
    skews = [round(p.skew_s * 1000, 3) for p in parts]
    alignment = {
        "shards": count, "start_skew_ms": skews, "max_skew_ms": max(abs(s) for s in skews),
        "spread_ms": round(max(skews) - min(skews), 3), "barrier": "database",
    }  # fmt: skip
    return merged, alignment


# --- running a share --------------------------------------------------------------------------------------------


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def _rows(step_id: int, attempt: int):
    return StepShard.objects.filter(step_id=step_id, attempt=attempt)


def _problem(step_id: int, attempt: int, me: int) -> tuple[str, list[dict]]:
    """Why the attempt cannot go on ("" when it can), and its rows (without results)."""
    rows = list(
        _rows(step_id, attempt).order_by("index").values("index", "count", "status", "ready_at", "start_at_epoch",
                                                        "heartbeat_at", "error")
    )  # fmt: skip
    stale = timezone.now() - timedelta(seconds=LOST_AFTER_S)
    for row in rows:
        name = f"shard {row['index'] + 1} of {row['count']}"
        if row["status"] == Status.FAILED:
            return (row["error"] if row["error"].startswith("shard ") else f"{name} failed: {row['error']}"), rows
        # Only a shard that was ready can be lost: one still preparing (building its plan) has READY_TIMEOUT_S.
        lost = row["status"] == Status.RUNNING and row["ready_at"] is not None and row["heartbeat_at"] < stale
        if row["index"] != me and lost:
            return f"{name} stopped reporting (no heartbeat for {LOST_AFTER_S:g} s)", rows
    return "", rows


def _beat(step_id: int, attempt: int, index: int) -> None:
    _rows(step_id, attempt).filter(index=index).update(heartbeat_at=timezone.now())


def _barrier(step_id: int, attempt: int, index: int, count: int) -> float:
    """Wait for every shard of the attempt to be ready and return the shared start (time.time())."""
    deadline, beaten = time.monotonic() + READY_TIMEOUT_S, time.monotonic()
    while True:
        problem, rows = _problem(step_id, attempt, index)
        if rows and rows[0]["start_at_epoch"] is not None:
            return rows[0]["start_at_epoch"]
        if problem:
            raise ShardFailed(problem)
        waiting = [row["index"] + 1 for row in rows if row["ready_at"] is None]
        if not waiting:
            # One conditional UPDATE: whoever comes second finds the start already set and changes nothing.
            _rows(step_id, attempt).filter(index=0, start_at_epoch__isnull=True).update(
                start_at_epoch=time.time() + LEAD_S
            )
            continue
        if time.monotonic() > deadline:
            raise ShardFailed(
                f"shard {waiting[0]} of {count} did not start within {READY_TIMEOUT_S:g} s (a step split across "
                f"{count} shards needs {count} free task workers)"
            )
        if time.monotonic() - beaten >= HEARTBEAT_S:
            _beat(step_id, attempt, index)
            beaten = time.monotonic()
        time.sleep(BARRIER_POLL_S)


def _beat_and_check(step_id: int, attempt: int, index: int) -> str:
    try:
        _beat(step_id, attempt, index)
        return _problem(step_id, attempt, index)[0]
    finally:
        connection.close()  # this pool thread's own connection


async def _watched(
    sweep, step, config, plan, share: runner.Share, start_at: float, attempt: int
) -> tuple[StepOutcome, "runner._Live"]:
    """Run the share; every HEARTBEAT_S beat and look at the other shards: one failed or lost cancels it."""
    task = asyncio.create_task(runner.run_step_async(sweep, step, config, plan, share=share, start_at_epoch=start_at))
    check = sync_to_async(_beat_and_check, thread_sensitive=False)
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_S)
        if done:
            return task.result()
        if problem := await check(step.pk, attempt, share.index):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise ShardFailed(problem)


def _run_share(
    sweep: LoadSweep, step: LoadSweepStep, config: EndpointConfig, plan: RequestPlan | None, attempt: int,
    index: int, count: int,
) -> tuple[StepOutcome, "runner._Live", float, float]:  # fmt: skip
    """Ready, barrier, run: (outcome, live, shared start, this shard's actual start), both wall clock."""
    now = timezone.now()
    _rows(step.pk, attempt).filter(index=index).update(ready_at=now, heartbeat_at=now)
    start_at = _barrier(step.pk, attempt, index, count)
    _rows(step.pk, attempt).filter(index=index).update(start_at_epoch=start_at)
    wall, mono = time.time(), time.monotonic()  # one pair: the load generator's clock to the wall clock
    outcome, live = asyncio.run(_watched(sweep, step, config, plan, runner.Share(index, count), start_at, attempt))
    return outcome, live, start_at, wall + (outcome.start_time - mono)


def _safe(exc: BaseException, config: EndpointConfig | None) -> str:
    message = str(exc) if isinstance(exc, ShardFailed) else f"{type(exc).__name__}: {exc}"
    if config is not None and config.api_key:
        message = message.replace(config.api_key, "[key]")
    return message[:2000]


def shard_run(*, step_id: int, attempt: int, index: int) -> str:
    """A queued shard (1..N-1): claim it (a task delivered twice finds it taken), run it, leave its outcome."""
    rows = _rows(step_id, attempt)
    claimed = rows.filter(index=index, status=Status.PENDING).update(
        status=Status.RUNNING, worker=_worker_name(), heartbeat_at=timezone.now()
    )
    if not claimed:
        return "taken"
    config = None
    try:
        step = LoadSweepStep.objects.get(pk=step_id)
        sweep = LoadSweep.objects.select_related(
            "endpoint", "team", "variant", "hardware", "deployment", "workload_version__workload",
            "workload_version__tokenizer", "workload_version__dataset",
        ).get(pk=step.sweep_id)  # fmt: skip
        config = sweep.endpoint.config()
        plan = runner.prepare_workload(sweep, config)  # before "ready": the barrier waits for no one's set-up
        count = rows.get(index=index).count
        outcome, live, _, started_at = _run_share(sweep, step, config, plan, attempt, index, count)
        rows.filter(index=index, status=Status.RUNNING).update(
            status=Status.COMPLETED, results=outcome_pack(outcome, live), started_at_epoch=started_at,
            finished_at=timezone.now(), heartbeat_at=timezone.now(),
        )  # fmt: skip
        return Status.COMPLETED
    except Exception as exc:  # the row says why; the queue sees a finished task
        rows.filter(index=index).exclude(status=Status.FAILED).update(
            status=Status.FAILED, error=_safe(exc, config), finished_at=timezone.now()
        )
        return Status.FAILED


def _collect(step_id: int, attempt: int) -> list[StepShard]:
    """Wait until every other shard has left its outcome (the coordinator keeps beating meanwhile)."""
    while True:
        problem, rows = _problem(step_id, attempt, 0)
        if problem:
            raise ShardFailed(problem)
        if all(row["status"] == Status.COMPLETED for row in rows[1:]):
            return list(_rows(step_id, attempt).filter(index__gt=0).order_by("index"))
        _beat(step_id, attempt, 0)
        time.sleep(COLLECT_POLL_S)


def _abandon(step_id: int, attempt: int, reason: str) -> None:
    """Fail the attempt: the shards still waiting or running see it and stop."""
    _rows(step_id, attempt).filter(status__in=[Status.PENDING, Status.RUNNING]).update(
        status=Status.FAILED, error=reason[:2000], finished_at=timezone.now()
    )
    LoadSweepStep.objects.filter(pk=step_id).update(status=Status.FAILED, finished_at=timezone.now())


def run_sharded(
    sweep: LoadSweep, step: LoadSweepStep, config: EndpointConfig, plan: RequestPlan | None
) -> tuple[StepOutcome, "runner._Live", dict]:
    """Run `step` across `sweep.shards` processes (this one runs shard 0) and merge what they measured."""
    count = sweep.shards
    spec = runner.step_spec(sweep, step) if plan is None else traffic.workload_step_spec(sweep, step, plan)
    try:  # a share with nothing to send is refused before any worker is asked
        for index in range(count):
            share_spec(spec, index, count)
    except ValueError:
        LoadSweepStep.objects.filter(pk=step.pk).update(status=Status.FAILED, finished_at=timezone.now())
        raise
    attempt = (StepShard.objects.filter(step=step).aggregate(last=Max("attempt"))["last"] or 0) + 1
    now = timezone.now()
    StepShard.objects.bulk_create(
        StepShard(step=step, attempt=attempt, index=index, count=count,
                  **({"status": Status.RUNNING, "worker": _worker_name(), "heartbeat_at": now} if index == 0 else {}))
        for index in range(count)
    )  # fmt: skip
    for index in range(1, count):  # primary keys only through the queue
        async_task("apps.batches.tasks.load_step_shard", step.pk, attempt, index, group="load-step-shards")
    try:
        outcome, live, start_at, started_at = _run_share(sweep, step, config, plan, attempt, 0, count)
        _rows(step.pk, attempt).filter(index=0).update(
            status=Status.COMPLETED, started_at_epoch=started_at, finished_at=timezone.now()
        )
        others = _collect(step.pk, attempt)
    except BaseException as exc:
        _abandon(step.pk, attempt, _safe(exc, config))
        raise
    parts = [ShardPart(0, outcome, start_at, started_at)]
    for row in others:
        shard_outcome, auth_refused, notes = outcome_unpack(bytes(row.results))
        parts.append(ShardPart(row.index, shard_outcome, row.start_at_epoch, row.started_at_epoch))
        live.auth_refused = live.auth_refused or auth_refused
        live.notes += notes
    merged, alignment = merge(spec, parts, count)
    return merged, live, {**alignment, "attempt": attempt}
