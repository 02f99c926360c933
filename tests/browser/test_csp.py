"""Every main page works under the enforced Content-Security-Policy in a real browser: no
`securitypolicyviolation` event, no console error, the live pages' websockets connect, htmx still
swaps, and the behaviours that were inline handlers (auto-submit, confirm, compare) still work."""

import pytest
from playwright.sync_api import expect

from apps.batches.models import Batch, LoadSweep
from apps.experiments.models import Experiment
from apps.hardware.models import PerformanceRun
from apps.scores.models import ModelVariant
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs before any page script, in every document of the context: hands each violation to Python.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => window.reportCspViolation({
  directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample,
  source: e.sourceFile, line: e.lineNumber, page: location.pathname,
}));
"""
# Resolves after the page's pending tasks (violation events are dispatched as tasks) have run.
SETTLED = "() => new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)))"


@pytest.fixture
def watched(browser, asgi_server, demo):
    """A logged-in demo page on the real ASGI server (websockets included) and what went wrong on it."""
    context = browser.new_context(base_url=asgi_server, viewport={"width": 1366, "height": 900})
    problems: dict[str, list] = {"violations": [], "console": [], "pageerror": []}
    context.expose_function("reportCspViolation", lambda violation: problems["violations"].append(violation))
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("console", lambda m: m.type == "error" and problems["console"].append(f"{page.url}: {m.text}"))
    page.on("pageerror", lambda e: problems["pageerror"].append(f"{page.url}: {e}"))
    log_in(page, "demo", "demo-password")
    yield page, problems
    context.close()


def _visit(page, path: str, ready: str | None = None) -> None:
    """Open `path`, wait for `ready` (a selector showing the page's script ran) and for queued events."""
    response = page.goto(path)
    assert response.status == 200, (path, response.status)
    assert "script-src 'self'" in response.headers["content-security-policy"], path  # enforced, not report-only
    if ready:
        page.locator(ready).first.wait_for()
    page.evaluate(SETTLED)


def test_the_main_pages_run_under_the_policy_without_violations_or_errors(watched):
    page, problems = watched
    runs = list(PerformanceRun.objects.order_by("pk").values_list("pk", flat=True)[:2])
    experiment = Experiment.objects.order_by("pk").first()
    batch = Batch.objects.order_by("pk").first()
    sweep = LoadSweep.objects.order_by("pk").first()
    variant = ModelVariant.objects.order_by("pk").first()

    # The dashboard's websocket opens (connect-src 'self' covers ws: to the same host).
    _visit(page, "/", "#running-jobs[data-live='1']")
    pages = [
        ("/scores/", ".chart svg"),
        ("/scores/quantization/", None),
        ("/scores/import/", None),
        (f"/scores/variants/{variant.pk}/", None),
        ("/performance/", None),
        ("/performance/runs/", "#runs-table"),
        (f"/performance/runs/{runs[0]}/", ".chart svg"),
        (f"/performance/compare/?runs={runs[0]},{runs[1]}", ".chart svg"),
        ("/performance/predict/", None),
        ("/providers/", None),
        ("/experiments/", None),
        (f"/experiments/{experiment.pk}/", None),
        ("/experiments/testcases/", None),
        ("/batches/", None),
        ("/batches/new/", None),
        (f"/batches/{batch.pk}/analysis/", None),
        ("/analytics/", None),
        ("/analytics/leaderboard/", "[data-analytics-chart] svg"),
        ("/analytics/quality-trends/", "[data-analytics-chart] svg"),
        ("/analytics/parameter-correlation/", None),
        ("/account/tokens/", None),
        ("/admin/", "#content"),
        ("/admin/scores/modelvariant/", "#changelist"),
        (f"/admin/scores/modelvariant/{variant.pk}/change/", "form"),
        # Swagger UI: its init script (inline, with the nonce) ran and drew the schema it fetched.
        ("/api/docs/", ".swagger-ui .opblock"),
    ]
    if sweep is not None:
        pages.append((f"/batches/load/{sweep.pk}/", None))
    for path, ready in pages:
        _visit(page, path, ready)

    # The batch page's live part: the websocket's first message ("state") makes the page fetch the
    # heatmap, so that fetch shows the socket connected and connect-src let both through.
    with page.expect_response(lambda r: "heatmap" in r.url and r.status == 200):
        _visit(page, f"/batches/{batch.pk}/", "#heatmap")
    page.evaluate(SETTLED)

    assert not problems["violations"], problems["violations"]
    assert not problems["console"], problems["console"]
    assert not problems["pageerror"], problems["pageerror"]


def test_htmx_swaps_and_the_former_inline_handlers_work(watched):
    """htmx (allowEval off, indicator styles from app.css) swaps a filtered list in place; the compare
    button joins the ticked runs; a status select submits itself; a delete form asks first."""
    page, problems = watched
    _visit(page, "/performance/runs/", "#runs-table")
    page.evaluate("window.notReloaded = true")
    rows_before = page.locator("#runs-table tbody tr").count()
    # Filter by the first option of the first select: htmx fetches and swaps #results, pushing the URL.
    select = page.locator("form.filters select").first
    name = select.get_attribute("name")
    value = select.locator("option:not([value=''])").first.get_attribute("value")
    with page.expect_response(lambda r: "/performance/runs/" in r.url and r.request.headers.get("hx-request")):
        select.select_option(value)
    page.wait_for_url(f"**/performance/runs/?*{name}=*")
    assert page.evaluate("window.notReloaded") is True  # swapped in place, not a page load
    assert page.locator("#runs-table tbody tr").count() <= rows_before

    # Compare (was an onclick=): the ticked runs travel as runs=a,b, in the order of the table.
    _visit(page, "/performance/runs/", "#runs-table")
    boxes = page.locator("#compare-form input[name=run]")
    picked = [boxes.nth(0).get_attribute("value"), boxes.nth(1).get_attribute("value")]
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("#compare-form button:has-text('Compare selected')")
    page.wait_for_url(f"**/performance/compare/?*runs={picked[0]}%2C{picked[1]}*")
    page.locator(".chart svg").first.wait_for()

    # Auto-submit (was onchange=): choosing a status reloads the list filtered by it.
    _visit(page, "/experiments/testcases/")
    status = page.locator("select[name=status]")
    choice = status.locator("option:not([value=''])").first.get_attribute("value")
    status.select_option(choice)
    page.wait_for_url(f"**/experiments/testcases/?status={choice}")

    # Confirm (was onsubmit=): dismissing the question keeps the run.
    run = PerformanceRun.objects.order_by("pk").first()
    _visit(page, f"/performance/runs/{run.pk}/")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("form[data-confirm] button")
    page.evaluate(SETTLED)
    assert asked == ["Delete this run and its samples?"]
    assert PerformanceRun.objects.filter(pk=run.pk).exists()
    expect(page).to_have_url(f"{page.url.split('/performance/')[0]}/performance/runs/{run.pk}/")

    assert not problems["violations"], problems["violations"]
    assert not problems["console"], problems["console"]
    assert not problems["pageerror"], problems["pageerror"]
