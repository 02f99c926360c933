"""The experiment page shows what was run (prompt or test cases, every parameter, evaluators and their
settings), per response why the evaluator decided as it did, simulated targets with a badge, the key
columns of the per-target table, and a status that never disagrees with its Cancel button."""

import html as html_lib
import re

import pytest
from django.urls import reverse

from apps.experiments.evaluators import LLMJudge, evaluate, validate_settings
from apps.experiments.models import Experiment, Response, TestCase
from apps.experiments.services import experiment_create
from apps.providers.models import ProviderEndpoint

pytestmark = pytest.mark.django_db
SCHEMA = {"type": "object", "required": ["name", "age"], "properties": {"age": {"type": "integer"}}}
CASES = {  # title: (evaluator, settings, expected, output)
    "Apples": ("numeric", {}, "#### 7", "He has 3 + 4 = 8 apples. #### 8"),
    "Person": ("json_schema", {"schema": SCHEMA}, "", '{"name": "Ann", "age": "forty"}'),
    "Caching": ("contains", {}, "cache", "Serving is faster."),
    "Verb": ("regex", {"pattern": r"^Restart"}, "", "Restart the server."),
    "Capital": ("exact_match", {}, "Paris", "paris"),
}


def visible_text(html: str) -> str:
    html = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", html)
    return html_lib.unescape(" ".join(re.sub(r"<[^>]+>", " ", html).split()))


def make(team, *, kind="sim", status=Experiment.Status.COMPLETED, **fields) -> Experiment:
    endpoint = ProviderEndpoint.objects.create(team=team, name="Simulator", kind=kind)
    experiment = experiment_create(team=team, user=None, name="exp", targets=[(endpoint, "sim-small")], **fields)
    Experiment.objects.filter(pk=experiment.pk).update(status=status)
    experiment.refresh_from_db()
    return experiment


def detail(client, experiment, **params):
    return client.get(reverse("experiments:detail", args=[experiment.pk]), params)


@pytest.fixture
def evaluated(team):
    """An experiment over five test cases of different evaluators plus a judged one, each answered once."""
    cases = []
    for title, (kind, settings, expected, _) in CASES.items():
        cases.append(TestCase.objects.create(team=team, title=title, prompt=f"{title}?", expected_output=expected,
                                             evaluator=kind, evaluator_settings=settings, status="approved"))  # fmt: skip
    judge_settings = {"rubric": "Is it polite?", "judge_endpoint": None}
    judged = TestCase.objects.create(team=team, title="Polite", prompt="Greet me", evaluator="llm_judge",
                                     evaluator_settings=judge_settings, status="approved")  # fmt: skip
    experiment = make(team, test_cases=[*cases, judged], responses_per_item=1,
                      parameters={"temperature": 0.7, "top_p": 0.9, "max_tokens": 200})  # fmt: skip
    target = experiment.targets.get()
    for case in cases:
        kind, settings, expected, output = CASES[case.title]
        result = evaluate(kind, output, expected=expected, settings=settings)
        Response.objects.create(experiment=experiment, target=target, test_case=case, item_key=f"tc:{case.pk}",
                                content=output, passed=result.passed, score=result.score, evaluation=result.detail,
                                is_simulated=True, ttft_ms=41.5, cost_usd=0.0)  # fmt: skip
    verdict = LLMJudge().judged(
        "SCORE: 3\nRATIONALE: curt and a little rude", validate_settings("llm_judge", judge_settings)
    )
    Response.objects.create(experiment=experiment, target=target, test_case=judged, item_key=f"tc:{judged.pk}",
                            content="What.", passed=verdict.passed, score=verdict.score, evaluation=verdict.detail,
                            is_simulated=True)  # fmt: skip
    return experiment


def test_the_page_shows_the_test_cases_parameters_and_evaluator_settings(viewer_client, evaluated):
    """What was run: linked test cases, every parameter in words (unset ones say so), evaluators and settings."""
    page = detail(viewer_client, evaluated).content.decode()
    text = visible_text(page)
    for case in evaluated.test_cases.all():
        assert f'href="{reverse("experiments:testcase", args=[case.pk])}"' in page
    for phrase in ["Temperature 0.7", "Top p 0.9", "Max tokens 200", "Frequency penalty not set (the provider's default)",
                   "Presence penalty not set", "Seed none (sampling varies between responses)", "Numeric answer",
                   "JSON schema", "LLM judge", "Regular expression", "Pattern: ^Restart", "Rubric: Is it polite?",
                   "Mode: strict_then_flexible", "Responses per test case 1"]:  # fmt: skip
        assert phrase in text, phrase


def test_each_response_says_why_its_evaluator_passed_or_failed_it(viewer_client, evaluated):
    """Per response: the extracted number, schema errors, missing texts, the match, the judge's rationale."""
    text = visible_text(detail(viewer_client, evaluated).content.decode())
    for phrase in ["Extracted answer: 8 (by the strict “#### <number>” pattern, from “8”)", "Expected answer: 7",
                   "Schema error at $.age: 'forty' is not of type 'integer'", "Missing: cache",
                   "Matched text: Restart", "the normalized output equals the expected text",
                   "Judge score: 3 (1 to 10, passes at 5.50 or above)", "Judge rationale: curt and a little rude"]:  # fmt: skip
        assert phrase in text, phrase
    assert not re.search(r"\b(True|False|None)\b", text)


def test_a_prompt_experiment_shows_its_prompts(viewer_client, team):
    """Without test cases the page shows the system prompt and the prompt that were asked."""
    experiment = make(team, prompt="Explain caching", system_prompt="Be brief.", parameters={"seed": 7})
    text = visible_text(detail(viewer_client, experiment).content.decode())
    assert "Be brief." in text and "Explain caching" in text and "Seed 7" in text and "Responses per prompt 1" in text


def test_simulated_targets_and_responses_carry_the_badge(viewer_client, evaluated, team):
    """A sim target and its responses are marked "simulated" with the shared badge; a real one is not."""
    page = detail(viewer_client, evaluated).content.decode()
    assert page.count('class="badge simulated"') == 1 + 6  # the target under "what was run", six responses
    assert '<tr class="simulated">' in page  # the per-target row is marked by the shared row style
    real = ProviderEndpoint.objects.create(team=team, name="Real", kind="openai_compatible", base_url="http://x/v1")
    other = experiment_create(team=team, user=None, name="real", targets=[(real, "m")], prompt="p")
    assert 'class="badge simulated"' not in detail(viewer_client, other).content.decode()


def test_the_summary_table_puts_key_columns_first_and_collapses_the_rest(viewer_client, evaluated):
    """TTFT and cost come right after the pass rate and the score; responses and quality are secondary."""
    page = detail(viewer_client, evaluated).content.decode()
    table = page[page.index('<div class="table-wrap sticky-first"><table class="numeric" id="summary-table">') :]
    headers = [(secondary, visible_text(cell))
               for secondary, cell in re.findall(r"<th( class=\"secondary\")?>(.*?)</th>", table[: table.index("</thead>")])]  # fmt: skip
    assert [h for _, h in headers][:5] == [
        "Target",
        "Pass rate 95% Wilson",
        "Mean score 95% bootstrap",
        "TTFT ms",
        "Cost USD",
    ]
    assert {h for secondary, h in headers if secondary} == {"Responses", "Overall quality 0–100"}
    assert "Show all columns" in page


@pytest.mark.parametrize("status", ["pending", "running"])
def test_cancel_shows_while_pending_or_running(member_client, team, status):
    """While it may still run: the status and a Cancel button, and the part refreshes itself."""
    experiment = make(team, prompt="p", status=status)
    page = detail(member_client, experiment).content.decode()
    assert 'id="cancel-experiment"' in page and 'hx-trigger="every 2s"' in page
    assert re.findall(r'id="experiment-status">([^<]+)<', page) == [status]
    assert "completed" not in visible_text(page)


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_finished_experiment_has_no_cancel_button(member_client, team, status):
    """Finished: one status, no Cancel, no refresh; the htmx refresh shows the same (its status is in the part)."""
    experiment = make(team, prompt="p", status=status)
    for page in (detail(member_client, experiment), member_client.get(
            reverse("experiments:detail", args=[experiment.pk]), HTTP_HX_REQUEST="true")):  # fmt: skip
        html = page.content.decode()
        assert "Cancel" not in visible_text(html) and "hx-trigger" not in html
        assert re.findall(r'id="experiment-status">([^<]+)<', html) == [status]
        assert "pending" not in visible_text(html)
        assert "<h1>" in html and "download-csv" in html  # the heading and its actions refresh with the status
