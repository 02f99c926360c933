"""Runs an experiment in the worker: every (target, item, repetition) through the endpoint's
adapter with the retry layer, the endpoint's token bucket and its circuit breaker; each response
is stored and evaluated the moment it arrives, under a unique key, so a rerun after a crash
repeats nothing. A refused key (401/403) stops the run and says so."""

import asyncio
from dataclasses import dataclass

import aiohttp
from asgiref.sync import sync_to_async
from django.db import IntegrityError, connection
from django.utils import timezone

from apps.experiments.evaluators import JUDGED_KINDS, Evaluation, evaluate, evaluate_with_judge, make_judge
from apps.experiments.models import Experiment, ExperimentTarget, Response, TestCase
from apps.experiments.textmetrics import text_quality
from apps.providers.engine.adapters import adapter_for
from apps.providers.engine.retry import RetryPolicy, breaker_for, generate_with_retry
from apps.providers.engine.types import ErrorKind, GenerationRequest, GenerationResult
from apps.providers.models import ProviderEndpoint
from apps.providers.ratelimit import EndpointRateLimiter

DEFAULT_CONCURRENCY = 4
PARAMETERS = ("temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty", "seed")


@dataclass(frozen=True)
class Item:
    key: str  # "prompt" or "tc:<id>"
    test_case: TestCase | None
    messages: list[dict[str, str]]


def experiment_items(experiment: Experiment) -> list[Item]:
    """The approved test cases of the experiment, or its single prompt."""
    cases = list(experiment.test_cases.filter(status=TestCase.Status.APPROVED).order_by("pk"))
    if not cases:
        messages = [{"role": "system", "content": experiment.system_prompt}] if experiment.system_prompt else []
        return [Item("prompt", None, [*messages, {"role": "user", "content": experiment.prompt}])]
    items = []
    for case in cases:
        messages = [{"role": "system", "content": case.system_prompt}] if case.system_prompt else []
        items.append(Item(f"tc:{case.pk}", case, [*messages, {"role": "user", "content": case.prompt}]))
    return items


def _cost(endpoint: ProviderEndpoint, result: GenerationResult) -> float | None:
    if endpoint.price_input_per_1m_usd is None and endpoint.price_output_per_1m_usd is None:
        return None
    return ((result.input_tokens or 0) * (endpoint.price_input_per_1m_usd or 0.0)
            + (result.output_tokens or 0) * (endpoint.price_output_per_1m_usd or 0.0)) / 1_000_000  # fmt: skip


def _store(experiment: Experiment, target: ExperimentTarget, item: Item, repetition: int, request: GenerationRequest,
           result: GenerationResult, evaluation) -> None:  # fmt: skip
    """One response with its evaluation and text metrics; a duplicate (a rerun) is ignored."""
    case = item.test_case
    quality = text_quality(result.text, prompt=item.messages[-1]["content"]) if result.ok else {}
    try:
        Response.objects.create(
            experiment=experiment, target=target, test_case=case, item_key=item.key, repetition=repetition,
            content=result.text, parameters={k: getattr(request, k) for k in PARAMETERS if getattr(request, k) is not None},
            input_tokens=result.input_tokens, output_tokens=result.output_tokens, ttft_ms=result.ttft_ms,
            latency_ms=result.e2e_ms, cost_usd=_cost(target.endpoint, result) if result.ok else None,
            error_code=result.error.code if result.error else "", error_message=result.error.message if result.error else "",
            passed=evaluation.passed if evaluation else None, score=evaluation.score if evaluation else None,
            evaluation=evaluation.detail if evaluation else {}, evaluation_error=evaluation.error if evaluation else "",
            quality=quality,
        )  # fmt: skip
    except IntegrityError:
        pass  # already stored by an earlier run of the same task
    finally:
        connection.close()


def _cancel_requested(experiment_id: int) -> bool:
    try:
        return Experiment.objects.filter(pk=experiment_id, cancel_requested=True).exists()
    finally:
        connection.close()


async def _run(experiment: Experiment, todo: list[tuple[ExperimentTarget, Item, int]]) -> str:
    """'' when done, else why the run stopped."""
    stop = asyncio.Event()
    reason = {"text": ""}
    params = {k: experiment.parameters.get(k) for k in PARAMETERS if experiment.parameters.get(k) is not None}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        endpoints = {t.endpoint_id: t.endpoint for t, _, _ in todo}
        adapters = {pk: adapter_for(e.config()) for pk, e in endpoints.items()}
        breakers = {pk: breaker_for(e.config()) for pk, e in endpoints.items()}
        limiters = {pk: EndpointRateLimiter(e) for pk, e in endpoints.items()}
        slots = {pk: asyncio.Semaphore(e.max_concurrency or DEFAULT_CONCURRENCY) for pk, e in endpoints.items()}
        judge_cache: dict[tuple[int, str], object] = {}

        def judge_for(settings: dict):
            endpoint = ProviderEndpoint.objects.filter(pk=settings.get("judge_endpoint"), team=experiment.team).first()
            if endpoint is None:
                return None
            key = (endpoint.pk, settings.get("judge_model", ""))
            if key not in judge_cache:
                judge_cache[key] = make_judge(adapter_for(endpoint.config()), session, settings.get("judge_model", ""))
            return judge_cache[key]

        async def one(target: ExperimentTarget, item: Item, repetition: int) -> None:
            async with slots[target.endpoint_id]:
                if stop.is_set():
                    return
                request = GenerationRequest(model=target.model, messages=item.messages, **params)
                result = await generate_with_retry(
                    adapters[target.endpoint_id], session, request, policy=RetryPolicy(),
                    breaker=breakers[target.endpoint_id], limiter=limiters[target.endpoint_id],
                )  # fmt: skip
                if result.error is not None and result.error.kind == ErrorKind.AUTH:
                    reason["text"] = (
                        f"{target.endpoint} refused the API key ({result.error.code}): {result.error.message}"
                    )
                    stop.set()
                    return
                evaluation = None
                case = item.test_case
                if result.ok and case is not None:
                    if case.evaluator in JUDGED_KINDS:
                        judge = await sync_to_async(judge_for)(case.evaluator_settings)
                        if judge is None:
                            evaluation = Evaluation.undecided("judge_endpoint: no such endpoint in the team")
                        else:
                            evaluation = await evaluate_with_judge(
                                result.text, case.expected_output, case.evaluator_settings, judge, question=case.prompt
                            )
                    else:
                        evaluation = evaluate(
                            case.evaluator, result.text, expected=case.expected_output, settings=case.evaluator_settings
                        )
                await sync_to_async(_store)(experiment, target, item, repetition, request, result, evaluation)

        async def watch_cancel() -> None:
            while not stop.is_set():
                if await sync_to_async(_cancel_requested)(experiment.pk):
                    reason["text"] = "cancelled"
                    stop.set()
                await asyncio.sleep(0.5)

        watcher = asyncio.create_task(watch_cancel())
        try:
            await asyncio.gather(*(one(*job) for job in todo))
        finally:
            stop.set()
            watcher.cancel()
    return reason["text"]


def run_experiment(experiment_id: int) -> str:
    """Run what is missing of an experiment; safe to run again."""
    experiment = Experiment.objects.select_related("team").get(pk=experiment_id)
    if experiment.status not in (Experiment.Status.PENDING, Experiment.Status.RUNNING):
        return experiment.status
    Experiment.objects.filter(pk=experiment.pk).update(
        status=Experiment.Status.RUNNING, started_at=experiment.started_at or timezone.now(), error=""
    )
    targets = list(experiment.targets.select_related("endpoint"))
    done = set(Response.objects.filter(experiment=experiment).values_list("target_id", "item_key", "repetition"))
    todo = [
        (target, item, rep)
        for target in targets
        for item in experiment_items(experiment)
        for rep in range(experiment.responses_per_item)
        if (target.pk, item.key, rep) not in done
    ]
    try:
        stopped = asyncio.run(_run(experiment, todo)) if todo else ""
    except Exception as exc:  # recorded on the experiment; the queue sees a finished task
        stopped = f"{type(exc).__name__}: {exc}"
    status = {"": Experiment.Status.COMPLETED, "cancelled": Experiment.Status.CANCELLED}.get(
        stopped, Experiment.Status.FAILED
    )
    Experiment.objects.filter(pk=experiment.pk).update(
        status=status, error="" if status != Experiment.Status.FAILED else stopped[:2000], finished_at=timezone.now()
    )
    return status
