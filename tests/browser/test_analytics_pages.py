"""Every analytics page at 1366×900 with the demo's data reads as words (issue 11): no raw field name in the
visible text, the key columns on screen without scrolling, interactive charts at a readable size.
One screenshot per page goes to /tmp/shots/analytics-<view>.png (LLMBENCH_SHOTS overrides the folder)."""

import os
import re
from pathlib import Path

import pytest

from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("LLMBENCH_SHOTS", "/tmp/shots"))
WIDTH, HEIGHT = 1366, 900
RAW = re.compile(r"_ci_low|_ci_high|histogram_|p_holm|optimal_values|pass_rate_pct|\bTrue\b|\bFalse\b|\bNone\b|\bNaN\b|"
                 r"\bgroups\b|(?<![\d.])[1-9]\d*\.\d{4,}")  # fmt: skip

# view → (query string, headers of its first table that must be fully inside the window)
PAGES = {
    "quality-trends": ("", ["Day", "Mean overall quality (points)", "95% interval"]),
    "quality-breakdown": ("", ["Model", "Responses", "Pass rate", "Mean overall quality (points)"]),
    "model-comparison": ("", ["Target (endpoint · model)", "Mean overall quality (points)", "Pass rate",
                              "Mean latency (ms)", "Cost per response (USD)"]),
    "parameter-optimization": ("", ["Parameter", "Best value", "Confidence over the runner-up", "Recommended range"]),
    "parameter-correlation": ("", ["Parameter", "Figure", "Spearman ρ", "p-value", "Verdict"]),
    "parameter-insights": ("", ["Kind", "Finding"]),
    "regressions": ("", ["Subject", "Verdict", "Latest", "Change", "p-value, Holm-adjusted"]),
    "leaderboard": ("", ["Model variant", "Rank", "Composite (0–100)", "Output (tokens/s)",
                         "Cost per 1M output tokens (USD)", "On the Pareto front"]),
}  # fmt: skip


def test_every_analytics_page_reads_well_at_1366(browser, live_server, demo):
    """No raw field names, the key headers on screen, every chart drawn at least 300 px high; a screenshot each."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, "demo", "demo-password")
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: dict[str, dict] = {}
    for slug, (query, headers) in PAGES.items():
        page.goto(f"/analytics/{slug}/{query}")
        page.wait_for_selector("table th")
        charts = page.locator("[data-analytics-chart]")
        for i in range(charts.count()):  # ECharts draws an <svg> into each container once it has run
            charts.nth(i).locator("svg").first.wait_for()
        page.screenshot(path=str(SHOTS / f"analytics-{slug}.png"), full_page=True)
        found: dict = {}
        raw = sorted(set(RAW.findall(page.evaluate("document.body.innerText"))))
        if raw:
            found["raw"] = raw
        first = page.locator("section.analytics-section table").first
        edges = first.evaluate(
            "(table, wanted) => Object.fromEntries(wanted.map(text => {"
            "  const th = [...table.querySelectorAll('thead th')].find(h => h.innerText.trim() === text);"
            "  if (!th) return [text, null]; const box = th.getBoundingClientRect(); return [text, [box.left, box.right]];"
            "}))",
            headers,
        )
        missing = [h for h, e in edges.items() if e is None]
        outside = {h: e for h, e in edges.items() if e is not None and (e[0] < 0 or e[1] > WIDTH)}
        if missing or outside:
            found["headers"] = {"missing": missing, "outside": outside}
        small = [box["height"] for box in (charts.nth(i).bounding_box() for i in range(charts.count()))
                 if box["height"] < 300]  # fmt: skip
        if small:
            found["small charts"] = small
        if slug in ("quality-trends", "quality-breakdown", "model-comparison", "leaderboard") and not charts.count():
            found["charts"] = "none drawn"
        if found:
            problems[slug] = found
    # Secondary columns (counts, other metrics) are hidden until "Show all columns" is ticked.
    page.goto("/analytics/quality-breakdown/")
    section = page.locator("#section-groups")
    hidden = section.locator("thead th.secondary").first
    assert not hidden.is_visible()
    section.locator(".columns-toggle input").check()
    assert hidden.is_visible()
    context.close()
    assert not errors, f"script errors: {errors}"
    assert not problems, f"analytics pages that do not read well at {WIDTH} px: {problems}"


def test_chart_labels_are_readable(browser, live_server, demo):
    """The charts' axis labels and names are at least 12 px (ECharts draws them as SVG text)."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, "demo", "demo-password")
    sizes = {}
    for slug in ("quality-trends", "quality-breakdown", "leaderboard"):
        page.goto(f"/analytics/{slug}/")
        page.locator("[data-analytics-chart] svg text").first.wait_for()
        sizes[slug] = page.evaluate(
            "() => [...document.querySelectorAll('[data-analytics-chart] svg text')]"
            ".map(t => parseFloat(getComputedStyle(t).fontSize)).filter(s => s > 0)"
        )
    context.close()
    for slug, found in sizes.items():
        assert found and min(found) >= 12, (slug, sorted(set(found)))
