"""A benchmark run as CSV, JSON and Excel, from the API and the page: one row per (target, item), the results per
target and subject equal to the API's, formula-safe cells, streamed CSV/JSON, and who may download what."""

import csv
import io
import json

import openpyxl
import pytest

from apps.benchmarks.exports import ANSWER_COLUMNS, RESULT_COLUMNS
from apps.benchmarks.models import BenchmarkAnswer, BenchmarkItem
from apps.benchmarks.models import Status as RunStatus
from tests.benchmarks.test_api import RUNS, answer, problems, run_for, scored_run

pytestmark = pytest.mark.django_db
ACCURACY = ["n", "correct", "no_answer", "accuracy_pct", "ci_low_pct", "ci_high_pct", "stderr_pct", "no_answer_pct"]


def page_url(run, fmt: str) -> str:
    return f"/benchmarks/runs/{run.pk}/export.{fmt}"


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def json_body(response) -> dict:
    return json.loads(b"".join(response.streaming_content))


def api_results_as_rows(api, run) -> list[dict]:
    """The API detail's results laid out as the export's results table: per target overall, then per subject."""
    rows = []
    for target in api.get(f"{RUNS}/{run.pk}").json()["results"]:
        head = {"target_id": target["target_id"], "endpoint": target["endpoint"], "model": target["model"],
                "variant": target["variant"]}  # fmt: skip
        totals = {k: target[k] for k in ("failed", "input_tokens", "output_tokens", "cost_usd", "mean_latency_ms",
                                         "measured_score_id")}  # fmt: skip
        rows.append(
            {**head, "scope": "overall", "subject": "", **{k: target["overall"][k] for k in ACCURACY}, **totals}
        )
        for subject in target["by_subject"]:
            rows.append({**head, "scope": "subject", "subject": subject["subject"],
                         **{k: subject[k] for k in ACCURACY}, **dict.fromkeys(totals)})  # fmt: skip
        for name, figures in target["alternates"].items():
            rows.append({**head, "scope": f"extraction: {name}", "subject": "", **{k: figures[k] for k in ACCURACY},
                         **dict.fromkeys(totals)})  # fmt: skip
    return rows


class TestCsv:
    def test_one_row_per_target_and_item_with_its_outcome(self, viewer_api, team):
        run = scored_run(team)
        small, large = run.targets.order_by("id")
        response = viewer_api.get(f"{RUNS}/{run.pk}/export?format=csv")
        assert response.status_code == 200 and response.streaming
        assert response["Content-Type"].startswith("text/csv")
        assert f"benchmark-run-{run.pk}.csv" in response["Content-Disposition"]
        rows = csv_rows(response)
        assert list(rows[0]) == ANSWER_COLUMNS
        assert [(int(r["target_id"]), int(r["item_index"])) for r in rows] == [
            *[(small.pk, i) for i in range(6)], *[(large.pk, i) for i in range(6)]
        ]  # fmt: skip
        by_key = {(int(r["target_id"]), int(r["item_index"])): r for r in rows}
        first = by_key[(small.pk, 0)]
        assert (first["endpoint"], first["model"], first["subject"], first["correct_answer"]) == (
            small.endpoint.name,
            "sim-small",
            "law",
            "A",
        )
        assert (first["extracted_answer"], first["correct"], first["no_answer"], first["error"]) == (
            "A",
            "yes",
            "no",
            "",
        )
        assert (first["input_tokens"], first["output_tokens"], first["latency_ms"]) == ("50", "8", "120.0")
        assert (by_key[(small.pk, 4)]["correct"], by_key[(small.pk, 4)]["extracted_answer"]) == ("no", "B")
        no_answer = by_key[(small.pk, 5)]
        assert (no_answer["correct"], no_answer["no_answer"], no_answer["response"]) == ("no", "yes", "I cannot tell.")
        failed = by_key[(large.pk, 3)]
        assert (failed["correct"], failed["no_answer"], failed["error"], failed["input_tokens"]) == (
            "",
            "",
            "timeout",
            "",
        )

    def test_the_rows_are_the_answers_the_api_lists(self, viewer_api, team):
        run = scored_run(team)
        listed = viewer_api.get(f"{RUNS}/{run.pk}/items?page_size=100").json()["results"]
        from_api = sorted((a["target"], a["item_index"], a["extracted"], a["content"]) for a in listed)
        rows = csv_rows(viewer_api.get(f"{RUNS}/{run.pk}/export?format=csv"))
        exported = sorted(
            (int(r["target_id"]), int(r["item_index"]), r["extracted_answer"], r["response"]) for r in rows
        )
        assert exported == from_api

    def test_formula_like_responses_are_neutralized(self, viewer_api, team):
        run = run_for(team, status=RunStatus.COMPLETED)
        answer(run, run.targets.get(), 0, extracted="A", text='=HYPERLINK("http://evil","x")')
        row = csv_rows(viewer_api.get(f"{RUNS}/{run.pk}/export?format=csv"))[0]
        assert row["response"] == '\'=HYPERLINK("http://evil","x")'


class TestJsonAndExcel:
    def test_the_json_results_equal_the_api_figures(self, viewer_api, team):
        run = scored_run(team)
        response = viewer_api.get(f"{RUNS}/{run.pk}/export?format=json")
        assert response.status_code == 200 and response.streaming and response["Content-Type"] == "application/json"
        body = json_body(response)
        assert body["tables"]["results"] == api_results_as_rows(viewer_api, run)
        assert len(body["tables"]["answers"]) == 12
        assert body["meta"]["id"] == run.pk and body["meta"]["items_per_target"] == 6
        overall = [r for r in body["tables"]["results"] if r["scope"] == "overall"]
        assert [r["accuracy_pct"] for r in overall] == pytest.approx([400 / 6, 60.0])

    def test_the_excel_results_sheet_equals_the_api_figures(self, viewer_api, team):
        run = scored_run(team)
        response = viewer_api.get(f"{RUNS}/{run.pk}/export?format=xlsx")
        assert response.status_code == 200
        book = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True)
        assert book.sheetnames == ["Summary", "results", "answers"]
        header, *rows = [list(r) for r in book["results"].iter_rows(values_only=True)]
        assert header == RESULT_COLUMNS

        def cells(values) -> list:  # a spreadsheet has no "" apart from an empty cell, nor trailing empty cells
            values = [None if v == "" else v for v in values]
            return values + [None] * (len(RESULT_COLUMNS) - len(values))

        assert [cells(r) for r in rows] == [cells([row[c] for c in RESULT_COLUMNS])
                                            for row in api_results_as_rows(viewer_api, run)]  # fmt: skip
        answers = list(book["answers"].iter_rows(values_only=True))
        assert list(answers[0]) == ANSWER_COLUMNS and len(answers) == 13

    def test_the_page_route_gives_the_same_file(self, viewer_client, viewer_api, team):
        run = scored_run(team)
        page = viewer_client.get(page_url(run, "json"))
        assert page.status_code == 200
        assert json_body(page)["tables"]["results"] == api_results_as_rows(viewer_api, run)
        assert len(csv_rows(viewer_client.get(page_url(run, "csv")))) == 12


class TestAccess:
    def test_a_bad_format_is_a_400_naming_it(self, viewer_api, team):
        response = viewer_api.get(f"{RUNS}/{scored_run(team).pk}/export?format=pdf")
        assert response.status_code == 400 and problems(response) == {"format"}

    def test_anonymous_and_other_teams(self, anon_api, viewer_api, client, viewer_client, team, other_team):
        mine, theirs = scored_run(team), scored_run(other_team)
        assert anon_api.get(f"{RUNS}/{mine.pk}/export?format=csv").status_code == 401
        assert viewer_api.get(f"{RUNS}/{theirs.pk}/export?format=csv").status_code == 404
        assert viewer_client.get(page_url(theirs, "csv")).status_code == 404
        assert viewer_client.get(page_url(mine, "pdf")).status_code == 404

    def test_the_page_route_asks_for_a_sign_in(self, client, team):
        response = client.get(page_url(scored_run(team), "csv"))
        assert response.status_code == 302 and "/login/" in response["Location"]

    def test_the_page_route_answers_get_only(self, viewer_client, team):
        assert viewer_client.post(page_url(scored_run(team), "csv")).status_code == 405


def test_a_large_run_streams_every_answer(viewer_api, team):
    """300 items × 2 targets: every row, in order, through the streamed CSV."""
    run = run_for(team, status=RunStatus.COMPLETED, targets=("sim-small", "sim-large"))
    BenchmarkItem.objects.bulk_create(
        [BenchmarkItem(suite=run.suite, index=i, subject="law", question="q", answer="A") for i in range(6, 300)]
    )
    all_items = list(BenchmarkItem.objects.filter(suite=run.suite, split="test"))
    BenchmarkAnswer.objects.bulk_create(
        [BenchmarkAnswer(run=run, target=target, item=item, content="A", extracted="A", correct=item.answer == "A")
         for target in run.targets.all() for item in all_items]
    )  # fmt: skip
    response = viewer_api.get(f"{RUNS}/{run.pk}/export?format=csv")
    assert response.streaming
    rows = csv_rows(response)
    assert len(rows) == 600 and [int(r["item_index"]) for r in rows[:300]] == list(range(300))
