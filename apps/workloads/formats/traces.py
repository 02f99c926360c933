"""Traces (design §2.4–2.6): Mooncake JSON Lines, the Azure LLM inference CSV and llmbench.trace/1 JSON Lines.

Rows come out in time order: unsorted timestamps are sorted stably (rows of equal time keep the file's
order) and a note says so."""

from datetime import datetime
from itertools import pairwise

from apps.workloads.engine.prefix import block_rule_error
from apps.workloads.engine.types import ParsedDataset, TraceRow
from apps.workloads.formats import (
    check_count,
    check_text,
    csv_records,
    decode,
    is_int,
    is_number,
    json_lines,
    reject_if_empty,
)
from llmbench.uploads import ErrorList

MOONCAKE_BLOCK_SIZE = 512  # tokens per hash id (aiperf docs/tutorials/fixed-schedule.md)
AZURE_HEADER = ("timestamp", "contexttokens", "generatedtokens")
TRACE_FORMAT = "llmbench.trace/1"
TRACE_KEYS = {"timestamp_ms", "input_tokens", "prompt", "output_tokens", "hash_ids", "session_id"}
SORTED_NOTE = "The timestamps were not in order; the rows were sorted by time (ties keep the file's order)."


def parse_mooncake(content: bytes) -> ParsedDataset:
    """Mooncake rows: `timestamp` or `delay` (ms), `input_length` (+ `hash_ids`) or `text_input`, `output_length`."""
    errors = ErrorList()
    records = list(json_lines(decode(content), errors))
    timed = any("timestamp" in record for _, record in records)
    rows: list[TraceRow] = []
    for number, record in records:
        for key in ("payload", "messages"):
            if key in record:
                errors.add(number, key, f"AIPerf's {key} rows are not supported.")
        t_ms = _time(record, "timestamp", number, errors, required=timed and "delay" not in record)
        delay_ms = _time(record, "delay", number, errors, required=False)
        if t_ms is not None and delay_ms is not None:
            errors.add(number, "delay", "cannot be given together with timestamp.")
        input_tokens, prompt, hash_ids = _input(record, number, errors, "input_length", "text_input")
        output = record.get("output_length")
        output_tokens = None if output is None else check_count(output, number, "output_length", errors)
        hash_ids = _blocks(input_tokens, hash_ids, MOONCAKE_BLOCK_SIZE, number, "input_length", errors)
        session = _session(record.get("session_id"), number, errors)
        rows.append(TraceRow(t_ms, input_tokens, prompt, output_tokens, hash_ids, session, delay_ms))
    reject_if_empty(len(records), errors)
    errors.raise_if_any()
    return _trace(rows, [], MOONCAKE_BLOCK_SIZE)


def parse_azure_csv(content: bytes) -> ParsedDataset:
    """Azure rows: absolute TIMESTAMP made relative to the earliest row, ContextTokens, GeneratedTokens."""
    errors = ErrorList()
    records = csv_records(decode(content), errors)
    header = tuple(name.strip().lower() for name in next(records, (1, []))[1])
    if header != AZURE_HEADER:
        errors.add(1, "(header)", "does not match TIMESTAMP,ContextTokens,GeneratedTokens.")
        errors.raise_if_any()
    parsed: list[tuple[datetime, int, int]] = []
    zero_outputs = 0
    for row, cells in records:
        if len(cells) != 3:
            errors.add(row, "(row)", f"has {len(cells)} cells; the header has 3.")
            continue
        when = _wall_time(cells[0].strip(), row, errors)
        context = check_count(_int_or_text(cells[1]), row, "ContextTokens", errors, minimum=1)
        generated = check_count(_int_or_text(cells[2]), row, "GeneratedTokens", errors, minimum=0)
        if when is not None and context is not None and generated is not None:
            zero_outputs += generated == 0
            parsed.append((when, context, max(generated, 1)))
    reject_if_empty(len(parsed), errors)
    errors.raise_if_any()
    notes = [SORTED_NOTE] if any(a[0] > b[0] for a, b in pairwise(parsed)) else []
    parsed.sort(key=lambda item: item[0])
    start = parsed[0][0]
    rows = [TraceRow((when - start).total_seconds() * 1000, context, None, out) for when, context, out in parsed]
    if zero_outputs:
        notes.append(f"{zero_outputs} row(s) have GeneratedTokens 0; they are sent with max_tokens 1.")
    return ParsedDataset(kind="trace", rows=tuple(rows), notes=tuple(notes))


def parse_llmbench_trace(content: bytes) -> ParsedDataset:
    """Our own trace: an optional header line {"format": "llmbench.trace/1", "block_size"?}, then rows."""
    errors = ErrorList()
    records = list(json_lines(decode(content), errors))
    block_size = MOONCAKE_BLOCK_SIZE
    if records and "format" in records[0][1]:
        number, header = records.pop(0)
        if header.get("format") != TRACE_FORMAT:
            errors.add(number, "format", f"{header.get('format')!r} is not {TRACE_FORMAT!r}.")
        block_size = check_count(header.get("block_size", MOONCAKE_BLOCK_SIZE), number, "block_size", errors) or 0
        for key in set(header) - {"format", "block_size"}:
            errors.add(number, key, "is not a header field (format, block_size).")
    rows: list[TraceRow] = []
    for number, record in records:
        for key in sorted(set(record) - TRACE_KEYS):
            errors.add(number, key, f"is not a trace field ({', '.join(sorted(TRACE_KEYS))}).")
        t_ms = _time(record, "timestamp_ms", number, errors, required=True)
        input_tokens, prompt, hash_ids = _input(record, number, errors, "input_tokens", "prompt")
        output = record.get("output_tokens")
        output_tokens = None if output is None else check_count(output, number, "output_tokens", errors)
        hash_ids = _blocks(input_tokens, hash_ids, block_size, number, "input_tokens", errors)
        rows.append(
            TraceRow(
                t_ms, input_tokens, prompt, output_tokens, hash_ids, _session(record.get("session_id"), number, errors)
            )
        )
    reject_if_empty(len(rows), errors)
    errors.raise_if_any()
    return _trace(rows, [], block_size)


def _time(record: dict, key: str, row: int, errors: ErrorList, *, required: bool) -> float | None:
    """A time in ms ≥ 0 from `record[key]`; an error when it is missing but required, or not a number ≥ 0."""
    value = record.get(key)
    if value is None:
        if required:
            errors.add(row, key, "is missing (other rows have one).")
        return None
    if not is_number(value) or value < 0:
        errors.add(row, key, f"{value!r} is not a number of milliseconds ≥ 0.")
        return None
    return float(value)


def _input(
    record: dict, row: int, errors: ErrorList, length_key: str, text_key: str
) -> tuple[int | None, str | None, object]:
    """(input tokens, prompt, raw hash_ids): exactly one of the length and the literal prompt must be given."""
    length, text, hash_ids = record.get(length_key), record.get(text_key), record.get("hash_ids")
    if (length is None) == (text is None):
        errors.add(row, length_key, f"give exactly one of {length_key} and {text_key}.")
        return None, None, None
    if text is not None:
        if hash_ids is not None:
            errors.add(row, "hash_ids", f"is only allowed with {length_key}.")
        return None, check_text(text, row, text_key, errors), None
    return check_count(length, row, length_key, errors), None, hash_ids


def _blocks(
    input_tokens: int | None, hash_ids: object, block_size: int, row: int, length_key: str, errors: ErrorList
) -> tuple[int, ...]:
    """hash_ids checked: integers ≥ 0, as many as `input_tokens` needs blocks of `block_size` (the last one partial)."""
    if hash_ids is None:
        return ()
    if not isinstance(hash_ids, list) or not all(is_int(h) and h >= 0 for h in hash_ids):
        errors.add(row, "hash_ids", "is not a list of integers ≥ 0.")
        return ()
    if input_tokens is not None and hash_ids and block_size:
        problem = block_rule_error(len(hash_ids), input_tokens, block_size)
        if problem:
            errors.add(row, "hash_ids", problem.replace("input_length", length_key, 1) + ".")
    return tuple(hash_ids)


def _session(value: object, row: int, errors: ErrorList) -> str | None:
    """A session id: a string (or an integer, taken as its text)."""
    if value is None or isinstance(value, str):
        return value
    if is_int(value):
        return str(value)
    errors.add(row, "session_id", f"{value!r} is not a string.")
    return None


def _int_or_text(cell: str) -> int | str:
    """A CSV cell as an int when it is one, else the text (for the error message)."""
    text = cell.strip()
    return int(text) if text.isascii() and text.isdigit() else text


def _wall_time(text: str, row: int, errors: ErrorList) -> datetime | None:
    """An Azure TIMESTAMP (7 fractional digits are cut to µs); aware times are taken as UTC wall time."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        errors.add(row, "TIMESTAMP", f"{text!r} is not a date and time.")
        return None
    offset = when.utcoffset()
    return when if offset is None else when.replace(tzinfo=None) - offset


def _trace(rows: list[TraceRow], notes: list[str], block_size: int | None) -> ParsedDataset:
    """Rows in time order. A row timed by `delay` follows the row before it in its session (or in the file)."""
    keys: list[float] = []
    last_by_session: dict[str | None, float] = {}
    for row in rows:
        key = row.t_ms if row.t_ms is not None else last_by_session.get(row.session, keys[-1] if keys else 0.0)
        keys.append(key)
        last_by_session[row.session] = key
    if any(a > b for a, b in pairwise(keys)):
        order = sorted(range(len(rows)), key=keys.__getitem__)
        rows = [rows[i] for i in order]
        notes = [*notes, SORTED_NOTE]
    return ParsedDataset(kind="trace", rows=tuple(rows), notes=tuple(notes), block_size=block_size)
