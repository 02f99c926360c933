"""Prompts, few-shot choice, extraction, scoring and the recorded task definition of each benchmark kind."""

import json
import re
import time
from pathlib import Path

import pytest

from apps.benchmarks.engine import taskdefs
from apps.benchmarks.engine.formats import ParsedItem

MATH = ParsedItem(question="Tom has 3 bags of 4 apples. How many apples?", answer="12",
                  rationale="3 bags of 4 is <<3*4=12>>12 apples.")  # fmt: skip
MATH_SHOT = ParsedItem(question="Ann buys 2 pens at $3. Cost?", answer="1234",
                       rationale="2 * 3 = <<2*3=6>>6 dollars.")  # fmt: skip
ALGEBRA = ParsedItem(question=" What is x if 2x = 4? ", answer="B", choices=("1", "2", "3", "4"),
                     subject="abstract_algebra")  # fmt: skip
ALGEBRA_SHOT = ParsedItem(question="What is 1 + 1?", answer="C", choices=("0", "1", "2", "3"),
                          subject="abstract_algebra")  # fmt: skip


def test_gsm8k_k_shot_is_lm_eval_chat_turns():
    """Each example is a "Question: …\\nAnswer:" user turn and its worked answer ending "#### N", then the question."""
    messages = taskdefs.build_messages("gsm8k", MATH, [MATH_SHOT])
    assert messages == [
        {"role": "user", "content": "Question: Ann buys 2 pens at $3. Cost?\nAnswer:"},
        {"role": "assistant", "content": "2 * 3 = <<2*3=6>>6 dollars.\n#### 1234"},
        {"role": "user", "content": "Question: Tom has 3 bags of 4 apples. How many apples?\nAnswer:"},
    ]


def test_gsm8k_zero_shot_asks_for_the_marker():
    """Zero-shot adds the one instruction line asking for "#### <number>" (lm-eval's has none)."""
    (message,) = taskdefs.build_messages("gsm8k", MATH, [])
    assert message["role"] == "user"
    assert message["content"] == (
        'Solve the following math problem step by step. End your answer with a line of the form "#### <number>".'
        "\n\nQuestion: Tom has 3 bags of 4 apples. How many apples?\nAnswer:"
    )


def test_gsm8k_shot_keeps_a_published_marker():
    """A rationale that already ends in "#### N" is shown as it is."""
    shot = ParsedItem(question="q", answer="5", rationale="2 + 3 = 5\n#### 5")
    assert taskdefs.build_messages("gsm8k", MATH, [shot])[1]["content"] == "2 + 3 = 5\n#### 5"


def test_mmlu_prompt_has_subject_header_options_and_letter_answers():
    """The header (subject without underscores) opens the first turn only; examples are answered with the letter."""
    messages = taskdefs.build_messages("mmlu", ALGEBRA, [ALGEBRA_SHOT])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == (
        "The following are multiple choice questions (with answers) about abstract algebra. "
        "Answer with the letter of the correct option.\n\nWhat is 1 + 1?\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer:"
    )
    assert messages[1]["content"] == "C"
    assert messages[2]["content"] == "What is x if 2x = 4?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    zero = taskdefs.build_messages("mmlu", ALGEBRA, [])
    assert len(zero) == 1 and zero[0]["content"].startswith("The following are") and "A. 1\nB. 2" in zero[0]["content"]


def test_mmlu_pro_prompt_is_the_official_single_message():
    """Instruction, worked examples with their chain of thought, the question ending "Let's think step by step."."""
    item = ParsedItem(question="Q?", answer="A", choices=("x", "y", "z"), subject="computer science")
    shot = ParsedItem(question="S?", answer="B", choices=("p", "q"), subject="computer science",
                      rationale="A: Let's think step by step. Because q. The answer is (B).")  # fmt: skip
    (message,) = taskdefs.build_messages("mmlu_pro", item, [shot])
    assert message == {"role": "user", "content": (
        "The following are multiple choice questions (with answers) about computer science. Think step by step and "
        'then finish your answer with "the answer is (X)" where X is the correct letter choice.\n'
        "Question:\nS?\nOptions:\nA. p\nB. q\nAnswer: Let's think step by step. Because q. The answer is (B).\n\n"
        "Question:\nQ?\nOptions:\nA. x\nB. y\nC. z\nAnswer: Let's think step by step."
    )}  # fmt: skip


def test_mmlu_pro_example_without_chain_of_thought_still_shows_its_answer():
    """A few-shot example uploaded without cot_content ends with its answer in the official phrase."""
    shot = ParsedItem(question="S?", answer="B", choices=("p", "q"), subject="math")
    text = taskdefs.mmlu_pro_example(shot, with_answer=True)
    assert text.endswith("Answer: Let's think step by step. The answer is (B).\n\n")


def test_hellaswag_prompt_applies_lm_eval_preprocessing():
    """Activity label prefix, " [title]" → ". ", bracketed marks removed (after the strip, as lm-eval does, so a
    trailing mark leaves its space), double spaces collapsed."""
    item = ParsedItem(question="How to bake [title] Preheat the oven.  Then [step] mix", answer="A",
                      choices=("the  flour. [header]", "b", "c", "d"), subject="Baking")  # fmt: skip
    (message,) = taskdefs.build_messages("hellaswag", item, [])
    assert message["content"].endswith(
        "\n\nBaking: How to bake. Preheat the oven. Then mix\nA. the flour. \nB. b\nC. c\nD. d\nAnswer:"
    )
    assert taskdefs.hellaswag_preprocess(" a [title] b  c [x]") == "a. b c "


def test_truthfulqa_and_arc_use_question_layout_with_every_letter():
    """Thirteen choices get letters A–M; ARC without a subject is about science."""
    item = ParsedItem(question="Why?", answer="M", choices=tuple(str(n) for n in range(13)))
    content = taskdefs.build_messages("truthfulqa_mc1", item, [])[0]["content"]
    assert "\n\nQuestion: Why?\nA. 0\n" in content and "\nM. 12\nAnswer:" in content
    arc = taskdefs.build_messages("arc", ParsedItem(question="Q", answer="A", choices=("x", "y")), [])
    assert arc[0]["content"].startswith("The following are multiple choice questions (with answers) about science.")


def test_choose_shots_takes_same_subject_first_in_pool_order_and_never_the_item():
    """Same subject in pool order, then the others in pool order, never the question itself, at most k."""
    pool = [
        ParsedItem(question="o1", answer="A", choices=("x",), subject="law"),
        ParsedItem(question="s1", answer="A", choices=("x",), subject="math"),
        ALGEBRA,
        ParsedItem(question="s2", answer="A", choices=("x",), subject="math"),
        ParsedItem(question="o2", answer="A", choices=("x",), subject="law"),
    ]
    item = ParsedItem(question=ALGEBRA.question, answer="B", choices=ALGEBRA.choices, subject="math")
    chosen = taskdefs.choose_shots("mmlu_pro", item, pool, 3)
    assert [one.question for one in chosen] == ["s1", "s2", "o1"]
    assert taskdefs.choose_shots("mmlu_pro", item, pool, 0) == []
    assert len(taskdefs.choose_shots("mmlu_pro", item, pool, 10)) == 4


@pytest.mark.parametrize(
    ("response", "strict", "flexible"),
    [
        ("3 * 4 = 12\n#### 12", "12", "12"),
        ("#### 1,234", "1234", "1234"),
        ("#### 1234.", "1234", "1234"),
        ("#### -5", "-5", "-5"),
        ("The answer is $18.00.", "", "18.00"),
        ("We get 5, then 7, then 42 apples", "", "42"),
        ("####12", "", "12"),
        ("no number here", "", ""),
        ("", "", ""),
    ],
)
def test_gsm8k_extractions(response, strict, flexible):
    """strict-match reads "#### N" (first), flexible-extract the last number; both post-processed as lm-eval."""
    assert taskdefs.extract_answer("gsm8k", response, MATH) == strict
    assert taskdefs.alternate_extractions("gsm8k")["flexible-extract"](response, MATH) == flexible


@pytest.mark.parametrize(
    ("extracted", "answer", "correct"),
    [("18.00", "18", True), ("18", "18", True), ("-3.50", "-3.5", True), ("1234", "1234", True),
     ("19", "18", False), ("", "18", False), ("..", "18", False), ("1.2.3", "1.2.3", True)],
)  # fmt: skip
def test_gsm8k_scoring_compares_numbers(extracted, answer, correct):
    """Equal strings or equal plain numbers score; nothing extracted never does."""
    assert taskdefs.is_correct("gsm8k", extracted, ParsedItem(question="q", answer=answer)) is correct


def test_letter_scoring_and_letters_the_item_lacks():
    """A letter scores when it is the answer; a letter beyond the item's choices is no answer."""
    three = ParsedItem(question="q", answer="C", choices=("x", "y", "z"))
    assert taskdefs.extract_answer("arc", "The answer is (D).", three) == ""
    assert taskdefs.extract_answer("mmlu_pro", "The answer is (D).", three) == ""
    assert taskdefs.extract_answer("mmlu_pro", "The answer is (C).", three) == "C"
    assert taskdefs.is_correct("arc", "C", three) and not taskdefs.is_correct("arc", "B", three)
    assert not taskdefs.is_correct("arc", "", three)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("The answer is (C).", "C"),
        ("Answer: B", "B"),
        ("blah\nAnswer: D\nmore", "D"),
        ("C", "C"),
        ("I choose A and then J, the end", "J"),
        ("the answer is (b)", ""),
        ("No idea.", ""),
    ],
)
def test_mmlu_pro_cascade(response, expected):
    """The official tiers in order: "answer is (X)", "Answer: X", the last standalone letter; capitals only."""
    item = ParsedItem(question="q", answer="A", choices=tuple("abcdefghij"))
    assert taskdefs.extract_answer("mmlu_pro", response, item) == expected


def test_alternate_extractions_only_for_gsm8k():
    """GSM8K shows flexible-extract beside strict-match; the other kinds have one extraction."""
    assert set(taskdefs.alternate_extractions("gsm8k")) == {"flexible-extract"}
    for kind in taskdefs.KINDS:
        if kind != "gsm8k":
            assert taskdefs.alternate_extractions(kind) == {}


@pytest.mark.parametrize("kind", taskdefs.KINDS)
@pytest.mark.parametrize("shots", [0, 5])
def test_task_definition_is_json_and_lists_what_runs(kind, shots):
    """The recorded definition is JSON, names its reference, and lists the extraction regexes in use."""
    definition = taskdefs.task_definition(kind, shots)
    assert json.loads(json.dumps(definition)) == definition
    assert definition["kind"] == kind and definition["shots"] == shots
    assert definition["reference"]["url"].startswith("https://github.com/")
    assert definition["max_tokens"] == taskdefs.default_max_tokens(kind)
    for step in definition["extraction"]:
        re.compile(step["regex"].replace("{letters}", "ABCD"))
    messages = definition["prompt"]["messages"]
    assert messages[-1]["role"] == "user"
    assert len(messages) == (1 if kind == "mmlu_pro" or shots == 0 else 3)
    patterns = [step["regex"] for step in definition["extraction"]]
    if kind == "gsm8k":
        assert patterns == [r"#### (\-?[0-9\.\,]+)"]
        assert definition["alternate_extractions"]["flexible-extract"]["regex"] == r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
    elif kind == "mmlu_pro":
        assert patterns == [r"answer is \(?([A-J])\)?", r".*[aA]nswer:\s*([A-J])", r"\b[A-J]\b(?!.*\b[A-J]\b)"]
    else:
        assert len(patterns) == 4


def test_default_max_tokens():
    """GSM8K 512, MMLU-Pro 2048, letter questions 256."""
    assert taskdefs.default_max_tokens("gsm8k") == 512
    assert taskdefs.default_max_tokens("mmlu_pro") == 2048
    assert {taskdefs.default_max_tokens(kind) for kind in taskdefs.LETTER_KINDS} == {256}


def test_unknown_kind_is_refused():
    """A kind that is not a benchmark raises ValueError naming the known ones."""
    with pytest.raises(ValueError, match="gsm8k"):
        taskdefs.build_messages("squad", MATH, [])
    with pytest.raises(ValueError):
        taskdefs.task_definition("squad", 0)


@pytest.mark.parametrize("kind", taskdefs.KINDS)
def test_extraction_takes_linear_time_on_long_responses(kind):
    """A 2,048-token response on one line with no answer is read in milliseconds (MMLU-Pro's last two steps, as
    written, take about a second on it)."""
    item = ParsedItem(question="q", answer="B", choices=tuple("abcdefghij") if kind != "gsm8k" else ())
    text = "A cell is I think a thing of value and B is bad, 12 or 1,5 of them. " * 120
    started = time.perf_counter()
    for _ in range(5):
        taskdefs.extract_answer(kind, text, item)
        for extract in taskdefs.alternate_extractions(kind).values():
            extract(text, item)
    assert (time.perf_counter() - started) / 5 < 0.05


def test_prompts_without_a_subject_leave_out_about():
    """No subject or category: the header says no "about …" rather than "about ."."""
    bare = ParsedItem(question="Q", answer="A", choices=("x", "y"))
    for kind in ("mmlu", "mmlu_pro"):
        content = taskdefs.build_messages(kind, bare, [])[0]["content"]
        assert content.startswith("The following are multiple choice questions (with answers). "), kind


def test_documentation_shows_every_regular_expression_and_instruction():
    """docs/benchmarks-scoring.md carries each pattern and instruction exactly as the code uses it."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "benchmarks-scoring.md").read_text()

    def documented(text: str) -> bool:
        return text in doc or text.replace("|", "\\|") in doc  # "|" is written "\|" inside a table

    patterns = [taskdefs.GSM8K_STRICT.pattern, taskdefs.GSM8K_FLEXIBLE.pattern, *taskdefs.GSM8K_IGNORE]
    patterns += [regex.pattern for regex in taskdefs.MMLU_PRO_CASCADE]
    patterns += [taskdefs._LETTER, taskdefs.LETTER_CASCADE[2][1].pattern, taskdefs.LETTER_LAST_STANDALONE]
    patterns += [regex.pattern.removesuffix(taskdefs._LETTER) for _, regex in taskdefs.LETTER_CASCADE[:2]]
    patterns += [taskdefs.GSM8K_ZERO_SHOT_INSTRUCTION, taskdefs.LETTER_INSTRUCTION]
    patterns += [taskdefs.MMLU_PRO_INSTRUCTION.replace("{subject}", "{category}")]
    missing = [pattern for pattern in patterns if not documented(pattern)]
    assert not missing
