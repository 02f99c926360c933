"""Parsers of workload files (docs/design/0013-workloads.md §2): bytes in, a ParsedDataset out.

Malformed input (not UTF-8 or JSON, wrong types, unknown roles or columns) rejects the whole file with
FileRejected naming every bad row and field; well-formed but unfit items are skipped and counted by reason.
The small checks every format shares live here; each format's module holds only its own rules."""

import csv
import io
import math
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import zip_longest

import orjson

from apps.workloads.engine.types import Conversation, ParsedDataset, Turn
from llmbench.uploads import ErrorList, FileRejected, RowError, decode_upload

PROMPT_MAX_CHARS = 200_000  # longer than any context window we test; a longer "prompt" is the wrong file
# The csv module's default cell limit (131,072) is below PROMPT_MAX_CHARS; raised so that a long prompt gets our
# own message. The limit is process-wide, so it is only ever raised.
csv.field_size_limit(max(csv.field_size_limit(), 4 * PROMPT_MAX_CHARS))


def decode(content: bytes) -> str:
    """The file's text (UTF-8, BOM allowed), or FileRejected naming the first bad byte."""
    return decode_upload(content)


def is_int(value: object) -> bool:
    """An integer, not a bool (JSON true would otherwise pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite JSON number."""
    return (isinstance(value, float) and math.isfinite(value)) or is_int(value)


def check_count(value: object, row: int | str, field: str, errors: ErrorList, minimum: int = 1) -> int | None:
    """`value` if it is an integer ≥ minimum, else None with an error."""
    if is_int(value) and value >= minimum:
        return value
    errors.add(row, field, f"{value!r} is not an integer ≥ {minimum}.")
    return None


def check_text(
    value: object, row: int | str, field: str, errors: ErrorList, *, allow_empty: bool = False
) -> str | None:
    """`value` if it is a string within PROMPT_MAX_CHARS (and not blank unless allowed), else None with an error."""
    if value is None:
        errors.add(row, field, "is missing.")
    elif not isinstance(value, str):
        errors.add(row, field, f"is not a string ({type(value).__name__}).")
    elif len(value) > PROMPT_MAX_CHARS:
        errors.add(row, field, f"is {len(value):,} characters long; the limit is {PROMPT_MAX_CHARS:,}.")
    elif not allow_empty and not value.strip():
        errors.add(row, field, "is empty.")
    else:
        return value
    return None


def json_lines(text: str, errors: ErrorList) -> Iterator[tuple[int, dict]]:
    """(1-based line number, object) for each non-blank line; bad lines become errors on field "(line)"."""
    # split("\n"), not splitlines(): U+2028 and friends may stand unescaped inside a JSON string.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            errors.add(number, "(line)", f"is not JSON ({exc}).")
            continue
        if not isinstance(record, dict):
            errors.add(number, "(line)", f"is not a JSON object ({type(record).__name__}).")
            continue
        yield number, record


def csv_records(text: str, errors: ErrorList) -> Iterator[tuple[int, list[str]]]:
    """(line the record starts on, cells) for each non-blank record, the header first as line 1.

    A quoted cell may span lines, so a record is named by its first line. A record the csv module cannot
    read (a NUL byte, a huge cell) becomes an error on field "(row)" and ends the file."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for cells in reader:
            row, start = start, reader.line_num + 1
            if cells:
                yield row, cells
    except csv.Error as exc:
        errors.add(start, "(row)", f"is not valid CSV ({exc}).")


def reject_if_empty(count: int, errors: ErrorList, what: str = "rows") -> None:
    """A file with nothing in it is rejected rather than imported as an empty dataset."""
    if count == 0 and not errors.items:
        errors.add("file", "(root)", f"has no {what}.")


def conversation_from_messages(
    conversation_id: str,
    system: str | None,
    messages: list[tuple[str, str]],
    skipped: Counter,
    last_output_tokens: int | None = None,
) -> Conversation | None:
    """A Conversation from (role, text) pairs, roles "user"/"assistant", or None counted in `skipped`.

    A leading assistant message is dropped first (as vLLM's ShareGPT converter does); then the messages must
    alternate user, assistant, user…, and no user message may be blank. Each assistant reply becomes the
    previous turn's `reference`."""
    if messages and messages[0][0] == "assistant":
        messages = messages[1:]
    roles = [role for role, _ in messages]
    if "user" not in roles:
        skipped["no_user_turn"] += 1
        return None
    if roles[0::2].count("user") != (len(roles) + 1) // 2 or roles[1::2].count("assistant") != len(roles) // 2:
        skipped["not_alternating"] += 1
        return None
    texts = [text for _, text in messages]
    users = texts[0::2]
    if "" in [text.strip() for text in users]:
        skipped["empty_user_turn"] += 1
        return None
    turns = [Turn(user=user, reference=reply) for user, reply in zip_longest(users, texts[1::2])]
    if last_output_tokens is not None:
        last = turns[-1]
        turns[-1] = Turn(user=last.user, output_tokens=last_output_tokens, reference=last.reference)
    return Conversation(id=conversation_id, system=system or None, turns=tuple(turns))


# Imported here, after the helpers they use, to register them by name.
from apps.workloads.formats import openai_chat, prompts, sharegpt, traces  # noqa: E402

FORMATS: dict[str, Callable[[bytes], ParsedDataset]] = {
    "sharegpt": sharegpt.parse_sharegpt,
    "openai_chat": openai_chat.parse_openai_chat,
    "prompts_jsonl": prompts.parse_prompts_jsonl,
    "prompts_csv": prompts.parse_prompts_csv,
    "mooncake": traces.parse_mooncake,
    "azure_csv": traces.parse_azure_csv,
    "llmbench_trace": traces.parse_llmbench_trace,
}


def parse(fmt: str, content: bytes) -> ParsedDataset:
    """Parse `content` as the named format; FileRejected for an unknown format or a malformed file."""
    parser = FORMATS.get(fmt)
    if parser is None:
        known = ", ".join(FORMATS)
        raise FileRejected([RowError("file", "format", f"{fmt!r} is not a known format ({known}).")])
    return parser(content)


def detect(content: bytes, filename: str) -> str | None:
    """Best guess of the format from the file name and the first record or header line; None if unsure."""
    head = content[:65536].lstrip(b"\xef\xbb\xbf \t\r\n")
    first_line = head.split(b"\n", 1)[0].strip()
    if filename.lower().endswith(".csv"):
        columns = [c.strip().lower() for c in first_line.decode("utf-8", "replace").split(",")]
        if columns == ["timestamp", "contexttokens", "generatedtokens"]:
            return "azure_csv"
        return "prompts_csv" if "prompt" in columns else None
    if head.startswith(b"["):
        return "sharegpt"
    try:
        record = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    keys = set(record)
    if "format" in keys or "timestamp_ms" in keys:
        return "llmbench_trace"
    if keys & {"hash_ids", "input_length", "text_input", "output_length"}:
        return "mooncake"
    if "messages" in keys:
        return "openai_chat"
    return "prompts_jsonl" if "prompt" in keys else None
