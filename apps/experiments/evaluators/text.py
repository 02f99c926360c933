"""exact_match, contains and regex: comparisons of the output text itself.

Both sides of a comparison go through the same normalization, in this order: Unicode NFC (so a
composed "é" equals "e" + combining accent, which look identical), punctuation removal (Unicode
category P*, like lm-evaluation-harness's `ignore_punctuation`), case folding (`str.casefold`, so
"Straße" equals "STRASSE") and whitespace collapsing (any run of Unicode whitespace becomes one
space, ends stripped: a model's trailing newline is not an error).
"""

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from apps.experiments.evaluators.base import BaseEvaluator, Evaluation, SettingsError, SettingsReader, clip


def normalize(text: str, *, case_sensitive: bool, normalize_whitespace: bool, ignore_punctuation: bool) -> str:
    text = unicodedata.normalize("NFC", text)
    if ignore_punctuation:
        text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    if not case_sensitive:
        text = unicodedata.normalize("NFC", text.casefold())
    if normalize_whitespace:
        text = " ".join(text.split())
    return text


def read_text_options(reader: SettingsReader) -> None:
    reader.flag("case_sensitive", False)
    reader.flag("normalize_whitespace", True)
    reader.flag("ignore_punctuation", False)


def _options(settings: dict[str, Any]) -> dict[str, bool]:
    return {k: settings[k] for k in ("case_sensitive", "normalize_whitespace", "ignore_punctuation")}


class ExactMatch(BaseEvaluator):
    kind = "exact_match"

    def read(self, reader: SettingsReader) -> None:
        read_text_options(reader)

    def run(self, output: str, expected: Any, settings: dict[str, Any]) -> Evaluation:
        options = _options(settings)
        got, want = normalize(output, **options), normalize(str(expected), **options)
        return Evaluation.verdict(got == want, {"compared": clip(got), "expected": clip(want)})


class Contains(BaseEvaluator):
    """Every expected string must appear in the output (any one with `any`). `expected` is one
    string or a list of strings; the score is the share found, so a near miss is visible."""

    kind = "contains"

    def read(self, reader: SettingsReader) -> None:
        read_text_options(reader)
        reader.flag("any", False)

    def run(self, output: str, expected: Any, settings: dict[str, Any]) -> Evaluation:
        needles = [expected] if isinstance(expected, str) else list(expected) if isinstance(expected, Sequence) else []
        if not all(isinstance(n, str) for n in needles) or not any(n.strip() for n in needles):
            return Evaluation.undecided("expected: nothing to look for (give a string or a list of strings)")
        options = _options(settings)
        haystack = normalize(output, **options)
        found, missing = [], []
        for needle in needles:
            (found if normalize(needle, **options) in haystack else missing).append(needle)
        detail = {"found": found, "missing": missing, "mode": "any" if settings["any"] else "all"}
        if settings["any"]:
            return Evaluation.verdict(bool(found), detail)
        return Evaluation.verdict(not missing, detail, score=len(found) / len(needles))


def compile_pattern(pattern: str, settings: dict[str, Any], source: str) -> re.Pattern[str]:
    flags = 0
    for name, flag in (("ignorecase", re.IGNORECASE), ("multiline", re.MULTILINE), ("dotall", re.DOTALL)):
        if settings.get(name):
            flags |= flag
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise SettingsError(source, f"invalid regular expression: {exc}") from None


class Regex(BaseEvaluator):
    """The pattern is `settings.pattern`, else `expected`. `full`: the whole output (surrounding
    whitespace ignored) must match; otherwise a match anywhere passes (`re.search`)."""

    kind = "regex"

    def read(self, reader: SettingsReader) -> None:
        for name in ("ignorecase", "multiline", "dotall", "full"):
            reader.flag(name, False)
        pattern = reader.text("pattern", "")
        if pattern:
            compile_pattern(pattern, reader.clean, "pattern")

    def run(self, output: str, expected: Any, settings: dict[str, Any]) -> Evaluation:
        source = "pattern" if settings["pattern"] else "expected"
        pattern = settings["pattern"] or (expected if isinstance(expected, str) else "")
        if not pattern:
            return Evaluation.undecided("pattern: no pattern (set settings.pattern or expected)")
        try:
            regex = compile_pattern(pattern, settings, source)
        except SettingsError as exc:
            return Evaluation.undecided(str(exc))
        match = regex.fullmatch(output.strip()) if settings["full"] else regex.search(output)
        detail: dict[str, Any] = {"pattern": clip(pattern), "full": settings["full"]}
        if match:
            detail["match"] = clip(match.group(0))
            detail["span"] = list(match.span())
            detail["groups"] = match.groupdict() or list(match.groups())
        return Evaluation.verdict(match is not None, detail)
