"""Table writers of llmbench.exports: CSV, JSON and Excel cells, sheet names, the HTTP responses."""

import asyncio
import csv
import io
import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import openpyxl
import pytest

from llmbench import exports
from llmbench.exports import FORMULA_PREFIXES, Table, csv_stream, export_response, json_stream, xlsx_bytes

FORMULAS = [prefix + "1+2" for prefix in FORMULA_PREFIXES] + ['=HYPERLINK("http://x","y")', "@SUM(A1:A2)"]


def _csv_rows(table: Table) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(csv_stream(table)), newline="")))


def _workbook(tables: list[Table], *, title: str = "Report", meta: dict | None = None, summary=()) -> openpyxl.Workbook:
    """The workbook xlsx_bytes writes, read back by openpyxl (styles included)."""
    body = xlsx_bytes(title=title, meta=meta or {}, summary=list(summary), tables=tables)
    return openpyxl.load_workbook(io.BytesIO(body))


def _cells(values: list) -> list[openpyxl.cell.Cell]:
    """The data cells of one row holding `values`, read back from a real .xlsx."""
    sheet = _workbook([Table("data", [f"c{i}" for i in range(len(values))], [values])])["data"]
    return list(next(sheet.iter_rows(min_row=2, max_row=2)))


# --- CSV -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", FORMULAS)
def test_csv_quotes_each_formula_prefix(text):
    """A text cell starting with = + - @ tab CR or NUL gets a leading quote in CSV."""
    assert _csv_rows(Table("t", ["text"], [[text]]))[1] == ["'" + text]


def test_csv_keeps_numbers_and_writes_each_type_plainly():
    """Numbers stay numbers at full precision (negative ones unquoted); None, bools, datetimes, JSON are plain text."""
    moment = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    row = [-5, 0.1 + 0.2, 1e-300, -2.5, Decimal("0.000001"), None, True, False, moment, date(2026, 3, 1),
           {"a": [1, float("nan")]}, math.nan, np.int64(7), np.float32(0.5)]  # fmt: skip
    assert _csv_rows(Table("t", [f"c{i}" for i in range(len(row))], [row]))[1] == [
        "-5", "0.30000000000000004", "1e-300", "-2.5", "0.000001", "", "true", "false",
        "2026-03-01T12:30:15.123456+00:00", "2026-03-01", '{"a":[1,null]}', "", "7", "0.5",
    ]  # fmt: skip


def test_csv_yields_the_header_before_reading_any_row():
    """The header line comes out before the first row is produced, so the download starts at once."""
    produced = []

    def rows():
        for i in range(3):
            produced.append(i)
            yield [i]

    stream = csv_stream(Table("t", ["n"], rows()))
    assert next(stream) == "n\r\n"
    assert produced == []
    assert next(stream) == "0\r\n"
    assert produced == [0]


# --- Excel -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", FORMULAS)
def test_xlsx_writes_each_formula_prefix_as_quoted_text(text):
    """A formula-like text is a string cell with the leading quote (a removed NUL still leaves the quote)."""
    (cell,) = _cells([text])
    assert cell.data_type == "s"
    assert cell.value == "'" + text.replace("\0", "")


@pytest.mark.parametrize("text", ["#N/A", "#DIV/0!", "TRUE", "1e5", "  padded  ", "line\r\nbreak"])
def test_xlsx_keeps_other_text_as_exact_string_cells(text):
    """Error codes, a lone "=", number-like text and whitespace stay string cells with the exact text."""
    (cell,) = _cells([text])
    assert (cell.data_type, cell.value) == ("s", text)


def test_xlsx_cells_have_native_types():
    """Numbers, bools and datetimes are typed cells (aware ones in naive UTC); dicts and lists JSON text."""
    moment = datetime(2026, 3, 1, 14, 30, 15, tzinfo=timezone(timedelta(hours=2)))
    values = [42, -7, 0.1 + 0.2, Decimal("2.5"), True, False, moment, date(2026, 3, 1), {"k": [1, 2]}, [1, "a"],
              np.int64(9), np.float64(1.25), np.bool_(True)]  # fmt: skip
    cells = _cells(values)
    assert [c.data_type for c in cells] == ["n", "n", "n", "n", "b", "b", "d", "d", "s", "s", "n", "n", "b"]
    assert [c.value for c in cells] == [
        42, -7, 0.30000000000000004, 2.5, True, False, datetime(2026, 3, 1, 12, 30, 15), datetime(2026, 3, 1),
        '{"k":[1,2]}', '[1,"a"]', 9, 1.25, True,
    ]  # fmt: skip


def test_xlsx_leaves_none_nan_and_infinity_empty():
    """None, NaN and ±inf become empty cells (Excel calls a file with NaN corrupt)."""
    cells = _cells([1, None, math.nan, math.inf, -math.inf, Decimal("NaN"), 2])
    assert [c.value for c in cells] == [1, None, None, None, None, None, 2]


def test_xlsx_removes_illegal_control_characters():
    """XML-illegal control characters are dropped instead of failing; a formula they hid is still quoted."""
    assert [c.value for c in _cells(["a\x01b\x1fc\x0b", "\x01=cmd()", "tab\tand\nnewline"])] == [
        "abc", "'=cmd()", "tab\tand\nnewline",
    ]  # fmt: skip


def test_xlsx_summary_sheet_holds_title_meta_and_summary():
    """The first sheet, "Summary", has the title, the meta (filters one per row) and the summary rows."""
    generated = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    workbook = _workbook(
        [Table("rows", ["a"], [])],
        title="=Latency report",
        meta={"generated_at": generated, "filters": {"model": "gpt-4o", "since": "2026-01-01"}},
        summary=[("responses", 1200), ("error rate", 0.125)],
    )
    assert workbook.sheetnames == ["Summary", "rows"]
    values = [tuple(c for c in row if c is not None) for row in workbook["Summary"].iter_rows(values_only=True)]
    assert [v for v in values if v] == [
        ("'=Latency report",), ("generated_at", datetime(2026, 3, 1, 9, 0)), ("filters: model", "gpt-4o"),
        ("filters: since", "2026-01-01"), ("Summary",), ("responses", 1200), ("error rate", 0.125),
    ]  # fmt: skip


def test_xlsx_table_sheet_has_a_bold_frozen_header():
    """Each table sheet starts with a bold header row that stays frozen while scrolling."""
    sheet = _workbook([Table("results", ["id", "model"], [[1, "a"], [2, "b"]])])["results"]
    assert sheet.freeze_panes == "A2"
    assert [(c.value, c.font.b) for c in sheet[1]] == [("id", True), ("model", True)]
    assert [c.font.b for c in sheet[2]] == [False, False]
    assert list(sheet.iter_rows(min_row=2, values_only=True)) == [(1, "a"), (2, "b")]


def test_xlsx_sheet_names_are_cut_cleaned_and_unique():
    """Sheet names are cut to 31 characters, stripped of characters Excel forbids, unique ignoring case."""
    names = ["performance samples of the long-context sweep", "performance samples of the long-context run",
             "summary", "History", "a/b:c?[d]*", "'quoted'", "", "results", "RESULTS"]  # fmt: skip
    sheetnames = _workbook([Table(name, ["x"], [[1]]) for name in names]).sheetnames
    assert sheetnames == [
        "Summary", "performance samples of the long", "performance samples of the (2)", "summary (2)",
        "History (2)", "a_b_c__d__", "quoted", "Sheet", "results", "RESULTS (2)",
    ]  # fmt: skip


def test_xlsx_cuts_a_table_at_excels_row_limit_with_a_note(monkeypatch):
    """Past Excel's last row the sheet ends with a note pointing to the CSV and JSON exports."""
    monkeypatch.setattr(exports, "_EXCEL_MAX_ROWS", 5)
    sheet = _workbook([Table("big", ["n"], ([i] for i in range(10)))])["big"]
    values = [row[0] for row in sheet.iter_rows(values_only=True)]
    assert values[:4] == ["n", 0, 1, 2]
    assert values[4].startswith("cut at Excel's limit")


# --- JSON ------------------------------------------------------------------------------------------------------


def test_json_stream_writes_meta_summary_and_tables_with_nan_as_null():
    """One object with meta, summary and tables; NaN/±inf null (also nested), datetimes ISO, text as given."""
    moment = datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)
    body = "".join(
        json_stream(
            meta={"generated_at": moment, "filters": {"model": "gpt-4o"}},
            summary=[("mean", math.nan), ("count", 2)],
            tables=[Table("rows", ["text", "score", "extra"], [["=1+2", math.inf, {"q": math.nan}], ["-x", 0.5, [1]]])],
        )
    )
    assert json.loads(body) == {
        "meta": {"generated_at": "2026-03-01T12:00:00.500000+00:00", "filters": {"model": "gpt-4o"}},
        "summary": {"mean": None, "count": 2},
        "tables": {"rows": [{"text": "=1+2", "score": None, "extra": {"q": None}},
                            {"text": "-x", "score": 0.5, "extra": [1]}]},
    }  # fmt: skip


def test_json_stream_yields_one_chunk_per_row_lazily():
    """Rows are read and written one at a time, never collected into a list first."""
    produced = []

    def rows():
        for i in range(1000):
            produced.append(i)
            yield [i]

    stream = json_stream(meta={}, summary=[], tables=[Table("t", ["n"], rows())])
    chunks = [next(stream), next(stream), next(stream)]  # the head, the table's key, the first row
    assert chunks[2] == '{"n":0}'
    assert len(produced) == 1
    chunks.extend(stream)
    assert len(chunks) == 2 + 1000 + 2  # head and key, one chunk per row, the table's and the object's ends
    assert json.loads("".join(chunks))["tables"]["t"][-1] == {"n": 999}


def test_json_stream_keeps_tables_with_the_same_name():
    """Two tables with one name both survive, the second with a suffix."""
    body = json.loads(
        "".join(json_stream(meta={}, summary=[], tables=[Table("r", ["a"], [[1]]), Table("r", ["a"], [[2]])]))
    )
    assert body["tables"] == {"r": [{"a": 1}], "r (2)": [{"a": 2}]}


# --- HTTP ------------------------------------------------------------------------------------------------------


def _response(kind: str):
    return export_response(kind, filename=f"results.{kind}", title="Results", meta={"team": "Alpha"},
                           summary=[("rows", 1)], tables=[Table("results", ["id", "text"], [[1, "=x"]])])  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "content_type", "streaming"),
    [
        ("csv", "text/csv; charset=utf-8", True),
        ("json", "application/json", True),
        ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", False),
    ],
)
def test_export_response_sets_type_and_attachment(kind, content_type, streaming):
    """Each kind has its content type and an attachment disposition; CSV and JSON are streamed."""
    response = _response(kind)
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="results.{kind}"'
    assert response.streaming is streaming


def test_export_response_bodies_hold_the_table():
    """The CSV is the first table (quoted formula), the JSON the whole export, the xlsx a workbook."""
    assert b"".join(_response("csv").streaming_content) == b"id,text\r\n1,'=x\r\n"
    assert json.loads(b"".join(_response("json").streaming_content))["tables"]["results"] == [{"id": 1, "text": "=x"}]
    assert openpyxl.load_workbook(io.BytesIO(_response("xlsx").content)).sheetnames == ["Summary", "results"]


def test_export_response_rejects_an_unknown_kind():
    """A kind other than csv, json or xlsx is a ValueError."""
    with pytest.raises(ValueError, match="unknown export kind 'pdf'"):
        _response("pdf")


def test_streamed_export_under_asgi_sends_batches_before_the_end():
    """Under ASGI the rows are pulled batch by batch, not read to the end before the first byte."""
    produced = []

    def rows():
        for i in range(20_000):
            produced.append(i)
            yield [i, "x" * 100]

    response = export_response(
        "csv", filename="a.csv", title="", meta={}, summary=[], tables=[Table("t", ["n", "s"], rows())]
    )

    async def first_and_rest():
        batches = aiter(response)
        first = await anext(batches)
        read_before_first = len(produced)
        return first, read_before_first, [batch async for batch in batches]

    first, read_before_first, rest = asyncio.run(first_and_rest())
    assert first.startswith(b"n,s\r\n0,xxx")
    assert read_before_first < 20_000
    assert len(b"".join([first, *rest]).splitlines()) == 20_001
