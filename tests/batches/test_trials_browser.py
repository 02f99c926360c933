"""The sweep page's trials section in Chromium, on a laptop and on a phone: the table and a chart per figure
fit the screen (the page never scrolls sideways; the wide table scrolls in its own box)."""

import os

import pytest
from playwright.sync_api import expect

from apps.accounts.models import Membership
from tests.batches.test_trials import make_trial_sweep
from tests.browser.conftest import asgi_server, browser, log_in  # noqa: F401 (fixtures)
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("LLMBENCH_SCREENSHOTS", "")  # a directory to keep the screenshots in, when set


@pytest.mark.parametrize(("width", "height"), [(1366, 900), (390, 844)])
def test_the_trials_section_fits_the_screen(browser, asgi_server, width, height):  # noqa: F811
    membership = MembershipFactory(role=Membership.Role.VIEWER, team__name="Alpha", team__slug="alpha")
    sweep = make_trial_sweep(membership.team)
    context = browser.new_context(base_url=asgi_server, viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, membership.user.username)
    page.goto(f"/batches/load/{sweep.pk}/")
    expect(page.locator("#trials-table")).to_be_visible()
    charts = page.locator("#trial-charts figure svg")
    expect(charts).to_have_count(8)
    expect(page.locator('#trials-table tr[data-level="4.0"] td[data-figure="ttft_p50_ms"]')).to_contain_text(
        "0–161.8 (cut at 0)"
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for i in range(charts.count()):
        box = charts.nth(i).bounding_box()
        assert box["width"] > 200 and box["x"] >= 0 and box["x"] + box["width"] <= width
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"sweep-trials-{width}x{height}.png"), full_page=True)
    context.close()
