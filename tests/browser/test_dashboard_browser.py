"""A person opens the dashboard and watches a parameter sweep's progress move over the websocket
while the worker runs it, without reloading the page."""

import threading

import pytest
from playwright.sync_api import expect

from apps.accounts.models import Membership
from apps.batches.services import batch_start
from tests.batches.helpers import make_batch, run_until_done, sim_endpoint
from tests.browser.conftest import log_in
from tests.factories import MembershipFactory
from tests.threaded import closing_connection

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_dashboard_shows_a_running_batch_live(browser, asgi_server, monkeypatch):
    monkeypatch.setattr("apps.batches.services.job_submit", lambda **kwargs: None)  # the test is the worker
    membership = MembershipFactory(role=Membership.Role.VIEWER, team__name="Alpha", team__slug="alpha")
    endpoint = sim_endpoint(membership.team, base_url="sim://local?ttft_ms=300&itl_ms=1&jitter=0")
    batch = make_batch(membership.team, endpoint=endpoint, name="dashboard sweep", repetitions=2, concurrency=1)
    # Queued: 12 results, one at a time (about 4 s). In a thread: its group message goes through
    # async_to_sync, which cannot run beside Playwright's event loop.
    starter = threading.Thread(target=closing_connection(batch_start), kwargs={"batch": batch})
    starter.start()
    starter.join()
    context = browser.new_context(base_url=asgi_server)
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, membership.user.username)

    page.goto("/")
    job = page.locator(f'#running-jobs li[data-job="batch-{batch.pk}"]')
    expect(job).to_have_attribute("data-status", "pending")  # rendered by the server
    expect(job.locator(".job-text")).to_have_text("0 of 12 results")
    expect(page.locator("#running-jobs")).to_have_attribute("data-live", "1")
    page.evaluate("window.notReloaded = true")

    worker = threading.Thread(target=run_until_done, args=[batch.pk])
    worker.start()
    selector = f'#running-jobs li[data-job="batch-{batch.pk}"]'
    page.wait_for_function(
        "(s) => { const li = document.querySelector(s); return li && li.dataset.status === 'running' &&"
        " Number(li.dataset.completed) > 0 && Number(li.dataset.completed) < Number(li.dataset.total); }",
        arg=selector,
    )
    # One read of the item, so a message arriving meanwhile cannot mix two states.
    seen = job.evaluate(
        "li => ({completed: Number(li.dataset.completed), text: li.querySelector('.job-text').textContent,"
        " value: li.querySelector('progress').value})"
    )
    assert 0 < seen["completed"] < 12
    assert seen["text"] == f"{seen['completed']} of 12 results"
    assert seen["value"] == pytest.approx(100 * seen["completed"] / 12, abs=0.1)
    worker.join(timeout=60)
    # Finished: off "Running jobs", on top of "Latest parameter sweeps" with its final status.
    expect(job).to_have_count(0)
    latest = page.locator(f'#latest-batches li[data-job="batch-{batch.pk}"]')
    expect(latest.locator(".badge")).to_have_text("completed")
    assert page.evaluate("window.notReloaded") is True  # the same page all along
    latest.locator("a").click()
    page.wait_for_url(f"**/batches/{batch.pk}/")
    context.close()
