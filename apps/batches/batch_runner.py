"""Runs a parameter sweep in the django-q2 worker, one short chunk per task.

A chunk takes the batch's lease (one chunk at a time, ever: a second delivery of the same task,
or a recovery, waits for the lease to be released or to go stale), reads what is stored, and asks
for the rest in combination order with `concurrency` requests in flight, through the same
`Answerer` as experiments (retry layer, shared token bucket, circuit breaker, evaluators). Each
answer is checkpointed as soon as the writer is free: the results that finished while it was
writing go into the next transaction together (group commit), under the unique key
(target, item, combination, repetition) and only while the lease is still ours. A worker killed
with SIGKILL therefore loses only answers that were not yet stored, and a resumed batch asks for
exactly those again.

After BATCH_CHUNK_S the chunk sends nothing new, lets the requests in flight finish (for as long
again at most), releases the lease and queues the next chunk. The heartbeat, written twice a
second, renews the lease and reads the cancel flag; a cancel stops new requests at once and drops
the ones in flight (they are not results).
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.batches.models import Batch, Status
from apps.batches.parameters import combination
from apps.batches.selectors import combination_aggregates
from apps.batches.services import LEASE_TTL, _enqueue_chunk, batch_chunk_lost, batch_publish
from apps.experiments.models import Experiment, ExperimentTarget, Response
from apps.experiments.runner import (
    REQUEST_OPTIONS,
    Answer,
    Answerer,
    Item,
    experiment_items,
    refused_key_reason,
    response_fields,
)
from apps.providers.budget import BudgetWatch, budget_events
from apps.providers.engine.types import Kind
from apps.providers.urlcheck import check_base_url

HEARTBEAT_S = 0.5
WRITE_GROUP_MAX = 500


class LeaseLost(Exception):
    """Another chunk holds the batch now: stop without writing."""


@dataclass
class _Progress:
    """The chunk's running view of the batch: counters, per-combination objective sums and the best."""

    per_combination: int
    stored: dict[int, int] = field(default_factory=dict)
    sums: dict[int, list[float]] = field(default_factory=dict)  # combination -> [total, n]
    completed: int = 0
    failed: int = 0
    completed_combinations: int = 0
    best: int | None = None
    current: dict = field(default_factory=dict)

    def mean(self, c: int) -> float | None:
        total, n = self.sums.get(c, (0.0, 0))
        return total / n if n else None

    def add(self, c: int, ok: bool, value: float | None) -> None:
        self.completed += 1
        self.failed += not ok
        self.stored[c] = self.stored.get(c, 0) + 1
        if self.stored[c] == self.per_combination:
            self.completed_combinations += 1
        if value is None:
            return
        cell = self.sums.setdefault(c, [0.0, 0])
        cell[0] += value
        cell[1] += 1
        if self.best is None or c == self.best:
            self.best = max(self.sums, key=lambda k: (self.mean(k), self.sums[k][1]))
        elif self.mean(c) > self.mean(self.best):
            self.best = c

    def preview(self, values: dict, metric: str) -> dict:
        total = sum(s[0] for s in self.sums.values())
        n = sum(s[1] for s in self.sums.values())
        best = None
        if self.best is not None:
            best = {"combination": self.best, "parameters": combination(values, self.best),
                    "mean": round(self.mean(self.best), 4), "n": self.sums[self.best][1]}  # fmt: skip
        return {"metric": metric, "best": best, "average": round(total / n, 4) if n else None, "n": n}


def _objective_value(metric: str, fields: dict) -> float | None:
    if fields["error_code"]:
        return None
    if metric == "score":
        return None if fields["score"] is None else fields["score"] * 100
    if metric == "pass_rate":
        return None if fields["passed"] is None else 100.0 * fields["passed"]
    return fields["quality"].get(metric)


def _acquire(batch_id: int, token: str) -> str | None:
    """Take the lease (None), or say why not: the batch is finished, gone, cancelled, or another
    chunk is alive (its heartbeat stays fresh for longer than a lease lasts). The wait for a lease
    to go stale comes out of the task's time limit, which the chunk itself must still fit in."""
    spare_s = settings.Q_CLUSTER["timeout"] - 2 * settings.BATCH_CHUNK_S - 1
    deadline = time.monotonic() + min(LEASE_TTL.total_seconds() + 2, spare_s)
    while True:
        with transaction.atomic():
            batch = Batch.objects.select_for_update().select_related("experiment").filter(pk=batch_id).first()
            if batch is None:
                return "deleted"
            experiment = batch.experiment
            if experiment.status not in (Status.PENDING, Status.RUNNING):
                return experiment.status
            now = timezone.now()
            free = not batch.lease or batch.heartbeat_at is None or now - batch.heartbeat_at > LEASE_TTL
            # The chunk that held it ran and was lost: counted once, here or by the recovery.
            if free and batch.lease and batch_chunk_lost(batch=batch, now=now) and batch.queued_at is None:
                transaction.on_commit(lambda: batch_publish(batch_id=batch_id))
                return Status.FAILED  # that was one loss too many
            if free and experiment.cancel_requested:  # cancelled while no live chunk held it
                Batch.objects.filter(pk=batch_id).update(lease="", queued_at=None, current_parameters={})
                Experiment.objects.filter(pk=batch_id).update(status=Status.CANCELLED, finished_at=now)
                transaction.on_commit(lambda: batch_publish(batch_id=batch_id))
                return Status.CANCELLED
            if free:
                batch.lease, batch.heartbeat_at, batch.queued_at = token, now, None
                fields = ["lease", "heartbeat_at", "queued_at"]
                if experiment.status == Status.PENDING:
                    batch.run_started_at, batch.run_started_results = now, batch.completed_results
                    fields += ["run_started_at", "run_started_results"]
                    Experiment.objects.filter(pk=batch_id).update(
                        status=Status.RUNNING, started_at=experiment.started_at or now
                    )
                batch.save(update_fields=fields)
                return None
        if time.monotonic() > deadline:
            return "running elsewhere"
        time.sleep(0.5)


def _finish(batch_id: int, token: str, status: str, error: str = "") -> None:
    """End the batch (only while holding its lease, or with no lease at all) and release it."""
    with transaction.atomic():
        mine = Batch.objects.filter(pk=batch_id, lease=token).update(lease="", current_parameters={})
        if mine:
            Experiment.objects.filter(pk=batch_id).update(status=status, error=error[:2000], finished_at=timezone.now())
    batch_publish(batch_id=batch_id)


async def _nudge(layer, group: str) -> None:
    """Best effort: the live page also polls the database, so a slow or broken channel layer must
    neither stop nor hold up the writer."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(layer.group_send(group, {"type": "batch.nudge"}), timeout=1.0)


def _close_connection() -> None:
    connection.close()  # looked up in the calling thread: each thread has its own connection


def _release(batch_id: int, token: str) -> None:
    """Let go of the lease; the next chunk is queued (queued_at lets recovery tell a lost task)."""
    Batch.objects.filter(pk=batch_id, lease=token).update(lease="", queued_at=timezone.now())


def _heartbeat(batch_id: int, token: str) -> tuple[bool, bool]:
    """(still ours, cancel asked for)."""
    ours = Batch.objects.filter(pk=batch_id, lease=token).update(heartbeat_at=timezone.now()) == 1
    cancel = Experiment.objects.filter(pk=batch_id, cancel_requested=True).exists()
    return ours, cancel


def _checkpoint(batch_id: int, token: str, rows: list[dict], progress: dict) -> None:
    """Store answers and the progress in one transaction, only while the lease is ours."""
    with transaction.atomic():
        if not Batch.objects.filter(pk=batch_id, lease=token).update(heartbeat_at=timezone.now(), recoveries=0,
                                                                       **progress):  # fmt: skip
            raise LeaseLost
        responses = [Response(**row) for row in rows]
        for response in responses:  # bulk_create skips save(), which copies them
            response.copy_figures()
        Response.objects.bulk_create(responses, ignore_conflicts=True)


@dataclass
class _Plan:
    batch: Batch
    targets: list[ExperimentTarget]
    items: list[Item]
    done: set[tuple[int, str, int, int]]

    def todo(self) -> Iterator[tuple[int, ExperimentTarget, Item, int]]:
        """What is not stored yet, combination by combination."""
        repetitions = self.batch.experiment.responses_per_item
        for c in range(self.batch.combination_count):
            for target in self.targets:
                for item in self.items:
                    for r in range(repetitions):
                        if (target.pk, item.key, c, r) not in self.done:
                            yield c, target, item, r


def _plan(batch_id: int) -> tuple[_Plan, _Progress]:
    batch = Batch.objects.select_related("experiment__team").get(pk=batch_id)
    targets = list(ExperimentTarget.objects.filter(experiment_id=batch_id).select_related("endpoint").order_by("pk"))
    items = experiment_items(batch.experiment)
    done = set(
        Response.objects.filter(experiment_id=batch_id).values_list(
            "target_id", "item_key", "combination", "repetition"
        )
    )
    progress = _Progress(per_combination=len(targets) * len(items) * batch.experiment.responses_per_item)
    for row in combination_aggregates(batch, batch.objective):
        c = row["combination"]
        progress.stored[c] = row["results"]
        progress.completed += row["results"]
        progress.failed += row["errors"]
        progress.completed_combinations += row["results"] >= progress.per_combination
        if row["n"]:
            progress.sums[c] = [row["total"], row["n"]]
    if progress.sums:
        progress.best = max(progress.sums, key=lambda k: (progress.mean(k), progress.sums[k][1]))
    return _Plan(batch, targets, items, done), progress


async def _chunk(batch_id: int, token: str) -> tuple[str, str]:
    """Run until done, cancelled, refused, the lease is lost or the chunk's time is up: (outcome, detail)."""
    db = sync_to_async  # one thread for every database call of the chunk: one connection
    plan, progress = await db(_plan)(batch_id)
    batch = plan.batch
    values, metric = batch.parameter_values, batch.objective
    options = {k: v for k, v in batch.experiment.parameters.items() if k in REQUEST_OPTIONS}
    for target in plan.targets:
        if target.endpoint.kind != Kind.SIM:
            await db(check_base_url)(target.endpoint.base_url, must_resolve=True)
    # A hard monthly budget stops the batch, as a cancel does, once metered spend reaches it (simulated targets
    # meter nothing): spend re-read every BUDGET_REFRESH_S, each result's cost added as it arrives.
    watch = BudgetWatch(batch.experiment.team_id, metered=any(t.endpoint.kind != Kind.SIM for t in plan.targets))
    if watch.metered:
        await db(watch.refresh)()
        if watch.reached:
            await db(_close_connection)()
            return "budget", watch.reason
    stop = asyncio.Event()
    outcome = {"why": "", "detail": ""}
    deadline = time.monotonic() + settings.BATCH_CHUNK_S
    queue: asyncio.Queue = asyncio.Queue()
    layer = get_channel_layer()
    todo = plan.todo()

    def halt(why: str, detail: str = "") -> None:
        if not outcome["why"]:
            outcome["why"], outcome["detail"] = why, detail
        stop.set()

    async def writer() -> None:
        try:
            await write()
        except Exception:
            halt("error")
            raise

    async def write() -> None:
        while True:
            first = await queue.get()
            group = [first] if first is not None else []
            while len(group) < WRITE_GROUP_MAX and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    first = None
                else:
                    group.append(item)
            if group:
                for c, fields in group:
                    progress.add(c, not fields["error_code"], _objective_value(metric, fields))
                snapshot = {
                    "completed_results": progress.completed, "failed_results": progress.failed,
                    "completed_combinations": progress.completed_combinations,
                    "current_parameters": progress.current, "preview": progress.preview(values, metric),
                }  # fmt: skip
                try:
                    await db(_checkpoint)(batch_id, token, [fields for _, fields in group], snapshot)
                except LeaseLost:
                    halt("lease lost")
                    return
                if layer is not None:
                    await _nudge(layer, batch.group_name)
            if first is None:
                return

    async def ask(answerer: Answerer) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            job = next(todo, None)
            if job is None:
                return
            c, target, item, repetition = job
            params = combination(values, c)
            progress.current = params
            params = {**options, **params}  # the sweep's fixed request options (top_k, stop …) with the swept values
            answer: Answer | None = await answerer.answer(target, item, params, stop)
            if answer is None:
                return
            if answer.refused_key:
                halt("refused", refused_key_reason(answer))
                return
            fields = response_fields(answer, repetition=repetition, combination=c)
            await queue.put((c, fields))
            if not fields["is_simulated"]:  # counted as it arrives; stored by the writer all the same
                watch.add(fields["cost_usd"])
                if watch.reached:
                    halt("budget", watch.reason)

    async def pulse() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            ours, cancel = await db(_heartbeat)(batch_id, token)
            if not ours:
                halt("lease lost")
            elif cancel:
                halt("cancelled")
            elif watch.due():
                await db(watch.refresh)()
                if watch.reached:
                    halt("budget", watch.reason)

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        endpoints = list({t.endpoint_id: t.endpoint for t in plan.targets}.values())
        answerer = Answerer(session, batch.experiment.team_id, endpoints, default_concurrency=batch.concurrency)
        writing = asyncio.create_task(writer())
        beating = asyncio.create_task(pulse())
        askers = [asyncio.create_task(ask(answerer)) for _ in range(max(1, batch.concurrency))]
        try:
            # The askers end by themselves when the work or the chunk's time is up, letting their
            # request finish; a stop (cancel, refused key, lost lease) or the hard deadline drops
            # whatever is still in flight.
            waiter = asyncio.gather(*askers, return_exceptions=True)
            stopped = asyncio.create_task(stop.wait())
            hard_deadline = deadline + settings.BATCH_CHUNK_S
            await asyncio.wait([waiter, stopped], timeout=max(0.0, hard_deadline - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            for task in askers:
                task.cancel()
            await waiter
            stopped.cancel()
            await queue.put(None)
            await writing
        finally:
            beating.cancel()
            for task in (*askers, writing):
                task.cancel()
            await db(_close_connection)()
            # No layer.close_pools(): it would close every event loop's connections of this
            # process's layer; channels-redis cleans up this loop's own when asyncio.run closes it.
    if outcome["why"]:
        return outcome["why"], outcome["detail"]
    return ("more" if progress.completed < batch.result_count else "done"), ""


def _after_run(batch_id: int) -> None:
    """80% / 100% of the team's monthly budget, told after each run that metered something."""
    if ExperimentTarget.objects.filter(experiment_id=batch_id).exclude(endpoint__kind=Kind.SIM).exists():
        team_id = Experiment.objects.filter(pk=batch_id).values_list("team_id", flat=True).first()
        if team_id is not None:
            budget_events(team_id)


def run_batch_chunk(batch_id: int) -> str:
    """One chunk of a batch; safe to run twice (the lease lets one run at a time)."""
    token = uuid.uuid4().hex
    refused = _acquire(batch_id, token)
    if refused is not None:
        return refused
    batch_publish(batch_id=batch_id)
    try:
        why, detail = asyncio.run(_chunk(batch_id, token))
    except Exception as exc:  # recorded on the batch (never the key); the queue sees a finished task
        message = f"{type(exc).__name__}: {exc}"
        for target in ExperimentTarget.objects.filter(experiment_id=batch_id).select_related("endpoint"):
            key = target.endpoint.config().api_key
            if key:
                message = message.replace(key, "[key]")
        _finish(batch_id, token, Status.FAILED, message)
        return Status.FAILED
    if why == "done":
        _finish(batch_id, token, Status.COMPLETED)
        _after_run(batch_id)
        return Status.COMPLETED
    if why == "cancelled":
        _finish(batch_id, token, Status.CANCELLED)
        _after_run(batch_id)
        return Status.CANCELLED
    if why in ("refused", "budget"):
        _finish(batch_id, token, Status.FAILED, detail)
        _after_run(batch_id)
        return Status.FAILED
    if why == "lease lost":
        return "lease lost"
    _release(batch_id, token)
    _enqueue_chunk(batch_id)
    batch_publish(batch_id=batch_id)
    return "continued"
