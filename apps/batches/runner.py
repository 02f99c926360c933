"""Runs a load sweep in the worker: each step through the load generator and the endpoint's
adapter, stored as a performance run the moment it finishes; progress and cancel go through the
database every half second.

Load steps send every request once: a retried request would hide the failure and stretch the
latency the step is measuring. The endpoint's rate limits do not apply either: finding where the
server stops keeping up is the point.
"""

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
import numpy as np
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.utils import timezone

from apps.batches import traffic
from apps.batches.models import LoadSweep, LoadSweepStep, Status
from apps.batches.services import HEARTBEAT_S, progress_publish
from apps.hardware.parsed import ParsedRun
from apps.hardware.services import RunTarget, run_store
from apps.providers.engine import scrape
from apps.providers.engine.adapters import adapter_for
from apps.providers.engine.loadgen import StepOutcome, StepProgress, StepSpec, run_step
from apps.providers.engine.sessions import run_sessions
from apps.providers.engine.types import EndpointConfig, ErrorKind, GenerationRequest, GenerationResult, Kind
from apps.providers.urlcheck import check_base_url
from apps.workloads.engine.plan import RequestPlan

WORDS = [
    "latency",
    "throughput",
    "token",
    "model",
    "server",
    "request",
    "batch",
    "cache",
    "prefill",
    "decode",
    "memory",
    "bandwidth",
    "kernel",
    "attention",
    "layer",
    "weight",
    "tensor",
    "parallel",
    "pipeline",
    "queue",
    "schedule",
    "stream",
    "benchmark",
    "measure",
    "report",
]


def synthetic_prompts(sweep: LoadSweep, count: int = 512) -> list[str]:
    """Deterministic prompts of about `prompt_tokens` words (± stdev), each with a distinct
    opening so a server's prefix cache does not turn the test into a cache benchmark."""
    if sweep.prompts:
        return list(sweep.prompts)
    rng = random.Random(sweep.seed)
    prompts = []
    for i in range(count):
        length = max(1, int(rng.gauss(sweep.prompt_tokens, sweep.prompt_tokens_stdev or 0)))
        prompts.append(f"Request {i}: " + " ".join(rng.choice(WORDS) for _ in range(length)))
    return prompts


def step_spec(sweep: LoadSweep, step: LoadSweepStep) -> StepSpec:
    warmup = dict(warmup_requests=sweep.warmup_requests, warmup_s=sweep.warmup_s)
    if sweep.mode == LoadSweep.Mode.CLOSED:
        return StepSpec(
            mode="closed", concurrency=int(step.level), duration_s=sweep.step_duration_s,
            request_count=sweep.step_request_count, **warmup,
        )  # fmt: skip
    return StepSpec(
        mode="open", rate_rps=step.level, arrivals=sweep.arrivals, seed=sweep.seed + step.index,
        duration_s=sweep.step_duration_s, request_count=sweep.step_request_count, **warmup,
    )  # fmt: skip


@dataclass
class _Live:
    """Shared between the step's event loop and the database pulse."""

    cancel: asyncio.Event
    progress: StepProgress | None = None
    auth_refused: str = ""
    notes: list[str] = field(default_factory=list)
    scraped: "scrape.ScrapedSeries | None" = None  # the server's metrics over the step, when it exposes them


@dataclass(frozen=True)
class Share:
    """Which part of a step a process sends: shard `index` of `count` (apps.batches.shards). Shard k sends
    the plan's requests k, k + count, k + 2·count …, so the shards together send each request once."""

    index: int = 0
    count: int = 1

    def request(self, i: int) -> int:
        return i * self.count + self.index


WHOLE = Share()


def _pulse_sync(sweep_id: int, step_index: int, progress: StepProgress | None, write: bool = True) -> bool:
    """Write the heartbeat and live figures, publish them; True when a cancel was asked for. A shard other than
    the first only reads the cancel flag: its partial figures would make the live page flip between shards."""
    live = {}
    if progress is not None:
        live = {k: v for k, v in vars(progress).items() if isinstance(v, int | float | str | type(None))}
    try:
        if write:
            LoadSweep.objects.filter(pk=sweep_id).update(
                heartbeat_at=timezone.now(), current_step=step_index, progress=live
            )
            progress_publish(sweep_id=sweep_id)
        return LoadSweep.objects.filter(pk=sweep_id, cancel_requested=True).exists()
    finally:
        connection.close()  # this pool thread's own connection: do not leave one open per thread


def _metrics_urls(sweep: LoadSweep, share: Share) -> list[str]:
    """The server's metrics URLs to scrape during the step: by one process only (shard 0)."""
    if share.index != 0 or sweep.endpoint.kind == Kind.SIM:
        return []
    return [url for url in (sweep.endpoint.metrics_url, sweep.endpoint.gpu_metrics_url) if url]


async def run_step_async(
    sweep: LoadSweep,
    step: LoadSweepStep,
    config: EndpointConfig,
    plan: RequestPlan | None = None,
    share: Share = WHOLE,
    start_at_epoch: float | None = None,
) -> tuple[StepOutcome, _Live]:
    """Run `share` of one step (all of it by default). With `start_at_epoch` (a sharded step's barrier) the
    first send waits for that wall-clock instant: the session and the adapter are ready before it."""
    adapter = adapter_for(config)
    prompts = synthetic_prompts(sweep) if plan is None else []
    history = traffic.History(plan) if plan is not None else None
    first = traffic.step_offset(sweep, step) if plan is not None else 0
    live = _Live(cancel=asyncio.Event())
    timeout = aiohttp.ClientTimeout(
        total=config.total_timeout_s, sock_connect=config.connect_timeout_s, sock_read=config.read_timeout_s
    )
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        def check_auth(result: GenerationResult) -> None:
            if result.error is not None and result.error.kind == ErrorKind.AUTH and not live.auth_refused:
                live.auth_refused = f"The endpoint refused the API key ({result.error.code}): {result.error.message}"
                live.cancel.set()

        async def send(i: int) -> GenerationResult:
            if plan is not None:
                request = plan.request(first + share.request(i), 0, [])
            else:
                request = GenerationRequest(
                    model=sweep.model, messages=[{"role": "user", "content": prompts[share.request(i) % len(prompts)]}],
                    max_tokens=sweep.output_tokens, temperature=sweep.temperature, ignore_eos=sweep.ignore_eos,
                    seed=sweep.seed,
                )  # fmt: skip
            result = await adapter.generate(session, request)
            check_auth(result)
            return result

        async def send_turn(s: int, t: int) -> GenerationResult:
            g = first + share.request(s)
            request = history.request(g, t)
            result = await adapter.generate(session, request)
            history.record(g, t, request, result.text if result.ok else None)
            check_auth(result)
            return result

        def on_progress(progress: StepProgress) -> None:
            live.progress = progress

        step_over = asyncio.Event()

        async def pulse() -> None:
            # Ends on `step_over`, not only on cancellation: a cancel that lands while sync_to_async's thread
            # finishes can be swallowed, and this loop then kept asyncio.run from ever returning (seen once
            # under load in CI: the test timed out with the loop waking every HEARTBEAT_S / 2).
            while not step_over.is_set():
                pulse_sync = sync_to_async(_pulse_sync, thread_sensitive=False)
                if await pulse_sync(sweep.pk, step.index, live.progress, share.index == 0):
                    live.cancel.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(step_over.wait(), HEARTBEAT_S / 2)

        spec = step_spec(sweep, step) if plan is None else traffic.workload_step_spec(sweep, step, plan)
        if share.count > 1:
            from apps.batches.shards import share_spec  # the shards module imports this one

            spec = share_spec(spec, share.index, share.count)
        if start_at_epoch is not None:
            while (delay := start_at_epoch - time.time()) > 0:
                await asyncio.sleep(delay - 0.002 if delay > 0.002 else 0)  # the last 2 ms spin: timers fire late
        pulser = asyncio.create_task(pulse())
        urls = _metrics_urls(sweep, share)
        scraper = asyncio.create_task(scrape.scrape_loop(session, urls, step_over)) if urls else None
        try:
            if plan is not None and plan.multi_turn:
                outcome = await run_sessions(
                    spec, send_turn, lambda s: plan.n_turns(first + share.request(s)),
                    lambda s, t: plan.think_s(first + share.request(s), t),
                    on_progress=on_progress, cancel=live.cancel,
                )  # fmt: skip
            else:
                outcome = await run_step(spec, send, on_progress=on_progress, cancel=live.cancel)
        finally:
            step_over.set()
            pulser.cancel()
            await asyncio.wait({pulser}, timeout=HEARTBEAT_S * 5)
            if scraper is not None:
                done, _ = await asyncio.wait({scraper}, timeout=HEARTBEAT_S * 5)
                if scraper in done and scraper.exception() is None:
                    live.scraped = scraper.result()
                else:
                    scraper.cancel()
    return outcome, live


@transaction.atomic
def _store_step(
    sweep: LoadSweep,
    step: LoadSweepStep,
    outcome: StepOutcome,
    plan: RequestPlan | None = None,
    live: "_Live | None" = None,
    alignment: dict | None = None,
    on_stored: "Callable[[LoadSweepStep], None] | None" = None,
) -> LoadSweepStep:
    """The step's requests become a performance run, and the step is finished, in one transaction (with
    whatever `on_stored` records about it: a capacity search judges its probe there)."""
    results = sorted(outcome.results, key=lambda r: r.send_time)
    closed = sweep.mode == LoadSweep.Mode.CLOSED
    version = sweep.workload_version
    if version is None:
        workload = dict(
            input_tokens_target=sweep.prompt_tokens, output_tokens_target=sweep.output_tokens,
            dataset="custom prompts" if sweep.prompts else "synthetic",
        )  # fmt: skip
    else:
        workload = dict(
            input_tokens_target=_mean_or_none([r.requested_input_tokens for r in results]),
            output_tokens_target=_mean_or_none([r.requested_output_tokens for r in results]),
            dataset=f"{version.workload.name} v{version.number}",
            workload_version_id=version.pk,
            token_calibration=traffic.describe_basis(
                plan, traffic.stored_calibration(sweep.token_calibration),
                version.tokenizer.name if version.tokenizer_id else None,
            ) if plan is not None else sweep.token_calibration,
        )  # fmt: skip
    trace = version is not None and version.spec.get("source") == "trace"
    parsed = ParsedRun(
        source_format="llmbench_live",
        tool="llmbench",
        tool_version="1",
        provider=sweep.endpoint.kind,
        name=f"{sweep.name} · {'c=' if closed else ''}{step.level:g}{'' if closed else ' req/s'}",
        concurrency=int(step.level) if closed else None,
        request_rate_rps=None if closed or trace else step.level,
        started_at=timezone.now() - timedelta(seconds=outcome.end_time - outcome.start_time),
        duration_s=outcome.end_time - outcome.start_time,
        tags=["load-sweep", *(["simulated"] if sweep.endpoint.kind == Kind.SIM else [])],
        notes=outcome.kept_up_reason,
        samples=[r.to_sample(i, outcome.start_time) for i, r in enumerate(results)],
        is_simulated=sweep.endpoint.kind == Kind.SIM,
        server_metrics=live.scraped.as_dict() if live is not None and live.scraped is not None else None,
        **workload,
    )
    run = run_store(
        team=sweep.team, parsed=parsed, target=RunTarget(sweep.variant, sweep.hardware, sweep.deployment),
        user=sweep.created_by,
    )  # fmt: skip
    step.run = run
    step.status = Status.CANCELLED if outcome.cancelled else Status.COMPLETED
    step.achieved_concurrency = outcome.achieved_concurrency
    step.achieved_rate_rps = outcome.achieved_rate_rps
    step.dispatch_delay_p99_ms = outcome.dispatch_delay_p99_ms
    step.client_kept_up = outcome.client_kept_up
    step.client_note = outcome.kept_up_reason[:300]
    if not closed:
        step.schedule_latency = _schedule_latency(outcome)
    if alignment:
        step.shard_alignment = alignment
    step.finished_at = timezone.now()
    step.save()
    if on_stored is not None:
        on_stored(step)
    return step


def _mean_or_none(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known)) if known else None


def _schedule_latency(outcome: StepOutcome) -> dict[str, float]:
    figures = {}
    for name, values in (("ttft", outcome.ttft_ms(from_schedule=True)), ("e2e", outcome.e2e_ms(from_schedule=True))):
        if values.size:
            figures[f"{name}_p50_ms"] = float(np.percentile(values, 50))
            figures[f"{name}_p99_ms"] = float(np.percentile(values, 99))
    return figures


@dataclass
class StepRun:
    """What running one step gave: the step (finished and stored), and why the sweep must stop, if it must."""

    step: LoadSweepStep
    outcome: StepOutcome
    auth_refused: str = ""


def run_and_store_step(
    sweep: LoadSweep,
    step: LoadSweepStep,
    config: EndpointConfig,
    plan: RequestPlan | None,
    on_stored: "Callable[[LoadSweepStep], None] | None" = None,
) -> StepRun:
    """Run one step (across `sweep.shards` worker processes when more than one) and store it as a
    performance run; `on_stored` runs in the storing transaction."""
    LoadSweepStep.objects.filter(pk=step.pk).update(status=Status.RUNNING, started_at=timezone.now())
    alignment = None
    if sweep.shards > 1:
        from apps.batches.shards import run_sharded  # the shards module imports this one

        outcome, live, alignment = run_sharded(sweep, step, config, plan)
    else:
        outcome, live = asyncio.run(run_step_async(sweep, step, config, plan))
    stored = _store_step(sweep, step, outcome, plan, live=live, alignment=alignment, on_stored=on_stored)
    return StepRun(step=stored, outcome=outcome, auth_refused=live.auth_refused)


def _finish(sweep: LoadSweep, status: str, error: str = "") -> None:
    LoadSweep.objects.filter(pk=sweep.pk).update(status=status, error=error, finished_at=timezone.now(), progress={})
    progress_publish(sweep_id=sweep.pk)


def prepare_workload(sweep: LoadSweep, config: EndpointConfig) -> RequestPlan | None:
    """A workload sweep's request plan, built once for all its steps. Without a tokenizer, token lengths are
    first calibrated against the server (six one-token requests), stored on the sweep so a resumed sweep
    sends the same lengths."""
    if sweep.workload_version is None:
        return None
    calibration = traffic.stored_calibration(sweep.token_calibration)
    if not sweep.token_calibration and traffic.needs_calibration(sweep):
        calibration = asyncio.run(traffic.calibrate(adapter_for(config), config, sweep.model))
        sweep.token_calibration = calibration.as_dict() if calibration is not None else {"method": "estimated"}
        LoadSweep.objects.filter(pk=sweep.pk).update(token_calibration=sweep.token_calibration)
    return traffic.build_sweep_plan(sweep, calibration)


def run_sweep(sweep_id: int) -> str:
    """Run every unfinished step of a sweep; safe to run again (finished steps are skipped)."""
    sweep = LoadSweep.objects.select_related(
        "endpoint", "team", "variant", "hardware", "deployment", "workload_version__workload",
        "workload_version__tokenizer", "workload_version__dataset",
    ).get(pk=sweep_id)  # fmt: skip
    if sweep.status not in (Status.PENDING, Status.RUNNING):  # RUNNING: re-delivered after a lost worker
        return sweep.status
    if sweep.cancel_requested:
        _finish(sweep, Status.CANCELLED)
        return Status.CANCELLED
    LoadSweep.objects.filter(pk=sweep.pk).update(
        status=Status.RUNNING, error="", started_at=sweep.started_at or timezone.now(), heartbeat_at=timezone.now()
    )
    progress_publish(sweep_id=sweep.pk)
    config = sweep.endpoint.config()
    try:
        if config.kind != Kind.SIM:
            check_base_url(config.base_url, must_resolve=True)
        plan = prepare_workload(sweep, config)
        for step in sweep.steps.exclude(status__in=[Status.COMPLETED, Status.CANCELLED]).order_by("index"):
            ran = run_and_store_step(sweep, step, config, plan)
            if ran.auth_refused:
                _finish(sweep, Status.FAILED, ran.auth_refused)
                return Status.FAILED
            if ran.outcome.cancelled or LoadSweep.objects.filter(pk=sweep.pk, cancel_requested=True).exists():
                _finish(sweep, Status.CANCELLED)
                return Status.CANCELLED
    except Exception as exc:  # the sweep records why (never the key); the queue sees a finished task
        message = f"{type(exc).__name__}: {exc}"
        if config.api_key:
            message = message.replace(config.api_key, "[key]")
        _finish(sweep, Status.FAILED, message[:2000])
        return Status.FAILED
    _finish(sweep, Status.COMPLETED)
    return Status.COMPLETED
