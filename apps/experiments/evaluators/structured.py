"""json_schema: the output holds a JSON document that validates against a JSON Schema.

Models wrap JSON in prose and code fences, so the document is looked for in this order: the whole
output; else the first fenced block labelled json, else the first fenced block (an unclosed fence,
as in an output cut at max_tokens, runs to the end); else the outermost JSON object or array
embedded in the text. Strict JSON only: NaN and Infinity are refused.

Validation uses `jsonschema` with Draft 2020-12 unless the schema's `$schema` names another draft
it knows; every error is collected with its JSON path, not only the first, so a run's page shows
all that is wrong. Remote `$ref`s are never fetched (an unresolvable one leaves the sample
undecided).
"""

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from referencing.exceptions import Unresolvable

from apps.experiments.evaluators.base import BaseEvaluator, Evaluation, SettingsError, SettingsReader, clip
from llmbench.parsers import json_loads

MAX_ERRORS = 50  # errors kept in `detail`; `error_count` has them all
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_OPENERS = re.compile(r"[\[{]")


class NoJSON(ValueError):
    """The text holds no JSON document."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(text: str) -> Any:
    value, end = _DECODER.raw_decode(text)
    if text[end:].strip():
        raise ValueError(f"extra data after the JSON document at position {end}")
    return value


def extract_json(text: str) -> tuple[Any, str]:
    """(document, where it was found: "whole" | "fenced" | "embedded"); NoJSON when there is none."""
    stripped = text.strip()
    try:
        return _loads(stripped), "whole"
    except (ValueError, RecursionError):
        pass
    fences = list(_FENCE.finditer(text))
    if fences:
        fence = next((f for f in fences if f.group(1).lower() == "json"), fences[0])
        try:
            return _loads(fence.group(2).strip()), "fenced"
        except (ValueError, RecursionError) as exc:
            raise NoJSON(f"the fenced block is not valid JSON: {exc}") from None
    found = _outermost(text)
    if found is None:
        raise NoJSON("no JSON object or array found in the output")
    return found, "embedded"


def _outermost(text: str) -> Any:
    """The longest JSON object or array that decodes at some `{` or `[` of the text.

    Scanning every opener and keeping the longest document picks `{"a": [1]}` over a `[1]` met
    earlier in the prose; the scan resumes after each document, so nested openers are skipped."""
    best, best_len, pos = None, 0, 0
    while (opener := _OPENERS.search(text, pos)) is not None:
        start = opener.start()
        try:
            value, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            pos = start + 1
            continue
        if end - start > best_len:
            best, best_len = value, end - start
        pos = end
    return best


def schema_validator(schema: Any, setting: str = "schema") -> Any:
    """A validator for `schema`, or SettingsError naming what is wrong in it and where."""
    if not isinstance(schema, dict | bool):
        raise SettingsError(setting, "must be a JSON Schema object")
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise SettingsError(setting, f"not a valid JSON Schema at {exc.json_path}: {clip(exc.message, 300)}") from None
    return cls(schema)


def schema_errors(validator: Any, document: Any) -> list[dict[str, str]]:
    errors = [
        {
            "path": error.json_path,
            "message": clip(error.message, 300),
            "keyword": str(error.validator),
            "schema_path": "/".join(str(p) for p in error.schema_path),
        }
        for error in validator.iter_errors(document)
    ]
    return sorted(errors, key=lambda e: (e["path"], e["schema_path"]))


class JSONSchema(BaseEvaluator):
    kind = "json_schema"

    def read(self, reader: SettingsReader) -> None:
        schema = reader.value("schema", None)
        if schema is None:
            raise SettingsError("schema", "is required")
        if isinstance(schema, str):  # pasted into a text field
            try:
                schema = json_loads(schema)  # text from a person: nesting limited by JSON_MAX_DEPTH
            except ValueError as exc:
                raise SettingsError("schema", f"is not valid JSON: {exc}") from None
        schema_validator(schema)
        reader.keep("schema", schema)

    def run(self, output: str, expected: Any, settings: dict[str, Any]) -> Evaluation:
        validator = schema_validator(settings["schema"])
        try:
            document, source = extract_json(output)
        except NoJSON as exc:
            return Evaluation.verdict(False, {"source": None, "parse_error": str(exc), "errors": [], "error_count": 0})
        try:
            errors = schema_errors(validator, document)
        except Unresolvable as exc:
            return Evaluation.undecided(f"schema: cannot resolve a $ref ({exc})", {"source": source})
        detail = {"source": source, "errors": errors[:MAX_ERRORS], "error_count": len(errors)}
        return Evaluation.verdict(not errors, detail)
