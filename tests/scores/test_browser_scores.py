"""The leaderboard and the quantization view in Chromium at 1366×900 with the demo scores: the key
columns are on screen, the "include simulated" switch works and simulated rows carry the badge."""

import os
from pathlib import Path

import pytest

from apps.accounts.models import Membership
from apps.scores.demo import demo_scores_load
from tests.browser import conftest as browser_conftest
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

browser = browser_conftest.browser  # the module-scoped Chromium of the browser tests

KEY_COLUMNS = {
    "/scores/": ("#leaderboard-table", ["Model", "Average %", "Coverage"]),
    "/scores/quantization/": ("#quantization-table", ["Model", "Mean points lost"]),
}


@pytest.fixture
def demo_member():
    """A member of a team holding the (simulated) demo scores and showing simulated results by default."""
    membership = MembershipFactory(role=Membership.Role.MEMBER, team__show_simulated=True)
    demo_scores_load(team=membership.team)
    return membership.user


@pytest.fixture
def wide_page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.mark.parametrize("path", list(KEY_COLUMNS))
def test_the_key_columns_are_inside_the_viewport_at_1366(wide_page, demo_member, path):
    """The named headers of the leaderboard and the quantization table are wholly inside a 1366 px window."""
    browser_conftest.log_in(wide_page, demo_member.username)
    wide_page.goto(path)
    table, headers = KEY_COLUMNS[path]
    wide_page.wait_for_selector(f"{table} tbody tr")
    for text in headers:
        box = wide_page.locator(f"{table} th", has_text=text).first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1366, (text, box)
    badge = wide_page.locator(f"{table} tbody tr").first.locator(".badge.simulated")
    assert badge.inner_text() == "simulated"
    if shots := os.environ.get("LLMBENCH_SHOTS"):  # screenshots for the README, when asked for
        Path(shots).mkdir(parents=True, exist_ok=True)
        wide_page.screenshot(path=f"{shots}/scores-{table.strip('#')}-1366.png")


def test_the_switch_leaves_simulated_scores_out(wide_page, demo_member):
    """Unticking "Include simulated results" empties the demo leaderboard and says why."""
    browser_conftest.log_in(wide_page, demo_member.username)
    wide_page.goto("/scores/")
    switch = wide_page.locator("input[type=checkbox][name=include_simulated]")
    assert switch.is_checked()
    switch.uncheck()
    wide_page.wait_for_selector("text=Simulated scores (generated demo data) are left out")
    assert wide_page.locator("#leaderboard-table").count() == 0
    assert "include_simulated=0" in wide_page.url


@pytest.mark.parametrize("path", list(KEY_COLUMNS))
def test_a_phone_never_scrolls_the_page_sideways(browser, live_server, demo_member, path):
    """At 390 px the wide tables scroll inside their frame; the page itself does not."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(20_000)
    browser_conftest.log_in(page, demo_member.username)
    page.goto(path)
    page.wait_for_selector(f"{KEY_COLUMNS[path][0]} tbody tr")
    if shots := os.environ.get("LLMBENCH_SHOTS"):
        page.screenshot(path=f"{shots}/scores-{KEY_COLUMNS[path][0].strip('#')}-phone.png", full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    context.close()
    assert overflow <= 1
