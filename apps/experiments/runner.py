"""Runs an experiment in the worker: every (target, item, repetition) through the endpoint's
adapter with the retry layer, the endpoint's token bucket and its circuit breaker; each response
is stored and evaluated the moment it arrives, under a unique key, so a rerun after a crash
repeats nothing. A refused key (401/403) stops the run and says so.

`Answerer` (ask one target one item with given parameters, then evaluate the answer) and
`response_fields` (what a Response row holds) are shared with the parameter sweeps of
apps.batches, which run the same requests once per parameter combination.
"""

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
from asgiref.sync import sync_to_async
from django.db import IntegrityError, connection
from django.utils import timezone

from apps.experiments.evaluators import JUDGED_KINDS, Evaluation, evaluate, evaluate_with_judge, make_judge
from apps.experiments.models import Experiment, ExperimentTarget, Response, TestCase
from apps.experiments.textmetrics import text_quality
from apps.providers.budget import BudgetWatch, budget_events
from apps.providers.engine.adapters import adapter_for
from apps.providers.engine.retry import RetryPolicy, breaker_for, generate_with_retry
from apps.providers.engine.types import ErrorKind, GenerationRequest, GenerationResult
from apps.providers.models import ProviderEndpoint
from apps.providers.ratelimit import EndpointRateLimiter

DEFAULT_CONCURRENCY = 4
PARAMETERS = ("temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty", "seed")
# Sent as set on the experiment (fixed in a parameter sweep), recorded on each response with the parameters.
REQUEST_OPTIONS = ("top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos", "stop", "response_format")


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


def cost_usd(endpoint: ProviderEndpoint, result: GenerationResult) -> float | None:
    """Input tokens × input price + output tokens × output price (per 1M); None without prices."""
    if endpoint.price_input_per_1m_usd is None and endpoint.price_output_per_1m_usd is None:
        return None
    return ((result.input_tokens or 0) * (endpoint.price_input_per_1m_usd or 0.0)
            + (result.output_tokens or 0) * (endpoint.price_output_per_1m_usd or 0.0)) / 1_000_000  # fmt: skip


@dataclass
class Answer:
    """One request and what became of it."""

    target: ExperimentTarget
    item: Item
    request: GenerationRequest
    result: GenerationResult
    evaluation: Evaluation | None

    @property
    def refused_key(self) -> bool:
        return self.result.error is not None and self.result.error.kind == ErrorKind.AUTH


def response_fields(answer: Answer, *, repetition: int, combination: int = 0) -> dict[str, Any]:
    """The fields of the Response row of an answer, text-quality metrics included."""
    result, request, evaluation, item = answer.result, answer.request, answer.evaluation, answer.item
    return {
        "experiment_id": answer.target.experiment_id, "target": answer.target, "test_case": item.test_case,
        "item_key": item.key, "combination": combination, "repetition": repetition, "content": result.text,
        "parameters": {k: getattr(request, k) for k in PARAMETERS if getattr(request, k) is not None}
        | {k: getattr(request, k) for k in REQUEST_OPTIONS if getattr(request, k) not in (None, False)},
        "input_tokens": result.input_tokens, "output_tokens": result.output_tokens, "ttft_ms": result.ttft_ms,
        "latency_ms": result.e2e_ms, "cost_usd": cost_usd(answer.target.endpoint, result) if result.ok else None,
        "error_code": result.error.code if result.error else "",
        "error_message": result.error.message if result.error else "",
        "passed": evaluation.passed if evaluation else None, "score": evaluation.score if evaluation else None,
        "evaluation": evaluation.detail if evaluation else {}, "evaluation_error": evaluation.error if evaluation else "",
        "quality": text_quality(result.text, prompt=item.messages[-1]["content"]) if result.ok else {},
        "is_simulated": answer.target.endpoint.is_simulated,
    }  # fmt: skip


class Answerer:
    """Asks targets of one team's experiment, inside one aiohttp session: per endpoint an adapter,
    the circuit breaker, the shared token bucket and a concurrency limit (the endpoint's
    max_concurrency, else `default_concurrency`); the answer is evaluated when the item is a test case."""

    def __init__(self, session: aiohttp.ClientSession, team_id: int, endpoints: list[ProviderEndpoint], *,
                 default_concurrency: int = DEFAULT_CONCURRENCY):  # fmt: skip
        self.session, self.team_id = session, team_id
        self.adapters = {e.pk: adapter_for(e.config()) for e in endpoints}
        self.breakers = {e.pk: breaker_for(e.config()) for e in endpoints}
        self.limiters = {e.pk: EndpointRateLimiter(e) for e in endpoints}
        self.slots = {e.pk: asyncio.Semaphore(e.max_concurrency or default_concurrency) for e in endpoints}
        self._judges: dict[tuple[int, str], Any] = {}

    async def answer(
        self, target: ExperimentTarget, item: Item, parameters: dict[str, Any], stop: asyncio.Event | None = None
    ) -> Answer | None:
        """The answer, or None when `stop` was set while waiting for the endpoint (nothing sent)."""
        async with self.slots[target.endpoint_id]:
            if stop is not None and stop.is_set():
                return None
            request = GenerationRequest(model=target.model, messages=item.messages, **parameters)
            result = await generate_with_retry(
                self.adapters[target.endpoint_id], self.session, request, policy=RetryPolicy(),
                breaker=self.breakers[target.endpoint_id], limiter=self.limiters[target.endpoint_id],
            )  # fmt: skip
        evaluation = await self._evaluate(item, result) if result.ok and item.test_case is not None else None
        return Answer(target, item, request, result, evaluation)

    async def _evaluate(self, item: Item, result: GenerationResult) -> Evaluation:
        case = item.test_case
        if case.evaluator not in JUDGED_KINDS:
            return evaluate(
                case.evaluator, result.text, expected=case.expected_output, settings=case.evaluator_settings
            )
        judge = await sync_to_async(self._judge_for)(case.evaluator_settings)
        if judge is None:
            return Evaluation.undecided("judge_endpoint: no such endpoint in the team")
        return await evaluate_with_judge(
            result.text, case.expected_output, case.evaluator_settings, judge, question=case.prompt
        )

    def _judge_for(self, settings: dict):
        try:
            endpoint = ProviderEndpoint.objects.filter(pk=settings.get("judge_endpoint"), team_id=self.team_id).first()
        finally:
            connection.close()  # a pool thread's connection
        if endpoint is None:
            return None
        key = (endpoint.pk, settings.get("judge_model", ""))
        if key not in self._judges:
            self._judges[key] = make_judge(
                adapter_for(endpoint.config()), self.session, settings.get("judge_model", "")
            )
        return self._judges[key]


def refused_key_reason(answer: Answer) -> str:
    error = answer.result.error
    return f"{answer.target.endpoint} refused the API key ({error.code}): {error.message}"


def _store(answer: Answer, repetition: int) -> None:
    """One response with its evaluation and text metrics; a duplicate (a rerun) is ignored."""
    try:
        Response.objects.create(**response_fields(answer, repetition=repetition))
    except IntegrityError:
        pass  # already stored by an earlier run of the same task
    finally:
        connection.close()


def _budget_refresh(watch: BudgetWatch) -> None:
    try:
        watch.refresh()
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
    params = {
        k: experiment.parameters.get(k)
        for k in (*PARAMETERS, *REQUEST_OPTIONS)
        if experiment.parameters.get(k) is not None
    }
    # A hard monthly budget stops the run, as a cancel does, once metered spend reaches it (simulated targets
    # meter nothing): spend re-read every BUDGET_REFRESH_S, each answer's cost added as it arrives.
    watch = BudgetWatch(experiment.team_id, metered=any(not t.endpoint.is_simulated for t, _, _ in todo))
    if watch.metered:
        await sync_to_async(_budget_refresh)(watch)
        if watch.reached:
            return watch.reason
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        answerer = Answerer(session, experiment.team_id, list({t.endpoint_id: t.endpoint for t, _, _ in todo}.values()))

        async def one(target: ExperimentTarget, item: Item, repetition: int) -> None:
            answer = await answerer.answer(target, item, params, stop)
            if answer is None:
                return
            if answer.refused_key:
                reason["text"] = refused_key_reason(answer)
                stop.set()
                return
            if answer.result.ok and not target.endpoint.is_simulated:
                # counted as it arrives (no request is sent after the one that reaches the budget), then stored
                watch.add(cost_usd(target.endpoint, answer.result))
                if watch.reached and not reason["text"]:
                    reason["text"] = watch.reason
                    stop.set()
            await sync_to_async(_store)(answer, repetition)

        async def watch_cancel() -> None:
            while not stop.is_set():
                if await sync_to_async(_cancel_requested)(experiment.pk):
                    reason["text"] = reason["text"] or "cancelled"
                    stop.set()
                elif watch.due():
                    await sync_to_async(_budget_refresh)(watch)
                    if watch.reached and not reason["text"]:
                        reason["text"] = watch.reason
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
    """Run what is missing of an experiment; safe to run again. Parameter sweeps run elsewhere."""
    experiment = Experiment.objects.select_related("team").get(pk=experiment_id)
    if experiment.kind != Experiment.Kind.SINGLE or experiment.status not in (
        Experiment.Status.PENDING, Experiment.Status.RUNNING,
    ):  # fmt: skip
        return experiment.status
    # Forms and the API refuse it; an experiment with nothing to ask must not end "completed".
    if experiment.responses_per_item < 1:
        Experiment.objects.filter(pk=experiment.pk).update(
            status=Experiment.Status.FAILED, error="Nothing to ask: responses per item must be at least 1.",
            finished_at=timezone.now(),
        )  # fmt: skip
        return Experiment.Status.FAILED
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
    if any(not t.endpoint.is_simulated for t in targets):
        budget_events(experiment.team_id)  # 80% / 100% of the month's budget, after each run
    return status
