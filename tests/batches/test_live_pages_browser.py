"""The live pages' scripts in Chromium: a finished job moves from the dashboard's "Running jobs" to its
"Latest" list without a reload; a finished load sweep's tiles keep its final figures and show no Cancel
button; a parameter sweep's targets are picked, not typed."""

import threading

import pytest
from playwright.sync_api import expect

from apps.accounts.models import Membership
from apps.batches.models import Batch
from apps.batches.runner import run_sweep
from apps.batches.services import batch_start, sweep_create
from tests.batches.helpers import make_batch, run_until_done, sim_endpoint
from tests.browser.conftest import asgi_server, browser, log_in  # noqa: F401 (fixtures)
from tests.factories import HardwareProfileFactory, MembershipFactory, ModelVariantFactory
from tests.threaded import closing_connection

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def signed_in(browser, asgi_server, role=Membership.Role.MEMBER):  # noqa: F811
    membership = MembershipFactory(role=role, team__name="Alpha", team__slug="alpha")
    context = browser.new_context(base_url=asgi_server, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, membership.user.username)
    return membership, context, page


def test_a_finished_batch_moves_from_running_jobs_to_latest(browser, asgi_server, monkeypatch):  # noqa: F811
    """Running, the job is on the tile; finished, it leaves the tile and tops "Latest parameter sweeps"."""
    monkeypatch.setattr("apps.batches.services.job_submit", lambda **kwargs: None)  # the test is the worker
    membership, context, page = signed_in(browser, asgi_server, Membership.Role.VIEWER)
    endpoint = sim_endpoint(membership.team, base_url="sim://local?ttft_ms=200&itl_ms=1&jitter=0")
    batch = make_batch(membership.team, endpoint=endpoint, name="moving sweep", repetitions=1, concurrency=2)
    starter = threading.Thread(
        target=closing_connection(batch_start), kwargs={"batch": batch}
    )  # async_to_sync beside Playwright
    starter.start()
    starter.join()
    page.goto("/")
    running = page.locator(f'#running-jobs li[data-job="batch-{batch.pk}"]')
    expect(running).to_have_count(1)
    expect(page.locator(f'#latest-batches li[data-job="batch-{batch.pk}"] .badge')).to_have_text("pending")
    expect(page.locator("#running-jobs")).to_have_attribute("data-live", "1")
    page.evaluate("window.notReloaded = true")
    worker = threading.Thread(target=run_until_done, args=[batch.pk])
    worker.start()
    worker.join(timeout=60)
    expect(running).to_have_count(0)
    expect(page.locator("#running-jobs li.empty")).to_have_text("Nothing running.")
    latest = page.locator(f'#latest-batches li[data-job="batch-{batch.pk}"]')
    expect(latest.locator(".badge")).to_have_text("completed")
    expect(page.locator("#latest-batches li").first).to_have_attribute("data-job", f"batch-{batch.pk}")
    assert page.evaluate("window.notReloaded") is True
    context.close()


def test_a_finished_load_sweep_keeps_its_final_figures(browser, asgi_server):  # noqa: F811
    """After the script has drawn the state, the tiles hold the last step's figures, not 0 / 0 or dashes,
    no step reads "pending" and there is no Cancel button."""
    membership, context, page = signed_in(browser, asgi_server)
    team = membership.team
    sweep = sweep_create(team=team, user=None, name="finished sweep", endpoint=sim_endpoint(team), model="sim-small",
                         variant=ModelVariantFactory(team=team), hardware=HardwareProfileFactory(team=team),
                         levels=[1, 4], step_request_count=8, prompt_tokens=20, output_tokens=16)  # fmt: skip
    worker = threading.Thread(
        target=closing_connection(run_sweep), args=[sweep.pk]
    )  # its own event loop, beside Playwright's
    worker.start()
    worker.join(timeout=60)
    page.goto(f"/batches/load/{sweep.pk}/")
    page.wait_for_function("() => document.body.dataset.sweepStatus === 'completed'")
    expect(page.locator("#sweep-status")).to_have_text("completed")
    expect(page.locator("#live-done")).to_have_text("8")
    expect(page.locator("#live-caption")).to_have_text("Final figures of step 2, the last step that ran.")
    assert page.locator("#live-tps").text_content() not in ("–", "0")
    expect(page.locator("#cancel-form")).to_be_hidden()
    expect(page.locator("#steps-body tr[data-status='completed']")).to_have_count(2)
    expect(page.locator("#steps-body")).not_to_contain_text("pending")
    expect(page.locator(".badge.simulated").first).to_be_visible()
    context.close()


def test_targets_are_picked_from_the_teams_endpoints(browser, asgi_server):  # noqa: F811
    """The form offers "endpoint · model" pairs; the estimate appears once one is picked."""
    membership, context, page = signed_in(browser, asgi_server)
    sim_endpoint(membership.team, name="Simulator", model_names=["sim-small", "sim-large"])
    page.goto("/batches/new/")
    page.select_option("#id_target_pairs", label="Simulator · sim-large (simulated)")
    page.fill("#id_name", "picked")
    page.fill("#id_prompt", "Explain caching.")
    page.fill("#id_temperature", "0.2, 0.8")
    page.fill("#id_top_p", "")
    page.fill("#id_max_tokens", "")
    page.fill("#id_responses_per_item", "1")
    expect(page.locator("#estimate-requests")).to_have_text("2")
    page.click("button:has-text('Create'):not(:has-text('start'))")
    page.wait_for_url("**/batches/*/")
    target = Batch.objects.get().experiment.targets.get()
    assert (target.endpoint.name, target.model) == ("Simulator", "sim-large")
    expect(page.locator("#batch-status")).to_have_text("not started")
    context.close()
