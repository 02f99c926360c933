"""Extraction parity with the reference evaluations, item for item, on a few hundred recorded-style responses.

1. Against transcriptions, written here independently of apps.benchmarks.engine.taskdefs, of the references'
   regular expressions applied with `re`: lm-evaluation-harness's GSM8K filters and exact_match post-processing,
   TIGER-AI-Lab MMLU-Pro's extraction cascade, and docs/benchmarks-scoring.md's letter cascade.
2. Against lm-evaluation-harness's own filter code (lm_eval.filters.extraction.RegexFilter with the patterns read
   from its task YAML files) when `lm_eval` is importable; skipped with the reason otherwise. It installs without
   its heavy dependencies: `pip install --no-deps lm_eval==0.4.13`.
"""

import importlib.util
import random
import re
from decimal import Decimal
from pathlib import Path

import pytest

from apps.benchmarks.engine import taskdefs
from apps.benchmarks.engine.formats import ParsedItem

# --- the responses --------------------------------------------------------------------------------------------

_WORDS = ("first", "we", "compute", "the", "total", "so", "each", "box", "has", "then", "because", "option",
          "is", "not", "correct", "since", "energy", "price", "a", "an", "I", "it", "would", "be", "Because", "Each", "Hence", "Given", "J.")  # fmt: skip


def _prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def letter_responses(seed: int, letters: str = "ABCD") -> list[str]:
    """Responses as chat models write them to letter questions: chain of thought ending "The answer is (C).",
    "Answer: B", a bare letter, lower case, markdown, articles and pronouns, other letters in the reasoning,
    letters the question does not have, and no answer at all."""
    rng = random.Random(seed)
    out = []
    for _ in range(300):
        right, other = rng.choice(letters), rng.choice(letters)
        outside = rng.choice([letter for letter in "EFGHJKLMNOPXYZ" if letter not in letters])
        prose = _prose(rng, rng.randint(3, 40))
        forms = [
            f"Let's think step by step. {prose}. The answer is ({right}).",
            f"{prose}\nAnswer: {right}",
            right,
            f"({right})",
            f"{right}.",
            f"{right})",
            f"{right}. {prose}",
            right.lower(),
            f"the answer is ({right.lower()}).",
            f"**Answer:** {right}",
            f"The answer is **{right}**.",
            f"A good option is {right}, {prose}.",
            f"I think it is {right} because {prose}.",
            f"Option {other} looks tempting but {prose}. The answer is {right}.",
            f"{prose}. The answer is ({outside}).",
            f"{prose}.",
            "",
            f"Answer: {right}\nAnswer: {other}",
            f"The answer is ({other}). Wait, {prose}, the answer is ({right}).",
            f"{prose} {other} or {right}? {prose} {right}",
            f"Answer:{right}",
            f"answer: ({right}) {prose}",
            f"Between {other} and {right}, {prose}. Final answer: {right}",
            f"The answer is Bob and {prose}",
            f"{prose} Answer: {other} or Answer: {right}. {prose}",
            f"Answer: {other}? No: {prose}. The answer is ({right}).",
            f"{prose}\nAnswer:\n{right}",
            f"Answer: Answer: {right} {prose}\nAnswer: {other}",
            f"{prose} answer: {other}\n{prose} Answer: {right}",
        ]
        out.append(forms[rng.randrange(len(forms))])
    return out


def gsm8k_responses(seed: int) -> list[str]:
    """Worked answers ending "#### N" (commas, dollars, decimals, negatives, a trailing period), several numbers,
    "The answer is $18.00.", no number at all."""
    rng = random.Random(seed)
    out = []
    for _ in range(300):
        n = rng.choice([rng.randint(0, 99), rng.randint(1000, 999999), -rng.randint(1, 500)])
        shown = rng.choice([str(n), f"{n:,}", f"{n}.00", f"{n}.", f"{n:,}.50"])
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        steps = f"{a} * {b} = <<{a}*{b}={a * b}>>{a * b}. {_prose(rng, rng.randint(2, 15))}"
        forms = [
            f"{steps}\n#### {shown}",
            f"{steps}\n#### {shown}\n\nQuestion: next",
            f"{steps}\n####{shown}",
            f"{steps}\n#### ${shown}",
            f"{steps} The answer is ${shown}.",
            f"{steps} The answer is {shown} dollars",
            f"{steps} so {a} and {b} and finally {shown}",
            f"{steps}\n#### {shown}\n#### {a}",
            f"{_prose(rng, 8)}",
            "",
            f"{steps}\nThe final answer is **{shown}**",
            f"{steps} Total: {shown}...",
            f"{steps} It costs $.{a}",
            f"{steps}\n#### -{a}, {b}",
        ]
        out.append(forms[rng.randrange(len(forms))])
    return out


# --- transcriptions of the references -------------------------------------------------------------------------

LM_EVAL_FALLBACK = "[invalid]"


def lm_eval_regex_filter(pattern: str, group_select: int, response: str) -> str:
    """lm_eval/filters/extraction.py RegexFilter.apply for one response (then take_first)."""
    match = re.compile(pattern).findall(response)
    if not match:
        return LM_EVAL_FALLBACK
    match = match[group_select]
    if isinstance(match, tuple):
        match = [m for m in match if m]
        match = match[0] if match else LM_EVAL_FALLBACK
    return match.strip()


def lm_eval_gsm8k_exact_match(prediction: str, reference: str) -> tuple[str, str, bool]:
    """lm_eval/api/metrics.py exact_match_hf_evaluate with gsm8k.yaml's regexes_to_ignore and ignore_case."""
    for pattern in (",", "\\$", "(?s).*#### ", "\\.$"):
        prediction, reference = re.sub(pattern, "", prediction), re.sub(pattern, "", reference)
    prediction, reference = prediction.lower(), reference.lower()
    return prediction, reference, prediction == reference


def tiger_mmlu_pro(text: str) -> str | None:
    """TIGER-AI-Lab/MMLU-Pro evaluate_from_api.py: the response with "**" removed, then extract_answer →
    extract_again → extract_final; None where the script would guess at random."""
    text = text.replace("**", "")
    match = re.search(r"answer is \(?([A-J])\)?", text)
    if match:
        return match.group(1)
    match = re.search(r".*[aA]nswer:\s*([A-J])", text)
    if match:
        return match.group(1)
    match = re.search(r"\b[A-J]\b(?!.*\b[A-J]\b)", text, re.DOTALL)
    return match.group(0) if match else None


def documented_letter_cascade(text: str, letters: str) -> str:
    """docs/benchmarks-scoring.md, "Letter questions", transcribed from the page."""
    text = text.replace("**", "")
    letter = r"(?:\(([A-Za-z])\)|(?![AI]\s+[a-z])([A-Z])(?![\w'’])|([a-z])(?=[ \t]*(?:[.,;:!)]|$)))"
    for pattern, flags in (
        (r"[Aa]nswer is:?\s*(?:[Oo]ption\s+|[Cc]hoice\s+)?" + letter, re.MULTILINE),
        (r"[Aa]nswer:\s*(?:[Oo]ption\s+|[Cc]hoice\s+)?" + letter, re.MULTILINE),
        (r"\A\s*(?:\(([A-Za-z])\)|([A-Za-z])(?=[.):]|[ \t]*(?:\n|\Z)))", 0),
    ):
        found = [next(g for g in groups if g) for groups in re.findall(pattern, text, flags)]
        if found:
            return found[-1].upper() if found[-1].upper() in letters else ""
    found = re.findall(rf"(?<![\w'’])(?![AI]\s+[a-z])([{letters}])(?![\w'’])", text)
    return found[-1] if found else ""


def _numbers_equal(a: str, b: str) -> bool:
    plain = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
    return bool(plain.fullmatch(a) and plain.fullmatch(b)) and Decimal(a) == Decimal(b)


def _gsm8k_items(responses: list[str], seed: int) -> list[ParsedItem]:
    """An item per response whose answer is, half the time, the number the response ends with."""
    rng = random.Random(seed)
    items = []
    for response in responses:
        numbers = re.findall(r"-?[0-9][0-9,]*(?:\.[0-9]+)?", response)
        answer = numbers[-1].replace(",", "") if numbers and rng.random() < 0.5 else str(rng.randint(1, 99))
        items.append(ParsedItem(question="q", answer=answer.removesuffix(".00")))
    return items


def _letter_item(count: int, answer: str = "A") -> ParsedItem:
    return ParsedItem(question="q", answer=answer, choices=tuple(f"option {i}" for i in range(count)))


# --- 1. item for item against the transcriptions -------------------------------------------------------------


def test_gsm8k_strict_and_flexible_match_lm_eval_item_for_item():
    """Both GSM8K extractions give lm-eval's filtered, post-processed prediction for every response."""
    responses = gsm8k_responses(1)
    items = _gsm8k_items(responses, 1)
    seen_invalid = seen_numeric_only = 0
    for response, item in zip(responses, items, strict=True):
        for name, pattern, group_select in (
            ("strict-match", r"#### (\-?[0-9\.\,]+)", 0),
            ("flexible-extract", r"(-?[$0-9.,]{2,})|(-?[0-9]+)", -1),
        ):
            filtered = lm_eval_regex_filter(pattern, group_select, response)
            ours = (
                taskdefs.gsm8k_strict(response, item)
                if name == "strict-match"
                else taskdefs.gsm8k_flexible(response, item)
            )
            if filtered == LM_EVAL_FALLBACK:
                seen_invalid += 1
                assert ours == "", (name, response)
                continue
            prediction, reference, lm_eval_correct = lm_eval_gsm8k_exact_match(filtered, item.answer)
            assert ours == prediction, (name, response)
            ours_correct = taskdefs.is_correct("gsm8k", ours, item)
            if lm_eval_correct:
                assert ours_correct, (name, response)
            elif ours_correct:  # the one documented departure: equal numbers written differently
                seen_numeric_only += 1
                assert _numbers_equal(prediction, reference), (name, response)
    assert seen_invalid > 20 and seen_numeric_only > 5  # the corpus exercises both paths


def test_gsm8k_headline_is_strict_match():
    """extract_answer for GSM8K is the strict-match answer; flexible-extract is the alternate."""
    for response, item in zip(gsm8k_responses(2), _gsm8k_items(gsm8k_responses(2), 2), strict=True):
        assert taskdefs.extract_answer("gsm8k", response, item) == taskdefs.gsm8k_strict(response, item)
        flexible = taskdefs.alternate_extractions("gsm8k")["flexible-extract"](response, item)
        assert flexible == taskdefs.gsm8k_flexible(response, item)


@pytest.mark.parametrize("count", [4, 7, 10])
def test_mmlu_pro_matches_the_official_cascade_item_for_item(count):
    """MMLU-Pro extraction equals TIGER's cascade wherever that names one of the item's letters, and is "no answer"
    where it names none (the official script would guess at random) or a letter the item does not have."""
    letters = "ABCDEFGHIJ"[:count]
    item = _letter_item(count)
    no_answer = 0
    for response in letter_responses(count, letters):
        reference = tiger_mmlu_pro(response)
        expected = reference if reference in set(letters) else ""
        assert taskdefs.extract_answer("mmlu_pro", response, item) == expected, response
        no_answer += expected == ""
    assert 10 < no_answer < 200


@pytest.mark.parametrize(("kind", "count"), [("mmlu", 4), ("arc", 5), ("hellaswag", 4), ("truthfulqa_mc1", 13)])
def test_letter_questions_match_the_documented_cascade_item_for_item(kind, count):
    """The letter cascade equals the regular expressions as the documentation writes them, for every response."""
    letters = taskdefs.LETTERS[:count]
    item = _letter_item(count)
    for response in letter_responses(count + 100, letters):
        assert taskdefs.extract_answer(kind, response, item) == documented_letter_cascade(response, letters), response


def test_letter_cascade_reads_what_the_model_meant():
    """The forms chat models use give the intended letter; articles, pronouns and absent letters do not."""
    item = _letter_item(4)
    cases = {
        "Let's think step by step. Paris is the capital. The answer is (C).": "C",
        "Answer: B": "B",
        "C": "C",
        "(b)": "B",
        "B. Paris": "B",
        "b": "B",
        "**Answer:** D": "D",
        "A good option is B.": "B",
        "I think it is D.": "D",
        "The answer is (E).": "",
        "I do not know.": "",
        "": "",
        "The answer is (A). Wait, no: the answer is (C).": "C",
        "The answer is option B": "B",
        "A": "A",
        "Answer: A. Paris": "A",
    }
    for response, expected in cases.items():
        assert taskdefs.extract_answer("mmlu", response, item) == expected, response


# --- 2. against lm-evaluation-harness's own code, when it is installed -----------------------------------------


def _lm_eval_task_file(*parts: str) -> Path:
    lm_eval = pytest.importorskip(
        "lm_eval.filters.extraction",
        reason="lm_eval is not installed (pip install --no-deps lm_eval==0.4.13 adds it, with no other package)",
    )
    path = Path(lm_eval.__file__).resolve().parents[1] / "tasks" / Path(*parts)
    if not path.exists():
        pytest.skip(f"this lm_eval has no {'/'.join(parts)}")
    return path


def _task_yaml(path: Path) -> dict:
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        """Reads lm-eval's `!function module.name` tags as their text."""

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    return yaml.load(path.read_text(), Loader=Loader)  # a SafeLoader subclass: safe


def _run_lm_eval_filters(filter_steps: list[dict], responses: list[str]) -> list[str]:
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.filters.selection import TakeFirstFilter

    resps = [[response] for response in responses]
    docs = [{} for _ in responses]
    for step in filter_steps:
        arguments = {key: value for key, value in step.items() if key != "function"}
        if step["function"] == "regex":
            resps = list(RegexFilter(**arguments).apply(resps, docs))
        elif step["function"] == "take_first":
            resps = [[first] for first in TakeFirstFilter().apply(resps, docs)]
        else:  # pragma: no cover - a new lm-eval step we do not model
            pytest.fail(f"lm-eval's task uses a filter this test does not know: {step['function']}")
    return [resp[0] for resp in resps]


def test_gsm8k_matches_lm_eval_filter_code():
    """lm-eval's RegexFilter with gsm8k.yaml's filter_list, then its exact_match post-processing, agrees with ours
    on every response (up to the documented numeric equality)."""
    task = _task_yaml(_lm_eval_task_file("gsm8k", "gsm8k.yaml"))
    metric = next(m for m in task["metric_list"] if m["metric"] == "exact_match")
    assert metric["regexes_to_ignore"] == list(taskdefs.GSM8K_IGNORE) and metric["ignore_case"]
    responses = gsm8k_responses(3)
    items = _gsm8k_items(responses, 3)
    ours = {"strict-match": taskdefs.gsm8k_strict, "flexible-extract": taskdefs.gsm8k_flexible}
    filters = {entry["name"]: entry["filter"] for entry in task["filter_list"]}
    assert set(filters) == set(ours)
    for name, steps in filters.items():
        for response, item, filtered in zip(responses, items, _run_lm_eval_filters(steps, responses), strict=True):
            extracted = ours[name](response, item)
            if filtered == "[invalid]":
                assert extracted == "", (name, response)
                continue
            prediction, reference = filtered, item.answer
            for pattern in metric["regexes_to_ignore"]:
                prediction, reference = re.sub(pattern, "", prediction), re.sub(pattern, "", reference)
            prediction, reference = prediction.lower(), reference.lower()
            assert extracted == prediction, (name, response)
            assert taskdefs.is_correct("gsm8k", extracted, item) == (
                prediction == reference or _numbers_equal(prediction, reference)
            ), (name, response)


def test_mmlu_pro_first_tier_matches_lm_eval_filter_code():
    """Where lm-eval's mmlu_pro "custom-extract" filter (the official first tier) finds an item's letter, ours
    gives the same letter."""
    task = _task_yaml(_lm_eval_task_file("mmlu_pro", "_default_template_yaml"))
    steps = next(entry["filter"] for entry in task["filter_list"] if entry["name"] == "custom-extract")
    letters = "ABCDEFGHIJ"
    item = _letter_item(10)
    responses = letter_responses(7, letters)
    compared = 0
    for response, filtered in zip(responses, _run_lm_eval_filters(steps, responses), strict=True):
        if filtered in set(letters) and "**" not in response:
            compared += 1
            assert taskdefs.extract_answer("mmlu_pro", response, item) == filtered, response
    assert compared > 30


def test_mmlu_pro_prompt_matches_lm_eval_layout():
    """Our MMLU-Pro question and worked example are lm-eval's format_cot_example (the official local layout)."""
    path = _lm_eval_task_file("mmlu_pro", "utils.py")
    spec = importlib.util.spec_from_file_location("lm_eval_mmlu_pro_utils", path)
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)  # imports only functools
    example = ParsedItem(question="What is 2 + 3?", answer="B", choices=("4", "5", "6"), subject="math",
                         rationale="A: Let's think step by step. 2 + 3 = 5. The answer is (B).")  # fmt: skip
    doc = {"question": example.question, "options": list(example.choices), "cot_content": example.rationale}
    assert taskdefs.mmlu_pro_example(example, with_answer=False) == utils.format_cot_example(doc, False)
    assert taskdefs.mmlu_pro_example(example, with_answer=True) == utils.format_cot_example(doc, True)
    description = _task_yaml(_lm_eval_task_file("mmlu_pro", "mmlu_pro_math.yaml"))["description"]
    assert description.strip() == taskdefs.MMLU_PRO_INSTRUCTION.format(subject="math")
