"""Every request sent to a provider endpoint shows in /metrics: llmbench_provider_calls_total by
endpoint name and outcome (ok, or the kind of error the adapter classified), and
llmbench_provider_call_duration_seconds by endpoint. The calls go over real HTTP to `manage.py
mockllm`'s server in a thread, through the adapters every run kind uses, and through one experiment
run end to end. Endpoint names are unique per test: the counters belong to the process."""

import asyncio
import socket
import uuid

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from apps.experiments.runner import run_experiment
from apps.experiments.services import experiment_create
from apps.providers.engine.adapters import adapter_for
from apps.providers.engine.types import GenerationRequest
from apps.providers.mockllm import MockProfile, make_app
from apps.providers.models import ProviderEndpoint
from tests.threaded import running_in_thread

pytestmark = pytest.mark.django_db(transaction=True)

QUICK = {"ttft_ms": 1, "itl_ms": 0, "output_tokens": 3}


def provider_metrics(client, endpoint_name: str) -> tuple[dict[str, float], float]:
    """From /metrics: the calls of `endpoint_name` by outcome (outcomes never seen left out: "ok" is
    there from the first call, at 0 for an endpoint that always fails), and how many calls were timed."""
    text = client.get("/metrics").content.decode()
    calls, timed = {}, 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("endpoint") != endpoint_name:
                continue
            if sample.name == "llmbench_provider_calls_total" and sample.value:
                calls[sample.labels["outcome"]] = sample.value
            elif sample.name == "llmbench_provider_call_duration_seconds_count":
                timed = sample.value
    return calls, timed


def mock_servers(*profiles: MockProfile):
    """mockllm apps (one per profile) on free ports in one background loop; yields their base URLs."""

    async def start():
        runners = []
        for profile in profiles:
            runner = web.AppRunner(make_app(profile), handler_cancellation=True, shutdown_timeout=0.2)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            runners.append(runner)
        return runners

    async def stop(runners):
        for runner in runners:
            await runner.cleanup()

    return running_in_thread(start, stop)


def url(runner) -> str:
    return f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def send(endpoint: ProviderEndpoint, times: int) -> list:
    """`times` requests through the endpoint's adapter, as the engine sends them (errors are results)."""

    async def go():
        adapter = adapter_for(endpoint.config())
        request = GenerationRequest(model="mock", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        async with aiohttp.ClientSession() as session:
            return [await adapter.generate(session, request) for _ in range(times)]

    return asyncio.run(go())


def endpoint(team, base_url: str, **fields) -> ProviderEndpoint:
    name = f"ep-{uuid.uuid4().hex[:8]}"
    return ProviderEndpoint.objects.create(team=team, name=name, kind="openai_compatible", base_url=base_url, **fields)


def test_calls_are_counted_per_endpoint_with_errors_by_kind(team, client):
    with mock_servers(
        MockProfile(**QUICK),
        MockProfile(**QUICK, error_rate=1.0, error_status=429, retry_after_s=1),
        MockProfile(**QUICK, error_rate=1.0, error_status=503),
        MockProfile(**QUICK, error_rate=1.0, error_status=401),
        MockProfile(ttft_ms=1, itl_ms=5, output_tokens=50, cut_rate=1.0),
        MockProfile(ttft_ms=3000, itl_ms=0, output_tokens=3),
    ) as (ok, limited, failing, refused, cut, slow):
        targets = {
            "ok": (endpoint(team, url(ok)), 3),
            "rate_limited": (endpoint(team, url(limited)), 2),
            "server": (endpoint(team, url(failing)), 2),
            "auth": (endpoint(team, url(refused)), 1),
            "connection": (endpoint(team, url(cut)), 2),
            "timeout": (endpoint(team, url(slow), read_timeout_s=0.2), 1),
        }
        for outcome, (target, times) in targets.items():
            results = send(target, times)
            assert [r.error.kind.value if r.error else "ok" for r in results] == [outcome] * times
    refused_connection = endpoint(team, f"http://127.0.0.1:{closed_port()}/v1")
    assert send(refused_connection, 2)[0].error.kind.value == "connection"
    targets["connection refused"] = (refused_connection, 2)

    for outcome, (target, times) in targets.items():
        calls, timed = provider_metrics(client, target.name)
        expected_outcome = "connection" if outcome == "connection refused" else outcome
        assert calls == {expected_outcome: times}, target.name
        assert timed == times


def test_the_calls_of_an_experiment_run_are_counted(team, member, client):
    with mock_servers(MockProfile(**QUICK)) as (server,):
        target = endpoint(team, url(server))
        experiment = experiment_create(team=team, user=member, name="m", targets=[(target, "mock")], prompt="Say hi",
                                       responses_per_item=4, parameters={"max_tokens": 3})  # fmt: skip
        assert run_experiment(experiment.pk) == "completed"
    assert provider_metrics(client, target.name) == ({"ok": 4}, 4)


def test_a_retried_request_counts_every_attempt(team, member, client):
    """The experiment retries a 503 (max 3 attempts): each attempt was a request sent."""
    with mock_servers(MockProfile(**QUICK, error_rate=1.0, error_status=503)) as (server,):
        target = endpoint(team, url(server))
        experiment = experiment_create(team=team, user=member, name="m", targets=[(target, "mock")], prompt="Say hi",
                                       responses_per_item=1, parameters={"max_tokens": 3})  # fmt: skip
        run_experiment(experiment.pk)
    calls, timed = provider_metrics(client, target.name)
    assert calls == {"server": 3} and timed == 3


def test_simulated_endpoints_are_counted_like_real_ones(team, member, client):
    sim = ProviderEndpoint.objects.create(team=team, name=f"sim-{uuid.uuid4().hex[:8]}", kind="sim")
    experiment = experiment_create(team=team, user=member, name="s", targets=[(sim, "sim-small")], prompt="Hi",
                                   responses_per_item=2, parameters={"max_tokens": 5})  # fmt: skip
    assert run_experiment(experiment.pk) == "completed"
    assert provider_metrics(client, sim.name) == ({"ok": 2}, 2)
