"""A provider key never leaves its encrypted column: not in pages, API answers, the admin, logs,
task arguments, stored errors or exports, even when the server echoes it back."""

import logging

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from apps.batches.runner import run_sweep
from apps.batches.services import sweep_create, sweep_start
from apps.hardware.models import RequestSample
from apps.providers.models import ProviderEndpoint
from tests.factories import HardwareProfileFactory, ModelVariantFactory
from tests.providers.servers import MockLLMServer, Script
from tests.threaded import running_in_thread

CANARY = "sk-canary-0123456789-leak-check"


@pytest.mark.django_db(transaction=True)
def test_the_key_appears_nowhere(team, admin_user, client, caplog):
    caplog.set_level(logging.DEBUG)

    async def start():
        return await MockLLMServer(Script(status=500, echo_key=True, error_message="upstream broke")).start()

    async def stop(server):
        await server.close()

    with running_in_thread(start, stop) as server:
        endpoint = ProviderEndpoint(team=team, name="echo", kind="openai_compatible", base_url=f"{server.root}/v1")
        endpoint.set_api_key(CANARY)
        endpoint.save()
        sweep = sweep_create(
            team=team, user=admin_user, name="leak", endpoint=endpoint, model="gpt-test",
            variant=ModelVariantFactory(team=team), hardware=HardwareProfileFactory(team=team), mode="closed",
            levels=[2], step_request_count=4, output_tokens=4,
        )  # fmt: skip
        sweep_start(sweep=sweep)
        run_sweep(sweep.pk)
        assert server.requests and any(CANARY in str(r.headers) for r in server.requests)  # it was sent

    sweep.refresh_from_db()
    run = sweep.steps.get().run
    messages = list(RequestSample.objects.filter(run=run).values_list("error_message", flat=True))
    assert messages and all("upstream broke" in m for m in messages)
    stored = [*messages, sweep.error, str(list(OrmQ.objects.values_list("payload", flat=True))), caplog.text]
    assert not any(CANARY in text for text in stored)

    client.force_login(admin_user)
    pages = [
        reverse("providers:list"), reverse("providers:edit", args=[endpoint.pk]), reverse("batches:sweep", args=[sweep.pk]),
        reverse("hardware:run", args=[run.pk]), f"/admin/providers/providerendpoint/{endpoint.pk}/change/",
        "/api/v1/providers/endpoints", f"/api/v1/sweeps/{sweep.pk}", f"/api/v1/performance/runs/{run.pk}/samples",
    ]  # fmt: skip
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert CANARY.encode() not in response.content, url
    export = client.get(reverse("hardware:run-samples-csv", args=[run.pk]))
    assert CANARY.encode() not in b"".join(export.streaming_content)


@pytest.mark.django_db(transaction=True)
def test_a_parameter_sweep_stores_and_shows_no_key(team, admin_user, client, caplog, monkeypatch):
    from apps.batches.batch_runner import run_batch_chunk
    from apps.batches.services import batch_create
    from apps.batches.services import batch_start as start
    from apps.experiments.models import Response

    monkeypatch.setattr("apps.batches.services.job_submit", lambda **kwargs: None)
    caplog.set_level(logging.DEBUG)

    async def begin():
        return await MockLLMServer(Script(status=500, echo_key=True, error_message="upstream broke")).start()

    async def stop(server):
        await server.close()

    with running_in_thread(begin, stop) as server:
        endpoint = ProviderEndpoint(team=team, name="echo", kind="openai_compatible", base_url=f"{server.root}/v1")
        endpoint.set_api_key(CANARY)
        endpoint.save()
        batch = batch_create(team=team, user=admin_user, name="leak", targets=[(endpoint, "gpt-test")], prompt="hi",
                             parameter_ranges={"temperature": [0.1, 0.9]}, repetitions=1)  # fmt: skip
        start(batch=batch)
        run_batch_chunk(batch.pk)
        assert any(CANARY in str(r.headers) for r in server.requests)  # it was sent

    messages = list(Response.objects.filter(experiment_id=batch.pk).values_list("error_message", flat=True))
    assert len(messages) == 2 and all("upstream broke" in m for m in messages)
    batch.experiment.refresh_from_db()
    assert not any(CANARY in text for text in [*messages, batch.experiment.error, caplog.text])
    client.force_login(admin_user)
    for url in [reverse("batches:batch", args=[batch.pk]), reverse("batches:batch-combinations", args=[batch.pk]),
                reverse("batches:batch-analysis", args=[batch.pk]), f"/api/v1/batches/{batch.pk}",
                f"/api/v1/batches/{batch.pk}/results", f"/api/v1/batches/{batch.pk}/status",
                reverse("experiments:detail", args=[batch.pk])]:  # fmt: skip
        response = client.get(url)
        assert response.status_code == 200 and CANARY.encode() not in response.content, url
    export = client.get(reverse("experiments:export-csv", args=[batch.pk]))
    assert CANARY.encode() not in b"".join(export.streaming_content)
