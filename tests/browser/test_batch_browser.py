"""A person creates a parameter sweep in the browser (seeing its size first), watches the heatmap
fill in over the websocket while the worker runs it, and opens the analysis."""

import threading

import pytest
from playwright.sync_api import expect

from apps.accounts.models import Membership
from apps.batches.models import Batch
from apps.experiments.models import Response
from apps.providers.models import ProviderEndpoint
from tests.batches.helpers import run_until_done
from tests.browser.conftest import log_in
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_live_parameter_sweep(browser, asgi_server):
    membership = MembershipFactory(role=Membership.Role.MEMBER, team__name="Alpha", team__slug="alpha")
    ProviderEndpoint.objects.create(team=membership.team, name="Simulator", kind="sim",
                                    base_url="sim://local?ttft_ms=300&itl_ms=1&jitter=0")  # fmt: skip
    context = browser.new_context(base_url=asgi_server)
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, membership.user.username)

    page.goto("/batches/new/")
    page.fill("#id_name", "browser sweep")
    page.select_option("#id_target_pairs", label="Simulator · sim-small (simulated)")  # picked, not typed
    page.fill("#id_prompt", "Explain why caching speeds up model serving.")
    page.fill("#id_temperature", "0.2:1.4:0.4")
    page.fill("#id_top_p", "0.5, 0.75, 1.0")
    page.fill("#id_max_tokens", "")
    page.fill("#id_responses_per_item", "2")
    page.fill("#id_concurrency", "2")
    expect(page.locator("#estimate-combinations")).to_have_text("12")  # shown before anything starts
    expect(page.locator("#estimate-requests")).to_have_text("24")
    page.click("button:has-text('Create and start')")
    page.wait_for_url("**/batches/*/")
    batch = Batch.objects.get()
    expect(page.locator("#batch-status")).to_have_text("queued")
    expect(page.locator("#heatmap")).to_have_attribute("data-cells", "0")

    worker = threading.Thread(target=run_until_done, args=[batch.pk])
    worker.start()
    expect(page.locator("#batch-status")).to_have_text("running")
    # The heatmap fills in while the batch runs: some cells, not all of them yet.
    page.wait_for_function(
        "() => document.body.dataset.batchStatus === 'running' && Number(document.getElementById('heatmap').dataset.results) > 0"
    )
    partial = int(page.locator("#heatmap").get_attribute("data-results"))
    assert 0 < partial < 24
    worker.join(timeout=60)
    expect(page.locator("#batch-status")).to_have_text("completed")
    expect(page.locator("#heatmap")).to_have_attribute("data-cells", "12")
    expect(page.locator("#heatmap")).to_have_attribute("data-results", "24")
    expect(page.locator("#progress-text")).to_contain_text("24 of 24 results (100%)")
    expect(page.locator("#latest li")).to_have_count(10)
    assert page.locator("#heatmap svg").count() == 1  # ECharts drew it
    assert Response.objects.filter(experiment_id=batch.pk).count() == 24

    # Another figure and axis: the map is fetched again and still holds every result.
    page.select_option("#heatmap-metric", "coherence")
    page.select_option("#heatmap-y", "")
    expect(page.locator("#heatmap")).to_have_attribute("data-cells", "4")
    expect(page.locator("#heatmap")).to_have_attribute("data-results", "24")

    page.click("#analysis-link")
    page.wait_for_url("**/analysis/")
    expect(page.locator("#optimal-table")).to_contain_text("Temperature")
    expect(page.locator("#insights li").first).to_contain_text("n = ")
    expect(page.locator("#effects-table")).to_contain_text("top_p")
    context.close()
