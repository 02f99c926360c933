"""The decision pages in Chromium at a laptop's and a phone's width: the chart fits the window, no raw field name
is shown, and nothing makes the page wider than the screen. A screenshot each goes to /tmp/shots/decision-<view>-
<width>.png (LLMBENCH_SHOTS overrides the folder)."""

import os
import re
from pathlib import Path

import pytest

from tests.analytics.test_decision import Data
from tests.browser.conftest import CHROMIUM_ARGS, browser, log_in  # noqa: F401 (the browser fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("LLMBENCH_SHOTS", "/tmp/shots"))
RAW = re.compile(r"request_throughput_rps|output_tps|ttft_p95_ms|tpot_p50|\bTrue\b|\bFalse\b|\bNone\b")
QUERIES = {"curves": "?slo_ms=500", "pareto": "", "cost": ""}


@pytest.mark.parametrize(("width", "height"), [(1366, 900), (390, 844)])
def test_decision_pages_fit_a_laptop_and_a_phone(browser, live_server, team, viewer, width, height):  # noqa: F811
    Data(team)
    context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, viewer.username)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for kind, query in QUERIES.items():
        page.goto(f"/analytics/decision/{kind}/{query}")
        chart = page.locator(".decision-chart svg").first
        chart.wait_for()
        page.screenshot(path=str(SHOTS / f"decision-{kind}-{width}.png"), full_page=True)
        box = chart.bounding_box()
        assert box["width"] <= width and box["x"] >= 0, kind
        if kind != "cost":  # the cost chart is as tall as its few bars
            assert box["height"] >= 150, kind  # scaled down on a phone, still readable
        # The page itself never scrolls sideways (wide tables scroll inside their own wrapper).
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1, kind
        assert not RAW.findall(page.evaluate("document.body.innerText")), kind
        assert page.locator("table[id^=table-] tbody tr").count() >= 1, kind
    assert not errors
    context.close()
