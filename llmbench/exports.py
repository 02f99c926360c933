"""Helpers every export uses: formula neutralization and the table writers (CSV, JSON, Excel).

A `Table` is a name, its columns and a one-shot iterable of rows (usually a generator over a queryset's
`.iterator()`); the writers read each table once and never hold all of its rows. CSV and JSON are
streamed; Excel is built in memory (an .xlsx is a zip, whose directory is written at the end).
"""

import csv
import io
import json
import math
import re
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import numpy as np
from asgiref.sync import sync_to_async
from django.http import HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\0")


def neutralize_formula(value):
    """OWASP CSV injection: a text cell starting with = + - @ tab CR or NUL gets a leading quote,
    so a spreadsheet shows it as text instead of running it. Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


@dataclass
class Table:
    """One table of an export: a sheet in Excel, a key in JSON, the whole file in CSV."""

    name: str  # sheet name in Excel (cut to 31 characters, made unique), key in JSON
    columns: list[str]
    rows: Iterable[Sequence[Any]]  # produced lazily, read once


def _converter(converters: dict[type, Callable], value: Any) -> Callable:
    """The converter for `value`: its exact type first (the common case, one dict look-up), then the first
    matching base class in the table's order (bool before int, datetime before date; `object` last)."""
    convert = converters.get(type(value))
    if convert is None:
        convert = next(fn for kind, fn in converters.items() if isinstance(value, kind))
    return convert


def _finite_or_none(value: float | Decimal) -> float | Decimal | None:
    """NaN and ±inf have no place in JSON or a spreadsheet: they become an empty value."""
    return value if math.isfinite(value) else None


# --- JSON ----------------------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    """A value JSON can hold exactly: NaN/±inf → null, datetimes → ISO 8601, containers converted in depth."""
    return _converter(_JSON_VALUES, value)(value)


_JSON_VALUES: dict[type, Callable[[Any], Any]] = {
    type(None): lambda v: v,
    bool: lambda v: v,
    int: int,  # also IntegerChoices and other int subclasses, written as plain numbers
    float: lambda v: _finite_or_none(float(v)),
    str: str,
    Decimal: lambda v: float(v) if v.is_finite() else None,
    datetime: lambda v: v.isoformat(),
    date: lambda v: v.isoformat(),
    time: lambda v: v.isoformat(),
    dict: lambda v: {str(key): _json_value(item) for key, item in v.items()},
    list: lambda v: [_json_value(item) for item in v],
    tuple: lambda v: [_json_value(item) for item in v],
    np.generic: lambda v: _json_value(v.item()),  # numpy scalars from the statistics
    object: str,  # UUIDs, durations, paths: their text
}


def _json_dumps(value: Any) -> str:
    # allow_nan=False: a NaN that slipped past `_json_value` fails loudly instead of writing invalid JSON.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _unique_names(names: Iterable[str], *, max_length: int | None = None, taken: Iterable[str] = ()) -> list[str]:
    """Names made unique ignoring case (as Excel compares sheet names) with a " (2)" suffix, each cut to
    `max_length` before its suffix so that the suffix survives the cut."""
    seen = {name.lower() for name in taken}
    result = []
    for name in names:
        candidate, number = name[:max_length], 2
        while candidate.lower() in seen:
            suffix = f" ({number})"
            candidate = name[: max_length - len(suffix) if max_length else None].rstrip() + suffix
            number += 1
        seen.add(candidate.lower())
        result.append(candidate)
    return result


def json_stream(*, meta: dict, summary: list[tuple[str, Any]], tables: list[Table]) -> Iterator[str]:
    """`{"meta": …, "summary": {label: value}, "tables": {name: [{column: value}, …]}}`, one row per chunk.

    Values stay as given (JSON is not a spreadsheet, so there is no formula neutralization), except that
    NaN/±inf become null and datetimes ISO 8601 text. Duplicate table names get a " (2)" suffix, not lost.
    """
    head = {"meta": _json_value(meta), "summary": {str(label): _json_value(value) for label, value in summary}}
    yield _json_dumps(head)[:-1] + ',"tables":{'
    for index, (name, table) in enumerate(zip(_unique_names(t.name for t in tables), tables, strict=True)):
        yield ("," if index else "") + _json_dumps(name) + ":["
        columns = [str(column) for column in table.columns]
        for row_index, row in enumerate(table.rows):
            record = {column: _json_value(value) for column, value in zip(columns, row, strict=False)}
            yield ("," if row_index else "") + _json_dumps(record)
        yield "]"
    yield "}}"


# --- CSV -----------------------------------------------------------------------------------------------------


def _csv_cell(value: Any) -> Any:
    """A value as a CSV cell: formula-like text quoted, numbers as they are, None empty, the rest text."""
    return _converter(_CSV_CELLS, value)(value)


_INFINITIES = (math.inf, -math.inf)


def _slow_csv_cell(value: Any) -> Any:
    """A cell whose exact type has no converter of its own (a subclass, a numpy scalar …)."""
    return _csv_cell(value)


def _compact_json(value: Any) -> str:
    return _json_dumps(_json_value(value))


_CSV_CELLS: dict[type, Callable[[Any], Any]] = {
    type(None): lambda v: "",
    bool: lambda v: "true" if v else "false",
    int: int,
    # csv writes a float with repr(): the shortest text that reads back as the same float, never rounded.
    float: lambda v: v if math.isfinite(v) else "",
    str: lambda v: "'" + v if v.startswith(FORMULA_PREFIXES) else v,  # neutralize_formula, inlined: the hot case
    Decimal: lambda v: v if v.is_finite() else "",
    datetime: lambda v: v.isoformat(),
    date: lambda v: v.isoformat(),
    time: lambda v: v.isoformat(),
    dict: _compact_json,  # JSON text starts with { or [, never with a formula prefix
    list: _compact_json,
    tuple: _compact_json,
    np.generic: lambda v: _csv_cell(v.item()),
    object: lambda v: neutralize_formula(str(v)),
}


class _Echo:
    """A file whose write() returns the line, so csv.writer produces lines to yield."""

    def write(self, value: str) -> str:
        return value


def csv_stream(table: Table) -> Iterator[str]:
    """The table as CSV lines (header first), one line per chunk, formula-safe."""
    writerow = csv.writer(_Echo()).writerow
    converters = _CSV_CELLS.get
    # the hot loop of every CSV export: one look-up by exact type per cell; numbers, which csv writes
    # itself, skip the call altogether (bool is not int here: type() is exact)
    plain = (int, float)
    yield writerow([_csv_cell(column) for column in table.columns])
    for row in table.rows:
        yield writerow(
            [
                value
                if type(value) in plain and value == value and value not in _INFINITIES
                else (converters(type(value)) or _slow_csv_cell)(value)
                for value in row
            ]
        )


# --- Excel ---------------------------------------------------------------------------------------------------
# The SpreadsheetML parts are written here directly rather than through openpyxl: openpyxl's write-only mode
# spends 8–10 µs per cell in its Cell objects and per-cell XML elements. For 100,000 rows × 20 columns on this
# 2-core box that was 17.7 s with lxml and 19.8 s without (XlsxWriter: 15.2 s), against a 10 s target; this
# writer takes 3.7 s. The tests read every file back with openpyxl.
# Every string is an inline string cell (t="inlineStr"): a spreadsheet never evaluates one, whatever it
# starts with; the formula prefixes still get the leading quote, as in CSV, so a copy-paste stays inert.

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")  # not allowed in XML 1.0
_EXCEL_MAX_TEXT = 32_767  # characters in one cell
_EXCEL_MAX_ROWS = 1_048_576
_EXCEL_SHEET_NAME_FORBIDDEN = re.compile(r"[\\/?*\[\]:]")
_EXCEL_RESERVED_SHEET_NAMES = ("Summary", "History")  # "Summary" is ours, "History" Excel's own
_EXCEL_EPOCH = datetime(1899, 12, 30)  # day 0 of the 1900 date system, as Excel counts it after 1900-03-01
_SECONDS_PER_DAY = 86_400

# Cell styles, indices into cellXfs of _STYLES_XML.
_STYLE_BOLD, _STYLE_DATETIME, _STYLE_DATE, _STYLE_TIME, _STYLE_TITLE = 1, 2, 3, 4, 5


def _xml_text(text: str) -> str:
    """Escape for XML character data and attributes; CR as a reference, since XML readers turn a raw CR
    into LF."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\r", "&#13;")
    )


def _spreadsheet_text(value: str) -> str:
    """Text as a spreadsheet cell holds it: formula-like starts quoted, illegal XML characters removed,
    at most 32,767 characters (the full text is in the CSV and JSON exports)."""
    text = neutralize_formula(value)
    if _XML_ILLEGAL.search(text):
        # Neutralize again after removing: "\x01=cmd" would otherwise become a live "=cmd".
        text = neutralize_formula(_XML_ILLEGAL.sub("", text))
    return text[:_EXCEL_MAX_TEXT]


def _text_cell(ref: str, text: str, style: int = 0) -> str:
    styled = f' s="{style}"' if style else ""
    body = _xml_text(_spreadsheet_text(text))
    return f'<c r="{ref}"{styled} t="inlineStr"><is><t xml:space="preserve">{body}</t></is></c>'


def _number_cell(ref: str, number: int | float, style: int) -> str:
    return f'<c r="{ref}" s="{style}"><v>{number!r}</v></c>'


def _float_cell(ref: str, value: float) -> str:
    # repr: the shortest text that reads back as the same double. NaN/inf make Excel call the file corrupt.
    return f'<c r="{ref}"><v>{float(value)!r}</v></c>' if math.isfinite(value) else ""


def _datetime_cell(ref: str, value: datetime) -> str:
    if value.tzinfo is not None:  # Excel has no time zones: an aware value is shown in UTC
        value = value.astimezone(UTC).replace(tzinfo=None)
    return _number_cell(ref, (value - _EXCEL_EPOCH).total_seconds() / _SECONDS_PER_DAY, _STYLE_DATETIME)


def _time_cell(ref: str, value: time) -> str:
    seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    return _number_cell(ref, seconds / _SECONDS_PER_DAY, _STYLE_TIME)


def _excel_cell(ref: str, value: Any) -> str:
    """One `<c>` element for `value` at `ref`; an empty string for an empty cell."""
    return _converter(_EXCEL_CELLS, value)(ref, value)


_EXCEL_CELLS: dict[type, Callable[[str, Any], str]] = {
    type(None): lambda ref, v: "",
    bool: lambda ref, v: f'<c r="{ref}" t="b"><v>{1 if v else 0}</v></c>',
    int: lambda ref, v: f'<c r="{ref}"><v>{int(v)}</v></c>',
    float: _float_cell,
    str: _text_cell,
    Decimal: lambda ref, v: f'<c r="{ref}"><v>{v}</v></c>' if v.is_finite() else "",
    datetime: _datetime_cell,
    date: lambda ref, v: _number_cell(ref, (v - _EXCEL_EPOCH.date()).days, _STYLE_DATE),
    time: _time_cell,
    dict: lambda ref, v: _text_cell(ref, _compact_json(v)),
    list: lambda ref, v: _text_cell(ref, _compact_json(v)),
    tuple: lambda ref, v: _text_cell(ref, _compact_json(v)),
    np.generic: lambda ref, v: _excel_cell(ref, v.item()),
    object: lambda ref, v: _text_cell(ref, str(v)),
}


def _column_letters(count: int) -> list[str]:
    """A, B, …, Z, AA, AB, … for the first `count` columns."""
    letters = []
    for index in range(1, count + 1):
        name = ""
        while index:
            index, remainder = divmod(index - 1, 26)
            name = chr(65 + remainder) + name
        letters.append(name)
    return letters


def _row_xml(number: int, letters: list[str], values: Iterable[Any]) -> str:
    row = str(number)
    cells = "".join([_excel_cell(letter + row, value) for letter, value in zip(letters, values, strict=False)])
    return f'<row r="{row}">{cells}</row>'


def _heading_row_xml(number: int, text: str, style: int) -> str:
    """A row with one styled text in column A: the title, a heading, a note."""
    return f'<row r="{number}">{_text_cell(f"A{number}", text, style)}</row>'


def _sheet_names(names: Iterable[str]) -> list[str]:
    """Excel's rules for a sheet name: at most 31 characters, none of \\ / ? * [ ] :, no apostrophe at
    either end, unique ignoring case, not "History"; "Summary" is the first sheet's."""
    # Cut before stripping the apostrophes, so that the cut cannot leave one at the end; a suffix ends in ")".
    cleaned = [_EXCEL_SHEET_NAME_FORBIDDEN.sub("_", _XML_ILLEGAL.sub("", name))[:31].strip("'") for name in names]
    return _unique_names([name or "Sheet" for name in cleaned], max_length=31, taken=_EXCEL_RESERVED_SHEET_NAMES)


def _summary_rows(*, title: str, meta: dict, summary: list[tuple[str, Any]]) -> Iterator[str]:
    """The Summary sheet: the title, the meta (a dict value such as the filters one row per key), the summary."""
    yield _heading_row_xml(1, title, _STYLE_TITLE)
    number = 3
    for key, value in meta.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub_key, sub_value in items:
            label = str(key) if sub_key is None else f"{key}: {sub_key}"
            label_cell = _text_cell(f"A{number}", label, _STYLE_BOLD)
            yield f'<row r="{number}">{label_cell}{_excel_cell(f"B{number}", sub_value)}</row>'
            number += 1
    if summary:
        number += 1
        yield _heading_row_xml(number, "Summary", _STYLE_BOLD)
        for label, value in summary:
            number += 1
            yield f'<row r="{number}">{_text_cell(f"A{number}", str(label))}{_excel_cell(f"B{number}", value)}</row>'


def _table_rows(table: Table) -> Iterator[str]:
    """A table's header row (bold) and its rows, cut with a note at Excel's row limit."""
    letters = _column_letters(len(table.columns))
    yield _header_row_xml(letters, table.columns)
    for number, row in enumerate(table.rows, 2):
        if number == _EXCEL_MAX_ROWS:
            note = f"cut at Excel's limit of {_EXCEL_MAX_ROWS:,} rows; the full table is in the CSV and JSON exports"
            yield _heading_row_xml(number, note, _STYLE_BOLD)
            return
        yield _row_xml(number, letters, row)


def _header_row_xml(letters: list[str], columns: Sequence[str]) -> str:
    cells = "".join(
        _text_cell(f"{letter}1", str(column), _STYLE_BOLD) for letter, column in zip(letters, columns, strict=True)
    )
    return f'<row r="1">{cells}</row>'


def _write_worksheet(
    package: zipfile.ZipFile, number: int, rows: Iterator[str], *, widths: list[float], frozen_header: bool
) -> None:
    """Stream one worksheet's XML into the package, a few hundred rows per write."""
    pane = '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>' if frozen_header else ""
    selected = ' tabSelected="1"' if number == 1 else ""
    cols = "".join(f'<col min="{i}" max="{i}" width="{width}" customWidth="1"/>' for i, width in enumerate(widths, 1))
    head = (
        f'{_XML_DECLARATION}<worksheet xmlns="{_MAIN_NS}">'
        f'<sheetViews><sheetView workbookViewId="0"{selected}>{pane}</sheetView></sheetViews>'
        f'<sheetFormatPr defaultRowHeight="15"/>{f"<cols>{cols}</cols>" if cols else ""}<sheetData>'
    )
    with package.open(f"xl/worksheets/sheet{number}.xml", "w") as sheet:
        sheet.write(head.encode())
        batch: list[str] = []
        for row in rows:
            batch.append(row)
            if len(batch) == 500:
                sheet.write("".join(batch).encode())
                batch.clear()
        sheet.write(("".join(batch) + "</sheetData></worksheet>").encode())


def _column_width(column: str) -> float:
    """A width from the header alone (the rows are streamed, so their widths are unknown), within 10–60."""
    return float(min(max(len(str(column)) + 2, 10), 60))


def xlsx_bytes(*, title: str, meta: dict, summary: list[tuple[str, Any]], tables: list[Table]) -> bytes:
    """An .xlsx: a "Summary" sheet (title, meta, summary rows), then one sheet per table with a bold, frozen header.

    Numbers, bools and datetimes are typed cells (aware datetimes in naive UTC), every text an inline string
    (never a formula; formula-like starts also quoted), dicts and lists JSON text, NaN/±inf empty.
    """
    names = ["Summary", *_sheet_names(table.name for table in tables)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml", _content_types_xml(len(names)))
        package.writestr("_rels/.rels", _ROOT_RELS_XML)
        package.writestr("docProps/core.xml", _core_xml(title))
        package.writestr("xl/workbook.xml", _workbook_xml(names))
        package.writestr("xl/_rels/workbook.xml.rels", _workbook_rels_xml(len(names)))
        package.writestr("xl/styles.xml", _STYLES_XML)
        summary_rows = _summary_rows(title=title, meta=meta, summary=summary)
        _write_worksheet(package, 1, summary_rows, widths=[32, 60], frozen_header=False)
        for number, table in enumerate(tables, 2):
            widths = [_column_width(column) for column in table.columns]
            _write_worksheet(package, number, _table_rows(table), widths=widths, frozen_header=True)
    return buffer.getvalue()


# The fixed parts of the package (ECMA-376 part 1; the smallest set Excel, LibreOffice and Sheets open).
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_ROOT_RELS_XML = (
    f'{_XML_DECLARATION}<Relationships xmlns="{_PACKAGE_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/'
    'core-properties" Target="docProps/core.xml"/></Relationships>'
)
_FONT = '<sz val="11"/><name val="Calibri"/><family val="2"/>'
_STYLES_XML = (
    f'{_XML_DECLARATION}<styleSheet xmlns="{_MAIN_NS}">'
    '<numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/>'
    '<numFmt numFmtId="165" formatCode="yyyy-mm-dd"/></numFmts>'
    f'<fonts count="3"><font>{_FONT}</font><font><b/>{_FONT}</font>'
    '<font><b/><sz val="14"/><name val="Calibri"/><family val="2"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="6">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="21" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="0" fontId="2" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '</cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
)


def _content_types_xml(sheet_count: int) -> str:
    sheets = "".join(
        f'<Override PartName="/xl/worksheets/sheet{n}.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for n in range(1, sheet_count + 1)
    )
    return (
        f'{_XML_DECLARATION}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/styles.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        '<Override PartName="/docProps/core.xml" '
        'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
        f"{sheets}</Types>"
    )


def _core_xml(title: str) -> str:
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f'{_XML_DECLARATION}<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/'
        'core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<dc:title>{_xml_text(_XML_ILLEGAL.sub('', title))}</dc:title><dc:creator>llmbench</dc:creator>"
        f'<dcterms:created xsi:type="dcterms:W3CDTF">{created}</dcterms:created></cp:coreProperties>'
    )


def _workbook_xml(names: list[str]) -> str:
    sheets = "".join(
        f'<sheet name="{_xml_text(name)}" sheetId="{n}" r:id="rId{n}"/>' for n, name in enumerate(names, 1)
    )
    return (
        f'{_XML_DECLARATION}<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
        f"<bookViews><workbookView/></bookViews><sheets>{sheets}</sheets></workbook>"
    )


def _workbook_rels_xml(sheet_count: int) -> str:
    sheets = "".join(
        f'<Relationship Id="rId{n}" Type="{_REL_NS}/worksheet" Target="worksheets/sheet{n}.xml"/>'
        for n in range(1, sheet_count + 1)
    )
    styles = f'<Relationship Id="rId{sheet_count + 1}" Type="{_REL_NS}/styles" Target="styles.xml"/>'
    return f'{_XML_DECLARATION}<Relationships xmlns="{_PACKAGE_REL_NS}">{sheets}{styles}</Relationships>'


# --- HTTP ----------------------------------------------------------------------------------------------------

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_ASGI_BATCH_BYTES = 64 * 1024


def _next_batch(chunks: Iterator[bytes]) -> bytes:
    """Up to about 64 KiB of the next chunks; b"" once they are exhausted."""
    batch, size = [], 0
    for chunk in chunks:
        batch.append(chunk)
        size += len(chunk)
        if size >= _ASGI_BATCH_BYTES:
            break
    return b"".join(batch)


class _StreamingExport(StreamingHttpResponse):
    """A streamed export that also streams under ASGI (uvicorn).

    Django serves a sync iterator under ASGI by reading it to the end first, so the client would get its
    first byte only once the whole export was built in memory. Here the iterator is pulled a batch at a time
    in the request's sync thread, where the database cursor behind the rows lives. Under WSGI and the test
    client it streams line by line as usual."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = iter(self.streaming_content)
        pull = sync_to_async(_next_batch, thread_sensitive=True)
        while batch := await pull(chunks):
            yield batch


def export_response(
    kind: str, *, filename: str, title: str, meta: dict, summary: list[tuple[str, Any]], tables: list[Table]
) -> HttpResponse:
    """The export as a download: "csv" (the first table, streamed), "json" (streamed) or "xlsx"."""
    if kind not in CONTENT_TYPES:
        raise ValueError(f"unknown export kind {kind!r}; expected one of {', '.join(CONTENT_TYPES)}")
    if kind == "csv":
        if not tables:
            raise ValueError("a CSV export needs a table")
        response = _StreamingExport(csv_stream(tables[0]), content_type=CONTENT_TYPES[kind])
    elif kind == "json":
        response = _StreamingExport(
            json_stream(meta=meta, summary=summary, tables=tables), content_type=CONTENT_TYPES[kind]
        )
    else:
        body = xlsx_bytes(title=title, meta=meta, summary=summary, tables=tables)
        response = HttpResponse(body, content_type=CONTENT_TYPES[kind])
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response
