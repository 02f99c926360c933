"""Runs a benchmark in the django-q2 worker, one short chunk per task, as the parameter-sweep runner does
(apps/batches/batch_runner.py, ADR 0006).

A chunk takes the run's lease (one chunk at a time, ever: the chunk before hands it over; a second delivery of
the same task, or a recovery, takes it only once it has gone stale), reads what is stored, builds the prompts of the
items still to ask once (the same messages for every target), and asks item after item of every target with
`concurrency` requests in flight through the experiments' `Answerer` (retry layer, shared token bucket, circuit
breaker). Requests are not streamed: a quality run needs no TTFT. Each response is scored where it arrives
(taskdefs.extract_answer, is_correct) and checkpointed as soon as the writer is free: the answers that finished
while it was writing go into the next transaction together (group commit), with the run's counters, under the
unique key (target, item) and only while the lease is still ours. A failed request (after retries) is stored
with its error and not scored; the next start asks it again and the row is updated in place. A worker killed
with SIGKILL loses only answers not yet stored, which the next chunk asks again.

After BATCH_CHUNK_S a chunk sends nothing new, lets the requests in flight finish (for as long again at most)
and hands the lease to the next chunk, which it queues. The heartbeat, twice a second, renews the lease and reads
the cancel flag: a cancel stops new requests at once and drops those in flight. A refused key (401/403) fails the
run and says why. When every item of every target is answered, the run completes and, in the same transaction,
publishes its measured scores (services.publish_scores); if some requests failed it ends failed, resumable.
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

from apps.benchmarks.engine import taskdefs
from apps.benchmarks.engine.formats import ParsedItem
from apps.benchmarks.imports import item_data as parsed_item
from apps.benchmarks.models import BenchmarkAnswer, BenchmarkItem, BenchmarkRun, BenchmarkTarget, Status
from apps.benchmarks.selectors import progress_payload
from apps.benchmarks.services import (
    LEASE_TTL,
    _enqueue,
    chunk_lost,
    progress_publish,
    publish_scores,
    run_item_indices,
)
from apps.experiments.runner import Answer, Answerer, Item, cost_usd, refused_key_reason
from apps.providers.budget import BudgetWatch, budget_events
from apps.providers.engine.types import Kind
from apps.providers.urlcheck import check_base_url

HEARTBEAT_S = 0.5
PUBLISH_EVERY_S = 0.5  # progress goes to the websocket group at most this often
WRITE_GROUP_MAX = 1000
ESTIMATE_SAMPLE = 1000  # prompts built for an estimate, at most
UPDATE_FIELDS = ["content", "extracted", "correct", "input_tokens", "output_tokens", "latency_ms", "cost_usd",
                 "error_code", "error_message", "created_at"]  # fmt: skip


class LeaseLost(Exception):
    """Another chunk holds the run now: stop without writing."""


def _shots_for(kind: str, item: ParsedItem, pool: list[ParsedItem], shots: int) -> list[ParsedItem]:
    if not shots or not pool:
        return []
    return taskdefs.choose_shots(kind, item, pool, shots)


def _pool(run: BenchmarkRun) -> list[ParsedItem]:
    if not run.shots:
        return []
    rows = BenchmarkItem.objects.filter(suite_id=run.suite_id, split=BenchmarkItem.Split.FEWSHOT).order_by("index")
    return [parsed_item(row) for row in rows]


def _asked_rows(run: BenchmarkRun) -> list[BenchmarkItem]:
    rows = BenchmarkItem.objects.filter(suite_id=run.suite_id, split=BenchmarkItem.Split.TEST).order_by("index")
    if run.subset_size is not None:
        rows = rows.filter(index__in=run_item_indices(run))
    return list(rows)


def prompt_chars(run: BenchmarkRun, sample: int = ESTIMATE_SAMPLE) -> int:
    """The characters of every prompt the run sends to one target (for the estimate): counted over at most
    `sample` items spread evenly over the run's, scaled to all of them (a 12,000-item suite costs a fraction of a
    second, not the seconds building every prompt would)."""
    pool, kind = _pool(run), run.suite.kind
    rows = _asked_rows(run)
    step = max(1, -(-len(rows) // sample))
    counted = rows[::step]
    total = 0
    for row in counted:
        item = parsed_item(row)
        messages = taskdefs.build_messages(kind, item, _shots_for(kind, item, pool, run.shots))
        total += sum(len(m["content"]) for m in messages)
    return round(total * len(rows) / len(counted)) if counted else 0


@dataclass
class _Job:
    target: BenchmarkTarget
    item_id: int
    parsed: ParsedItem
    ask: Item


@dataclass
class _Plan:
    run: BenchmarkRun
    targets: list[BenchmarkTarget]
    todo: list[tuple[BenchmarkItem, list[BenchmarkTarget]]]  # item by item, the targets still to ask it of
    pool: list[ParsedItem]
    total: int
    stored: int  # answers stored (failed included)
    failed_keys: set[tuple[int, int]] = field(default_factory=set)  # (target, item) stored with an error

    def jobs(self) -> Iterator[_Job]:
        """The requests to send, item after item; an item's prompt is built once, for all its targets, as its
        first request goes (so the first requests go at once, not after every prompt of the chunk is built)."""
        kind, shots = self.run.suite.kind, self.run.shots
        for row, targets in self.todo:
            item = parsed_item(row)
            ask = Item(str(row.pk), None, taskdefs.build_messages(kind, item, _shots_for(kind, item, self.pool,
                                                                                          shots)))  # fmt: skip
            for target in targets:
                yield _Job(target, row.pk, item, ask)


def _plan(run_id: int) -> _Plan:
    """What is left: every (item, target) not stored, and the failed ones not asked again since the run started."""
    run = BenchmarkRun.objects.select_related("suite", "team").get(pk=run_id)
    targets = list(BenchmarkTarget.objects.filter(run=run).select_related("endpoint").order_by("pk"))
    rows = _asked_rows(run)
    done: set[tuple[int, int]] = set()
    failed: set[tuple[int, int]] = set()
    for target_id, item_id, error_code, created_at in BenchmarkAnswer.objects.filter(run=run).values_list(
        "target_id", "item_id", "error_code", "created_at"
    ):
        if error_code:
            failed.add((target_id, item_id))
            if run.started_at is None or created_at < run.started_at:
                continue  # asked before this start: ask again
        done.add((target_id, item_id))
    todo = []
    for row in rows:
        missing = [t for t in targets if (t.pk, row.pk) not in done]
        if missing:
            todo.append((row, missing))
    stored = BenchmarkAnswer.objects.filter(run=run).count()
    return _Plan(run, targets, todo, _pool(run), len(rows) * len(targets), stored, failed)


def _acquire(run_id: int, lease: str, token: str) -> str | None:
    """Take the lease (None), or say why not: the run is finished, gone, cancelled, or another chunk has it. The
    chunk handed the lease by the one before takes it; any other task only a lease gone stale (its worker died).
    Nothing waits: a task that finds a live lease ends at once and leaves the worker free (the recovery queues
    a run only once its heartbeat is STALL_AFTER old, far past LEASE_TTL)."""
    with transaction.atomic():
        run = BenchmarkRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            return "deleted"
        if run.status not in (Status.QUEUED, Status.RUNNING):
            return run.status
        now = timezone.now()
        # The lease handed over by the chunk before, still waiting for its successor: taken once (a second
        # delivery of the same task then finds another token there).
        handed = bool(lease) and run.lease == lease and run.queued_at is not None
        free = not run.lease or run.heartbeat_at is None or now - run.heartbeat_at > LEASE_TTL
        if not (handed or free):
            return "running elsewhere"
        # The chunk that held it ran and was lost: counted once, here or by the recovery.
        if not handed and run.lease and run.queued_at is None and chunk_lost(run, now) and run.status == Status.FAILED:
            transaction.on_commit(lambda: progress_publish(run_id))
            return Status.FAILED
        fields = {"lease": token, "heartbeat_at": now, "queued_at": None, "status": Status.RUNNING}
        if run.status == Status.QUEUED:  # a start (or resume): counted from now
            fields |= {"started_at": now, "error": ""}
        if run.cancel_requested:
            fields |= {"status": Status.CANCELLED, "finished_at": now, "lease": ""}
        BenchmarkRun.objects.filter(pk=run_id).update(**fields)
        if run.cancel_requested:
            transaction.on_commit(lambda: progress_publish(run_id))
            return Status.CANCELLED
        return None


def _finish(run_id: int, token: str, status: str, error: str = "") -> None:
    """End the run (only while holding its lease) and release it; a completed run publishes its measured scores
    in the same transaction."""
    with transaction.atomic():
        now = timezone.now()
        mine = BenchmarkRun.objects.filter(pk=run_id, lease=token).update(
            status=status, error=error[:2000], finished_at=now, lease="", queued_at=None
        )
        if mine and status == Status.COMPLETED:
            publish_scores(BenchmarkRun.objects.select_related("suite").get(pk=run_id))
    progress_publish(run_id)


def _hand_over(run_id: int, token: str) -> bool:
    """Keep the lease for the next chunk (queued_at says it is queued, for the recovery)."""
    return bool(BenchmarkRun.objects.filter(pk=run_id, lease=token).update(heartbeat_at=timezone.now(),
                                                                           queued_at=timezone.now()))  # fmt: skip


def _heartbeat(run_id: int, token: str) -> tuple[bool, bool]:
    """(still ours, cancel asked for)."""
    ours = BenchmarkRun.objects.filter(pk=run_id, lease=token).update(heartbeat_at=timezone.now()) == 1
    cancel = BenchmarkRun.objects.filter(pk=run_id, cancel_requested=True).exists()
    return ours, cancel


def _checkpoint(run_id: int, token: str, rows: list[BenchmarkAnswer], stored: int, failed: int) -> None:
    """Store answers and the counters in one transaction, only while the lease is ours. A row already there (a
    failed request asked again) is updated in place."""
    with transaction.atomic():
        if not BenchmarkRun.objects.filter(pk=run_id, lease=token).update(
            heartbeat_at=timezone.now(), recoveries=0, completed_answers=stored, failed_answers=failed
        ):
            raise LeaseLost
        BenchmarkAnswer.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["target", "item"], update_fields=UPDATE_FIELDS
        )


def _payload(run_id: int) -> dict | None:
    run = BenchmarkRun.objects.filter(pk=run_id).first()
    return None if run is None else progress_payload(run)


def _close_connection() -> None:
    connection.close()  # looked up in the calling thread: each thread has its own connection


def _answer_row(run: BenchmarkRun, kind: str, job: _Job, answer: Answer) -> BenchmarkAnswer:
    result = answer.result
    row = BenchmarkAnswer(
        run_id=run.pk, target_id=job.target.pk, item_id=job.item_id, content=result.text or "",
        input_tokens=result.input_tokens, output_tokens=result.output_tokens, latency_ms=result.e2e_ms,
        created_at=timezone.now(),
    )  # fmt: skip
    if result.ok:
        row.extracted = taskdefs.extract_answer(kind, row.content, job.parsed)[:100]
        row.correct = bool(row.extracted) and taskdefs.is_correct(kind, row.extracted, job.parsed)
        row.cost_usd = cost_usd(job.target.endpoint, result)
    else:
        row.error_code = result.error.code[:50] if result.error else "error"
        row.error_message = result.error.message if result.error else ""
    return row


async def _chunk(run_id: int, token: str) -> tuple[str, str]:
    """Run until done, cancelled, refused, the lease is lost or the chunk's time is up: (outcome, detail)."""
    db = sync_to_async  # one thread for every database call of the chunk: one connection
    plan = await db(_plan)(run_id)
    run, kind = plan.run, plan.run.suite.kind
    for endpoint in {t.endpoint_id: t.endpoint for t in plan.targets}.values():
        if endpoint.kind != Kind.SIM:
            await db(check_base_url)(endpoint.base_url, must_resolve=True)
    params = {"temperature": run.temperature, "max_tokens": run.max_tokens, "stream": False}
    # A hard monthly budget stops the run, as a cancel does, once metered spend reaches it (simulated targets
    # meter nothing): spend re-read every BUDGET_REFRESH_S, each answer's cost added as it arrives.
    metered = {t.pk for t in plan.targets if t.endpoint.kind != Kind.SIM}
    watch = BudgetWatch(run.team_id, metered=bool(metered))
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
    changed = asyncio.Event()
    jobs = plan.jobs()
    counts = {"stored": plan.stored, "failed": len(plan.failed_keys)}
    failed_keys = plan.failed_keys

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
                row = queue.get_nowait()
                if row is None:
                    first = None
                else:
                    group.append(row)
            if group:
                for row in group:
                    key = (row.target_id, row.item_id)
                    was_failed = key in failed_keys
                    counts["stored"] += not was_failed  # a failed one asked again is updated in place
                    if row.error_code and not was_failed:
                        failed_keys.add(key)
                    elif not row.error_code and was_failed:
                        failed_keys.discard(key)
                counts["failed"] = len(failed_keys)
                try:
                    await db(_checkpoint)(run_id, token, group, counts["stored"], counts["failed"])
                except LeaseLost:
                    halt("lease lost")
                    return
                changed.set()
            if first is None:
                return

    async def ask(answerer: Answerer) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            job = next(jobs, None)
            if job is None:
                return
            answer = await answerer.answer(job.target, job.ask, params, stop)
            if answer is None or stop.is_set():
                return
            if answer.refused_key:
                halt("refused", refused_key_reason(answer))
                return
            row = _answer_row(run, kind, job, answer)
            await queue.put(row)
            if row.target_id in metered:  # counted as it arrives; stored by the writer all the same
                watch.add(row.cost_usd)
                if watch.reached:
                    halt("budget", watch.reason)

    async def pulse() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            ours, cancel = await db(_heartbeat)(run_id, token)
            if not ours:
                halt("lease lost")
            elif cancel:
                halt("cancelled")
            elif watch.due():
                await db(watch.refresh)()
                if watch.reached:
                    halt("budget", watch.reason)

    async def publish() -> None:
        """Best effort: the page also reads the database, so a slow or broken channel layer must neither stop nor
        hold up the writer."""
        while True:
            await changed.wait()
            changed.clear()
            payload = await db(_payload)(run_id)
            if payload is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(layer.group_send(
                        run.group_name, {"type": "benchmark.progress", "payload": payload}), timeout=1.0)  # fmt: skip
            await asyncio.sleep(PUBLISH_EVERY_S)

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        endpoints = list({t.endpoint_id: t.endpoint for t in plan.targets}.values())
        answerer = Answerer(session, run.team_id, endpoints, default_concurrency=run.concurrency)
        writing = asyncio.create_task(writer())
        beating = asyncio.create_task(pulse())
        publishing = asyncio.create_task(publish()) if layer is not None else None
        askers = [asyncio.create_task(ask(answerer)) for _ in range(max(1, run.concurrency))]
        try:
            # The askers end by themselves when the work or the chunk's time is up, letting their request
            # finish; a stop (cancel, refused key, lost lease) or the hard deadline drops what is in flight.
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
            for task in (*askers, writing, *([publishing] if publishing else [])):
                task.cancel()
            await db(_close_connection)()
    if outcome["why"]:
        return outcome["why"], outcome["detail"]
    if next(jobs, None) is not None or counts["stored"] < plan.total:
        return "more", ""
    if failed_keys:
        return "failed requests", (
            f"{len(failed_keys):,} of {plan.total:,} requests failed after retries; the answers are kept. "
            "Resume to ask the failed ones again."
        )
    return "done", ""


def _after_run(run_id: int) -> None:
    """80% / 100% of the team's monthly budget, told after each run that metered something."""
    if BenchmarkTarget.objects.filter(run_id=run_id).exclude(endpoint__kind=Kind.SIM).exists():
        team_id = BenchmarkRun.objects.filter(pk=run_id).values_list("team_id", flat=True).first()
        if team_id is not None:
            budget_events(team_id)


def run_benchmark(run_id: int, lease: str = "") -> str:
    """One chunk of a run (the next is queued with the lease); safe to run twice. The status after, or why
    nothing ran ("running elsewhere", "deleted", "lease lost", "continued")."""
    token = uuid.uuid4().hex
    refused = _acquire(run_id, lease, token)
    if refused is not None:
        return refused
    progress_publish(run_id)
    try:
        why, detail = asyncio.run(_chunk(run_id, token))
    except Exception as exc:  # recorded on the run (never the key); the queue sees a finished task
        message = f"{type(exc).__name__}: {exc}"
        for target in BenchmarkTarget.objects.filter(run_id=run_id).select_related("endpoint"):
            key = target.endpoint.config().api_key
            if key:
                message = message.replace(key, "[key]")
        _finish(run_id, token, Status.FAILED, message)
        return Status.FAILED
    if why in ("done", "cancelled"):
        status = Status.COMPLETED if why == "done" else Status.CANCELLED
        _finish(run_id, token, status)
        _after_run(run_id)
        return status
    if why in ("refused", "failed requests", "error", "budget"):
        _finish(run_id, token, Status.FAILED, detail or why)
        _after_run(run_id)
        return Status.FAILED
    if why == "lease lost":
        return "lease lost"
    if _hand_over(run_id, token):
        _enqueue(run_id, token)
    progress_publish(run_id)
    return "continued"
