"""In Chromium: the experiment page's key columns (TTFT ms, Cost USD) are on screen at 1366×900, the page
never scrolls sideways at phone width, and the target picker works without JavaScript."""

import os
from pathlib import Path

import pytest

from apps.experiments.models import Experiment, Response, TestCase
from apps.experiments.services import experiment_create
from apps.providers.models import ProviderEndpoint
from tests.browser.conftest import browser, log_in  # noqa: F401  (the browser fixture)
from tests.factories import MembershipFactory

SHOTS = Path(os.environ.get("LLMBENCH_SHOTS", "/tmp/shots"))
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCHEMA = {"type": "object", "required": ["name", "age"], "properties": {"age": {"type": "integer"}}}


@pytest.fixture
def experiment(transactional_db):
    membership = MembershipFactory(role="member")
    user, team = membership.user, membership.team
    user.set_password("pass-word-123")
    user.save()
    sim = ProviderEndpoint.objects.create(team=team, name="Simulator", kind="sim")
    long = ProviderEndpoint.objects.create(team=team, name="A rather long endpoint name for a vLLM server",
                                           kind="openai_compatible", base_url="http://x/v1", model_names=["m"])  # fmt: skip
    case = TestCase.objects.create(team=team, title="Person as JSON with a name and an integer age", prompt="p",
                                   evaluator="json_schema", evaluator_settings={"schema": SCHEMA}, status="approved")  # fmt: skip
    experiment = experiment_create(team=team, user=user, name="wide", test_cases=[case],
                                   targets=[(sim, "sim-small"), (sim, "sim-large"), (long, "meta-llama/Llama-3.1-70B")],
                                   parameters={"temperature": 0.7, "max_tokens": 200}, responses_per_item=3)  # fmt: skip
    Experiment.objects.filter(pk=experiment.pk).update(status="completed")
    for target in experiment.targets.all():
        for repetition in range(3):
            Response.objects.create(
                experiment=experiment, target=target, test_case=case, item_key=f"tc:{case.pk}", repetition=repetition,
                content='{"name": "Ann", "age": "forty"} ' * 20, passed=repetition > 0, score=float(repetition > 0),
                ttft_ms=1234.5, latency_ms=98765.4, cost_usd=0.001234, input_tokens=1200, output_tokens=3400,
                evaluation={"source": "embedded", "errors": [{"path": "$.age", "message": "'forty' is not of type "
                            "'integer'", "keyword": "type", "schema_path": "properties/age/type"}], "error_count": 1},
                quality={"overall": 72.6352}, is_simulated=target.endpoint.is_simulated,
            )  # fmt: skip
    return user, experiment


def _open(browser, live_server, user, width, height):  # noqa: F811
    context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, user.username)
    return context, page


def test_ttft_and_cost_are_inside_the_viewport_at_1366(browser, live_server, experiment):  # noqa: F811
    """At 1366×900 the TTFT ms and Cost USD headers of the per-target table are fully on screen."""
    user, exp = experiment
    context, page = _open(browser, live_server, user, 1366, 900)
    page.goto(f"/experiments/{exp.pk}/")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "experiment-1366.png"), full_page=True)
    frame = page.locator("#summary-table").locator("xpath=..").bounding_box()  # the scrolling .table-wrap
    for text in ("TTFT ms", "Cost USD", "Pass rate"):
        box = page.locator("#summary-table th", has_text=text).first.bounding_box()
        # Inside the window and inside the table's scrolling frame (not hidden behind its right edge).
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= min(1366, frame["x"] + frame["width"])
    assert not page.locator("#summary-table th.secondary").first.is_visible()  # collapsed until asked
    page.locator(".columns-toggle input").check()
    assert page.locator("#summary-table th.secondary").first.is_visible()
    context.close()


def test_the_experiment_page_does_not_scroll_sideways_on_a_phone(browser, live_server, experiment):  # noqa: F811
    """At 390 px wide tables scroll inside their frame; the page itself does not."""
    user, exp = experiment
    context, page = _open(browser, live_server, user, 390, 844)
    page.goto(f"/experiments/{exp.pk}/")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
    context.close()


def test_targets_are_picked_without_javascript(browser, live_server, experiment):  # noqa: F811
    """With JavaScript off, a member picks two endpoint · model pairs and the experiment is created."""
    user, _ = experiment
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False,
                                  viewport={"width": 1366, "height": 900})  # fmt: skip
    page = context.new_page()
    log_in(page, user.username)
    page.goto("/experiments/new/")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "experiment-new-1366.png"), full_page=True)
    page.fill("#id_name", "picked")
    page.fill("#id_prompt", "Explain caching")
    page.select_option(
        "#id_target_pairs", label=["Simulator · sim-small (simulated)", "Simulator · sim-large (simulated)"]
    )
    page.click("form.form button[type=submit]")
    page.wait_for_url(lambda url: "/new/" not in url)
    created = Experiment.objects.get(name="picked")
    assert sorted(created.targets.values_list("model", flat=True)) == ["sim-large", "sim-small"]
    context.close()
