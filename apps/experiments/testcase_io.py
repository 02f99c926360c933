"""Test cases in and out as JSON Lines or CSV. An import is all or nothing: every bad row and
field is listed, and nothing is written."""

import csv
import io
import json
from collections.abc import Iterator
from typing import NoReturn

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from apps.accounts.models import Team
from apps.experiments.evaluators import SettingsError, validate_settings
from apps.experiments.models import TestCase
from apps.experiments.services import testcase_create
from llmbench.exports import neutralize_formula
from llmbench.parsers import json_loads
from llmbench.uploads import ErrorList, FileRejected, RowError, decode_upload

FIELDS = ["title", "system_prompt", "prompt", "expected_output", "evaluator", "evaluator_settings", "tags"]


class TestCaseFileError(FileRejected):
    """A test case file that cannot be imported."""

    __test__ = False


def _record(case: TestCase) -> dict:
    return {name: getattr(case, name) for name in FIELDS} | {"version": case.version, "status": case.status}


def export_jsonl(cases) -> Iterator[str]:
    for case in cases:
        yield json.dumps(_record(case)) + "\n"


class _Echo:
    def write(self, value):
        return value


def export_csv(cases) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow([*FIELDS, "version", "status"])
    for case in cases:
        record = _record(case)
        record["evaluator_settings"] = json.dumps(record["evaluator_settings"])
        record["tags"] = ",".join(record["tags"])
        yield writer.writerow([neutralize_formula(record[k]) for k in [*FIELDS, "version", "status"]])


def _records(text: str, fmt: str) -> list[tuple[int, dict]]:
    if fmt == "jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((number, json_loads(line)))
                except json.JSONDecodeError as exc:
                    _reject(number, "line", f"is not JSON ({exc.msg}).")
        return records
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    for row in reader:
        record = dict(row)
        if "evaluator_settings" in record:
            raw = (record["evaluator_settings"] or "").strip()
            try:
                record["evaluator_settings"] = json_loads(raw) if raw else {}
            except json.JSONDecodeError as exc:
                _reject(reader.line_num, "evaluator_settings", f"is not a JSON object ({exc.msg}).")
        if "tags" in record:
            record["tags"] = [t.strip() for t in (record["tags"] or "").split(",") if t.strip()]
        rows.append((reader.line_num, record))
    return rows


def _reject(row: int | str, field: str, message: str) -> NoReturn:
    raise TestCaseFileError([RowError(row, field, message)])


@transaction.atomic
def testcases_import(*, team: Team, author: AbstractBaseUser, content: bytes, fmt: str, submit: bool = False) -> int:
    """Create a test case per record (drafts, or pending with `submit`); FileRejected if any is bad."""
    errors = ErrorList()
    records = _records(decode_upload(content, TestCaseFileError), fmt)
    valid = []
    for row, record in records:
        if not isinstance(record, dict):
            errors.add(row, "record", "is not an object.")
            continue
        unknown = set(record) - {*FIELDS, "version", "status"}
        for name in sorted(unknown):
            errors.add(row, name, "unknown field.")
        for name in ("title", "prompt"):
            if not str(record.get(name) or "").strip():
                errors.add(row, name, "is empty.")
        evaluator = record.get("evaluator") or "exact_match"
        try:
            settings = validate_settings(evaluator, record.get("evaluator_settings") or {})
        except SettingsError as exc:
            field = "evaluator" if exc.setting == "kind" else f"evaluator_settings.{exc.setting}"
            errors.add(row, field, str(exc))
            continue
        tags = record.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            errors.add(row, "tags", "is not a list of strings.")
            continue
        valid.append({"title": str(record.get("title", "")).strip(), "prompt": str(record.get("prompt", "")),
                      "system_prompt": str(record.get("system_prompt") or ""),
                      "expected_output": str(record.get("expected_output") or ""), "evaluator": evaluator,
                      "evaluator_settings": settings, "tags": tags})  # fmt: skip
    if not records:
        errors.add("file", "records", "no test cases found.")
    errors.raise_if_any(TestCaseFileError)
    for fields in valid:
        testcase_create(team=team, author=author, submit=submit, **fields)
    return len(valid)
