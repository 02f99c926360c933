"""At 1366×900 the ranked column and the key figures of every wide table are on screen (issue 11),
and at phone width no page scrolls sideways as a whole (wide tables scroll inside their frame)."""

import os
from pathlib import Path

import pytest

from apps.experiments.models import Experiment
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("LLMBENCH_SHOTS", "/tmp/shots"))


HEADER_EDGES = """([texts, width]) => Object.fromEntries(texts.map((text) => {
  const th = [...document.querySelectorAll("th")].find((cell) => cell.innerText.trim().startsWith(text));
  if (!th || !th.offsetParent) return [text, null];
  const cell = th.getBoundingClientRect();
  const frame = (th.closest(".table-wrap") || document.body).getBoundingClientRect();
  // what a person sees: inside the window and not clipped by the table's own scrolling frame
  return [text, [cell.left, cell.right, Math.max(0, frame.left), Math.min(width, frame.right)]];
}))"""


def _header_edges(page, headers: list[str], width: int) -> dict[str, list[float] | None]:
    """Each visible header's left and right edge, and the left and right edge of what shows of its table."""
    return page.evaluate(HEADER_EDGES, [headers, width])


PAGES = [
    # (name, a callable giving the path, headers that must be on screen)
    ("leaderboard", lambda: "/scores/", ["Average %", "Coverage"]),
    ("quantization", lambda: "/scores/quantization/", ["Mean points lost"]),
    ("runs", lambda: "/performance/runs/", ["Output tok/s"]),
    ("experiment", lambda: f"/experiments/{Experiment.objects.filter(kind='single').first().pk}/", ["TTFT ms", "Cost USD"]),
    ("providers", lambda: "/providers/", ["Last test", "Test connection"]),
]  # fmt: skip


def _open(browser, live_server, width: int, height: int):
    context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, "demo", "demo-password")
    SHOTS.mkdir(parents=True, exist_ok=True)
    return context, page


def test_key_columns_are_inside_the_viewport_at_1366(browser, live_server, demo):
    """The named columns of each wide table are fully inside a 1366 px wide window without scrolling."""
    context, page = _open(browser, live_server, 1366, 900)
    problems = {}
    for name, path, headers in PAGES:
        page.goto(path())
        page.wait_for_selector("table th")
        page.screenshot(path=str(SHOTS / f"wide-{name}-1366.png"), full_page=True)
        edges = _header_edges(page, headers, 1366)
        missing = [h for h, e in edges.items() if e is None]
        outside = {h: e for h, e in edges.items() if e is not None and (e[0] < e[2] - 1 or e[1] > e[3] + 1)}
        if missing or outside:
            problems[name] = {"missing": missing, "outside": outside}
    context.close()
    assert not problems, f"key columns not on screen at 1366 px: {problems}"


def test_no_page_scrolls_sideways_on_a_phone(browser, live_server, demo):
    """At 390 px the page itself never scrolls sideways; a wide table scrolls inside its own frame."""
    context, page = _open(browser, live_server, 390, 844)
    overflowing = {}
    for name, path, _headers in PAGES:
        page.goto(path())
        page.wait_for_selector("table th")
        page.screenshot(path=str(SHOTS / f"wide-{name}-phone.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 1:
            overflowing[name] = overflow
    context.close()
    assert not overflowing, f"pages wider than a 390 px phone (px too wide): {overflowing}"
