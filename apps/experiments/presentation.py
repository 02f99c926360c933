"""What an experiment page says in words: the parameters it ran with, each evaluator's settings, and per
response why the evaluator passed or failed it (read from the `evaluation` detail each evaluator stores)."""

import json
from typing import Any

from apps.experiments.models import PARAMETER_COLUMNS, Experiment, Response
from llmbench.humanize import number_text, yes_no_text

PARAMETER_LABELS = {
    "temperature": "Temperature", "top_p": "Top p", "max_tokens": "Max tokens",
    "frequency_penalty": "Frequency penalty", "presence_penalty": "Presence penalty", "seed": "Seed",
}  # fmt: skip
UNSET = {"seed": "none (sampling varies between responses)"}
JSON_SOURCES = {"whole": "the whole output", "fenced": "a fenced code block", "embedded": "embedded in the text"}
NUMERIC_METHODS = {"strict": "the strict “#### <number>” pattern", "flexible": "the last number in the output"}
SCHEMA_ERRORS_SHOWN = 10

Lines = list[tuple[str, str]]


def parameter_text(value: Any) -> str:
    """A sampling parameter as it was set: 0.7, not 0.700; 1,024."""
    text = number_text(value)
    return text.rstrip("0").rstrip(".") if "." in text else text


def parameter_lines(experiment: Experiment) -> Lines:
    """Every sampling parameter in words; one not set is the provider's default."""
    parameters = experiment.parameters or {}
    return [
        (PARAMETER_LABELS[name], parameter_text(parameters[name]) if parameters.get(name) is not None
         else UNSET.get(name, "not set (the provider's default)"))
        for name in PARAMETER_COLUMNS
    ]  # fmt: skip


def response_parameter_lines(response: Response) -> Lines:
    """The sampling parameters a response was asked with (only those that were set)."""
    parameters = response.parameters or {}
    return [
        (PARAMETER_LABELS[name], parameter_text(parameters[name])) for name in PARAMETER_COLUMNS if name in parameters
    ]


def _setting_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return yes_no_text(value) if value is not None else "–"
    if isinstance(value, int | float):
        return number_text(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value) or "–"


def settings_lines(settings: dict[str, Any]) -> Lines:
    """An evaluator's settings as (words, value) pairs."""
    return [(name.replace("_", " ").capitalize(), _setting_text(value)) for name, value in (settings or {}).items()]


def _plural(count: int, word: str) -> str:
    return f"{number_text(count)} {word}{'' if count == 1 else 's'}"


def evaluation_lines(response: Response) -> Lines:
    """Why the evaluator decided as it did, for the response's test case's evaluator; the evaluation
    error when it could not decide. Empty for a prompt (nothing evaluates it) or a failed request."""
    if response.error_code or response.test_case is None:
        return []
    detail, passed = response.evaluation or {}, response.passed
    lines = _DETAIL.get(response.test_case.evaluator, _generic)(detail, passed)
    if response.evaluation_error:
        lines.insert(0, ("Undecided", response.evaluation_error))
    return lines


def _exact(detail: dict, passed: bool | None) -> Lines:
    if "compared" not in detail:
        return []
    why = "the normalized output equals the expected text" if passed else "the normalized output differs from it"
    return [("Why", why), ("Output, normalized", detail["compared"]), ("Expected, normalized", detail["expected"])]


def _contains(detail: dict, passed: bool | None) -> Lines:
    if "found" not in detail:
        return []
    found, missing = detail["found"], detail["missing"]
    rule = "any one must appear" if detail.get("mode") == "any" else "every one must appear"
    return [
        ("Why", f"found {number_text(len(found))} of {_plural(len(found) + len(missing), 'expected text')} ({rule})"),
        ("Found", ", ".join(found) or "none"),
        ("Missing", ", ".join(missing) or "none"),
    ]


def _regex(detail: dict, passed: bool | None) -> Lines:
    if "pattern" not in detail:
        return []
    where = "the whole output" if detail.get("full") else "somewhere in the output"
    lines = [("Why", f"the pattern {'matched' if passed else 'did not match'} {where}"), ("Pattern", detail["pattern"])]
    if "match" in detail:
        lines.append(("Matched text", detail["match"]))
    return lines


def _json_schema(detail: dict, passed: bool | None) -> Lines:
    if "source" not in detail:
        return []
    if detail["source"] is None:
        return [("Why", f"no JSON document in the output: {detail.get('parse_error', '')}")]
    errors, count = detail.get("errors", []), detail.get("error_count", 0)
    where = JSON_SOURCES.get(detail["source"], detail["source"])
    why = f"JSON found in {where}; " + (
        "valid against the schema" if not count else f"{_plural(count, 'schema error')}"
    )
    lines = [("Why", why)]
    lines += [(f"Schema error at {e['path']}", e["message"]) for e in errors[:SCHEMA_ERRORS_SHOWN]]
    if count > SCHEMA_ERRORS_SHOWN:
        lines.append(("More", f"{number_text(count - SCHEMA_ERRORS_SHOWN)} more schema errors (see the JSON export)"))
    return lines


def _numeric(detail: dict, passed: bool | None) -> Lines:
    if "method" not in detail:
        return []
    number, expected = detail.get("number"), detail.get("expected")
    method = NUMERIC_METHODS.get(detail["method"], detail["method"])
    if number is None:
        return [("Why", f"no number found with {method}"), ("Expected answer", number_text(expected))]
    lines = [
        ("Why", f"the extracted answer {'equals' if passed else 'differs from'} the expected one"),
        ("Extracted answer", f"{number_text(number)} (by {method}, from “{detail.get('match')}”)"),
        ("Expected answer", number_text(expected)),
    ]
    if detail.get("difference"):
        lines.append(("Difference", number_text(detail["difference"])))
    return lines


def _judge(detail: dict, passed: bool | None) -> Lines:
    if "scale" not in detail:
        return []
    low, high = detail["scale"]
    scale = f"{number_text(low)} to {number_text(high)}, passes at {number_text(detail['pass_threshold'])} or above"
    if "judge_score" not in detail:
        return [("Judge scale", scale), ("Judge's answer", (detail.get("raw_answer") or "")[:1000] or "empty")]
    return [
        ("Judge score", f"{number_text(detail['judge_score'])} ({scale})"),
        ("Judge rationale", detail.get("rationale") or "none given"),
    ]


def _generic(detail: dict, passed: bool | None) -> Lines:
    return [(name.replace("_", " ").capitalize(), _setting_text(value)) for name, value in detail.items()]


_DETAIL = {
    "exact_match": _exact, "contains": _contains, "regex": _regex, "json_schema": _json_schema,
    "numeric": _numeric, "llm_judge": _judge,
}  # fmt: skip
