"""An experiment's exports in CSV, JSON, Excel and PDF, on the page and through the API: content, roles, teams,
bad formats, formula injection and the provider key."""

import csv
import io
import json

import openpyxl
import pytest
from django.urls import reverse
from pypdf import PdfReader

from apps.experiments.models import Experiment, Response, TestCase
from apps.experiments.services import experiment_create
from apps.providers.models import ProviderEndpoint

pytestmark = pytest.mark.django_db
FORMATS = ("csv", "json", "xlsx", "pdf")
CANARY = "sk-canary-0123456789-experiment-exports"
FORMULA = '=HYPERLINK("http://x")'


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def pdf_text(data: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).split())


def make_experiment(team, *, content: str = "plain answer") -> Experiment:
    """An experiment whose endpoint holds the canary key, with a formula-like test case title and response."""
    endpoint = ProviderEndpoint(team=team, name=f"keyed-{team.slug}", kind="sim", base_url="sim://local")
    endpoint.set_api_key(CANARY)
    endpoint.save()
    case = TestCase.objects.create(team=team, title=FORMULA, prompt="Say hi", status=TestCase.Status.APPROVED)
    experiment = experiment_create(team=team, user=None, name=f"exp {team.slug}", targets=[(endpoint, "sim-small")],
                                   prompt="hello")  # fmt: skip
    target = experiment.targets.get()
    Response.objects.create(
        experiment=experiment, target=target, test_case=case, item_key=f"tc:{case.pk}", content=FORMULA,
        parameters={"temperature": 0.7}, input_tokens=12, output_tokens=40, ttft_ms=55.5, latency_ms=420.25,
        cost_usd=0.0012, passed=True, score=1.0, quality={"overall": 81.5, "coherence": 90.0},
    )  # fmt: skip
    Response.objects.create(experiment=experiment, target=target, item_key="prompt", repetition=1, content=content,
                            passed=False, score=0.0, latency_ms=380.0, quality={"overall": 60.0})  # fmt: skip
    Response.objects.create(experiment=experiment, target=target, item_key="prompt", repetition=2,
                            error_code="500", error_message="-upstream broke")  # fmt: skip
    return experiment


@pytest.fixture
def experiment(team):
    return make_experiment(team)


def url(experiment, fmt):
    return reverse(f"experiments:export-{fmt}", args=[experiment.pk])


def test_csv_is_every_response_with_formulas_quoted_and_numbers_plain(viewer_client, experiment):
    """The CSV is the responses table: one row per response, formula-like text quoted, numbers unquoted."""
    response = viewer_client.get(url(experiment, "csv"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="experiment-{experiment.pk}.csv"'
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert len(rows) == 3
    first = rows[0]
    assert first["content"] == "'" + FORMULA and first["test_case"] == "'" + FORMULA
    assert first["test_case_version"] == "1" and first["temperature"] == "0.7" and first["passed"] == "true"
    assert first["latency_ms"] == "420.25" and first["quality_overall"] == "81.5" and first["model"] == "sim-small"
    assert rows[2]["error_code"] == "500" and rows[2]["error_message"] == "'-upstream broke"


def test_json_holds_responses_and_the_targets_figures(viewer_client, experiment):
    """JSON has both tables, text as written, and the per-target figures of the detail page."""
    data = json.loads(body(viewer_client.get(url(experiment, "json"))))
    responses, targets = data["tables"]["responses"], data["tables"]["targets"]
    assert [r["content"] for r in responses][:1] == [FORMULA]
    (target,) = targets
    assert (target["responses"], target["errors"], target["evaluated"], target["passed"]) == (3, 1, 2, 1)
    assert target["pass_rate"] == 0.5 and target["is_simulated"] is True
    assert target["pass_rate_ci_low"] is None and target["pass_rate_ci_high"] is None  # n = 2: not enough data
    assert target["quality_overall"] == pytest.approx((81.5 + 60.0) / 2)
    assert data["meta"]["experiment"] == experiment.name and data["summary"]["Responses"] == 3


def test_xlsx_has_summary_responses_and_targets_sheets_with_typed_cells(viewer_client, experiment):
    """Excel: Summary, responses and targets; formula-like text is quoted text, figures are number cells."""
    response = viewer_client.get(url(experiment, "xlsx"))
    workbook = openpyxl.load_workbook(io.BytesIO(body(response)))
    assert workbook.sheetnames == ["Summary", "responses", "targets"]
    sheet = workbook["responses"]
    header = [cell.value for cell in sheet[1]]
    first = {name: cell for name, cell in zip(header, sheet[2], strict=True)}
    assert sheet.max_row == 4
    assert (first["content"].data_type, first["content"].value) == ("s", "'" + FORMULA)
    assert first["test_case"].value == "'" + FORMULA
    assert (first["latency_ms"].data_type, first["latency_ms"].value) == ("n", 420.25)
    assert first["passed"].value is True
    targets = workbook["targets"]
    assert targets.max_row == 2 and targets.cell(2, 3).value == 3  # responses of the one target


def test_pdf_report_shows_the_targets_and_responses(viewer_client, experiment):
    """The PDF names the experiment and team, has the per-target figures, responses and methods."""
    response = viewer_client.get(url(experiment, "pdf"))
    assert response["Content-Type"] == "application/pdf"
    text = pdf_text(body(response))
    for phrase in [
        experiment.name,
        "Team: Alpha",
        "(simulated)",
        "; not enough data (n = 2)",
        "Methods",
        "Wilson",
        FORMULA,
    ]:
        assert phrase in text, phrase


def test_the_detail_page_links_every_format(viewer_client, experiment):
    """The experiment page has a download link per format."""
    page = viewer_client.get(reverse("experiments:detail", args=[experiment.pk])).content.decode()
    for fmt in FORMATS:
        assert f'href="{url(experiment, fmt)}" id="download-{fmt}"' in page


@pytest.mark.parametrize("fmt", FORMATS)
def test_anonymous_is_sent_to_log_in(client, experiment, fmt):
    """Without a session every export redirects to the login page."""
    response = client.get(url(experiment, fmt))
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_another_teams_experiment_is_404(viewer_client, other_team, fmt):
    """An experiment of another team is not found, in any format."""
    assert viewer_client.get(url(make_experiment(other_team), fmt)).status_code == 404


def test_an_unknown_format_is_404(viewer_client, experiment):
    """Only the four formats have a URL."""
    assert viewer_client.get(f"/experiments/{experiment.pk}/export.xml").status_code == 404


def test_another_teams_rows_never_appear(viewer_client, experiment, other_team):
    """Only this experiment's responses are exported, never another team's."""
    make_experiment(other_team, content="bravo-only answer")
    for fmt in FORMATS:
        data = body(viewer_client.get(url(experiment, fmt)))
        text = pdf_text(data) if fmt == "pdf" else data.decode("latin-1")
        assert "bravo-only" not in text and "keyed-bravo" not in text, fmt


def test_the_provider_key_is_in_no_export(viewer_client, viewer_api, experiment):
    """The endpoint's key appears in no file, nor in the API's (xlsx is a zip, so its sheets are read too)."""
    bodies = [body(viewer_client.get(url(experiment, fmt))) for fmt in FORMATS]
    bodies += [body(viewer_api.get(f"/api/v1/experiments/{experiment.pk}/export?format={fmt}")) for fmt in FORMATS]
    for data in bodies:
        assert CANARY.encode() not in data and CANARY[-12:].encode() not in data
    xlsx = openpyxl.load_workbook(io.BytesIO(bodies[2]))
    cells = [str(c) for sheet in xlsx for row in sheet.iter_rows(values_only=True) for c in row]
    assert not any(CANARY[-12:] in c for c in cells)
    assert not any(CANARY[-12:] in pdf_text(data) for data in (bodies[3], bodies[7]))


# --- API ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("csv", "text/csv; charset=utf-8"), ("json", "application/json"), ("pdf", "application/pdf"),
     ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")],
)  # fmt: skip
def test_api_exports_each_format_to_a_viewer(viewer_api, experiment, fmt, content_type):
    """GET /api/v1/experiments/{id}/export?format= answers each format with its type, also to a viewer."""
    response = viewer_api.get(f"/api/v1/experiments/{experiment.pk}/export?format={fmt}")
    assert response.status_code == 200 and response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="experiment-{experiment.pk}.{fmt}"'


def test_api_keeps_the_older_type_parameter(viewer_api, experiment):
    """`?type=json` still works."""
    response = viewer_api.get(f"/api/v1/experiments/{experiment.pk}/export?type=json")
    assert json.loads(body(response))["tables"]["responses"][0]["content"] == FORMULA


def test_api_refuses_a_bad_format_anonymous_and_other_team(viewer_api, anon_api, experiment, other_team):
    """A bad format is a 400 naming the field; anonymous 401; another team's experiment 404."""
    bad = viewer_api.get(f"/api/v1/experiments/{experiment.pk}/export?format=xml")
    assert bad.status_code == 400 and "format" in bad.json()
    assert viewer_api.get(f"/api/v1/experiments/{experiment.pk}/export?type=xml").json().keys() - {"request_id"} == {
        "type"
    }
    assert anon_api.get(f"/api/v1/experiments/{experiment.pk}/export?format=csv").status_code == 401
    theirs = make_experiment(other_team)
    assert viewer_api.get(f"/api/v1/experiments/{theirs.pk}/export?format=pdf").status_code == 404
