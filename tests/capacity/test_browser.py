"""A person creates a capacity search from the form, opens its page and watches the probes fill in the chart and
table as they are judged (rows written to the database while the page is open), then the answer appear."""

import os

import pytest
from playwright.sync_api import expect

from apps.accounts.models import Membership
from apps.capacity.models import CapacitySearch, Status
from apps.providers.models import ProviderEndpoint
from tests.browser.conftest import asgi_server, browser, log_in  # noqa: F401
from tests.capacity.ui_helpers import add_probe, finish
from tests.factories import HardwareProfileFactory, MembershipFactory, ModelVariantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("CAPACITY_SCREENSHOTS", "/tmp")


def test_a_search_from_the_form_to_its_live_page(browser, asgi_server):  # noqa: F811
    membership = MembershipFactory(role=Membership.Role.MEMBER, team__name="Alpha", team__slug="alpha")
    team = membership.team
    ProviderEndpoint.objects.create(team=team, name="sim", kind="sim", model_names=["sim-small"])
    ModelVariantFactory(team=team, model_name="org/llama", quantization="BF16")
    HardwareProfileFactory(team=team, name="h100 box")

    context = browser.new_context(base_url=asgi_server, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    log_in(page, membership.user.username)
    page.goto("/capacity/")
    page.click("text=New capacity search")
    page.fill("#id_name", "llama on h100")
    page.select_option("#id_target", label="sim · sim-small (simulated)")
    page.select_option("#id_variant", label="org/llama · BF16")
    page.select_option("#id_hardware", label="h100 box")
    expect(page.locator("[data-slo-row]")).to_have_count(2)
    page.click("#add-objective")  # a third threshold, then take it away again
    expect(page.locator("[data-slo-row]")).to_have_count(3)
    page.locator("[data-slo-row]").nth(2).locator("[data-remove-row]").click()
    page.fill("#objective-max-0", "400")
    page.fill("#id_start_level", "50")
    page.fill("#id_max_level", "10")
    page.click("button:has-text('Create'):not(.primary)")
    expect(page.locator("#field-max_level .errors")).to_have_text("Must be at least the start level.")
    errors.clear()  # the browser logs the form's 400 answer
    page.fill("#id_start_level", "4")
    page.fill("#id_max_level", "64")
    page.click("button:has-text('Create'):not(.primary)")
    page.wait_for_url("**/capacity/*/")
    search = CapacitySearch.objects.get()
    assert search.slo["objectives"][0]["max_ms"] == 400 and len(search.slo["objectives"]) == 2
    expect(page.locator("#capacity-status")).to_have_text("waiting to start")
    expect(page.locator("#capacity-slo")).to_contain_text("p95 TTFT ≤ 400 ms, p95 TPOT ≤ 50 ms")

    # The worker's part, written straight to the database while the page stays open.
    CapacitySearch.objects.filter(pk=search.pk).update(status=Status.RUNNING, phase="ramp")
    expect(page.locator("#capacity-status")).to_have_text("searching")
    for index, (level, verdict, phase, ttft) in enumerate([
        (4, "pass", "ramp", 120.0), (8, "pass", "ramp", 180.0), (16, "pass", "ramp", 260.0),
        (32, "saturated", "ramp", 900.0), (24, "fail", "bisect", 520.0), (20, "undecided", "bisect", 410.0),
        (20, "undecided", "extend", 395.0), (18, "pass", "bisect", 330.0),
    ]):  # fmt: skip
        add_probe(search, index, level, verdict, phase=phase, ttft_p95_ms=ttft, trial=1 if phase == "extend" else 0,
                  saturation=["requests in flight kept growing (6 early, 40 late)"] if verdict == "saturated" else ())  # fmt: skip
        if index == 2:
            expect(page.locator("#probes-body tr")).to_have_count(3)  # filled in without a reload
            expect(page.locator("#latency-chart circle.point")).to_have_count(3)
    expect(page.locator("#probes-body tr")).to_have_count(8)
    expect(page.locator("#latency-chart circle.point")).to_have_count(8)
    expect(page.locator("#capacity-answer")).to_contain_text("So far the capacity lies between 18 and 20 req/s")
    finish(search, capacity=18, low=18, high=20, cost=0.42, undecided_levels=[20])
    expect(page.locator("#capacity-status")).to_have_text("found")
    expect(page.locator("#capacity-answer")).to_have_text(
        "Capacity 18 req/s [18, 20] at p95 TTFT ≤ 400 ms, p95 TPOT ≤ 50 ms, errors ≤ 1% — $0.42 per 1M output tokens"
    )
    expect(page.locator("#capacity-undecided")).to_contain_text("Probes at 20 req/s stayed undecided after 2 trials")
    expect(page.locator("#latency-chart .threshold")).to_have_count(1)
    expect(page.locator("#latency-chart .bracket")).to_have_count(1)
    page.screenshot(path=f"{SHOTS}/capacity-detail-1366.png", full_page=True)
    assert not errors, errors  # no CSP refusals or script errors

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
    page.screenshot(path=f"{SHOTS}/capacity-detail-390.png", full_page=True)
    for name, url in (
        ("form", "/capacity/new/"),
        ("list", "/capacity/"),
        ("compare", f"/capacity/compare/?a={search.pk}&b={search.pk}"),
    ):
        for width, height in ((390, 844), (1366, 900)):
            page.set_viewport_size({"width": width, "height": height})
            page.goto(url)
            assert page.evaluate("document.documentElement.scrollWidth") <= width, (name, width)
            page.screenshot(path=f"{SHOTS}/capacity-{name}-{width}.png", full_page=True)
    context.close()
