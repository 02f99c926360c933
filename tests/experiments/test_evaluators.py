"""Evaluators: pass, fail and undecided kept apart; lm-eval's GSM8K extraction rules; settings checks."""

import asyncio

import pytest

from apps.experiments.evaluators import (
    EVALUATORS,
    Evaluation,
    JudgeError,
    SettingsError,
    build_prompt,
    evaluate,
    evaluate_with_judge,
    make_judge,
    validate_settings,
)
from apps.providers.engine.types import ErrorKind, GenerationResult, RequestError

PERSON = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}


def judged(answer, settings=None, **kwargs):
    """Run the llm_judge evaluator with a stub judge that gives `answer` (or raises it)."""
    prompts = []

    async def judge(prompt):
        prompts.append(prompt)
        if isinstance(answer, Exception):
            raise answer
        return answer

    result = asyncio.run(evaluate_with_judge("4", "4", {"rubric": "Correct?", **(settings or {})}, judge, **kwargs))
    return result, prompts


# ---- the contract -------------------------------------------------------------------------------


def test_every_kind_is_registered_under_its_name():
    """The six kinds are in EVALUATORS, each keyed by its own kind."""
    assert sorted(EVALUATORS) == ["contains", "exact_match", "json_schema", "llm_judge", "numeric", "regex"]
    assert all(evaluator.kind == kind for kind, evaluator in EVALUATORS.items())


def test_validate_settings_fills_every_default():
    """Forms get the normalized settings back, defaults included."""
    assert validate_settings("exact_match", {}) == {
        "case_sensitive": False,
        "normalize_whitespace": True,
        "ignore_punctuation": False,
    }
    assert validate_settings("numeric", {"mode": "strict"})["tolerance"] == 1e-6


@pytest.mark.parametrize(
    ("kind", "settings", "setting"),
    [
        ("nope", {}, "kind"),
        ("exact_match", {"case_sensitiv": True}, "case_sensitiv"),
        ("exact_match", {"case_sensitive": "true"}, "case_sensitive"),
        ("contains", {"any": 1}, "any"),
        ("regex", {"pattern": "(unclosed"}, "pattern"),
        ("json_schema", {}, "schema"),
        ("json_schema", {"schema": {"type": "integr"}}, "schema"),
        ("json_schema", {"schema": "{not json"}, "schema"),
        ("json_schema", {"schema": [1]}, "schema"),
        ("numeric", {"mode": "loose"}, "mode"),
        ("numeric", {"tolerance": -0.1}, "tolerance"),
        ("numeric", {"relative_tolerance": "1%"}, "relative_tolerance"),
        ("numeric", {"strict_pattern": r"#### \d+"}, "strict_pattern"),
        ("llm_judge", {}, "rubric"),
        ("llm_judge", {"rubric": "x", "scale_min": 5, "scale_max": 5}, "scale_max"),
        ("llm_judge", {"rubric": "x", "pass_threshold": 11}, "pass_threshold"),
        ("llm_judge", {"rubric": "x", "answer_format": "yaml"}, "answer_format"),
    ],
)
def test_a_bad_setting_is_refused_by_name(kind, settings, setting):
    """The error starts with the setting's name and carries it for the form."""
    with pytest.raises(SettingsError, match=f"^{setting}: ") as caught:
        validate_settings(kind, settings)
    assert caught.value.setting == setting


def test_evaluate_never_raises_on_bad_settings_or_an_unknown_kind():
    """One misconfigured sample is undecided, not an exception that stops a run."""
    bad = evaluate("regex", "x", expected="x", settings={"pattern": "("})
    unknown = evaluate("telepathy", "x")
    assert (bad.passed, bad.score) == (None, None)
    assert bad.error.startswith("invalid settings: pattern: invalid regular expression")
    assert unknown.error == "kind: unknown evaluator 'telepathy'"


def test_an_evaluation_serializes_to_a_plain_dict():
    """as_dict gives what a JSON field stores."""
    result = evaluate("exact_match", "Yes", expected="yes")
    assert result.as_dict() == {
        "passed": True,
        "score": 1.0,
        "detail": {"compared": "yes", "expected": "yes"},
        "error": "",
    }


# ---- exact_match and contains -------------------------------------------------------------------


def test_exact_match_ignores_case_and_surrounding_whitespace_by_default():
    """Case and white-space runs (Unicode ones too) do not count by default."""
    assert evaluate("exact_match", "  Hello\u00a0\n World \n", expected="hello world").passed is True


def test_exact_match_case_sensitive_tells_case_apart():
    """case_sensitive: "Paris" is not "paris"."""
    result = evaluate("exact_match", "Paris", expected="paris", settings={"case_sensitive": True})
    assert (result.passed, result.score) == (False, 0.0)


def test_exact_match_without_whitespace_normalization_compares_spaces():
    """normalize_whitespace false: a double space or a trailing newline is a difference."""
    settings = {"normalize_whitespace": False}
    assert evaluate("exact_match", "a  b", expected="a b", settings=settings).passed is False
    assert evaluate("exact_match", "a b\n", expected="a b", settings=settings).passed is False


def test_exact_match_ignore_punctuation_drops_unicode_punctuation():
    """ignore_punctuation removes every P* character, guillemets and ellipsis included."""
    settings = {"ignore_punctuation": True}
    assert evaluate("exact_match", "«Hello», world…!", expected="hello world", settings=settings).passed is True
    assert evaluate("exact_match", "«Hello», world…!", expected="hello world").passed is False


def test_exact_match_treats_unicode_forms_and_case_folding_alike():
    """A decomposed accent equals the composed one; ß case-folds to ss."""
    assert evaluate("exact_match", "Cafe\u0301", expected="café").passed is True
    assert evaluate("exact_match", "STRASSE", expected="straße").passed is True


def test_contains_needs_every_string_and_scores_the_share_found():
    """A list of expected strings: all must appear; the score shows how many did."""
    result = evaluate("contains", "Paris is in FRANCE.", expected=["paris", "france", "Berlin"])
    assert (result.passed, result.score) == (False, pytest.approx(2 / 3))
    assert result.detail == {"found": ["paris", "france"], "missing": ["Berlin"], "mode": "all"}


def test_contains_any_passes_on_a_single_string():
    """any: one of the strings is enough."""
    result = evaluate("contains", "It is Lyon.", expected=["Paris", "Lyon"], settings={"any": True})
    assert (result.passed, result.score) == (True, 1.0)


def test_contains_applies_the_text_options_to_both_sides():
    """Case, punctuation and white space options hold for the needle too."""
    settings = {"ignore_punctuation": True, "case_sensitive": False}
    assert evaluate("contains", "The answer: NEW-YORK city", expected="newyork  city", settings=settings).passed
    assert evaluate("contains", "Ünïcödé text", expected="ünïcödé").passed is True


@pytest.mark.parametrize("expected", ["", "   ", [], [""], [1, 2]])
def test_contains_with_nothing_to_look_for_is_undecided(expected):
    """An empty or non-string expected is a configuration problem, not a pass."""
    result = evaluate("contains", "anything", expected=expected)
    assert result.passed is None and result.error.startswith("expected: nothing to look for")


# ---- regex --------------------------------------------------------------------------------------


def test_regex_searches_the_pattern_from_expected():
    """The pattern comes from expected; a match anywhere passes and is in detail."""
    result = evaluate("regex", "The answer is 42.", expected=r"\d+")
    assert result.passed is True
    assert result.detail == {"pattern": r"\d+", "full": False, "match": "42", "span": [14, 16], "groups": []}


def test_regex_settings_pattern_wins_and_named_groups_are_kept():
    """settings.pattern overrides expected; named groups land in detail."""
    result = evaluate("regex", "total: 17 EUR", expected="ignored", settings={"pattern": r"(?P<n>\d+) (?P<cur>[A-Z]+)"})
    assert result.passed is True
    assert result.detail["groups"] == {"n": "17", "cur": "EUR"}


def test_regex_full_needs_the_whole_output_to_match():
    """full: surrounding white space is ignored, anything else must match."""
    assert evaluate("regex", " 42\n", expected=r"\d+", settings={"full": True}).passed is True
    assert evaluate("regex", "42 apples", expected=r"\d+", settings={"full": True}).passed is False


@pytest.mark.parametrize(
    ("flag", "output", "pattern"),
    [("ignorecase", "YES", "yes"), ("multiline", "a\nyes", "^yes$"), ("dotall", "start\nend", "start.end")],
)
def test_regex_flags_change_the_match(flag, output, pattern):
    """Each flag turns a miss into a match."""
    assert evaluate("regex", output, expected=pattern).passed is False
    assert evaluate("regex", output, expected=pattern, settings={flag: True}).passed is True


def test_regex_invalid_pattern_in_expected_is_undecided():
    """Expected is not a setting: its bad pattern leaves the sample undecided, naming it."""
    result = evaluate("regex", "x", expected="[a-")
    assert result.passed is None
    assert result.error.startswith("expected: invalid regular expression")


# ---- json_schema --------------------------------------------------------------------------------


def test_json_schema_passes_a_bare_valid_document():
    """The whole output is the document."""
    result = evaluate("json_schema", '{"name": "Ada", "age": 36}', settings={"schema": PERSON})
    assert (result.passed, result.detail) == (True, {"source": "whole", "errors": [], "error_count": 0})


def test_json_schema_finds_a_fenced_block_inside_prose():
    """Prose around a ```json fence: the fence is read."""
    output = 'Sure! Here is the person:\n```json\n{"name": "Ada", "age": 36}\n```\nAnything else?'
    result = evaluate("json_schema", output, settings={"schema": PERSON})
    assert (result.passed, result.detail["source"]) == (True, "fenced")


def test_json_schema_prefers_the_json_fence_and_reads_an_unclosed_one():
    """A ```json block wins over an earlier ```python one; a cut-off fence runs to the end."""
    labelled = '```python\nprint(1)\n```\nand\n```json\n{"name": "Ada", "age": 1}\n```'
    unclosed = '```\n{"name": "Ada", "age": 2}\n'
    assert evaluate("json_schema", labelled, settings={"schema": PERSON}).passed is True
    assert evaluate("json_schema", unclosed, settings={"schema": PERSON}).passed is True


def test_json_schema_takes_the_outermost_document_embedded_in_prose():
    """Without a fence the longest object or array wins, not a [1] met earlier."""
    output = 'See note [1]. The result is {"name": "Ada", "age": 36, "tags": ["x"]} as asked.'
    result = evaluate("json_schema", output, settings={"schema": PERSON})
    assert (result.passed, result.detail["source"]) == (True, "embedded")


def test_json_schema_collects_every_error_with_its_json_path():
    """All errors, sorted by path, each with path, message, keyword and schema path."""
    output = '{"name": 7, "age": -1, "tags": ["ok", 3], "extra": true}'
    result = evaluate("json_schema", output, settings={"schema": PERSON})
    assert result.passed is False and result.detail["error_count"] == 4
    assert [(e["path"], e["keyword"]) for e in result.detail["errors"]] == [
        ("$", "additionalProperties"),
        ("$.age", "minimum"),
        ("$.name", "type"),
        ("$.tags[1]", "type"),
    ]
    assert result.detail["errors"][3] == {
        "path": "$.tags[1]",
        "message": "3 is not of type 'string'",
        "keyword": "type",
        "schema_path": "properties/tags/items/type",
    }


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("I cannot produce JSON today.", "no JSON object or array found in the output"),
        ('```json\n{"name": "Ada",}\n```', "the fenced block is not valid JSON"),
        ('{"name": "Ada", "age": NaN}', "no JSON object or array found in the output"),
    ],
)
def test_json_schema_without_a_json_document_fails(output, message):
    """No document, a broken fence or a NaN: the model failed (a zero, not undecided)."""
    result = evaluate("json_schema", output, settings={"schema": PERSON})
    assert (result.passed, result.score) == (False, 0.0)
    assert result.detail["parse_error"].startswith(message)


def test_json_schema_invalid_schema_names_where_it_is_wrong():
    """check_schema's error comes back with its location inside the schema."""
    with pytest.raises(SettingsError, match=r"^schema: not a valid JSON Schema at \$\.properties\.age\.type"):
        validate_settings("json_schema", {"schema": {"properties": {"age": {"type": "integr"}}}})


def test_json_schema_pasted_as_text_is_parsed():
    """A schema given as a JSON string is stored parsed."""
    assert validate_settings("json_schema", {"schema": '{"type": "array"}'}) == {"schema": {"type": "array"}}


def test_json_schema_honours_a_declared_draft():
    """A draft-07 tuple `items` is valid because $schema says draft-07 (2020-12 would refuse it)."""
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "string"}]}
    assert evaluate("json_schema", '["a", 1]', settings={"schema": schema}).passed is True
    with pytest.raises(SettingsError, match=r"^schema: "):
        validate_settings("json_schema", {"schema": {"items": [{"type": "string"}]}})


def test_json_schema_unresolvable_ref_is_undecided():
    """A $ref that cannot be resolved (never fetched) leaves the sample undecided."""
    schema = {"$ref": "https://example.com/missing.json"}
    result = evaluate("json_schema", "{}", settings={"schema": schema})
    assert result.passed is None and result.error.startswith("schema: cannot resolve a $ref")


# ---- numeric (lm-evaluation-harness gsm8k rules) ------------------------------------------------

WENG = (
    "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
    "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"
)


@pytest.mark.parametrize(
    ("output", "number"),
    [(WENG, 10.0), ("so #### 1,234", 1234.0), ("#### -5", -5.0), ("#### 3.50", 3.5), ("#### 72.", 72.0)],
)
def test_numeric_strict_match_reads_the_number_after_the_marker(output, number):
    """gsm8k strict-match `#### (\\-?[0-9\\.\\,]+)`, commas and a trailing period cleaned."""
    result = evaluate("numeric", output, expected=str(number), settings={"mode": "strict"})
    assert (result.passed, result.detail["method"], result.detail["number"]) == (True, "strict", number)


def test_numeric_strict_takes_the_first_marked_answer():
    """group_select 0: the first `####` wins, as lm-eval's take_first of the first match."""
    result = evaluate("numeric", "#### 5\nOn second thought\n#### 7", expected="5", settings={"mode": "strict"})
    assert (result.passed, result.detail["match"]) == (True, "5")


@pytest.mark.parametrize(
    ("output", "match", "number"),
    [
        ("She has 23 - 15 = 8 dollars. The answer is 8.", "8.", 8.0),
        ("The total cost is $1,234.", "$1,234.", 1234.0),
        ("It fell to -3.5 degrees", "-3.5", -3.5),
        ("12 apples and 7 pears", "7", 7.0),
        ("Total: $18.00 in all", "$18.00", 18.0),
    ],
)
def test_numeric_flexible_extract_takes_the_last_number(output, match, number):
    """gsm8k flexible-extract `(-?[$0-9.,]{2,})|(-?[0-9]+)`, group_select -1, then cleaned."""
    result = evaluate("numeric", output, expected=str(number), settings={"mode": "flexible"})
    assert (result.passed, result.detail["match"], result.detail["number"]) == (True, match, number)


def test_numeric_flexible_last_match_that_is_no_number_is_a_miss():
    """As in lm-eval: trailing "..." is the last match, and it is not a number; no looking back."""
    result = evaluate("numeric", "The answer is 42 or so...", expected="42", settings={"mode": "flexible"})
    assert (result.passed, result.detail["match"], result.detail["number"]) == (False, "...", None)


def test_numeric_strict_mode_does_not_fall_back_to_flexible():
    """strict: no `####` marker means no answer, even with a number in the text."""
    result = evaluate("numeric", "The answer is 10.", expected="10", settings={"mode": "strict"})
    assert (result.passed, result.detail["method"], result.detail["match"]) == (False, "strict", None)


def test_numeric_strict_then_flexible_falls_back_without_a_marker():
    """The default mode uses flexible extraction only when strict finds no number."""
    fallback = evaluate("numeric", "The answer is 10.", expected="10")
    marked = evaluate("numeric", "#### 10\nplus 3 more", expected="10")
    assert (fallback.passed, fallback.detail["method"]) == (True, "flexible")
    assert (marked.passed, marked.detail["method"]) == (True, "strict")


def test_numeric_strict_refuses_a_currency_sign_after_the_marker():
    """`#### $10` is not strict-match in lm-eval either; the default mode still finds 10."""
    assert evaluate("numeric", "#### $10", expected="10", settings={"mode": "strict"}).passed is False
    assert evaluate("numeric", "#### $10", expected="10").passed is True


@pytest.mark.parametrize(
    ("expected", "number"),
    [(WENG, 10.0), ("#### 1,234", 1234.0), ("$1,234.", 1234.0), ("-0.5", -0.5), ("The answer is 42.", 42.0)],
)
def test_numeric_expected_is_extracted_the_same_way(expected, number):
    """The reference loses its worked solution up to `#### `, commas, `$` and a trailing period."""
    result = evaluate("numeric", f"#### {number}", expected=expected)
    assert (result.passed, result.detail["expected"]) == (True, number)


def test_numeric_expected_without_a_number_is_undecided():
    """A reference with no number is a configuration problem, not the model's failure."""
    result = evaluate("numeric", "#### 3", expected="three")
    assert result.passed is None and result.error == "expected: no number in 'three'"


def test_numeric_compares_numbers_not_strings():
    """72.0 equals 72 here (lm-eval's string comparison would count it wrong)."""
    result = evaluate("numeric", "#### 72.0", expected="72")
    assert (result.passed, result.detail["difference"]) == (True, 0.0)


def test_numeric_absolute_tolerance():
    """tolerance is absolute: 3.14 is within 0.01 of 3.1416, not within the default 1e-6."""
    assert evaluate("numeric", "#### 3.14", expected="3.1416").passed is False
    assert evaluate("numeric", "#### 3.14", expected="3.1416", settings={"tolerance": 0.01}).passed is True


def test_numeric_relative_tolerance():
    """relative_tolerance 1%: 1,010 matches 1,000; 1,020 does not."""
    settings = {"relative_tolerance": 0.01}
    assert evaluate("numeric", "#### 1,010", expected="1000", settings=settings).passed is True
    assert evaluate("numeric", "#### 1,020", expected="1000", settings=settings).passed is False


def test_numeric_strict_pattern_can_be_the_chain_of_thought_one():
    """gsm8k-cot's strict pattern `The answer is (...).` works as strict_pattern."""
    settings = {"mode": "strict", "strict_pattern": r"The answer is (\-?[0-9\.\,]+)."}
    result = evaluate("numeric", "23 - 15 is 8. The answer is 8. Then 99.", expected="8", settings=settings)
    assert (result.passed, result.detail["match"], result.detail["number"]) == (True, "8.", 8.0)  # "." is any char


# ---- llm_judge ----------------------------------------------------------------------------------


def test_judge_reads_score_and_rationale_lines():
    """SCORE / RATIONALE: the score is normalized to 0..1 and the raw answer is kept."""
    result, _ = judged("SCORE: 8\nRATIONALE: Correct and concise.")
    assert (result.passed, result.score, result.error) == (True, pytest.approx(7 / 9), "")
    assert result.detail == {
        "raw_answer": "SCORE: 8\nRATIONALE: Correct and concise.",
        "scale": [1, 10],
        "pass_threshold": 5.5,
        "judge_score": 8.0,
        "rationale": "Correct and concise.",
        "format": "text",
    }


def test_judge_reads_a_json_answer_even_in_a_fence():
    """{"score", "rationale"} in a ```json fence; a numeric string score is accepted."""
    result, _ = judged('```json\n{"score": "3", "rationale": "Wrong total."}\n```')
    assert (result.passed, result.score) == (False, pytest.approx(2 / 9))
    assert (result.detail["format"], result.detail["rationale"]) == ("json", "Wrong total.")


def test_judge_accepts_markdown_and_a_denominator_equal_to_the_scale_max():
    """**Score:** 9/10 is read; the denominator must be the scale's maximum."""
    result, _ = judged("**Score:** 9/10\n**Rationale:** Good.")
    assert (result.detail["judge_score"], result.detail["rationale"]) == (9.0, "Good.")


def test_judge_score_line_wins_over_json_quoted_in_the_rationale():
    """A rationale quoting {"score": 2} does not override the SCORE line."""
    result, _ = judged('SCORE: 8\nRATIONALE: The answer returns {"score": 2} as the spec asks.')
    assert (result.detail["judge_score"], result.detail["format"]) == (8.0, "text")


def test_judge_ignores_a_think_block():
    """A reasoning model's <think> draft with another score does not count."""
    result, _ = judged("<think>Maybe SCORE: 2? No.</think>\nSCORE: 10\nRATIONALE: Right.")
    assert (result.passed, result.score, result.detail["judge_score"]) == (True, 1.0, 10.0)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("", "the judge's answer is empty"),
        ("Great answer, well done!", "no score in the judge's answer (neither a SCORE line nor JSON)"),
        ("SCORE: 11\nRATIONALE: Above and beyond.", "the judge's score 11 is outside the scale 1–10"),
        ("SCORE: 0", "the judge's score 0 is outside the scale 1–10"),
        ("SCORE: 7\nRATIONALE: ok\nSCORE: 4", "the judge gave different scores: 4, 7"),
        ("SCORE: 4/5", "the judge scored out of 5, not 10"),
        ('{"score": "high", "rationale": "x"}', "the judge's score is not a number: 'high'"),
    ],
)
def test_an_unusable_judge_answer_is_an_error_never_a_zero(answer, error):
    """passed None, score None, the reason in error and the raw answer kept."""
    result, _ = judged(answer)
    assert (result.passed, result.score, result.error) == (None, None, error)
    assert result.detail["raw_answer"] == answer


def test_judge_pass_threshold_on_a_custom_scale():
    """Scale 0–5, threshold 4: a 4 passes with score 0.8, a 3.5 fails with 0.7."""
    settings = {"scale_min": 0, "scale_max": 5, "pass_threshold": 4}
    passing, _ = judged("SCORE: 4\nRATIONALE: fine", settings)
    failing, _ = judged("SCORE: 3.5\nRATIONALE: meh", settings)
    assert (passing.passed, passing.score) == (True, pytest.approx(0.8))
    assert (failing.passed, failing.score) == (False, pytest.approx(0.7))


def test_judge_prompt_carries_rubric_question_reference_and_answer():
    """The prompt the judge gets has each part and the strict reply format."""
    _, prompts = judged("SCORE: 5", question="What is 2 + 2?")
    prompt = prompts[0]
    assert "## Rubric\nCorrect?" in prompt
    assert "## Question\nWhat is 2 + 2?" in prompt
    assert "## Reference answer\n4" in prompt
    assert "<<<ANSWER>>>\n4\n<<<ANSWER>>>" in prompt
    assert prompt.rstrip().endswith("SCORE: <a number from 1 to 10>\nRATIONALE: <one or two sentences>")


def test_judge_prompt_asks_for_json_when_told_and_omits_empty_parts():
    """answer_format json changes the requested reply; no question or reference, no heading."""
    settings = validate_settings("llm_judge", {"rubric": "Polite?", "answer_format": "json"})
    prompt = build_prompt("Hi there", expected="", settings=settings)
    assert '{"score": <a number from 1 to 10>, "rationale": "<one or two sentences>"}' in prompt
    assert "## Question" not in prompt and "## Reference answer" not in prompt


def test_a_judge_call_that_raises_leaves_the_sample_undecided():
    """An endpoint failure is not a zero for the graded answer."""
    result, _ = judged(ConnectionError("refused"))
    assert (result.passed, result.score, result.error) == (None, None, "the judge call failed: refused")


def test_sync_evaluate_of_llm_judge_is_undecided():
    """evaluate() has no judge to ask: it says so instead of guessing."""
    result = evaluate("llm_judge", "x", settings={"rubric": "r"})
    assert result == Evaluation(None, None, {}, "llm_judge needs a judge model: use evaluate_with_judge()")


class FakeAdapter:
    def __init__(self, result):
        self.result, self.requests = result, []

    async def generate(self, session, request):
        self.requests.append(request)
        return self.result


def test_make_judge_sends_a_deterministic_request_and_raises_on_failure():
    """temperature 0, the prompt as the user message; a refused key raises JudgeError."""
    ok = FakeAdapter(GenerationResult(send_time=0.0, text="SCORE: 9\nRATIONALE: yes"))
    answer = asyncio.run(make_judge(ok, None, "judge-model")("grade this"))
    request = ok.requests[0]
    assert answer == "SCORE: 9\nRATIONALE: yes"
    assert (request.model, request.temperature, request.messages) == (
        "judge-model",
        0.0,
        [{"role": "user", "content": "grade this"}],
    )
    refused = FakeAdapter(GenerationResult(send_time=0.0, error=RequestError(ErrorKind.AUTH, "bad key", status=401)))
    with pytest.raises(JudgeError, match=r"^401: bad key$"):
        asyncio.run(make_judge(refused, None, "judge-model")("grade this"))
