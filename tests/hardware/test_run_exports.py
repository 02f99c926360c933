"""A performance run's exports (CSV = samples, JSON, Excel with the summary per metric) on the page and through
the API, and the comparison of runs as a PDF: content, roles, teams, bad formats, formula injection."""

import csv
import io
import json

import openpyxl
import pytest
from django.urls import reverse
from pypdf import PdfReader

from apps.hardware.exports import SAMPLE_COLUMNS, STATISTICS
from apps.providers.models import ProviderEndpoint
from tests.hardware.helpers import generated_samples, stored_run

pytestmark = pytest.mark.django_db
FORMATS = ("csv", "json", "xlsx")
FORMULA = '=HYPERLINK("http://x")'
CANARY = "sk-canary-0123456789-run-exports"


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def pdf_text(data: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).split())


@pytest.fixture
def samples():
    samples = generated_samples(6, failures=1)
    samples[-1].error_message = FORMULA
    return samples


@pytest.fixture
def run(team, samples):
    # The team also has an endpoint with a key: it must not reach any export.
    endpoint = ProviderEndpoint(team=team, name="keyed", kind="sim", base_url="sim://local")
    endpoint.set_api_key(CANARY)
    endpoint.save()
    return stored_run(team, samples=samples, name=FORMULA)


def url(run, fmt):
    return reverse(f"hardware:run-export-{fmt}", args=[run.pk])


def test_csv_is_the_samples(viewer_client, run, samples):
    """The CSV is the samples table with the samples CSV's columns; formulas quoted, numbers exact."""
    response = viewer_client.get(url(run, "csv"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    data = body(response)
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[0] == SAMPLE_COLUMNS and len(rows) == 7
    assert float(rows[1][3]) == pytest.approx(samples[0].ttft_ms, rel=1e-12)
    assert len(rows[1][8].split()) == len(samples[0].itl_ms)
    assert rows[-1][1:3] == ["429", "'" + FORMULA]
    assert body(viewer_client.get(reverse("hardware:run-samples-csv", args=[run.pk]))) == data


def test_json_has_the_summary_per_metric_and_the_samples(viewer_client, run):
    """JSON: a summary row per stored metric with count … max, and every sample."""
    data = json.loads(body(viewer_client.get(url(run, "json"))))
    summary = {row["metric"]: row for row in data["tables"]["summary"]}
    assert {"ttft_ms", "e2e_ms", "itl_ms", "tpot_ms"} <= summary.keys()
    run.summary.refresh_from_db()
    assert [summary["ttft_ms"][key] for key in STATISTICS] == [run.summary.metrics["ttft_ms"][k] for k in STATISTICS]
    assert summary["ttft_ms"]["count"] == 5  # the failed request is not a latency
    assert len(data["tables"]["samples"]) == 6 and data["tables"]["samples"][-1]["error_message"] == FORMULA
    assert data["meta"]["run"] == FORMULA and data["summary"]["Errors"] == 1


def test_xlsx_has_summary_and_samples_sheets_with_typed_cells(viewer_client, run):
    """Excel: Summary, summary (one row per metric) and samples; numbers are number cells, formulas quoted."""
    workbook = openpyxl.load_workbook(io.BytesIO(body(viewer_client.get(url(run, "xlsx")))))
    assert workbook.sheetnames == ["Summary", "summary (2)", "samples"]
    metrics = workbook["summary (2)"]
    assert [c.value for c in metrics[1]] == ["metric", *STATISTICS, "simulated"]
    ttft = next(row for row in metrics.iter_rows(min_row=2) if row[0].value == "ttft_ms")
    assert (ttft[1].data_type, ttft[1].value) == ("n", 5)
    assert all(cell.data_type == "n" for cell in ttft[2:-1])
    assert (ttft[-1].data_type, ttft[-1].value) == ("b", False)  # the "simulated" column
    samples = workbook["samples"]
    assert samples.max_row == 7
    assert (samples.cell(2, 4).data_type, samples.cell(7, 3).value) == ("n", "'" + FORMULA)
    title_and_meta = [c for row in workbook["Summary"].iter_rows(values_only=True) for c in row if c]
    assert "'" + FORMULA in title_and_meta  # the run's name in the meta is quoted too


def test_the_run_page_links_the_downloads(viewer_client, run):
    """The run page links the samples CSV, Excel and JSON."""
    page = viewer_client.get(reverse("hardware:run", args=[run.pk])).content.decode()
    assert f'href="{url(run, "xlsx")}" id="download-xlsx"' in page and 'id="download-csv"' in page


@pytest.mark.parametrize("fmt", FORMATS)
def test_anonymous_is_sent_to_log_in(client, run, fmt):
    """Without a session the export redirects to the login page."""
    response = client.get(url(run, fmt))
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_another_teams_run_is_404(viewer_client, other_team, fmt):
    """Another team's run is not found."""
    assert viewer_client.get(url(stored_run(other_team), fmt)).status_code == 404


def test_an_unknown_format_is_404(viewer_client, run):
    """A run has csv, json and xlsx exports only."""
    assert viewer_client.get(f"/performance/runs/{run.pk}/export.pdf").status_code == 404


def test_another_teams_rows_never_appear(viewer_client, run, other_team):
    """Only this run's samples are exported."""
    theirs = generated_samples(4, failures=1)
    theirs[-1].error_message = "bravo-only failure"
    stored_run(other_team, samples=theirs)
    for fmt in FORMATS:
        assert b"bravo-only" not in body(viewer_client.get(url(run, fmt))), fmt


def test_the_provider_key_is_in_no_export(viewer_client, viewer_api, run):
    """No export of the team's runs carries a provider key."""
    for fmt in FORMATS:
        assert CANARY[-12:].encode() not in body(viewer_client.get(url(run, fmt)))
        assert CANARY[-12:].encode() not in body(
            viewer_api.get(f"/api/v1/performance/runs/{run.pk}/export?format={fmt}")
        )


# --- API ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_api_exports_each_format_to_a_viewer(viewer_api, run, fmt):
    """GET /api/v1/performance/runs/{id}/export?format= answers each format, also to a viewer."""
    response = viewer_api.get(f"/api/v1/performance/runs/{run.pk}/export?format={fmt}")
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]


def test_api_refuses_a_bad_format_anonymous_and_other_team(viewer_api, anon_api, run, other_team):
    """pdf and unknown formats are 400 naming the field; anonymous 401; another team's run 404."""
    for fmt in ("pdf", "xml"):
        response = viewer_api.get(f"/api/v1/performance/runs/{run.pk}/export?format={fmt}")
        assert response.status_code == 400 and response.json().keys() - {"request_id"} == {"format"}
    assert anon_api.get(f"/api/v1/performance/runs/{run.pk}/export?format=csv").status_code == 401
    theirs = stored_run(other_team)
    assert viewer_api.get(f"/api/v1/performance/runs/{theirs.pk}/export?format=csv").status_code == 404


# --- the comparison as a PDF ---------------------------------------------------------------------------------------


@pytest.fixture
def pair(team, run):
    return run, stored_run(team, samples=generated_samples(40, seed=9, ttft_ms=200))


def test_compare_pdf_has_the_figures_tests_and_charts(viewer_client, pair):
    """The PDF has the compare page's figures with differences, the Mann-Whitney tests and bar charts."""
    first, second = pair
    response = viewer_client.get(reverse("hardware:compare-export-pdf"), {"runs": f"{first.pk},{second.pk}"})
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = pdf_text(body(response))
    expected = ["Comparison of performance runs", f"#{first.pk} vs #{second.pk}", "TTFT p50 ms", "E2E p95",
                "Mann-Whitney", "TTFT", "ITL (mean per request)", "Output token throughput (tok/s)", "Methods",
                FORMULA]  # fmt: skip
    assert [phrase for phrase in expected if phrase not in text] == []
    assert "%)" in text  # a difference in percent against the first run


def test_the_compare_page_links_its_pdf_with_the_same_query(viewer_client, pair):
    """The compare page's PDF link carries the runs it shows."""
    first, second = pair
    page = viewer_client.get(reverse("hardware:compare"), {"runs": f"{first.pk},{second.pk}"}).content.decode()
    assert f'href="{reverse("hardware:compare-export-pdf")}?runs={first.pk}%2C{second.pk}" id="download-pdf"' in page


def test_compare_pdf_refuses_bad_query_other_team_and_anonymous(viewer_client, client, pair, other_team):
    """A bad run list is a 400, another team's run a 404, anonymous a login redirect."""
    first, second = pair
    target = reverse("hardware:compare-export-pdf")
    assert viewer_client.get(target, {"runs": str(first.pk)}).status_code == 400
    assert viewer_client.get(target).status_code == 400
    theirs = stored_run(other_team)
    assert viewer_client.get(target, {"runs": f"{first.pk},{theirs.pk}"}).status_code == 404
    client.logout()
    assert client.get(target, {"runs": f"{first.pk},{second.pk}"}).status_code == 302
