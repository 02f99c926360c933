"""Analytics in every format: the same figures on the page, in the API, the CSV, the Excel file and the PDF;
formula-safe cells; never another team's rows; never a provider key. And the custom export."""

import csv
import io
import json
from html.parser import HTMLParser

import openpyxl
import pytest
from django.urls import reverse
from pypdf import PdfReader

from apps.analytics.catalog import VIEWS
from apps.experiments.models import ExperimentTarget
from apps.providers.models import ProviderEndpoint
from llmbench.humanize import number_text

pytestmark = pytest.mark.django_db
CANARY = "sk-canary-analytics-0123456789"
FORMULA = '=HYPERLINK("http://evil.example","x")'


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(_body(response).decode(), newline="")))


def _sheets(response) -> dict[str, list[tuple]]:
    book = openpyxl.load_workbook(io.BytesIO(_body(response)))
    return {name: list(book[name].iter_rows(values_only=True)) for name in book.sheetnames}


def _pdf_text(response) -> str:
    reader = PdfReader(io.BytesIO(_body(response)))
    return " ".join(page.extract_text() for page in reader.pages)


class _Table(HTMLParser):
    """The cells of <table id=…> on a page."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.inside, self.rows, self.cell = table_id, False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def _page_table(client, slug, table, params=None) -> list[list[str]]:
    parser = _Table(f"table-{table}")
    parser.feed(client.get(reverse("analytics:view", args=[slug]), params or {}).content.decode())
    return parser.rows


def test_one_dataset_shows_the_same_figures_everywhere(viewer_client, viewer_api, dataset):
    """The API's figures rounded once (one decimal) are the files' numbers, and the page and the PDF write them."""
    params = {"metric": "score"}
    api = viewer_api.get("/api/v1/analytics/models/comparison", params).json()
    expected = {t["target"]: [round(t["mean"], 1), round(t["ci_low"], 1), round(t["pass_rate"], 1),
                              round(t["mean_latency_ms"], 1)] for t in api["targets"]}  # fmt: skip
    assert len(expected) == 2

    page = _page_table(viewer_client, "model-comparison", "targets", params)
    header = page[0]
    mean, ci, rate, latency = (header.index(c) for c in ("Mean evaluator score (points)", "95% interval", "Pass rate",
                                                         "Mean latency (ms)"))  # fmt: skip
    shown = {row[0]: [row[mean], row[ci].split("–")[0], row[rate], row[latency]] for row in page[1:]}
    assert shown == {target: [number_text(figures[0], 1), number_text(figures[1], 1), number_text(figures[2], 1) + "%",
                              number_text(figures[3], 1)] for target, figures in expected.items()}  # fmt: skip

    url = reverse("analytics:export", args=["model-comparison", "csv"])
    rows = _csv(viewer_client.get(url, params))
    assert {row[0]: [float(row[rows[0].index(c)]) for c in header_names()] for row in rows[1:]} == expected

    sheets = _sheets(viewer_client.get(reverse("analytics:export", args=["model-comparison", "xlsx"]), params))
    assert {"Summary", "targets", "pairs"} <= set(sheets)
    head = list(sheets["targets"][0])
    assert {r[0]: [r[head.index(c)] for c in header_names()] for r in sheets["targets"][1:]} == expected

    text = " ".join(_pdf_text(viewer_client.get(reverse("analytics:export", args=["model-comparison", "pdf"]),
                                                params)).split())  # fmt: skip
    for figures in expected.values():
        for value in figures:
            assert number_text(value, 1) in text
    assert "Methods" in text and "Holm" in text

    exported = json.loads(
        _body(viewer_api.get("/api/v1/export/analytics/model-comparison", {**params, "format": "json"}))
    )
    assert {t["target"]: [t[c] for c in header_names()] for t in exported["tables"]["targets"]} == expected


def header_names():
    return ("score_mean", "ci_low", "pass_rate_pct", "mean_latency_ms")


@pytest.mark.parametrize("slug", list(VIEWS))
@pytest.mark.parametrize("fmt", ["csv", "json", "xlsx", "pdf"])
def test_every_view_exports_in_every_format_without_other_teams_or_keys(
    slug, fmt, viewer_client, dataset, other_dataset
):
    for endpoint in ProviderEndpoint.objects.all():
        endpoint.set_api_key(CANARY)
        endpoint.save()
    response = viewer_client.get(reverse("analytics:export", args=[slug, fmt]))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    body = _body(response)
    text = (
        _pdf_text(response)
        if fmt == "pdf"
        else body.decode("utf-8", "replace")
        if fmt != "xlsx"
        else str(_sheets(response))
    )
    assert CANARY not in text and CANARY.encode() not in body
    assert "other-team-model" not in text and "Theirs" not in text


def test_formula_text_is_neutralized_and_numbers_stay_numbers(viewer_client, dataset):
    ExperimentTarget.objects.filter(model="alpha").update(model=FORMULA)
    rows = _csv(viewer_client.get(reverse("analytics:export", args=["quality-breakdown", "csv"])))
    names = [row[0] for row in rows[1:]]
    assert "'" + FORMULA in names and FORMULA not in names
    sheet = _sheets(viewer_client.get(reverse("analytics:export", args=["quality-breakdown", "xlsx"])))["groups"]
    assert "'" + FORMULA in [r[0] for r in sheet[1:]]
    head = list(sheet[0])
    assert all(isinstance(r[head.index("responses")], int) for r in sheet[1:])  # a number cell
    assert all(isinstance(r[head.index("pass_rate_pct")], float) for r in sheet[1:])
    page = viewer_client.get(reverse("analytics:view", args=["quality-breakdown"])).content.decode()
    assert "=HYPERLINK(&quot;http://evil.example&quot;" in page  # escaped text on the page


def test_api_export_needs_a_known_format_and_a_login(viewer_api, anon_api):
    response = viewer_api.get("/api/v1/export/analytics/regressions", {"format": "docx"})
    assert response.status_code == 400 and "format" in response.json()
    assert anon_api.get("/api/v1/export/analytics/regressions").status_code in (401, 403)


def test_page_export_with_a_bad_format_or_filter(viewer_client, client):
    assert viewer_client.get(reverse("analytics:export", args=["regressions", "docx"])).status_code == 404
    bad = viewer_client.get(reverse("analytics:export", args=["quality-trends", "csv"]), {"timeframe": "1y"})
    assert bad.status_code == 400 and b"timeframe" in bad.content


def test_page_export_needs_a_login(client):
    assert client.get(reverse("analytics:export", args=["regressions", "csv"])).status_code == 302


# --- custom export ---------------------------------------------------------------------------------------------


def test_custom_export_streams_the_chosen_fields_of_the_team_only(viewer_api, dataset, other_dataset):
    body = {"entity": "responses", "fields": ["id", "model", "score", "error_code"], "format": "csv"}
    response = viewer_api.post("/api/v1/export/custom", body, format="json")
    assert response.status_code == 200 and response.streaming
    rows = _csv(response)
    assert rows[0] == ["id", "model", "score", "error_code"]
    assert len(rows) - 1 == len(dataset.rows)
    assert {r[1] for r in rows[1:]} == {"alpha", "beta"}


def test_custom_export_filters_and_formats(viewer_api, dataset):
    body = {"entity": "responses", "fields": ["model", "temperature"], "filters": {"model": "beta"}, "format": "json"}
    data = json.loads(_body(viewer_api.post("/api/v1/export/custom", body, format="json")))
    assert data["tables"]["responses"] and {r["model"] for r in data["tables"]["responses"]} == {"beta"}
    book = _sheets(viewer_api.post("/api/v1/export/custom", {"entity": "experiments", "format": "xlsx"}, format="json"))
    assert {r[1] for r in book["experiments"][1:]} == {"first run", "second run"}


def test_custom_export_formula_cells_are_neutralized(viewer_api, dataset):
    ExperimentTarget.objects.filter(model="beta").update(model=FORMULA)
    rows = _csv(viewer_api.post("/api/v1/export/custom", {"entity": "responses", "fields": ["model"]}, format="json"))
    assert "'" + FORMULA in {r[0] for r in rows[1:]}


def test_custom_export_never_contains_a_key(viewer_api, dataset):
    endpoint = ProviderEndpoint.objects.get(team=dataset.team)
    endpoint.set_api_key(CANARY)
    endpoint.save()
    for entity in ("responses", "experiments", "runs", "samples", "scores"):
        response = viewer_api.post("/api/v1/export/custom", {"entity": entity, "format": "json"}, format="json")
        assert response.status_code == 200 and CANARY.encode() not in _body(response)


@pytest.mark.parametrize(
    ("body", "field"),
    [({"entity": "users"}, "entity"), ({"entity": "responses", "fields": ["id", "api_key"]}, "fields"),
     ({"entity": "responses", "fields": "id"}, "fields"), ({"entity": "responses", "format": "pdf"}, "format"),
     ({"entity": "responses", "filters": {"timeframe": "1y"}}, "filters.timeframe"),
     ({"entity": "runs", "filters": {"since": "yesterday"}}, "filters.since"),
     ({"entity": "runs", "filters": {"run": ["x"]}}, "filters.run"), ({"entity": "responses", "filters": []}, "filters")],
)  # fmt: skip
def test_custom_export_bad_requests_name_the_field(viewer_api, body, field):
    response = viewer_api.post("/api/v1/export/custom", body, format="json")
    assert response.status_code == 400 and field in response.json()


def test_custom_export_refuses_anonymous(anon_api):
    assert anon_api.post("/api/v1/export/custom", {"entity": "responses"}, format="json").status_code in (401, 403)
