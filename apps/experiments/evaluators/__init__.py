"""Evaluators: is one model output right? Pure Python (no Django), documented in docs/evaluators.md.

    evaluate(kind, output, expected=..., settings=...) -> Evaluation        # every kind but llm_judge
    await evaluate_with_judge(output, expected, settings, judge) -> Evaluation
    validate_settings(kind, settings) -> settings with defaults             # SettingsError (a ValueError)

`evaluate` never raises on bad input: an unknown kind or invalid settings give an undecided
Evaluation (passed None, `error` set), so one bad sample cannot stop a run; forms call
`validate_settings` first and show its error on the named setting.
"""

from typing import Any

from apps.experiments.evaluators.base import Evaluation, Evaluator, SettingsError
from apps.experiments.evaluators.judge import Judge, JudgeError, LLMJudge, build_prompt, evaluate_with_judge, make_judge
from apps.experiments.evaluators.numeric import Numeric
from apps.experiments.evaluators.structured import JSONSchema, extract_json
from apps.experiments.evaluators.text import Contains, ExactMatch, Regex

EVALUATORS: dict[str, Evaluator] = {
    e.kind: e for e in (ExactMatch(), Contains(), Regex(), JSONSchema(), Numeric(), LLMJudge())
}
JUDGED_KINDS = frozenset({"llm_judge"})  # need evaluate_with_judge and a judge model


def validate_settings(kind: str, settings: dict[str, Any] | None) -> dict[str, Any]:
    """The settings with every default filled in; SettingsError naming the bad setting."""
    evaluator = EVALUATORS.get(kind)
    if evaluator is None:
        raise SettingsError("kind", f"unknown evaluator {kind!r} (known: {', '.join(EVALUATORS)})")
    return evaluator.validate_settings(settings or {})


def evaluate(kind: str, output: str, *, expected: Any = "", settings: dict[str, Any] | None = None) -> Evaluation:
    evaluator = EVALUATORS.get(kind)
    if evaluator is None:
        return Evaluation.undecided(f"kind: unknown evaluator {kind!r}")
    return evaluator.evaluate(output, expected=expected, settings=settings or {})


__all__ = [
    "EVALUATORS",
    "JUDGED_KINDS",
    "Evaluation",
    "Evaluator",
    "Judge",
    "JudgeError",
    "SettingsError",
    "build_prompt",
    "evaluate",
    "evaluate_with_judge",
    "extract_json",
    "make_judge",
    "validate_settings",
]
