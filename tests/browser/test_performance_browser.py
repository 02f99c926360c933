"""A person uploads vLLM results in the browser, opens the run and compares two runs."""

import json

import pytest

from apps.accounts.models import Membership
from apps.hardware.models import PerformanceRun
from tests.browser.conftest import log_in
from tests.factories import HardwareProfileFactory, MembershipFactory
from tests.hardware.files import VllmRequest, vllm_failure, vllm_result

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def member():
    membership = MembershipFactory(role=Membership.Role.MEMBER, team__name="Alpha", team__slug="alpha")
    HardwareProfileFactory(team=membership.team, name="lab H100")
    return membership


def vllm_file(tmp_path, name: str, ttft: float) -> str:
    requests = [VllmRequest(ttft=ttft + i * 0.001, start=100.0 + i * 0.1) for i in range(30)] + [vllm_failure(103.5)]
    path = tmp_path / name
    path.write_text(json.dumps(vllm_result(requests, max_concurrency=8)))
    return str(path)


def upload(page, path: str) -> None:
    page.goto("/performance/upload/")
    page.set_input_files("#id_file", path)
    page.fill("#id_quantization", "BF16")
    page.select_option("#id_hardware", label="lab H100")
    page.click("button:has-text('Preview')")
    page.locator("#preview >> text=1 run(s)").wait_for()
    page.click("button:has-text('Upload')")
    page.wait_for_url("**/performance/runs/*/")


def test_upload_open_and_compare(page, member, tmp_path):
    log_in(page, member.user.username)
    upload(page, vllm_file(tmp_path, "fast.json", 0.090))
    summary = page.locator("#summary-table").inner_text()
    assert "TTFT" in summary and "31, 1 failed" in page.locator(".tiles").inner_text()
    page.wait_for_selector(".chart svg")
    first = PerformanceRun.objects.get()
    assert first.summary.metrics["ttft_ms"]["count"] == 30 and first.concurrency == 8

    upload(page, vllm_file(tmp_path, "slow.json", 0.140))
    page.goto("/performance/runs/")
    page.check(f"input[name=run][value='{first.pk}']")
    second = PerformanceRun.objects.exclude(pk=first.pk).get()
    page.check(f"input[name=run][value='{second.pk}']")
    page.click("button:has-text('Compare selected')")
    page.wait_for_url("**/performance/compare/**")
    verdicts = page.locator("#significance-table").inner_text()
    assert "TTFT" in verdicts and "significant" in verdicts
    page.wait_for_selector("[data-chart=radar] svg")

    page.goto("/performance/")
    assert "lab H100" in page.locator("#results").inner_text()
