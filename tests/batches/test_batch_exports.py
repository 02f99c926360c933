"""A parameter sweep's exports in CSV, JSON, Excel and PDF: the page's Download row, the API's GET and the seed's
POST /api/v1/export/batch; content, roles, teams, bad input, formula injection and the provider key."""

import csv
import io
import json

import openpyxl
import pytest
from django.urls import reverse
from pypdf import PdfReader

from apps.batches.models import Batch
from apps.batches.parameters import combination
from apps.experiments.models import Experiment, Response
from tests.batches.helpers import make_batch, sim_endpoint

pytestmark = pytest.mark.django_db
FORMATS = ("csv", "json", "xlsx", "pdf")
CANARY = "sk-canary-0123456789-batch-exports"
FORMULA = '=HYPERLINK("http://x")'


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def pdf_text(data: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).split())


def finished_batch(team, *, name="sweep", ranges=None, repetitions=2, content="plain answer") -> Batch:
    """A completed sweep whose endpoint holds the canary key, with results written directly: combination c,
    repetition r has overall quality 50 + 5c + r; the last combination's second repetition failed."""
    endpoint = sim_endpoint(team, name=f"keyed-{team.slug}")
    endpoint.set_api_key(CANARY)
    endpoint.save()
    batch = make_batch(team, endpoint=endpoint, name=name, ranges=ranges, repetitions=repetitions)
    target = batch.experiment.targets.get()
    rows = []
    for index in range(batch.combination_count):
        for repetition in range(repetitions):
            failed = index == batch.combination_count - 1 and repetition == 1
            row = Response(
                experiment_id=batch.pk, target=target, item_key="prompt", combination=index, repetition=repetition,
                parameters=combination(batch.parameter_values, index),
                content="" if failed else (FORMULA if index == 0 and repetition == 0 else content),
                error_code="500" if failed else "", error_message="upstream broke" if failed else "",
                quality={} if failed else {"overall": 50.0 + 5 * index + repetition},
                latency_ms=None if failed else 100.0 + index, cost_usd=0.001, output_tokens=None if failed else 30,
            )  # fmt: skip
            row.copy_figures()  # bulk_create skips save(), which fills the figure columns
            rows.append(row)
    Response.objects.bulk_create(rows)
    Batch.objects.filter(pk=batch.pk).update(
        completed_results=len(rows), failed_results=1, completed_combinations=batch.combination_count
    )
    Experiment.objects.filter(pk=batch.pk).update(status="completed")
    return Batch.objects.select_related("experiment").get(pk=batch.pk)


@pytest.fixture
def batch(team):
    # temperature [0.2, 0.8, 1.4] × top_p [0.5, 1.0]: 6 combinations × 2 repetitions. The best is the last
    # (1.4, 1.0): its one successful result scores 75.
    return finished_batch(team)


def url(batch, fmt):
    return reverse(f"batches:batch-export-{fmt}", args=[batch.pk])


def test_csv_is_the_combinations_table(viewer_client, batch):
    """The CSV has one row per combination with its parameters and figures; numbers are plain."""
    response = viewer_client.get(url(batch, "csv"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="batch-{batch.pk}.csv"'
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert [(r["combination"], r["temperature"], r["top_p"]) for r in rows] == [
        ("0", "0.2", "0.5"), ("1", "0.2", "1.0"), ("2", "0.8", "0.5"), ("3", "0.8", "1.0"), ("4", "1.4", "0.5"),
        ("5", "1.4", "1.0"),
    ]  # fmt: skip
    assert (rows[0]["results"], rows[0]["errors"], rows[0]["n_overall"], rows[0]["mean_overall"]) == (
        "2",
        "0",
        "2",
        "50.5",
    )
    assert (rows[5]["errors"], rows[5]["mean_overall"], rows[5]["mean_latency_ms"]) == ("1", "75.0", "105.0")
    assert rows[0]["mean_coherence"] == "" and rows[0]["cost_usd"] == "0.002"


def test_json_has_combinations_results_and_the_best_combination(viewer_client, batch):
    """JSON: both tables in full and a summary naming the best combination and its figures."""
    data = json.loads(body(viewer_client.get(url(batch, "json"))))
    assert len(data["tables"]["combinations"]) == 6 and len(data["tables"]["results"]) == 12
    first = data["tables"]["results"][0]
    assert (first["content"], first["temperature"], first["top_p"], first["combination"]) == (FORMULA, 0.2, 0.5, 0)
    summary = data["summary"]
    assert summary["Status"] == "completed" and summary["Combinations"] == 6 and summary["Failed results"] == 1
    assert summary["Best combination"] == 5 and summary["Best Temperature"] == 1.4 and summary["Best top_p"] == 1.0
    assert summary["Best combination: mean Overall quality"] == 75.0 and summary["Best combination: n"] == 1
    assert data["meta"]["parameters"] == {"temperature": [0.2, 0.8, 1.4], "top_p": [0.5, 1.0]}


def test_xlsx_has_summary_combinations_and_results_sheets(viewer_client, batch):
    """Excel: Summary, combinations (a row each) and results (a row each), formula-like text quoted, numbers typed."""
    workbook = openpyxl.load_workbook(io.BytesIO(body(viewer_client.get(url(batch, "xlsx")))))
    assert workbook.sheetnames == ["Summary", "combinations", "results"]
    assert workbook["combinations"].max_row == 7 and workbook["results"].max_row == 13
    results = workbook["results"]
    header = [cell.value for cell in results[1]]
    first = dict(zip(header, results[2], strict=True))
    assert (first["content"].data_type, first["content"].value) == ("s", "'" + FORMULA)
    assert (first["temperature"].data_type, first["temperature"].value) == ("n", 0.2)
    assert (first["quality_overall"].data_type, first["quality_overall"].value) == ("n", 50.0)
    summary = {row[0]: row[1] for row in workbook["Summary"].iter_rows(values_only=True) if row[0]}
    assert summary["Best combination"] == 5 and summary["Best combination: mean Overall quality"] == 75.0


def test_pdf_report_has_the_best_combinations_heatmap_effects_and_methods(viewer_client, batch):
    """The PDF: title page with the parameters, the best combinations first, the heatmap, effects, methods."""
    response = viewer_client.get(url(batch, "pdf"))
    assert response["Content-Type"] == "application/pdf"
    text = pdf_text(body(response))
    expected = ["sweep", "Parameter sweep of 6 combinations", "Team: Alpha", "Temperature", "0.2, 0.8, 1.4 (3 values)",
                "Combination 5: Temperature 1.4, top_p 1", "75", "Showing 6 of 6 combinations", "Heatmap",
                "Effects", "Kruskal-Wallis", "Methods", "Korn-Graubard effective sample size", "log scale",
                "Generated"]  # fmt: skip
    assert [phrase for phrase in expected if phrase not in text] == []
    assert text.index("1 5 1.4 1 ") < text.index("2 4 1.4 0.5")  # ranked by the objective: rank, index, values
    assert "top_p 1.0" not in text and "Student t interval" not in text  # values through the shared formatter


def test_pdf_shows_the_top_25_of_a_larger_batch(viewer_client, team):
    """A sweep with more combinations shows the best 25 and says of how many."""
    big = finished_batch(team, name="wide", ranges={"temperature": {"min": 0.1, "max": 1.0, "step": 0.1}, "top_p": [0.5, 0.75, 1.0]},
                         repetitions=1)  # fmt: skip
    text = pdf_text(body(viewer_client.get(url(big, "pdf"))))
    assert "Showing 25 of 30 combinations with results" in text and "every combination is in the CSV" in text


def test_the_batch_page_has_the_download_row(viewer_client, batch):
    """The batch page links each format under its id."""
    page = viewer_client.get(reverse("batches:batch", args=[batch.pk])).content.decode()
    for fmt in FORMATS:
        assert f'href="{url(batch, fmt)}" id="download-{fmt}"' in page


@pytest.mark.parametrize("fmt", FORMATS)
def test_anonymous_is_sent_to_log_in(client, batch, fmt):
    """Without a session every export redirects to the login page."""
    response = client.get(url(batch, fmt))
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_another_teams_batch_is_404(viewer_client, other_team, fmt):
    """Another team's batch is not found, in any format."""
    assert viewer_client.get(url(finished_batch(other_team), fmt)).status_code == 404


def test_an_unknown_format_or_a_post_is_refused(viewer_client, batch):
    """Only the four formats have a URL, and they only answer GET."""
    assert viewer_client.get(f"/batches/{batch.pk}/export.xml").status_code == 404
    assert viewer_client.post(url(batch, "csv")).status_code == 405


def test_another_teams_rows_never_appear(viewer_client, batch, other_team):
    """Only this batch's results are exported, never another team's."""
    finished_batch(other_team, content="bravo-only answer")
    for fmt in FORMATS:
        data = body(viewer_client.get(url(batch, fmt)))
        text = pdf_text(data) if fmt == "pdf" else data.decode("latin-1")
        assert "bravo-only" not in text and "keyed-bravo" not in text, fmt


def test_the_provider_key_is_in_no_export(viewer_client, viewer_api, batch):
    """The endpoint's key appears in no file of the page, the GET API or the POST API."""
    bodies = [body(viewer_client.get(url(batch, fmt))) for fmt in FORMATS]
    bodies += [body(viewer_api.get(f"/api/v1/batches/{batch.pk}/export?format={fmt}")) for fmt in FORMATS]
    bodies += [body(viewer_api.post("/api/v1/export/batch", {"batch_id": batch.pk, "format": fmt}, format="json"))
               for fmt in FORMATS]  # fmt: skip
    for data in bodies:
        assert CANARY.encode() not in data and CANARY[-12:].encode() not in data
    cells = [str(c) for sheet in openpyxl.load_workbook(io.BytesIO(bodies[2]))
             for row in sheet.iter_rows(values_only=True) for c in row]  # fmt: skip
    assert not any(CANARY[-12:] in c for c in cells) and CANARY[-12:] not in pdf_text(bodies[3])


# --- API ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_api_get_exports_each_format_to_a_viewer(viewer_api, batch, fmt):
    """GET /api/v1/batches/{id}/export?format= answers each format, also to a viewer."""
    response = viewer_api.get(f"/api/v1/batches/{batch.pk}/export?format={fmt}")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="batch-{batch.pk}.{fmt}"'


def test_api_get_refuses_bad_format_anonymous_and_other_team(viewer_api, anon_api, batch, other_team):
    """A bad format is a 400 naming the field; anonymous 401; another team's batch 404."""
    bad = viewer_api.get(f"/api/v1/batches/{batch.pk}/export?format=docx")
    assert bad.status_code == 400 and bad.json().keys() - {"request_id"} == {"format"}
    assert anon_api.get(f"/api/v1/batches/{batch.pk}/export?format=csv").status_code == 401
    theirs = finished_batch(other_team)
    assert viewer_api.get(f"/api/v1/batches/{theirs.pk}/export?format=csv").status_code == 404


def test_api_post_export_answers_the_file(viewer_api, batch):
    """POST /api/v1/export/batch with batch_id and format: the same file as the page, also for a viewer."""
    response = viewer_api.post("/api/v1/export/batch", {"batch_id": batch.pk, "format": "xlsx"}, format="json")
    assert response.status_code == 200
    assert openpyxl.load_workbook(io.BytesIO(response.content)).sheetnames == ["Summary", "combinations", "results"]
    csv_response = viewer_api.post("/api/v1/export/batch", {"batch_id": batch.pk}, format="json")  # csv by default
    assert body(csv_response).decode().startswith("combination,temperature,top_p,")


@pytest.mark.parametrize(
    ("payload", "field"),
    [({}, "batch_id"), ({"batch_id": "seven"}, "batch_id"), ({"batch_id": 0}, "batch_id"),
     ({"batch_id": 1, "format": "docx"}, "format")],
)  # fmt: skip
def test_api_post_export_names_the_bad_field(viewer_api, batch, payload, field):
    """A missing or bad batch_id, or a bad format, is a 400 naming that field."""
    response = viewer_api.post("/api/v1/export/batch", payload, format="json")
    assert response.status_code == 400 and field in response.json()


def test_api_post_export_refuses_other_team_anonymous_and_get(viewer_api, anon_api, batch, other_team):
    """Another team's batch is a 404, anonymous a 401, GET a 405."""
    theirs = finished_batch(other_team)
    assert viewer_api.post("/api/v1/export/batch", {"batch_id": theirs.pk}, format="json").status_code == 404
    assert anon_api.post("/api/v1/export/batch", {"batch_id": batch.pk}, format="json").status_code == 401
    assert viewer_api.get("/api/v1/export/batch").status_code == 405
