"""A member imports a GSM8K-format and an MMLU-Pro-format file, runs each against two mockllm endpoints in known-answer
mode serving the same model at two quantizations (BF16 right on 90% of the items, AWQ on 80%, nested), watches the
progress arrive over the websocket to completion, reads the paired comparison on the run page and then in the
quantization view (McNemar), at 1366×900 and at phone width. Screenshots go to BENCHMARK_SCREENSHOTS
(/tmp/h6a-shots by default)."""

import os
import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect
from scipy.stats import binomtest

from apps.accounts.models import Membership
from apps.benchmarks.models import BenchmarkRun, BenchmarkSuite
from apps.benchmarks.services import run_item_indices
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant
from tests.benchmarks import files
from tests.benchmarks.test_runner import Mocks, expected, run_until_done, write_key
from tests.browser.conftest import log_in
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(os.environ.get("BENCHMARK_SCREENSHOTS", "/tmp/h6a-shots"))
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
ACCURACY = {"BF16": 0.9, "AWQ": 0.8}
GSM8K_ITEMS, MMLU_PRO_ITEMS = 60, 42
CATEGORIES = ("math", "law", "history")


def shoot(page, name: str) -> None:
    """A full-page screenshot at the current width; the page must not scroll sideways."""
    width = page.viewport_size["width"]
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{name} scrolls sideways at {width} px ({scroll} px)"
    page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)


def both_widths(page, name: str) -> None:
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        shoot(page, name)


def import_suite(page, name: str, test_files: list[tuple[str, bytes]], fewshot: list[tuple[str, bytes]] = ()) -> None:
    page.goto("/benchmarks/")
    page.click("text=Import a benchmark")
    page.fill("#id_name", name)
    page.set_input_files("#id_files", [{"name": n, "mimeType": "application/octet-stream", "buffer": b}
                                       for n, b in test_files])  # fmt: skip
    if fewshot:
        page.set_input_files("#id_fewshot_files", [{"name": n, "mimeType": "application/octet-stream", "buffer": b}
                                                   for n, b in fewshot])  # fmt: skip
    page.click("#import-form button.primary")
    page.wait_for_url("**/benchmarks/suites/*/")


def start_run(page, suite: BenchmarkSuite, endpoints: dict, variants: dict, *, pick_variants: bool) -> BenchmarkRun:
    """From the suite's page: the form with a target row per quantization, the estimate, then Create and start."""
    page.goto(f"/benchmarks/suites/{suite.pk}/")
    page.click("#new-run-link")
    page.wait_for_url("**/benchmarks/runs/new/*")
    page.fill("#id_concurrency", "2")
    for row, quantization in enumerate(("BF16", "AWQ")):
        if row:
            page.click("#add-target")
        target = page.locator("[data-target-select]").nth(row)
        variant = page.locator("[data-variant-select]").nth(row)
        target.select_option(value=f"{endpoints[quantization].pk}:mock")
        if pick_variants:
            variant.select_option(value=str(variants[quantization].pk))
        else:  # linked by the first run: the page preselects it
            expect(variant).to_have_value(str(variants[quantization].pk))
    expect(page.locator("#estimate-requests")).to_have_text(f"{2 * suite.item_count:,}")
    page.click("#create-and-start")
    page.wait_for_url("**/benchmarks/runs/*/")
    return BenchmarkRun.objects.filter(suite=suite).latest("id")


def test_import_run_and_compare_two_quantizations(browser, asgi_server, monkeypatch, tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    queued: list[tuple] = []
    monkeypatch.setattr("apps.benchmarks.services.job_submit", lambda **kw: queued.append((kw["func"], *kw["args"])))
    membership = MembershipFactory(role=Membership.Role.MEMBER, team__name="Alpha", team__slug="alpha")
    team = membership.team
    variants = {q: ModelVariant.objects.create(team=team, model_name="Mock 8B", quantization=q) for q in ACCURACY}

    context = browser.new_context(base_url=asgi_server, viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    frames: list[str] = []
    page.on(
        "websocket", lambda ws: "/ws/benchmark-runs/" in ws.url and ws.on("framereceived", lambda f: frames.append(f))
    )
    log_in(page, membership.user.username)

    # A bad file first: every bad row named, nothing stored.
    records = files.gsm8k_records(files.gsm8k_items(3))
    records[1]["answer"] = "no final answer"
    page.goto("/benchmarks/suites/import/")
    page.fill("#id_name", "GSM8K")
    page.set_input_files("#id_files", {"name": "broken.jsonl", "mimeType": "application/json",
                                       "buffer": files.jsonl(records)})  # fmt: skip
    page.click("#import-form button.primary")
    expect(page.locator("#import-problems")).to_contain_text("file broken.jsonl, row 2")
    assert not BenchmarkSuite.objects.exists()
    errors.clear()  # the browser logs the form's 400 answer
    both_widths(page, "benchmark-import-errors")

    gsm_items = files.gsm8k_items(GSM8K_ITEMS, seed=3)
    import_suite(page, "GSM8K", [files.build("gsm8k", gsm_items)])
    expect(page.locator("#suite-items")).to_contain_text(f"{GSM8K_ITEMS} questions")
    expect(page.locator("#extraction-steps")).to_contain_text("strict-match")
    both_widths(page, "benchmark-suite")
    pro_items = files.mmlu_pro_items(MMLU_PRO_ITEMS, categories=CATEGORIES, seed=4, question_chars=160, option_chars=30)
    pro_fewshot = files.mmlu_pro_items(6, categories=CATEGORIES, seed=5)
    import_suite(page, "MMLU-Pro", [files.build("mmlu_pro", pro_items)],
                 [("validation.parquet", files.mmlu_pro_parquet(pro_fewshot))])  # fmt: skip
    expect(page.locator("#suite-items")).to_contain_text(f"{MMLU_PRO_ITEMS} questions, 6 worked examples")
    gsm, pro = BenchmarkSuite.objects.get(kind="gsm8k"), BenchmarkSuite.objects.get(kind="mmlu_pro")
    page.goto(f"/benchmarks/suites/{pro.pk}/items/0/")
    expect(page.locator("#item-choices li.correct")).to_have_count(1)
    both_widths(page, "benchmark-item")

    # Two deployments of one model: mockllm knows both suites' answers, right on 90% (BF16) and 80% (AWQ).
    keys = (str(write_key(gsm, tmp_path / "gsm8k.jsonl")), str(write_key(pro, tmp_path / "mmlu_pro.jsonl")))
    mocks = Mocks()
    try:
        endpoints = {
            q: ProviderEndpoint.objects.create(
                team=team, name=f"vllm-{q.lower()}", kind="openai_compatible", model_names=["mock"],
                base_url=mocks.start(keys[0], accuracy, answer_key=keys, ttft_ms=60.0, answer_seed=7),
            )
            for q, accuracy in ACCURACY.items()
        }  # fmt: skip
        runs = {}
        for suite, pick in ((gsm, True), (pro, False)):
            run = start_run(page, suite, endpoints, variants, pick_variants=pick)
            assert queued[-1] == ("apps.benchmarks.tasks.benchmark_run_chunk", run.pk, "")
            expect(page.locator("#run-status")).to_have_text("queued")
            if suite == gsm:
                page.set_viewport_size(PHONE)
            worker = threading.Thread(target=run_until_done, args=[run.pk])  # the django-q worker's part
            worker.start()
            if suite == gsm:  # the progress arrives while it runs, without a reload
                expect(page.locator("#run-status")).to_have_text("running")
                expect(page.locator("#so-far-table")).to_be_visible()
                expect(page.locator("#progress-text")).not_to_contain_text("0 of 120 answers")
                shoot(page, "benchmark-run-running")
            worker.join(timeout=60)
            expect(page.locator("#run-status")).to_have_text("completed", timeout=15_000)
            if suite == gsm:  # strict-match is the headline; lm-eval's flexible-extract beside it
                expect(page.locator("#results-table thead")).to_contain_text("Flexible extract")
                shoot(page, "benchmark-gsm8k-done")
                page.set_viewport_size(DESKTOP)
            runs[suite.kind] = run
    finally:
        mocks.close()
    assert frames, "no progress came over the websocket"

    # The MMLU-Pro run's page (the last one open): exact known-answer accuracies, the paired comparison.
    indices = run_item_indices(runs["mmlu_pro"])
    bf16, awq = (expected(Path(keys[1]), ACCURACY[q], indices, seed=7) for q in ("BF16", "AWQ"))
    rows = page.locator("#results-table tbody tr")
    expect(rows.nth(0)).to_contain_text(f"{bf16 * 100:.1f}%")
    expect(rows.nth(1)).to_contain_text(f"{awq * 100:.1f}%")
    expect(page.locator("#subject-table tbody tr")).to_have_count(len(CATEGORIES))
    expect(page.locator("#published")).to_contain_text("published as the measured score of Mock 8B · AWQ")
    flipped = round((bf16 - awq) * MMLU_PRO_ITEMS)
    p_text = f"{binomtest(0, flipped, 0.5).pvalue:.3f}"
    sentence = page.locator("#paired-sentence")
    expect(sentence).to_contain_text(f"Mock 8B · AWQ loses {(bf16 - awq) * 100:.1f} points against Mock 8B · BF16")
    expect(sentence).to_contain_text(f"McNemar p = {p_text}, {flipped} items flipped.")
    expect(page.locator("#flipped-items a")).to_have_count(flipped)
    both_widths(page, "benchmark-run-done")
    first_flipped = page.locator("#flipped-items a").first
    first_flipped.click()
    page.wait_for_url("**/items/*/")
    expect(page.locator("#item-answers article")).to_have_count(2)  # asked of both targets
    expect(page.locator('#item-answers [data-outcome="correct"]')).to_have_count(1)  # and it flipped
    both_widths(page, "benchmark-item-answered")

    page.goto(f"/benchmarks/runs/{runs['mmlu_pro'].pk}/answers/?outcome=wrong")
    expect(page.locator("article.answer")).to_have_count(round((1 - awq) * MMLU_PRO_ITEMS) + round(
        (1 - bf16) * MMLU_PRO_ITEMS))  # fmt: skip
    both_widths(page, "benchmark-answers")
    page.goto(f"/benchmarks/runs/new/?suite={gsm.pk}")
    page.locator("[data-target-select]").first.select_option(value=f"{endpoints['AWQ'].pk}:mock")
    expect(page.locator("#estimate-requests")).to_have_text(str(GSM8K_ITEMS))
    both_widths(page, "benchmark-run-form")
    page.goto("/benchmarks/")
    expect(page.locator("#runs-table tbody tr")).to_have_count(2)
    both_widths(page, "benchmark-index")

    # The quantization view pairs the two measured scores item by item, per benchmark.
    page.goto("/scores/quantization/")
    paired = page.locator(f"#paired-{variants['AWQ'].pk}")
    expect(paired).to_contain_text("McNemar p =")
    expect(paired).to_contain_text(f"{flipped} items flipped")
    expect(paired).to_contain_text("GSM8K")
    expect(paired).to_contain_text("MMLU-Pro")
    both_widths(page, "quantization")
    assert not errors, errors  # no CSP refusals or script errors
    context.close()
