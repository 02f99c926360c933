"""The published benchmark file layouts, parsed into plain items (`ParsedItem`), every bad row named.

Layouts, told from the content (Parquet magic "PAR1"; a JSON array; JSON Lines; else CSV) and then from the
fields of the rows, or forced by `kind`:

* GSM8K JSON Lines: `question`, `answer` ending "#### <number>". The answer is the number with its thousands
  commas removed (sign and decimals kept: "#### 1,234" → "1234", "#### -3.5" → "-3.5"); the text before "####"
  is the rationale (calculator annotations "<<2*3=6>>" kept as published).
* MMLU: the original per-subject CSV (no header: question, A, B, C, D, answer letter; the subject comes from the
  file name, "abstract_algebra_test.csv" → "abstract_algebra", or from `subject`) and the Hugging Face layout
  (Parquet / JSON / JSON Lines: `question`, `subject`, `choices`, 0-based integer `answer`).
* MMLU-Pro (Parquet / JSON / JSON Lines): `question_id`, `question`, `options` (up to 10), `answer` (letter),
  `answer_index`, `cot_content`, `category`, `src`. "N/A" options (padding in some releases) are dropped as the
  official evaluation does; the answer letter must still name the option `answer_index` names after that.
  category → subject, cot_content → rationale, question_id → source_id.
* ARC JSON Lines: `question.stem`, `question.choices[{label, text}]`, `answerKey` (the Hugging Face layout,
  `question` text with `choices: {text: [...], label: [...]}`, is read too). Labels "1".."4" become A..D in
  the given order and the key follows. ARC-Challenge / ARC-Easy is not in the file: subject is "" unless a row
  has a `subject` field.
* HellaSwag JSON Lines: `ctx` (or `ctx_a` + " " + `ctx_b`.capitalize(), as lm-evaluation-harness builds it),
  `endings`, `label` (integer or numeric string) → letter; subject = `activity_label`. An empty label (the
  unlabelled test split) is an error: such a file cannot be scored.
* TruthfulQA MC1 JSON: `question`, `mc1_targets` as {"choices": [...], "labels": [1, 0, …]} (Hugging Face) or
  the original repository's {answer text: 1 or 0} dict; exactly one label 1. The published files list the
  correct answer FIRST, so a letter task would reward always answering "A": the choices are shuffled with
  `random.Random(seed)`, the seed being the first 8 bytes (big-endian) of sha256(question, UTF-8). The order is
  the same on every import and every machine, and the key follows the correct text.

Letters are A, B, C … for as many choices as a question has. Rows are numbered from 1: the line of a JSON Lines
or CSV file, the position in a JSON array or Parquet table. Problems read 'row 12, field "answer": "#### twelve"
is not a number'; the first 20 are collected, then FormatError is raised. Nothing here touches the database.
"""

import csv
import hashlib
import io
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath

import orjson


@dataclass(frozen=True)
class ParsedItem:
    question: str
    answer: str  # "A".."J" for multiple choice; the final number for GSM8K ("1234", "-3.5")
    choices: tuple[str, ...] = ()
    subject: str = ""
    rationale: str = ""
    source_id: str = ""


@dataclass
class ParsedSuite:
    kind: str  # apps.benchmarks.models.Kind value
    source_format: str  # e.g. "gsm8k-jsonl", "mmlu-csv", "mmlu-parquet", "mmlu-pro-parquet", "arc-jsonl"
    items: list[ParsedItem]
    warnings: list[str] = field(default_factory=list)


class FormatError(ValueError):
    """A file that cannot be imported; `problems` are 'row 12, field "answer": …' strings (first 20)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems[:5]))


MAX_PROBLEMS = 20
LETTERS = string.ascii_uppercase
PARQUET_MAGIC = b"PAR1"
NOT_APPLICABLE = "N/A"  # MMLU-Pro's padding option, dropped by its official evaluation
SUBJECT_MAX, SOURCE_ID_MAX, ANSWER_MAX = 100, 100, 100  # BenchmarkItem.subject / source_id / answer lengths

# apps.benchmarks.models.Kind values (the engine does not import models; a test keeps the two equal).
KIND_NAMES = {"gsm8k": "GSM8K", "mmlu": "MMLU", "mmlu_pro": "MMLU-Pro", "arc": "ARC", "hellaswag": "HellaSwag",
              "truthfulqa_mc1": "TruthfulQA MC1"}  # fmt: skip
REQUIRED_FIELDS = {
    "gsm8k": ("question", "answer"),
    "mmlu": ("question", "choices", "answer"),
    "mmlu_pro": ("question", "options", "answer"),
    "arc": ("question", "answerKey"),
    "hellaswag": ("endings", "label"),
    "truthfulqa_mc1": ("question", "mc1_targets"),
}
MMLU_CSV_FIELDS = ("question", "A", "B", "C", "D", "answer")
_SPLIT_SUFFIX = re.compile(r"_(?:test|dev|val|validation|train|auxiliary_train)$")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


class _RowError(Exception):
    def __init__(self, field_name: str | None, message: str):
        self.field_name = field_name
        self.message = message


class _Full(Exception):
    """Raised once MAX_PROBLEMS problems are collected: parsing stops there."""


class _Problems(list):
    def add(self, message: str) -> None:
        self.append(message)
        if len(self) >= MAX_PROBLEMS:
            raise _Full

    def row(self, row: int, error: _RowError) -> None:
        where = f'row {row}, field "{error.field_name}"' if error.field_name else f"row {row}"
        self.add(f"{where}: {error.message}")


def _show(value: object, limit: int = 60) -> str:
    """A value quoted for a message, cut to `limit` characters."""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f'"{text}"'


# --- reading the container ----------------------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError([f"the file is not UTF-8 text (byte {exc.start + 1} cannot be decoded)"]) from None


def _json_error(exc: orjson.JSONDecodeError) -> str:
    return f"line {exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno})"


def _json_array(text: str, problems: _Problems) -> list[tuple[int, dict]]:
    try:
        rows = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FormatError([_json_error(exc)]) from None
    records = []
    for row, record in enumerate(rows, start=1):
        if isinstance(record, dict):
            records.append((row, record))
        else:
            problems.add(f"row {row}: is not a JSON object")
    return records


def _json_lines(text: str, problems: _Problems) -> list[tuple[int, dict]]:
    records = []
    # Split on "\n" only: str.splitlines() would also split inside strings at U+2028, U+0085 …
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.add(f"line {line_number}: invalid JSON ({exc.msg}, column {exc.colno})")
            continue
        if isinstance(record, dict):
            records.append((line_number, record))
        else:
            problems.add(f"row {line_number}: is not a JSON object")
    return records


def _refuse_single_object(text: str) -> None:
    """A pretty-printed JSON object is neither a JSON array nor JSON Lines: say so rather than "line 1"."""
    first = next(line for line in text.split("\n") if line.strip())
    try:
        orjson.loads(first)
        return
    except orjson.JSONDecodeError:
        pass
    try:
        whole = orjson.loads(text)
    except orjson.JSONDecodeError:
        return  # the line errors name the lines
    if isinstance(whole, dict):
        raise FormatError(["the file is one JSON object; a benchmark file is a JSON array of rows or JSON Lines "
                           "(one row per line)"])  # fmt: skip


def _parquet(data: bytes) -> tuple[list[str], Callable[[list[str]], list[tuple[int, dict]]]]:
    """The column names, and a reader of the rows restricted to some columns."""
    import pyarrow as pa  # only when a Parquet file comes (≈0.2 s to import)
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FormatError([f"the file is not a readable Parquet file ({exc})"]) from None

    def rows(columns: list[str]) -> list[tuple[int, dict]]:
        try:
            records = table.select(columns).to_pylist()
        except (pa.ArrowException, ValueError) as exc:
            raise FormatError([f"the Parquet columns could not be read ({exc})"]) from None
        return list(enumerate(records, start=1))

    return list(table.column_names), rows


def _csv_rows(text: str, problems: _Problems) -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, start = [], 1
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as exc:
        problems.add(f"line {reader.line_num}: is not valid CSV ({exc})")
    return rows


# --- telling the layout -------------------------------------------------------------------------------------------


def _kind_of_fields(fields: set[str]) -> str | None:
    if "mc1_targets" in fields:
        return "truthfulqa_mc1"
    if "endings" in fields:
        return "hellaswag"
    if "answerKey" in fields:
        return "arc"
    if "options" in fields:
        return "mmlu_pro"
    if "choices" in fields:
        return "mmlu"
    if "question" in fields and "answer" in fields:
        return "gsm8k"
    return None


def _missing_fields(kind: str, fields: set[str]) -> list[str]:
    missing = [name for name in REQUIRED_FIELDS[kind] if name not in fields]
    if kind == "hellaswag" and "ctx" not in fields and "ctx_a" not in fields:
        missing.append("ctx")
    return missing


def _unknown_layout(fields: set[str]) -> FormatError:
    seen = ", ".join(sorted(fields)[:12]) or "none"
    return FormatError([f"the layout could not be told from the fields ({seen}): expected a GSM8K, MMLU, MMLU-Pro, "
                        "ARC, HellaSwag or TruthfulQA MC1 file"])  # fmt: skip


def subject_from_file_name(name: str) -> str:
    """ "data/test/abstract_algebra_test.csv" → "abstract_algebra" (MMLU's per-subject file names)."""
    stem = PurePath(name.replace("\\", "/")).name
    stem = stem[: -len(".csv")] if stem.lower().endswith(".csv") else stem
    return _SPLIT_SUFFIX.sub("", stem)


# --- fields -------------------------------------------------------------------------------------------------------


def _as_text(value: object, field_name: str, *, required: bool = True) -> str:
    if value is None:
        if required:
            raise _RowError(field_name, "is missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _RowError(field_name, f"{_show(value)} is not text")
    text = value if isinstance(value, str) else str(value)
    if required and not text.strip():
        raise _RowError(field_name, "is empty")
    return text


def _limited(text: str, field_name: str, limit: int) -> str:
    if len(text) > limit:
        raise _RowError(field_name, f"is longer than {limit} characters")
    return text


def _texts(value: object, field_name: str) -> list[str]:
    if not isinstance(value, list | tuple):
        raise _RowError(field_name, "is missing" if value is None else f"{_show(value)} is not a list")
    if all(type(entry) is str for entry in value):  # the usual case, fast
        return list(value)
    texts = []
    for position, entry in enumerate(value, start=1):
        if entry is None:
            raise _RowError(field_name, f"choice {position} is missing")
        try:
            texts.append(_as_text(entry, field_name, required=False))  # an empty choice text is kept
        except _RowError as exc:
            raise _RowError(field_name, f"choice {position} {exc.message}") from None
    return texts


def _check_count(choices: list[str], field_name: str) -> None:
    if len(choices) < 2:
        raise _RowError(field_name, f"has {len(choices)} choice{'s' * (len(choices) != 1)}; at least 2 are needed")
    if len(choices) > len(LETTERS):
        raise _RowError(field_name, f"has {len(choices)} choices; at most {len(LETTERS)} are supported")


def _index(value: object, count: int, field_name: str) -> int:
    """A 0-based position given as an integer or a numeric string."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if value is None or value == "":
        raise _RowError(field_name, "is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _RowError(field_name, f"{_show(value)} is not a whole number")
    if not 0 <= value < count:
        raise _RowError(field_name, f"{value} is not between 0 and {count - 1}")
    return value


def _letter_index(value: object, count: int, field_name: str) -> int:
    letters = LETTERS[:count]
    if value is None or value == "":
        raise _RowError(field_name, "is missing")
    text = value.strip().upper() if isinstance(value, str) else None
    if not text or len(text) != 1 or text not in letters:
        raise _RowError(field_name, f"{_show(value)} is not one of {', '.join(letters)}")
    return letters.index(text)


# --- one row of each layout ---------------------------------------------------------------------------------------


@dataclass
class _Context:
    subject: str
    padding_dropped: int = 0


def _gsm8k(record: dict, ctx: _Context) -> ParsedItem:
    question = _as_text(record.get("question"), "question")
    solution = _as_text(record.get("answer"), "answer")
    rationale, marker, tail = solution.rpartition("####")
    if not marker:
        raise _RowError("answer", f'{_show(solution[-40:])} does not end with "#### <number>"')
    number = tail.strip().replace(",", "")
    if not _NUMBER.fullmatch(number):
        raise _RowError("answer", f"{_show('#### ' + tail.strip())} is not a number")
    number = number.lstrip("+")
    number = _limited(number[:-1] if number.endswith(".") else number, "answer", ANSWER_MAX)
    source_id = _as_text(record.get("id"), "id", required=False)
    return ParsedItem(question=question, answer=number, rationale=rationale.strip(), subject=ctx.subject,
                      source_id=_limited(source_id, "id", SOURCE_ID_MAX))  # fmt: skip


def _mmlu_csv(fields: list[str], ctx: _Context) -> ParsedItem:
    if len(fields) != 6:
        raise _RowError(None, f"has {len(fields)} fields; an MMLU CSV row has 6 ({', '.join(MMLU_CSV_FIELDS)})")
    question = _as_text(fields[0], "question")
    choices = tuple(fields[1:5])
    answer = LETTERS[_letter_index(fields[5], 4, "answer")]
    return ParsedItem(question=question, answer=answer, choices=choices, subject=ctx.subject)


def _mmlu(record: dict, ctx: _Context) -> ParsedItem:
    question = _as_text(record.get("question"), "question")
    choices = _texts(record.get("choices"), "choices")
    _check_count(choices, "choices")
    raw = record.get("answer")
    if isinstance(raw, str) and raw.strip().isalpha():
        position = _letter_index(raw, len(choices), "answer")
    else:
        position = _index(raw, len(choices), "answer")
    subject = _as_text(record.get("subject"), "subject", required=False) or ctx.subject
    return ParsedItem(question=question, answer=LETTERS[position], choices=tuple(choices),
                      subject=_limited(subject, "subject", SUBJECT_MAX))  # fmt: skip


def _mmlu_pro(record: dict, ctx: _Context) -> ParsedItem:
    question = _as_text(record.get("question"), "question")
    options = _texts(record.get("options"), "options")
    position = _letter_index(record.get("answer"), len(options), "answer")
    if record.get("answer_index") is not None:
        given = _index(record.get("answer_index"), len(options), "answer_index")
        if given != position:
            raise _RowError("answer_index", f'{given} does not agree with "answer" {_show(record.get("answer"))}')
    kept = [option for option in options if option.strip() != NOT_APPLICABLE]
    if options[position].strip() == NOT_APPLICABLE:
        raise _RowError("answer", f'{_show(record.get("answer"))} names an "{NOT_APPLICABLE}" padding option')
    dropped_before = sum(1 for option in options[:position] if option.strip() == NOT_APPLICABLE)
    if dropped_before:  # the official evaluation keeps the letter: it would point at another option
        raise _RowError("answer", f'{_show(record.get("answer"))} no longer names the same option once the '
                                  f'"{NOT_APPLICABLE}" options before it are dropped')  # fmt: skip
    _check_count(kept, "options")
    ctx.padding_dropped += len(options) - len(kept)
    subject = _as_text(record.get("category"), "category", required=False) or ctx.subject
    source_id = _as_text(record.get("question_id"), "question_id", required=False)
    rationale = _as_text(record.get("cot_content"), "cot_content", required=False)
    return ParsedItem(question=question, answer=LETTERS[position], choices=tuple(kept), rationale=rationale,
                      subject=_limited(subject, "category", SUBJECT_MAX),
                      source_id=_limited(source_id, "question_id", SOURCE_ID_MAX))  # fmt: skip


def _arc(record: dict, ctx: _Context) -> ParsedItem:
    question = record.get("question")
    if isinstance(question, dict):  # the original AI2 layout
        stem = _as_text(question.get("stem"), "question.stem")
        entries = question.get("choices")
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise _RowError("question.choices", "is missing" if entries is None else "is not a list of {label, text}")
        labels = [_as_text(entry.get("label"), "question.choices") for entry in entries]
        texts = [_as_text(entry.get("text"), "question.choices") for entry in entries]
        choices_field = "question.choices"
    else:  # the Hugging Face layout: question text, choices {"text": [...], "label": [...]}
        stem = _as_text(question, "question")
        table = record.get("choices")
        if not isinstance(table, dict):
            raise _RowError("choices", "is missing" if table is None else f"{_show(table)} is not {{text, label}}")
        texts, labels = _texts(table.get("text"), "choices.text"), _texts(table.get("label"), "choices.label")
        if len(texts) != len(labels):
            raise _RowError("choices", f"has {len(texts)} texts and {len(labels)} labels")
        choices_field = "choices"
    _check_count(texts, choices_field)
    labels = [label.strip() for label in labels]
    if len(set(labels)) != len(labels):
        raise _RowError(choices_field, f"repeats a label ({', '.join(labels)})")
    key = _as_text(record.get("answerKey"), "answerKey").strip()
    if key not in labels:
        raise _RowError("answerKey", f"{_show(key)} is not one of the choice labels {', '.join(labels)}")
    subject = _as_text(record.get("subject"), "subject", required=False) or ctx.subject
    source_id = _as_text(record.get("id"), "id", required=False)
    return ParsedItem(question=stem, answer=LETTERS[labels.index(key)], choices=tuple(texts),
                      subject=_limited(subject, "subject", SUBJECT_MAX),
                      source_id=_limited(source_id, "id", SOURCE_ID_MAX))  # fmt: skip


def _hellaswag(record: dict, ctx: _Context) -> ParsedItem:
    context = _as_text(record.get("ctx"), "ctx", required=False)
    if not context.strip():
        ctx_a = _as_text(record.get("ctx_a"), "ctx_a" if "ctx_a" in record else "ctx")
        ctx_b = _as_text(record.get("ctx_b"), "ctx_b", required=False)
        context = f"{ctx_a} {ctx_b.capitalize()}".strip()  # as lm-evaluation-harness joins them
    endings = _texts(record.get("endings"), "endings")
    _check_count(endings, "endings")
    label = record.get("label")
    if label is None or (isinstance(label, str) and not label.strip()):
        raise _RowError("label", "is empty: the unlabelled test split cannot be scored")
    position = _index(label, len(endings), "label")
    subject = _as_text(record.get("activity_label"), "activity_label", required=False) or ctx.subject
    source_id = _as_text(record.get("ind"), "ind", required=False)
    return ParsedItem(question=context, answer=LETTERS[position], choices=tuple(endings),
                      subject=_limited(subject, "activity_label", SUBJECT_MAX),
                      source_id=_limited(source_id, "ind", SOURCE_ID_MAX))  # fmt: skip


def shuffle_seed(question: str) -> int:
    """The seed TruthfulQA's choices are shuffled with: the first 8 bytes of sha256(question)."""
    return int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big")


def _truthfulqa(record: dict, ctx: _Context) -> ParsedItem:
    question = _as_text(record.get("question"), "question")
    targets = record.get("mc1_targets")
    if isinstance(targets, list) and all(isinstance(pair, list | tuple) and len(pair) == 2 for pair in targets):
        targets = dict(targets)  # a Parquet map column reads as (key, value) pairs
    if not isinstance(targets, dict):
        raise _RowError("mc1_targets", "is missing" if targets is None else f"{_show(targets)} is not an object")
    if "choices" in targets and "labels" in targets:  # Hugging Face: {"choices": [...], "labels": [...]}
        choices, labels = _texts(targets["choices"], "mc1_targets"), targets["labels"]
        if not isinstance(labels, list) or len(labels) != len(choices):
            raise _RowError("mc1_targets", f"has {len(choices)} choices but not as many labels")
    else:  # the original repository: {answer text: 1 or 0}
        choices, labels = list(targets), list(targets.values())
        choices = [_as_text(choice, "mc1_targets") for choice in choices]
    if any(label not in (0, 1) for label in labels):  # True/False compare equal to 1/0
        raise _RowError("mc1_targets", f"has a label that is not 0 or 1 ({_show(labels)})")
    _check_count(choices, "mc1_targets")
    correct = [position for position, label in enumerate(labels) if label == 1]
    if len(correct) != 1:
        raise _RowError("mc1_targets", f"has {len(correct)} answers labelled 1; MC1 needs exactly one")
    order = list(range(len(choices)))
    random.Random(shuffle_seed(question)).shuffle(order)
    return ParsedItem(question=question, answer=LETTERS[order.index(correct[0])],
                      choices=tuple(choices[position] for position in order), subject=ctx.subject)  # fmt: skip


ROW_PARSERS: dict[str, Callable[[dict, _Context], ParsedItem]] = {
    "gsm8k": _gsm8k, "mmlu": _mmlu, "mmlu_pro": _mmlu_pro, "arc": _arc, "hellaswag": _hellaswag,
    "truthfulqa_mc1": _truthfulqa,
}  # fmt: skip


# --- the whole file -----------------------------------------------------------------------------------------------


def _looks_like_header(fields: list[str]) -> bool:
    return len(fields) == 6 and fields[0].strip().lower() == "question" and fields[5].strip().lower() == "answer"


def _nul_check(item: ParsedItem) -> None:
    """PostgreSQL cannot store NUL characters in text (a JSON "\\u0000" decodes to one)."""
    if "\x00" not in "".join((item.question, item.rationale, item.subject, item.source_id, *item.choices)):
        return
    for name in ("question", "rationale", "subject", "source_id"):
        if "\x00" in getattr(item, name):
            raise _RowError(name, "contains a NUL character (\\u0000)")
    raise _RowError("choices", "contains a NUL character (\\u0000)")


def _parse_rows(rows, parse_row, ctx: _Context, problems: _Problems) -> list[ParsedItem]:
    items = []
    for row, record in rows:
        try:
            item = parse_row(record, ctx)
            _nul_check(item)
            items.append(item)
        except _RowError as exc:
            problems.row(row, exc)
    return items


def _parse(name: str, data: bytes, kind: str | None, subject: str, problems: _Problems) -> ParsedSuite:
    warnings: list[str] = []
    ctx = _Context(subject=subject)
    if data.startswith(PARQUET_MAGIC):
        container = "parquet"
        columns, read = _parquet(data)
        found = set(columns)
        kind = kind or _kind_of_fields(found)
        if kind is None:
            raise _unknown_layout(found)
        missing = _missing_fields(kind, found)
        if missing:
            raise FormatError([f'the {KIND_NAMES[kind]} Parquet file has no column "{column}"' for column in missing])
        records = read(columns)
    else:
        text = _decode(data)
        head = text.lstrip()[:1]
        if head in ("[", "{"):
            container = "json" if head == "[" else "jsonl"
            if head == "{":
                _refuse_single_object(text)
            records = _json_array(text, problems) if head == "[" else _json_lines(text, problems)
            found = set()
            for _, record in records:
                found.update(record)
            if not records and not problems:
                raise FormatError(["the file has no items"])
            kind = kind or _kind_of_fields(found)
            if kind is None:
                if problems:  # the rows that would have told it were invalid JSON
                    raise FormatError(list(problems))
                raise _unknown_layout(found)
            missing = _missing_fields(kind, found) if records else []
            if missing:
                raise FormatError([f'no row has the field "{missing_name}" that a {KIND_NAMES[kind]} file has'
                                   for missing_name in missing])  # fmt: skip
        else:
            container = "csv"
            rows = _csv_rows(text, problems)
            if kind not in (None, "mmlu"):
                raise FormatError([f"a {KIND_NAMES[kind]} file is JSON, JSON Lines or Parquet, not CSV"])
            if rows and len(rows[0][1]) != 6 and kind is None:
                raise FormatError(["the layout could not be told: the file is not Parquet or JSON, and its first "
                                   f"row has {len(rows[0][1])} comma-separated fields, not the 6 of an MMLU CSV "
                                   f"({', '.join(MMLU_CSV_FIELDS)})"])  # fmt: skip
            if rows and _looks_like_header(rows[0][1]):
                rows = rows[1:]
                warnings.append("The first row was a header (question … answer) and was skipped.")
            kind = "mmlu"
            ctx.subject = subject or subject_from_file_name(name)
            items = _parse_rows(rows, _mmlu_csv, ctx, problems)
            return ParsedSuite(kind=kind, source_format="mmlu-csv", items=items, warnings=warnings)
    items = _parse_rows(records, ROW_PARSERS[kind], ctx, problems)
    if ctx.padding_dropped:
        warnings.append(f'{ctx.padding_dropped} "{NOT_APPLICABLE}" padding options were dropped, as the official '
                        "MMLU-Pro evaluation does.")  # fmt: skip
    return ParsedSuite(kind=kind, source_format=f"{kind.replace('_', '-')}-{container}", items=items, warnings=warnings)


def parse_suite_file(name: str, data: bytes, *, kind: str | None = None, subject: str = "") -> ParsedSuite:
    """Parse one uploaded file. `subject` names the subject of an MMLU per-subject CSV (default: from the
    file name, e.g. "abstract_algebra_test.csv" → "abstract_algebra")."""
    if kind is not None and kind not in KIND_NAMES:
        raise FormatError([f"{_show(kind)} is not a benchmark kind; expected one of {', '.join(KIND_NAMES)}"])
    if not data.strip():
        raise FormatError(["the file is empty"])
    problems = _Problems()
    try:
        parsed = _parse(name, data, kind, subject, problems)
    except _Full:
        raise FormatError(list(problems)) from None
    if problems:
        raise FormatError(list(problems))
    if not parsed.items:
        raise FormatError(["the file has no items"])
    return parsed
