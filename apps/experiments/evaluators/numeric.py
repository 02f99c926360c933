"""numeric: the final number of the answer, extracted the way lm-evaluation-harness does for GSM8K.

lm-eval's gsm8k task (tasks/gsm8k/gsm8k.yaml, version 3) has two filters, each `regex` then
`take_first`:

* strict-match: `#### (\\-?[0-9\\.\\,]+)`, the FIRST match (group_select 0);
* flexible-extract: `(-?[$0-9.,]{2,})|(-?[0-9]+)`, the LAST match (group_select -1), the first
  non-empty group of it;

the match is stripped, and exact_match then removes `,`, `$` and one trailing `.` from both sides
(its `regexes_to_ignore`). A reference answer also loses everything up to its last `#### `. Here
the same steps run on the output and on `expected`, and the two numbers are compared with a
tolerance instead of as strings: "72.0" equals "72" (lm-eval would count it wrong).

A match that is not a number once cleaned ("...", "1.2.3") is a miss, as in lm-eval: flexible
extraction does not look further back for an earlier number.
"""

import math
import re
from typing import Any

from apps.experiments.evaluators.base import BaseEvaluator, Evaluation, SettingsError, SettingsReader

STRICT_PATTERN = r"#### (\-?[0-9\.\,]+)"
FLEXIBLE_PATTERN = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
MODES = ("strict_then_flexible", "strict", "flexible")
_FLEXIBLE = re.compile(FLEXIBLE_PATTERN)
_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")


def regex_filter(pattern: re.Pattern[str], text: str, group_select: int) -> str | None:
    """lm-eval's RegexFilter: findall, pick one match, first non-empty group, strip; None for its
    "[invalid]" fallback."""
    matches = pattern.findall(text)
    if not matches:
        return None
    match = matches[group_select]
    if isinstance(match, tuple):
        match = next((m for m in match if m), None)
        if match is None:
            return None
    return match.strip()


def clean(answer: str) -> str:
    """exact_match's regexes_to_ignore for gsm8k: `,`, `\\$`, and `\\.$` (one trailing period)."""
    return re.sub(r"\.$", "", answer.replace(",", "").replace("$", ""))


def to_number(answer: str | None) -> float | None:
    if answer is None:
        return None
    cleaned = clean(answer)
    return float(cleaned) if _NUMBER.fullmatch(cleaned) else None


def extract(text: str, mode: str, strict: re.Pattern[str]) -> dict[str, Any]:
    """{"method", "match", "number"} for the output; number None when nothing usable was found."""
    if mode != "flexible":
        match = regex_filter(strict, text, 0)
        number = to_number(match)
        if number is not None or mode == "strict":
            return {"method": "strict", "match": match, "number": number}
    match = regex_filter(_FLEXIBLE, text, -1)
    return {"method": "flexible", "match": match, "number": to_number(match)}


def expected_number(expected: str) -> float | None:
    """The reference as lm-eval treats it: everything up to the last `#### ` dropped, then cleaned;
    a reference that is still not a number ("The answer is 42") gets flexible extraction."""
    number = to_number(re.sub(r"(?s).*#### ", "", expected).strip())
    if number is None:
        number = to_number(regex_filter(_FLEXIBLE, expected, -1))
    return number


class Numeric(BaseEvaluator):
    """settings: mode (strict_then_flexible | strict | flexible), tolerance (absolute, 1e-6),
    relative_tolerance (0), strict_pattern (one capture group; gsm8k's by default)."""

    kind = "numeric"

    def read(self, reader: SettingsReader) -> None:
        reader.choice("mode", "strict_then_flexible", MODES)
        reader.number("tolerance", 1e-6, minimum=0)
        reader.number("relative_tolerance", 0.0, minimum=0)
        pattern = reader.text("strict_pattern", STRICT_PATTERN, required=True)
        try:
            groups = re.compile(pattern).groups
        except re.error as exc:
            raise SettingsError("strict_pattern", f"invalid regular expression: {exc}") from None
        if groups < 1:
            raise SettingsError("strict_pattern", "needs a capture group around the number")

    def run(self, output: str, expected: Any, settings: dict[str, Any]) -> Evaluation:
        want = expected_number(str(expected))
        if want is None:
            return Evaluation.undecided(f"expected: no number in {str(expected)[:100]!r}")
        found = extract(output, settings["mode"], re.compile(settings["strict_pattern"]))
        detail: dict[str, Any] = {**found, "expected": want}
        got = found["number"]
        if got is None:
            return Evaluation.verdict(False, detail)
        detail["difference"] = got - want
        close = math.isclose(got, want, rel_tol=settings["relative_tolerance"], abs_tol=settings["tolerance"])
        return Evaluation.verdict(close, detail)
