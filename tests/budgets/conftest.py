"""Shared pieces of the budget tests: a mockllm server in a thread, priced endpoints, a team's budget, and the
notifications sent (notify patched where the budget module calls it)."""

from datetime import timedelta

import pytest
from aiohttp import web

from apps.benchmarks.models import BenchmarkAnswer, BenchmarkItem, BenchmarkRun, BenchmarkTarget
from apps.experiments.models import Response
from apps.experiments.services import experiment_create
from apps.providers.budget import month_start_utc
from apps.providers.mockllm import MockProfile, make_app
from apps.providers.models import ProviderEndpoint
from tests.benchmarks.test_runner import make_suite
from tests.threaded import running_in_thread


def set_budget(team, budget: float | None, *, hard: bool = True):
    team.monthly_budget_usd, team.monthly_budget_hard_limit = budget, hard
    team.save(update_fields=["monthly_budget_usd", "monthly_budget_hard_limit"])
    return team


def priced_endpoint(team, url: str = "http://127.0.0.1:9/v1", name: str = "priced", *, per_output_token: float = 0.1,
                    **fields) -> ProviderEndpoint:  # fmt: skip
    """A real (non-simulated) endpoint whose every output token costs `per_output_token` dollars."""
    fields.setdefault("model_names", ["mock"])
    return ProviderEndpoint.objects.create(
        team=team, name=name, kind="openai_compatible", base_url=url,
        price_input_per_1m_usd=0.0, price_output_per_1m_usd=per_output_token * 1_000_000, **fields,
    )  # fmt: skip


def sim_endpoint(team, name: str = "sim") -> ProviderEndpoint:
    return ProviderEndpoint.objects.create(team=team, name=name, kind="sim", price_input_per_1m_usd=1.0,
                                           price_output_per_1m_usd=2.0)  # fmt: skip


def responses(team, costs, *, endpoint=None, simulated=False, last_month=False):
    """One experiment of `team` with a stored response per cost."""
    endpoint = endpoint or priced_endpoint(team, name=f"e{Response.objects.count()}-{len(costs)}")
    experiment = experiment_create(team=team, user=None, name="x", targets=[(endpoint, "mock")], prompt="p")
    target = experiment.targets.get()
    for i, cost in enumerate(costs):
        Response.objects.create(experiment=experiment, target=target, item_key="prompt", repetition=i, cost_usd=cost,
                                is_simulated=simulated)  # fmt: skip
    if last_month:
        Response.objects.filter(experiment=experiment).update(created_at=month_start_utc() - timedelta(hours=1))
    return experiment


def answers(team, costs, *, endpoint):
    """One benchmark run of `team` on `endpoint` with a stored answer per cost."""
    suite = make_suite(team, name=f"suite-{BenchmarkRun.objects.count()}")
    run = BenchmarkRun.objects.create(team=team, name="b", suite=suite)
    target = BenchmarkTarget.objects.create(run=run, endpoint=endpoint, model="mock")
    items = list(BenchmarkItem.objects.filter(suite=suite, split="test").order_by("index"))
    for item, cost in zip(items, costs, strict=False):
        BenchmarkAnswer.objects.create(run=run, target=target, item=item, cost_usd=cost, correct=True)
    return run


@pytest.fixture
def mockllm():
    """`manage.py mockllm`'s server on a free local port, answering 10 output tokens at once: its /v1 URL."""

    async def start():
        runner = web.AppRunner(make_app(MockProfile(ttft_ms=0.0, itl_ms=1.0, output_tokens=10)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    async def stop(runner):
        await runner.cleanup()

    with running_in_thread(start, stop) as runner:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


@pytest.fixture
def notified(monkeypatch):
    """Every notification the budget sends, as the keyword arguments of notify()."""
    calls: list[dict] = []
    monkeypatch.setattr("apps.notifications.services.notify", lambda **kwargs: calls.append(kwargs))
    return calls


@pytest.fixture
def submitted(monkeypatch):
    """The run tasks the services hand to the fair queue, instead of queueing them: (func, *args)."""
    calls: list[tuple] = []
    for module in ("experiments", "batches", "benchmarks", "capacity"):
        monkeypatch.setattr(f"apps.{module}.services.job_submit",
                            lambda **kw: calls.append((kw["func"], *kw["args"])))  # fmt: skip
    return calls
