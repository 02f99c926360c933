"""A person in a browser: log in, read the leaderboard, import a CSV through the upload page."""

import pytest

from apps.accounts.models import Membership
from apps.scores.models import Score
from apps.scores.services import scores_import
from tests.browser.conftest import log_in
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SEED = "model,quantization,benchmark,score\norg/seeded,BF16,MMLU,71.25\norg/seeded,AWQ,MMLU,69.5\n"


@pytest.fixture
def member_with_scores():
    membership = MembershipFactory(role=Membership.Role.MEMBER, team__name="Alpha", team__slug="alpha")
    scores_import(team=membership.team, content=SEED.encode())
    return membership


def test_a_user_logs_in_and_reads_the_leaderboard(page, member_with_scores):
    log_in(page, member_with_scores.user.username)
    page.click("nav >> text=Leaderboard")
    page.wait_for_url("**/scores/")
    row = page.locator("#results tbody tr").first
    assert "org/seeded" in row.inner_text() and "71.25" in row.inner_text()
    page.wait_for_selector(".chart svg")  # ECharts rendered from the vendored file

    page.click("th >> text=MMLU")  # sort by MMLU, ascending after a second click
    page.click("th >> text=MMLU")
    page.wait_for_function("document.querySelector('#results tbody tr').innerText.includes('AWQ')")


def test_a_member_previews_and_imports_a_csv(page, member_with_scores, tmp_path):
    csv_file = tmp_path / "scores.csv"
    csv_file.write_text("model,quantization,MMLU,GSM8K\norg/uploaded,Q4_K_M,0.6,0.55\n")
    log_in(page, member_with_scores.user.username)
    page.goto("/scores/import/")
    page.set_input_files("#id_file", str(csv_file))
    page.click("button:has-text('Preview')")
    preview = page.locator("#preview")
    preview.locator("text=read as").wait_for()
    assert "fractions" in preview.inner_text() and "org/uploaded" in preview.inner_text()
    assert not Score.objects.filter(variant__model_name="org/uploaded").exists()

    page.click("button:has-text('Import')")
    page.wait_for_url("**/scores/")
    assert "Imported 2 scores" in page.locator(".messages").inner_text()
    assert "org/uploaded" in page.locator("#results").inner_text()
    stored = Score.objects.get(variant__model_name="org/uploaded", benchmark__name="GSM8K")
    assert stored.value_pct == pytest.approx(55.0)


def test_a_bad_csv_shows_each_bad_row_and_field(page, member_with_scores, tmp_path):
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("model,quantization,benchmark,score\n,BF16,MMLU,1\norg/x,BF16,MMLU,NaN\n")
    log_in(page, member_with_scores.user.username)
    page.goto("/scores/import/")
    page.set_input_files("#id_file", str(csv_file))
    page.click("button:has-text('Import')")
    errors = page.locator("#preview .errors")
    errors.wait_for()
    text = errors.inner_text()
    assert "2\tmodel\tis empty." in text and "3\tscore\t'NaN' is not a finite number." in text
    assert not Score.objects.filter(variant__model_name="org/x").exists()


def test_the_navigation_folds_on_a_phone(browser, live_server, member_with_scores):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 800})
    page = context.new_page()
    log_in(page, member_with_scores.user.username)
    assert not page.is_visible("nav >> text=Analytics")
    page.click(".nav-toggle-label")
    assert page.is_visible("nav >> text=Analytics")
    context.close()
