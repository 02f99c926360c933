"""Analytics pages read as words (issue 11): human section titles and headers, numbers through the shared
formatter, p-values and verdicts in words, key columns first, interactive charts from json_script, the
"include simulated" switch and badges, "not enough data" in words; the files keep numbers numeric, rounded
once, with a `simulated` column; every format shows the same figure."""

import csv
import io
import json
import re
from html.parser import HTMLParser

import pytest
from django.urls import reverse
from pypdf import PdfReader

from apps.analytics import selectors
from apps.analytics.catalog import VIEWS
from apps.analytics.presentation import NOT_ENOUGH_DATA, Column, Fact, Section, cell_text, interval, rounded
from apps.experiments.models import Response
from llmbench.humanize import number_text

pytestmark = pytest.mark.django_db

RAW_NAMES = ("_ci_low", "_ci_high", "histogram_", "p_holm", "optimal_values", "pass_rate_pct", "_mean", "_usd",
             "_ms", "_tps", "_pct")  # fmt: skip
RAW_WORDS = ("True", "False", "None", "groups", "nan")  # as whole words, case as written
# 72.6352: more decimals than the formatter gives a figure of 1 or more
LONG_DECIMALS = re.compile(r"(?<![\d.])[1-9]\d{0,2}(?:,\d{3})*\.\d{4,}")
COUNT = re.compile(r"\d{1,3}(?:,\d{3})*|–")  # a count: thousands separators, never "16.0"


class _Visible(HTMLParser):
    """The text a person sees on the page: no <script>, <style> or <head>; the cells of each table by id."""

    def __init__(self):
        super().__init__()
        self.skip, self.parts, self.tables, self.table, self.cell = 0, [], {}, None, None
        self.classes: dict[str, list[list[str]]] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "style", "head"):
            self.skip += 1
        elif tag == "table" and attrs.get("id"):
            self.table = attrs["id"]
            self.tables[self.table], self.classes[self.table] = [], []
        elif self.table and tag == "tr":
            self.tables[self.table].append([])
            self.classes[self.table].append([])
        elif self.table and tag in ("td", "th"):
            self.cell = ""
            self.classes[self.table][-1].append(attrs.get("class") or "")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "head"):
            self.skip -= 1
        elif tag == "table":
            self.table = None
        elif self.table and tag in ("td", "th") and self.cell is not None:
            self.tables[self.table][-1].append(" ".join(self.cell.split()))
            self.cell = None

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)
            if self.cell is not None:
                self.cell += data

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def _page(client, slug, params=None) -> _Visible:
    response = client.get(reverse("analytics:view", args=[slug]), params or {})
    assert response.status_code == 200, response.content[:500]
    parser = _Visible()
    parser.feed(response.content.decode())
    parser.html = response.content.decode()
    return parser


def _raw_problems(text: str) -> list[str]:
    found = [name for name in RAW_NAMES if name in text]
    found += [word for word in RAW_WORDS if re.search(rf"\b{word}\b", text)]
    return found + LONG_DECIMALS.findall(text)


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# --- every page in words ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", list(VIEWS))
@pytest.mark.parametrize("params", [{}, {"metric": "pass_rate"}, {"metric": "score", "dimension": "test_case"}])
def test_every_page_shows_words_and_formatted_numbers_not_field_names(slug, params, viewer_client, dataset):
    """No raw field name, True/False or unformatted number in a page's visible text, whatever the filter."""
    page = _page(viewer_client, slug, params)
    assert _raw_problems(page.text) == []
    assert page.tables, "the page shows its sections"
    for rows in page.tables.values():
        for column, label in enumerate(rows[0]):
            if label in ("Responses", "Evaluated", "Passed", "Failed requests", "Rank", "Runs"):
                cells = [row[column] for row in rows[1:] if len(row) == len(rows[0])]  # not the "nothing here" row
                assert all(COUNT.fullmatch(cell.removesuffix(" simulated")) for cell in cells), label
    for section in VIEWS[slug].run(dataset.team, {**params, "include_simulated": "0"}).sections:
        assert section.title in page.text and section.question in page.text


def test_the_breakdown_page_leads_with_the_key_columns_and_hides_the_rest(viewer_client, dataset):
    """Model, responses, pass rate and the chosen metric with their intervals first; counts and the other
    metrics are secondary (collapsible), so the table fits a laptop screen."""
    page = _page(viewer_client, "quality-breakdown", {"metric": "overall"})
    header, classes = page.tables["table-groups"][0], page.classes["table-groups"][0]
    assert header[:6] == ["Model", "Responses", "Pass rate", "95% interval", "Mean overall quality (points)",
                          "95% interval"]  # fmt: skip
    assert all("secondary" not in c for c in classes[:6]) and all("secondary" in c for c in classes[6:])
    assert 'class="columns-toggle"' in page.html and 'class="table-wrap sticky-first"' in page.html
    for row in page.tables["table-groups"][1:]:
        assert re.fullmatch(r"\d+(\.\d)?%", row[2]) and re.fullmatch(r"\d+(\.\d)?–\d+(\.\d)?%", row[3])


def test_p_values_and_verdicts_are_words(viewer_client, dataset):
    """Pairwise p-values print as "< 0.001" or three decimals and the verdict as (not) significant."""
    # No shared test cases: Mann-Whitney on every response, so a clear difference is p < 0.001.
    Response.objects.filter(target__model="beta", error_code="").update(score=0.0, passed=False, test_case=None)
    page = _page(viewer_client, "model-comparison", {"metric": "score"})
    header, row = page.tables["table-pairs"][0], page.tables["table-pairs"][1]
    assert row[header.index("p-value, Holm-adjusted")] == "< 0.001"
    assert row[header.index("Verdict")] == "significant"
    assert row[header.index("Test")] == "Mann-Whitney U"


def test_a_group_with_too_few_values_says_not_enough_data(viewer_client, dataset):
    """An interval that cannot be computed (n < 3) reads "not enough data", never a zero-width interval."""
    keep = Response.objects.filter(target__model="beta", error_code="").order_by("pk").values_list("pk", flat=True)[:2]
    Response.objects.filter(target__model="beta").exclude(pk__in=list(keep)).delete()
    page = _page(viewer_client, "model-comparison")
    rows = {row[0]: row for row in page.tables["table-targets"][1:]}
    header = page.tables["table-targets"][0]
    assert rows["Lab · beta"][header.index("95% interval")] == NOT_ENOUGH_DATA
    assert rows["Lab · alpha"][header.index("95% interval")] != NOT_ENOUGH_DATA


def test_charts_are_echarts_fed_by_json_script_without_inline_code(viewer_client, dataset):
    """Each chart is a container read by static/js/analytics.js from json_script data, with axis names."""
    page = _page(viewer_client, "quality-breakdown")
    assert page.html.count("data-analytics-chart") == 2
    assert "js/analytics.js" in page.html and "vendor/echarts/echarts.min.js" in page.html
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.html, flags=re.S)
    inline = [body for attrs, body in scripts if "src=" not in attrs and 'type="application/json"' not in attrs]
    assert inline == []
    data = json.loads(re.search(r'<script id="plot-means" type="application/json">(.*?)</script>', page.html,
                                flags=re.S).group(1))  # fmt: skip
    assert data["kind"] == "bars" and data["axis"] == "Mean overall quality (points)"
    assert set(data["labels"]) == {"alpha", "beta"} and all(v is not None for v in data["values"])


def test_the_filter_form_has_the_simulated_switch_and_choices_in_words(viewer_client, dataset):
    """The switch follows the team's default; select options read as words; downloads carry the choice."""
    page = _page(viewer_client, "quality-trends")
    assert 'name="include_simulated"' in page.html and "Include simulated results" in page.text
    assert "Last 30 days" in page.text and "Parameter sweeps" in page.text and "Pass rate" in page.text
    assert "include_simulated=0" in page.html.split('id="download-csv"')[0].rsplit("href=", 1)[1]
    team = dataset.team
    team.show_simulated = True
    team.save()
    ticked = _page(viewer_client, "quality-trends").html
    assert re.search(r'name="include_simulated" value="1"\s+checked', ticked)
    assert "include_simulated=1" in ticked.split('id="download-csv"')[0].rsplit("href=", 1)[1]
    regressions = _page(viewer_client, "regressions")
    assert 'name="include_simulated"' in regressions.html and 'name="timeframe"' not in regressions.html


def test_rows_with_simulated_data_carry_a_badge_on_the_page_and_a_column_in_the_files(viewer_client, dataset):
    """A group that includes simulated responses is badged on the page, in its chart and marked in every file."""
    Response.objects.filter(target__model="beta").update(is_simulated=True)
    params = {"include_simulated": "1"}
    page = _page(viewer_client, "quality-breakdown", params)
    rows = {row[0]: row for row in page.tables["table-groups"][1:]}
    assert rows["beta simulated"] and "alpha" in rows
    assert 'id="simulated-notice"' in page.html
    data = json.loads(re.search(r'<script id="plot-means" type="application/json">(.*?)</script>', page.html,
                                flags=re.S).group(1))  # fmt: skip
    assert dict(zip(data["labels"], data["simulated"], strict=True)) == {"alpha": False, "beta": True}
    url = reverse("analytics:export", args=["quality-breakdown", "csv"])
    table = list(csv.reader(io.StringIO(_body(viewer_client.get(url, params)).decode())))
    assert table[0][-1] == "simulated"
    assert {row[0]: row[-1] for row in table[1:]} == {"alpha": "false", "beta": "true"}
    left_out = _page(viewer_client, "quality-breakdown", {"include_simulated": "0"})
    assert [row[0] for row in left_out.tables["table-groups"][1:]] == ["alpha"]
    assert "simulated-notice" not in left_out.html


def test_the_api_and_files_follow_the_simulated_choice(viewer_api, viewer_client, dataset):
    """`include_simulated` works on the API and the files as on the page; a bad value is a 400 naming it."""
    Response.objects.filter(target__model="beta").update(is_simulated=True)
    url = "/api/v1/analytics/quality/breakdown"
    assert [g["group"] for g in viewer_api.get(url).json()["groups"]] == ["alpha"]
    groups = viewer_api.get(url, {"include_simulated": "1"}).json()["groups"]
    assert {g["group"]: g["simulated"] for g in groups} == {"alpha": False, "beta": True}
    bad = viewer_api.get(url, {"include_simulated": "maybe"})
    assert bad.status_code == 400 and "include_simulated" in bad.json()
    page = viewer_client.get(reverse("analytics:view", args=["quality-breakdown"]), {"include_simulated": "maybe"})
    assert page.status_code == 400 and b"include_simulated" in page.content


def test_every_export_table_has_a_simulated_column(viewer_client, dataset):
    """CSV, Excel and JSON: each table ends with a `simulated` column, its values booleans."""
    for slug in VIEWS:
        url = reverse("analytics:export", args=[slug, "json"])
        data = json.loads(_body(viewer_client.get(url)))
        for name, rows in data["tables"].items():
            assert all(set(row) >= {"simulated"} and isinstance(row["simulated"], bool) for row in rows), name


# --- one figure everywhere --------------------------------------------------------------------------------------


def test_files_hold_the_page_figures_as_rounded_numbers(viewer_client, viewer_api, dataset):
    """The CSV's numbers are the API's rounded once; the page and the PDF write those same numbers in words."""
    params = {"metric": "score"}
    api = {t["target"]: t for t in viewer_api.get("/api/v1/analytics/models/comparison", params).json()["targets"]}
    rows = list(csv.reader(io.StringIO(_body(viewer_client.get(
        reverse("analytics:export", args=["model-comparison", "csv"]), params)).decode())))  # fmt: skip
    head = rows[0]
    page = _page(viewer_client, "model-comparison", params)
    page_head = page.tables["table-targets"][0]
    page_rows = {row[0]: row for row in page.tables["table-targets"][1:]}
    pdf = PdfReader(io.BytesIO(_body(viewer_client.get(reverse("analytics:export", args=["model-comparison", "pdf"]),
                                                        params))))  # fmt: skip
    pdf_text = " ".join(" ".join(p.extract_text() for p in pdf.pages).split())
    for row in rows[1:]:
        target = row[0]
        mean = float(row[head.index("score_mean")])
        assert mean == round(api[target]["mean"], 1)
        assert page_rows[target][page_head.index("Mean evaluator score (points)")] == number_text(mean, 1)
        latency = float(row[head.index("mean_latency_ms")])
        assert latency == round(api[target]["mean_latency_ms"], 1)
        assert page_rows[target][page_head.index("Mean latency (ms)")] == number_text(latency, 1)
        assert number_text(latency, 1) in pdf_text
    assert "Targets side by side" in pdf_text and "Mean latency (ms)" in pdf_text and "_ci_low" not in pdf_text


def test_the_pdf_speaks_words(viewer_client, dataset):
    """The PDF's summary and tables read like the page: section titles, p-values in words, no raw names."""
    for slug in ("model-comparison", "quality-breakdown", "leaderboard"):
        pdf = PdfReader(io.BytesIO(_body(viewer_client.get(reverse("analytics:export", args=[slug, "pdf"])))))
        text = " ".join(p.extract_text() for p in pdf.pages)
        assert not [name for name in ("_ci_low", "_ci_high", "histogram_", "p_holm", "pass_rate_pct") if name in text]
        assert not re.search(r"\b(True|False)\b", text), slug


# --- the presentation kit ---------------------------------------------------------------------------------------


def test_rounding_keeps_small_p_values_and_follows_the_page_precision():
    """p-values never round to 0; other figures round as the page shows them; NaN becomes None."""
    assert rounded(0.000012345, kind="p") == 1.23e-05 and rounded(0.04123, kind="p") == 0.041
    assert rounded(72.6352) == 72.64 and rounded(123.456) == 123.5 and rounded(1234.56) == 1235
    assert rounded(0.012345) == 0.012
    assert rounded(72.6352, 1) == 72.6 and rounded(-0.0001, 1) == 0.0 and rounded(float("nan")) is None
    assert rounded(16) == 16 and rounded(True) is True


def test_cells_in_words():
    """Each column kind as the page shows it."""
    row = {"n": 1234, "p": 0.0002, "ok": True, "sig": False, "pct": 72.6, "lo": 65.1, "hi": 79.2, "v": 16.0,
           "unit": "ms", "amount": 81.53, "code": "pass_rate"}  # fmt: skip
    assert cell_text(Column("n", "n", "count"), row) == "1,234"
    assert cell_text(Column("p", "p", "p"), row) == "< 0.001"
    assert cell_text(Column("ok", "ok", "bool"), row) == "yes"
    assert cell_text(Column("sig", "sig", "significant"), row) == "not significant"
    assert cell_text(Column("pct", "rate", "pct", 1), row) == "72.6%"
    assert cell_text(interval(low="lo", high="hi", digits=1, unit="%"), row) == "65.1–79.2%"
    assert cell_text(interval(low="lo", high="none"), row) == NOT_ENOUGH_DATA
    assert cell_text(Column("v", "concurrency"), row) == "16"
    assert cell_text(Column("amount", "Latest", "amount", unit_key="unit"), row) == "81.53 ms"
    assert cell_text(Column("code", "Figure", "words"), row) == "pass rate"
    assert Fact("p", 0.0, "p").text == "< 0.001" and Fact("Mean", 72.6352, digits=1).text == "72.6"
    assert [cell_text(Column("v", "Value", "setting"), {"v": v}) for v in (0.1, 1.1, 200.0, 4096)] == [
        "0.1", "1.1", "200", "4,096"]  # fmt: skip
    assert cell_text(Column("code", "Figure", "words"), {"code": "ttft_ms"}) == "TTFT (ms)"


def test_a_section_puts_key_columns_first_and_files_keep_their_order():
    """Page: key columns then secondary ones; file: the declared order, numbers rounded, `simulated` last."""
    section = Section("things", "Things", "What?", [
        Column("name", "Name", "text"), Column("extra", "Extra", secondary=True), Column("value", "Value", digits=1),
        interval(low="lo", high="hi", digits=1), Column("lo", "", digits=1, page=False),
        Column("hi", "", digits=1, page=False)],
        [{"name": "a", "extra": 1.23456, "value": 2.345678, "lo": 1.0, "hi": 3.7, "simulated": True}])  # fmt: skip
    assert [c.label for c in section.page_columns()] == ["Name", "Value", "95% interval", "Extra"]
    table = section.file_table()
    assert table.columns == ["name", "extra", "value", "lo", "hi", "simulated"]
    assert list(table.rows) == [["a", 1.23, 2.3, 1.0, 3.7, True]]
    assert section.page_rows() == [{"cells": [("a", "text"), ("2.3", ""), ("1.0–3.7", ""), ("1.23", "secondary")],
                                    "simulated": True}]  # fmt: skip


def test_the_catalog_figures_come_from_the_selectors(monkeypatch, viewer_client, dataset):
    """The page shows what the selector answers (no cached or made-up figures)."""
    real = selectors.model_comparison

    def changed(team, filters):
        data = real(team, filters)
        data["targets"][0]["mean_latency_ms"] = 12345.678
        return data

    monkeypatch.setattr(selectors, "model_comparison", changed)
    page = _page(viewer_client, "model-comparison")
    header = page.tables["table-targets"][0]
    assert page.tables["table-targets"][1][header.index("Mean latency (ms)")] == "12,345.7"
