"""Importing benchmark files as a suite, all or nothing; deleting a suite; reading its answer key.

`suite_import` parses every file first (apps.benchmarks.engine.formats: the layout told from the content, every
bad row named), and only when all of them parse does it store anything: the suite, the next version of its
name in the team, and one BenchmarkItem per question, inside one transaction (PostgreSQL: one COPY; SQLite:
bulk_create in batches). A bad file is refused with a ValidationError whose messages name the file, the row and the field
('file mmlu_pro.parquet, row 7, field "answer": "K" is not one of A, B, …'). Test files are split "test",
few-shot files (MMLU dev CSVs, the MMLU-Pro validation split) split "fewshot", each indexed from 0 in file order.
"""

import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence

import orjson
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, ProtectedError

from apps.accounts.models import Team
from apps.benchmarks.engine import taskdefs
from apps.benchmarks.engine.formats import MAX_PROBLEMS, FormatError, ParsedItem, ParsedSuite, parse_suite_file
from apps.benchmarks.models import BenchmarkItem, BenchmarkSuite, Kind
from apps.scores.models import Benchmark

BATCH_SIZE = 2_000
NAME_MAX = 200
_VERSION_ATTEMPTS = 3  # two imports of one name at the same moment: the loser takes the next version


def _where(file_name: str, problem: str) -> str:
    """'file x.jsonl, row 12, field "answer": …' or 'file x.jsonl: the file is empty'."""
    return f"file {file_name}{', ' if problem.startswith(('row ', 'line ')) else ': '}{problem}"


def _parse_all(
    files: Sequence[tuple[str, bytes]], kind: str | None, problems: list[str]
) -> list[tuple[str, ParsedSuite]]:
    parsed = []
    for file_name, data in files:
        try:
            parsed.append((file_name, parse_suite_file(file_name, data, kind=kind)))
        except FormatError as exc:
            problems.extend(_where(file_name, problem) for problem in exc.problems)
        if len(problems) >= MAX_PROBLEMS:
            break
    return parsed


def _one_kind(parsed: list[tuple[str, ParsedSuite]], problems: list[str]) -> None:
    """Every file of a suite is of one benchmark."""
    if len({suite.kind for _, suite in parsed}) > 1:
        described = ", ".join(f"file {file_name} is {Kind(suite.kind).label}" for file_name, suite in parsed)
        problems.append(f"a suite holds one benchmark, but {described}")


def _check_input(name: str, kind: str | None, files: Sequence[tuple[str, bytes]]) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the suite a name."})
    if len(name) > NAME_MAX:
        raise ValidationError({"name": f"The name is longer than {NAME_MAX} characters."})
    if kind is not None and kind not in Kind.values:
        raise ValidationError({"kind": f"{kind!r} is not a benchmark; choose one of {', '.join(Kind.labels)}."})
    if not files:
        raise ValidationError("Choose a benchmark file to import.")
    return name


def _described(files: Sequence[tuple[str, bytes]]) -> str:
    first = files[0][0]
    return first[:255] if len(files) == 1 else f"{first[:200]} and {len(files) - 1} more"


def _subjects(items: list[ParsedItem]) -> dict[str, int]:
    counts = Counter(item.subject for item in items)
    return {} if set(counts) == {""} else dict(sorted(counts.items()))


def _store_items(suite: BenchmarkSuite, items: list[ParsedItem], split: str) -> None:
    """PostgreSQL: one COPY (12,000 MMLU-Pro items in ≈0.4 s, against ≈2–3 s for bulk_create, whose UNNEST
    parameters psycopg quotes in Python). Elsewhere (SQLite): bulk_create in batches."""
    if connection.vendor == "postgresql":
        _copy_items(suite, items, split)
        return
    batch: list[BenchmarkItem] = []
    for index, item in enumerate(items):
        batch.append(BenchmarkItem(
            suite_id=suite.pk, split=split, index=index, source_id=item.source_id, subject=item.subject,
            question=item.question, choices=list(item.choices), answer=item.answer, rationale=item.rationale,
        ))  # fmt: skip
        if len(batch) == BATCH_SIZE:
            BenchmarkItem.objects.bulk_create(batch)
            batch = []
    if batch:
        BenchmarkItem.objects.bulk_create(batch)


_COPY_FIELDS = ("suite", "split", "index", "source_id", "subject", "question", "choices", "answer", "rationale")


def _copy_items(suite: BenchmarkSuite, items: list[ParsedItem], split: str) -> None:
    meta = BenchmarkItem._meta
    columns = ", ".join(connection.ops.quote_name(meta.get_field(name).column) for name in _COPY_FIELDS)
    sql = f"COPY {connection.ops.quote_name(meta.db_table)} ({columns}) FROM STDIN"
    split = str(split)  # the value ("test"), not an enum member
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:  # psycopg 3's cursor under Django's
        for index, item in enumerate(items):
            copy.write_row((suite.pk, split, index, item.source_id, item.subject, item.question,
                            orjson.dumps(item.choices).decode(), item.answer, item.rationale))  # fmt: skip


def suite_import(
    *,
    team: Team,
    user,
    name: str,
    files: list[tuple[str, bytes]],
    kind: str | None = None,
    fewshot_files: Sequence[tuple[str, bytes]] = (),
    description: str = "",
) -> BenchmarkSuite:
    """Parse `files` (and `fewshot_files`), all of one benchmark, and store them as the next version of the
    suite `name`; ValidationError naming file, row and field (nothing stored) when any is bad. The returned
    suite carries `import_warnings` (e.g. "N/A" options dropped), not stored."""
    name = _check_input(name, kind, files)
    problems: list[str] = []
    tests = _parse_all(files, kind, problems)
    _one_kind(tests, problems)
    kind = kind or (tests[0][1].kind if tests else None)
    fewshots = _parse_all(fewshot_files, kind, problems) if len(problems) < MAX_PROBLEMS else []
    if problems:
        raise ValidationError(problems[:MAX_PROBLEMS])
    test_items = [item for _, parsed in tests for item in parsed.items]
    fewshot_items = [item for _, parsed in fewshots for item in parsed.items]
    digest = hashlib.sha256()
    for _, data in [*files, *fewshot_files]:
        digest.update(data)
    formats = sorted({parsed.source_format for _, parsed in tests})
    task = taskdefs.task_definition(kind, shots=0)
    for attempt in range(_VERSION_ATTEMPTS):
        try:
            with transaction.atomic():
                benchmark, _ = Benchmark.objects.get_or_create(team=team, name=Kind(kind).label)
                last = BenchmarkSuite.objects.filter(team=team, name=name).aggregate(last=Max("version"))["last"]
                suite = BenchmarkSuite.objects.create(
                    team=team, name=name, version=(last or 0) + 1, kind=kind, benchmark=benchmark,
                    source_format="+".join(formats)[:40], file_name=_described(files), sha256=digest.hexdigest(),
                    item_count=len(test_items), fewshot_count=len(fewshot_items), subjects=_subjects(test_items),
                    task=task, description=description, created_by=user,
                )  # fmt: skip
                _store_items(suite, test_items, BenchmarkItem.Split.TEST)
                _store_items(suite, fewshot_items, BenchmarkItem.Split.FEWSHOT)
            break
        except IntegrityError:
            if attempt == _VERSION_ATTEMPTS - 1:
                raise ValidationError({"name": "Other imports of this name were stored at the same moment; "
                                               "import again."}) from None  # fmt: skip
    suite.import_warnings = [_where(file_name, warning) for file_name, parsed in [*tests, *fewshots]
                             for warning in parsed.warnings]  # fmt: skip
    return suite


def suite_delete(*, suite: BenchmarkSuite) -> None:
    """Delete a suite and its items; refused (ValidationError) while benchmark runs use it."""
    refused = ValidationError("This suite has benchmark runs; delete them first.")
    if suite.runs.exists():
        raise refused
    try:
        with transaction.atomic():
            suite.delete()
    except ProtectedError:  # a run created since the check
        raise refused from None


def suite_answer_key(suite: BenchmarkSuite) -> Iterator[dict]:
    """The test items in index order: {"index", "question", "choices", "answer", "subject"}."""
    rows = (
        BenchmarkItem.objects.filter(suite=suite, split=BenchmarkItem.Split.TEST)
        .order_by("index")
        .values_list("index", "question", "choices", "answer", "subject")
    )
    for index, question, choices, answer, subject in rows.iterator(chunk_size=BATCH_SIZE):
        yield {"index": index, "question": question, "choices": choices, "answer": answer, "subject": subject}


def item_data(item: BenchmarkItem) -> ParsedItem:
    """A stored item as the engine's plain item (what taskdefs builds prompts from and scores against)."""
    return ParsedItem(
        question=item.question, answer=item.answer, choices=tuple(item.choices), subject=item.subject,
        rationale=item.rationale, source_id=item.source_id,
    )  # fmt: skip
