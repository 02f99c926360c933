"""A person builds a multi-turn workload in the editor, watches its preview, saves it, runs a load sweep with it
against the simulator and opens the per-turn figures of a step's run (issue 13). Screenshots of the editor and of
the run's per-turn section at 1366×900 and at phone width go to /tmp/shots (LLMBENCH_SHOTS)."""

import os
import re
import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.accounts.models import Membership
from apps.batches.models import LoadSweep
from apps.batches.runner import run_sweep
from apps.batches.services import sweep_create
from apps.workloads.models import Workload
from apps.workloads.services import workload_create
from tests.batches.helpers import sim_endpoint
from tests.browser.conftest import log_in
from tests.factories import HardwareProfileFactory, MembershipFactory, ModelVariantFactory
from tests.threaded import closing_connection

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("LLMBENCH_SHOTS", "/tmp/shots"))
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
# A simulator that takes a measurable time to the first token, so the per-turn TTFT figures are not zero.
SIM_URL = "sim://local?ttft_ms=30&itl_ms=1&jitter=0"
# Console messages that say nothing about the page: none are known today; add one here with the reason.
HARMLESS = ()
TTFT_FIGURE = re.compile(r"^\d[\d,]*\.\d$")  # |num:1 of a latency in ms, e.g. "31.2" or "1,031.0"


def _watched(browser, base_url: str, viewport: dict, username: str):
    """A logged-in page and the console errors and uncaught exceptions seen on it."""
    context = browser.new_context(base_url=base_url, viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []

    def on_console(message):
        if message.type == "error" and not any(known in message.text for known in HARMLESS):
            errors.append(f"{page.url}: console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: uncaught: {error}"))
    log_in(page, username)
    return context, page, errors


# The elements that reach past the window's right edge, named tag#id.class (at most ten): the outermost ones, and
# positioned ones (an absolute element escapes the clipping of a scrolling frame that is not its containing block).
TOO_WIDE = """() => {
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (el.classList.length ? "." + [...el.classList].join(".") : "");
  const wide = (el) => el.getBoundingClientRect().right > window.innerWidth + 1;
  const escapes = (el) => ["absolute", "fixed"].includes(getComputedStyle(el).position);
  return [...document.body.querySelectorAll("*")]
    .filter((el) => !el.parentElement.closest("svg"))  // a chart's drawing is clipped by its <svg>
    .filter((el) => wide(el) && (escapes(el) || el.parentElement === document.body || !wide(el.parentElement)))
    .slice(0, 10).map((el) => `${name(el)} (right edge ${Math.round(el.getBoundingClientRect().right)} px)`);
}"""


def _sideways(page) -> dict:
    """How many px the page as a whole is wider than the window (0: wide tables scroll inside their frame), and
    the elements that make it so."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return {"overflow_px": overflow, "too_wide": page.evaluate(TOO_WIDE) if overflow > 1 else []}


def _wait_for_histograms(page) -> None:
    """Both preview histograms drawn: ECharts put its <svg> into each chart of the preview."""
    charts = page.locator("#preview [data-chart='histogram']")
    expect(charts).to_have_count(2)
    for i in range(2):
        expect(charts.nth(i).locator("svg").first).to_be_attached()


def _team():
    """A member of team Alpha, its simulated endpoint (model sim-small), a model variant and a hardware profile."""
    membership = MembershipFactory(role=Membership.Role.MEMBER, team__name="Alpha", team__slug="alpha")
    team = membership.team
    endpoint = sim_endpoint(team, name="Simulator", base_url=SIM_URL, model_names=["sim-small"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    return membership, endpoint, ModelVariantFactory(team=team), HardwareProfileFactory(team=team, name="loopback")


def _run_in_a_worker(sweep_pk: int) -> None:
    """The django-q worker's part, in a thread with its own event loop beside Playwright's."""
    worker = threading.Thread(target=closing_connection(run_sweep), args=[sweep_pk])
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the sweep did not finish within 60 s"


def test_a_multi_turn_workload_from_the_editor_to_the_per_turn_figures(browser, asgi_server):
    """Editor → preview (3 turns, histograms) → save (version 1) → load sweep on the simulator → completed →
    the step's run lists turns 1, 2 and 3 with their TTFT; no console error on the way."""
    membership, _endpoint, variant, hardware = _team()
    team = membership.team
    context, page, errors = _watched(browser, asgi_server, DESKTOP, membership.user.username)

    # The editor: a synthetic, three-turn workload with fixed lengths and no think time.
    page.goto("/workloads/new")
    page.fill("#id_name", "three turns")
    page.select_option("#id_source", "synthetic")
    page.select_option("#id_input_dist", "fixed")
    page.fill("#id_input_value", "200")
    page.select_option("#id_output_dist", "fixed")
    page.fill("#id_output_value", "32")
    expect(page.locator("#id_turns_dist")).to_be_hidden()  # the session settings show once multi-turn is ticked
    page.check("#id_multi_turn")
    page.select_option("#id_turns_dist", "fixed")
    expect(page.locator("#id_turns_min")).to_be_hidden()  # only the fixed kind's parameter shows
    page.fill("#id_turns_value", "3")
    page.select_option("#id_think_dist", "fixed")
    page.fill("#id_think_value", "0")
    page.locator("#id_think_value").blur()  # "change" fires on leaving the field; the preview follows it

    preview = page.locator("#preview")
    expect(preview.locator("#preview-turns")).to_have_text("3.0 / 3")  # mean / max turns per session
    # A turn's prompt carries the earlier turns (200 new tokens each, plus the 32-token answers): it grows.
    input_words = preview.locator("#preview-facts dt:text-is('Input tokens') + dd").inner_text()
    figures = re.fullmatch(r"mean ([\d,]+), median ([\d,]+), p99 ([\d,]+)", input_words.strip())
    assert figures, input_words
    median_in, p99_in = (int(n.replace(",", "")) for n in figures.groups()[1:])
    assert 200 < median_in < p99_in and p99_in > 2 * 200, input_words
    expect(preview.locator("#preview-facts dt:text-is('Output tokens') + dd")).to_have_text(
        "mean 32, median 32, p99 32"
    )
    expect(preview.locator("#preview-problems")).to_have_count(0)
    requests = int(preview.locator("#preview-requests").inner_text().replace(",", ""))
    sessions = int(preview.locator("#preview-sessions").inner_text().replace(",", ""))
    assert sessions > 0 and requests == 3 * sessions  # every session of the sample has its three turns
    _wait_for_histograms(page)
    page.screenshot(path=str(SHOTS / "workload-editor-1366.png"), full_page=True)

    page.click("#workload-save")
    page.wait_for_url(re.compile(r"/workloads/\d+/$"))
    workload = Workload.objects.get(team=team)
    expect(page.locator("h1")).to_contain_text("three turns")
    expect(page.locator("h1")).to_contain_text("v1")
    expect(page.locator("#version-table tbody tr")).to_have_count(1)
    expect(page.locator("#version-table tbody td").first).to_have_text("v1")
    expect(page.locator("#workload-summary")).to_contain_text("always 3 turns")

    # A load sweep with it on the simulator: concurrency 2, 12 requests.
    page.goto("/batches/load/new/")
    page.fill("#id_name", "multi-turn sweep")
    page.select_option("#id_target", label="Simulator · sim-small (simulated)")
    page.select_option("#id_workload", label="three turns")
    page.select_option("#id_variant", str(variant.pk))
    page.select_option("#id_hardware", str(hardware.pk))
    page.fill("#id_levels", "2")
    page.fill("#id_step_duration_s", "")
    page.fill("#id_step_request_count", "12")
    page.click("button:has-text('Create and start')")
    page.wait_for_url(re.compile(r"/batches/load/\d+/$"))
    sweep = LoadSweep.objects.get(team=team)
    assert sweep.workload_version.workload_id == workload.pk and sweep.workload_version.number == 1
    expect(page.locator("#sweep-workload")).to_contain_text("three turns, version 1")

    expect(page.locator("#sweep-status")).to_have_text("pending")
    _run_in_a_worker(sweep.pk)
    expect(page.locator("#sweep-status")).to_have_text("completed")  # over the websocket, no reload
    sweep.refresh_from_db()
    assert sweep.status == "completed", sweep.error
    links = page.locator("#steps-body a")
    expect(links).to_have_count(1)

    links.first.click()
    page.wait_for_url(re.compile(r"/performance/runs/\d+/$"))
    expect(page.locator("#workload-link")).to_have_text("three turns version 1")
    turn_table = page.locator("#turn-table")
    expect(turn_table).to_be_visible()
    expect(turn_table.locator("thead")).to_contain_text("TTFT p50")
    rows = turn_table.locator("tbody tr")
    expect(rows).to_have_count(3)
    for i in range(3):
        cells = rows.nth(i).locator("td")
        expect(cells.nth(0)).to_have_text(str(i + 1))  # turns are numbered from 1 on the page
        assert int(cells.nth(1).inner_text()) > 0  # requests of that turn
        ttft_p50 = cells.nth(3).inner_text()
        assert TTFT_FIGURE.match(ttft_p50) and float(ttft_p50.replace(",", "")) > 0, ttft_p50
    page.locator("#per-turn").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "run-per-turn-1366.png"), full_page=True)
    page.locator("#turn-table").screenshot(path=str(SHOTS / "run-turn-table-1366.png"))
    context.close()

    assert not errors, errors


def test_the_editor_and_the_per_turn_figures_fit_a_phone(browser, asgi_server):
    """At 390 px neither the editor with its preview nor the run page scrolls sideways as a whole; the per-turn
    table scrolls inside its own frame."""
    membership, endpoint, variant, hardware = _team()
    team = membership.team
    spec = {"source": "synthetic", "seed": 0, "input_tokens": {"dist": "fixed", "value": 200},
            "output_tokens": {"dist": "fixed", "value": 32},
            "sessions": {"turns": {"dist": "fixed", "value": 3}, "think_time_s": {"dist": "fixed", "value": 0}}}  # fmt: skip
    workload = workload_create(team=team, user=membership.user, name="three turns", spec=spec)
    sweep = sweep_create(team=team, user=membership.user, name="multi-turn sweep", endpoint=endpoint,
                         model="sim-small", variant=variant, hardware=hardware, levels=[2], step_request_count=12,
                         prompt_tokens=200, output_tokens=32, workload_version=workload.latest)  # fmt: skip
    _run_in_a_worker(sweep.pk)
    run = sweep.steps.get().run
    assert run is not None, sweep.error
    context, page, errors = _watched(browser, asgi_server, PHONE, membership.user.username)

    page.goto(f"/workloads/{workload.pk}/edit")
    expect(page.locator("#preview #preview-turns")).to_have_text("3.0 / 3")  # the preview asks on load
    _wait_for_histograms(page)
    page.screenshot(path=str(SHOTS / "workload-editor-phone.png"), full_page=True)
    editor = _sideways(page)

    page.goto(f"/performance/runs/{run.pk}/")
    expect(page.locator("#turn-table tbody tr")).to_have_count(3)
    page.locator("#per-turn").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "run-per-turn-phone.png"), full_page=True)
    page.locator("#turn-table").screenshot(path=str(SHOTS / "run-turn-table-phone.png"))
    run_page = _sideways(page)
    frame = page.evaluate(
        """() => { const table = document.getElementById("turn-table"), wrap = table.closest(".table-wrap");
        return {table_px: table.scrollWidth, frame_px: wrap.clientWidth, overflow_x: getComputedStyle(wrap).overflowX}; }"""
    )
    context.close()

    assert not errors, errors
    too_wide = {name: wide for name, wide in (("editor", editor), ("run", run_page)) if wide["overflow_px"] > 1}
    assert not too_wide, f"pages wider than a 390 px phone: {too_wide}"
    assert frame["table_px"] > frame["frame_px"] and frame["overflow_x"] in ("auto", "scroll"), frame
