"""A person starts a load sweep against mockllm, watches the live page update over the websocket,
and opens the stored runs."""

import threading

import pytest
from aiohttp import web
from playwright.sync_api import expect

from apps.accounts.models import Membership
from apps.batches.models import LoadSweep
from apps.batches.runner import run_sweep
from apps.providers.mockllm import MockProfile, make_app
from apps.providers.models import ProviderEndpoint
from tests.browser.conftest import (
    CHROMIUM_ARGS,  # noqa: F401
    log_in,
)
from tests.factories import HardwareProfileFactory, MembershipFactory, ModelVariantFactory
from tests.threaded import closing_connection, running_in_thread

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def mockllm():
    async def start():
        runner = web.AppRunner(make_app(MockProfile(ttft_ms=20, itl_ms=5, output_tokens=32)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner

    async def stop(runner):
        await runner.cleanup()

    with running_in_thread(start, stop) as runner:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"


def test_a_live_load_sweep(browser, asgi_server, mockllm):
    membership = MembershipFactory(role=Membership.Role.MEMBER, team__name="Alpha", team__slug="alpha")
    team = membership.team
    ProviderEndpoint.objects.create(team=team, name="mockllm", kind="openai_compatible", base_url=f"{mockllm}/v1",
                                    model_names=["mock"])  # fmt: skip
    ModelVariantFactory(team=team, model_name="org/mock", quantization="BF16")
    HardwareProfileFactory(team=team, name="loopback")

    context = browser.new_context(base_url=asgi_server)
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, membership.user.username)
    page.goto("/batches/load/new/")
    page.fill("#id_name", "browser sweep")
    page.select_option("#id_target", label="mockllm · mock")  # picked, not typed
    page.select_option("#id_variant", label="org/mock · BF16")
    page.select_option("#id_hardware", label="loopback")
    page.fill("#id_levels", "2,4")
    page.fill("#id_step_duration_s", "2")
    page.fill("#id_output_tokens", "32")
    page.click("button:has-text('Create and start')")
    page.wait_for_url("**/batches/load/*/")
    expect(page.locator("#sweep-status")).to_have_text("pending")

    sweep = LoadSweep.objects.get()
    worker = threading.Thread(target=closing_connection(run_sweep), args=[sweep.pk])  # the django-q worker's part
    worker.start()
    expect(page.locator("#sweep-status")).to_have_text("running")
    expect(page.locator("#live-done")).not_to_have_text("0")  # live figures arrive while it runs
    worker.join(timeout=30)
    expect(page.locator("#sweep-status")).to_have_text("completed")
    links = page.locator("#steps-body a")
    expect(links).to_have_count(2)

    links.first.click()
    page.wait_for_url("**/performance/runs/*/")
    expect(page.locator("#summary-table")).to_contain_text("TTFT")
    context.close()
