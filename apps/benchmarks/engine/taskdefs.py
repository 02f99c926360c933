"""Each standard benchmark's task as run here: the chat prompt, the answer extraction and the scoring.

They follow the reference evaluation of each benchmark for chat models (docs/benchmarks-scoring.md gives every
template and regular expression, and where and why we depart):

* GSM8K: lm-evaluation-harness's `gsm8k` task (lm_eval/tasks/gsm8k/gsm8k.yaml): "Question: …\\nAnswer:" turns,
  the "strict-match" filter (`#### (\\-?[0-9\\.\\,]+)`, first match) as the headline figure and
  "flexible-extract" (`(-?[$0-9.,]{2,})|(-?[0-9]+)`, last match) beside it, then the post-processing of its
  exact_match metric (",", "$", a trailing "." removed, lower case). Numbers compare as numbers ("18.00" = "18").
* MMLU-Pro: the official chain-of-thought prompt and extraction cascade of TIGER-AI-Lab/MMLU-Pro
  (evaluate_from_api.py / evaluate_from_local.py), except that a response with no extractable letter is "no
  answer", never a random guess.
* MMLU, ARC, HellaSwag, TruthfulQA MC1: lm-evaluation-harness scores these by log-likelihood, which chat endpoints
  do not offer; here they are letter questions in lm-eval's layout, answered with a letter and read by a
  documented cascade restricted to the item's letters.

Pure functions of plain items (apps.benchmarks.engine.formats.ParsedItem): no database, no network.
"""

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from string import ascii_uppercase as LETTERS

from apps.benchmarks.engine.formats import ParsedItem

GSM8K, MMLU, MMLU_PRO, ARC, HELLASWAG, TRUTHFULQA_MC1 = (
    "gsm8k",
    "mmlu",
    "mmlu_pro",
    "arc",
    "hellaswag",
    "truthfulqa_mc1",
)
KINDS = (GSM8K, MMLU, MMLU_PRO, ARC, HELLASWAG, TRUTHFULQA_MC1)
LETTER_KINDS = (MMLU, ARC, HELLASWAG, TRUTHFULQA_MC1)
NAMES = {GSM8K: "GSM8K", MMLU: "MMLU", MMLU_PRO: "MMLU-Pro", ARC: "ARC", HELLASWAG: "HellaSwag",
         TRUTHFULQA_MC1: "TruthfulQA MC1"}  # fmt: skip
TASK_VERSION = 1  # bump when a prompt, a regular expression or the scoring changes

LM_EVAL = "https://github.com/EleutherAI/lm-evaluation-harness"
MMLU_PRO_REPO = "https://github.com/TIGER-AI-Lab/MMLU-Pro"

# --- GSM8K (lm-evaluation-harness, lm_eval/tasks/gsm8k/gsm8k.yaml, version 3) --------------------------------
GSM8K_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")  # filter "strict-match": group_select 0 (first match)
GSM8K_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")  # filter "flexible-extract": group_select -1 (last)
GSM8K_IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")  # exact_match regexes_to_ignore, applied in this order
GSM8K_ZERO_SHOT_INSTRUCTION = (
    'Solve the following math problem step by step. End your answer with a line of the form "#### <number>".'
)
_PLAIN_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")

# --- MMLU-Pro (TIGER-AI-Lab/MMLU-Pro evaluate_from_api.py, evaluate_from_local.py) ------------------------------
MMLU_PRO_INSTRUCTION = (
    "The following are multiple choice questions (with answers) about {subject}. Think step by step and then "
    'finish your answer with "the answer is (X)" where X is the correct letter choice.'
)
MMLU_PRO_CASCADE = (
    re.compile(r"answer is \(?([A-J])\)?"),  # extract_answer: first match, group 1
    re.compile(r".*[aA]nswer:\s*([A-J])"),  # extract_again: first match, group 1
    re.compile(r"\b[A-J]\b(?!.*\b[A-J]\b)", re.DOTALL),  # extract_final: the last standalone letter, group 0
)
# Steps 2 and 3 as written take time quadratic in the response's length (a second for an 8,000-character line):
# they are computed in one pass each, with the same result (tests/benchmarks/test_parity.py checks it).
_MMLU_PRO_ANSWER_AT = re.compile(r"(?=[aA]nswer:\s*([A-J]))")  # every "answer: X", overlapping ones too
_MMLU_PRO_STANDALONE = re.compile(r"\b[A-J]\b")
_COT_START = "A: Let's think step by step."

# --- Letter questions (MMLU, ARC, HellaSwag, TruthfulQA MC1) ----------------------------------------------------
LETTER_INSTRUCTION = "Answer with the letter of the correct option."
# One option letter: "(B)" or "(b)"; a capital letter standing alone, unless it is the article "A" or the pronoun
# "I" followed by a word ("A good option is …", "I think …"); a small letter followed by punctuation or the end of
# its line ("… is b."). Whichever alternative matched holds the letter.
_LETTER = (
    r"(?:\(([A-Za-z])\)"
    r"|(?![AI]\s+[a-z])([A-Z])(?![\w'’])"
    r"|([a-z])(?=[ \t]*(?:[.,;:!)]|$)))"
)
_LEAD = r"(?:[Oo]ption\s+|[Cc]hoice\s+)?"
LETTER_CASCADE = (
    ("answer is", re.compile(r"[Aa]nswer is:?\s*" + _LEAD + _LETTER, re.MULTILINE)),  # the last match
    ("Answer:", re.compile(r"[Aa]nswer:\s*" + _LEAD + _LETTER, re.MULTILINE)),  # the last match
    # A response that is just the letter, or starts with it: "C", "(C)", "C.", "C)", "C: Paris", "C. Paris".
    ("the letter alone", re.compile(r"\A\s*(?:\(([A-Za-z])\)|([A-Za-z])(?=[.):]|[ \t]*(?:\n|\Z)))")),
)
# The last standalone letter among the item's letters (capitals only; the article "A" and the pronoun "I"
# followed by a word do not count). `{letters}` is the item's letters, e.g. "ABCD".
LETTER_LAST_STANDALONE = r"(?<![\w'’])(?![AI]\s+[a-z])([{letters}])(?![\w'’])"

_HELLASWAG_BRACKETS = re.compile(r"\[.*?\]")


# --- Prompts ----------------------------------------------------------------------------------------------------


def _options(choices: tuple[str, ...]) -> str:
    return "\n".join(f"{LETTERS[position]}. {choice}" for position, choice in enumerate(choices))


def hellaswag_preprocess(text: str) -> str:
    """lm-evaluation-harness's HellaSwag clean-up (lm_eval/tasks/hellaswag/utils.py): WikiHow's " [title]" marks
    become ". ", other bracketed marks go, double spaces become single."""
    text = text.strip().replace(" [title]", ". ")
    text = _HELLASWAG_BRACKETS.sub("", text)
    return text.replace("  ", " ")


def _letter_header(kind: str, item: ParsedItem) -> str:
    if kind == MMLU:
        about = f" about {item.subject.replace('_', ' ')}" if item.subject else ""
        return f"The following are multiple choice questions (with answers){about}. {LETTER_INSTRUCTION}"
    if kind == ARC:
        return f"The following are multiple choice questions (with answers) about {item.subject or 'science'}. " + (
            LETTER_INSTRUCTION
        )
    if kind == HELLASWAG:
        return f"Choose the ending that most plausibly continues each text. {LETTER_INSTRUCTION}"
    return f"The following are multiple choice questions (with answers). {LETTER_INSTRUCTION}"


def _letter_question(kind: str, item: ParsedItem) -> str:
    if kind == MMLU:
        return f"{item.question.strip()}\n{_options(item.choices)}\nAnswer:"
    if kind == HELLASWAG:
        context = f"{item.subject}: {item.question}" if item.subject else item.question
        endings = tuple(hellaswag_preprocess(ending) for ending in item.choices)
        return f"{hellaswag_preprocess(context)}\n{_options(endings)}\nAnswer:"
    return f"Question: {item.question.strip()}\n{_options(item.choices)}\nAnswer:"


def gsm8k_worked_answer(item: ParsedItem) -> str:
    """A few-shot example's answer: the published rationale ending "#### <number>", as lm-eval shows it."""
    if "####" in item.rationale:
        return item.rationale.strip()
    return f"{item.rationale.strip()}\n#### {item.answer}".strip()


def mmlu_pro_example(item: ParsedItem, *, with_answer: bool) -> str:
    """One question in the official MMLU-Pro layout; an example ends with its chain of thought, the question
    asked ends with "Answer: Let's think step by step."."""
    text = f"Question:\n{item.question}\nOptions:\n"
    text += "".join(f"{LETTERS[position]}. {option}\n" for position, option in enumerate(item.choices))
    if not with_answer:
        return text + "Answer: Let's think step by step."
    cot = item.rationale.strip().replace(_COT_START, "Answer: Let's think step by step.")
    if not cot:
        cot = f"Answer: Let's think step by step. The answer is ({item.answer})."
    elif not cot.startswith("Answer:"):
        cot = "Answer: " + cot.removeprefix("A: ")
    return text + cot + "\n\n"


def build_messages(kind: str, item: ParsedItem, shots: list[ParsedItem]) -> list[dict[str, str]]:
    """The chat messages asking `item`, with `shots` (already chosen: same subject first) as worked examples.

    GSM8K and the letter questions follow lm-eval's chat form (`--apply_chat_template --fewshot_as_multiturn`):
    each example is a user turn and the assistant's answer, then the question. lm-eval sends the task's
    description as a system message; here it opens the first user turn, because several chat templates (Gemma's)
    refuse a system role. MMLU-Pro is one user message, as the official API script sends it."""
    _check_kind(kind)
    if kind == MMLU_PRO:
        instruction = MMLU_PRO_INSTRUCTION if item.subject else MMLU_PRO_INSTRUCTION.replace(" about {subject}", "")
        text = instruction.format(subject=item.subject) + "\n"
        text += "".join(mmlu_pro_example(shot, with_answer=True) for shot in shots)
        return [{"role": "user", "content": text + mmlu_pro_example(item, with_answer=False)}]
    if kind == GSM8K:
        header = "" if shots else GSM8K_ZERO_SHOT_INSTRUCTION

        def question(one: ParsedItem) -> str:
            return f"Question: {one.question}\nAnswer:"

        def answer(one: ParsedItem) -> str:
            return gsm8k_worked_answer(one)
    else:
        header = _letter_header(kind, item)

        def question(one: ParsedItem) -> str:
            return _letter_question(kind, one)

        def answer(one: ParsedItem) -> str:
            return one.answer

    messages: list[dict[str, str]] = []
    for one in [*shots, item]:
        content = question(one)
        if not messages and header:
            content = f"{header}\n\n{content}"
        messages.append({"role": "user", "content": content})
        if one is not item:
            messages.append({"role": "assistant", "content": answer(one)})
    return messages


def choose_shots(kind: str, item: ParsedItem, pool: list[ParsedItem], k: int) -> list[ParsedItem]:
    """`k` worked examples for `item`: those of its subject / category first, in pool order (as MMLU-Pro's
    official script and lm-eval's "first_n" sampler take them), then the others in pool order; never the item."""
    _check_kind(kind)
    if k <= 0:
        return []

    def is_item(one: ParsedItem) -> bool:
        return one.question == item.question and one.choices == item.choices

    candidates = [one for one in pool if not is_item(one)]
    same = [one for one in candidates if one.subject == item.subject]
    other = [one for one in candidates if one.subject != item.subject]
    return (same + other)[:k]


# --- Extraction -------------------------------------------------------------------------------------------------


def _regex_select(regex: re.Pattern, text: str, group_select: int) -> str | None:
    """lm-eval's RegexFilter: findall, the match at `group_select`, its first non-empty group, stripped."""
    matches = regex.findall(text)
    if not matches:
        return None
    match = matches[group_select]
    if isinstance(match, tuple):
        match = next((group for group in match if group), None)
        if match is None:
            return None
    return match.strip()


def gsm8k_normalize(text: str) -> str:
    """lm-eval's exact_match post-processing for GSM8K: each of `GSM8K_IGNORE` removed in turn, lower case."""
    for pattern in GSM8K_IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def _gsm8k_extract(regex: re.Pattern, group_select: int) -> Callable[[str, ParsedItem], str]:
    def extract(text: str, item: ParsedItem) -> str:
        found = _regex_select(regex, text or "", group_select)
        return "" if found is None else gsm8k_normalize(found)

    return extract


gsm8k_strict = _gsm8k_extract(GSM8K_STRICT, 0)
gsm8k_flexible = _gsm8k_extract(GSM8K_FLEXIBLE, -1)


def item_letters(item: ParsedItem) -> str:
    return LETTERS[: len(item.choices)]


def _mmlu_pro_answer_colon(text: str) -> str:
    r"""`.*[aA]nswer:\s*([A-J])` searched: the first line holding an "answer: X" (`.` stops at a newline), and on
    it the last one (`.*` is greedy), in one pass."""
    letter, line_end = "", -1
    for match in _MMLU_PRO_ANSWER_AT.finditer(text):
        if line_end < 0:
            line_end = text.find("\n", match.start())
            line_end = len(text) if line_end < 0 else line_end
        elif match.start() >= line_end:
            break
        letter = match.group(1)
    return letter


def _mmlu_pro_last_standalone(text: str) -> str:
    r"""`\b[A-J]\b(?!.*\b[A-J]\b)` with DOTALL: the last standalone letter, in one pass."""
    letter = ""
    for match in _MMLU_PRO_STANDALONE.finditer(text):
        letter = match.group(0)
    return letter


def mmlu_pro_extract(text: str, item: ParsedItem) -> str:
    """The official cascade on the response with "**" removed (as evaluate_from_api.py does); a letter outside
    the item's options, or none, is no answer ('')."""
    text = (text or "").replace("**", "")
    match = MMLU_PRO_CASCADE[0].search(text)
    letter = match.group(1) if match else _mmlu_pro_answer_colon(text) or _mmlu_pro_last_standalone(text)
    return letter if letter and letter in item_letters(item) else ""


@lru_cache(maxsize=64)
def _last_standalone(letters: str) -> re.Pattern:
    return re.compile(LETTER_LAST_STANDALONE.format(letters=letters))


def _letter_of(match: tuple[str, ...] | str) -> str:
    groups = (match,) if isinstance(match, str) else match
    return next((group for group in groups if group), "").upper()


def letter_extract(text: str, item: ParsedItem) -> str:
    """The letter cascade: "answer is X", then "Answer: X" (the last of each), then a response that is or starts
    with the letter, then the last standalone letter of the item's. A named letter the item does not have is no
    answer (''), as is a response where none is found."""
    text = (text or "").replace("**", "")
    letters = item_letters(item)
    for _name, regex in LETTER_CASCADE:
        matches = regex.findall(text)
        if matches:
            letter = _letter_of(matches[-1])
            return letter if letter in letters else ""
    if not letters:
        return ""
    matches = _last_standalone(letters).findall(text)
    return matches[-1] if matches else ""


def extract_answer(kind: str, text: str, item: ParsedItem) -> str:
    """The answer the response gives ('' when none can be extracted: counted as wrong, "no answer")."""
    _check_kind(kind)
    if kind == GSM8K:
        return gsm8k_strict(text, item)
    if kind == MMLU_PRO:
        return mmlu_pro_extract(text, item)
    return letter_extract(text, item)


def alternate_extractions(kind: str) -> dict[str, Callable[[str, ParsedItem], str]]:
    """Other extractions shown beside the headline one: GSM8K's "flexible-extract"; none for the others."""
    _check_kind(kind)
    return {"flexible-extract": gsm8k_flexible} if kind == GSM8K else {}


def is_correct(kind: str, extracted: str, item: ParsedItem) -> bool:
    """GSM8K: the normalized strings are equal, or both are plain numbers of equal value ("18.00" = "18");
    otherwise the letter equals the item's."""
    _check_kind(kind)
    if not extracted:
        return False
    if kind != GSM8K:
        return extracted == item.answer.strip().upper()
    expected = gsm8k_normalize(item.answer.strip())
    if extracted == expected:
        return True
    if _PLAIN_NUMBER.fullmatch(extracted) and _PLAIN_NUMBER.fullmatch(expected):
        try:
            return Decimal(extracted) == Decimal(expected)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
            return False
    return False


# --- What is recorded -------------------------------------------------------------------------------------------


def default_max_tokens(kind: str) -> int:
    """GSM8K 512 (lm-eval's default of 256 cuts chat models' worked answers before "####"); MMLU-Pro 2048 (as
    lm-eval and the official local script); letter questions 256 (room for a short explanation after the letter)."""
    _check_kind(kind)
    return {GSM8K: 512, MMLU_PRO: 2048}.get(kind, 256)


def _placeholder(kind: str, *, example: bool) -> ParsedItem:
    choices = () if kind == GSM8K else tuple(f"{{option {letter}}}" for letter in "ABCD")
    prefix = "example " if example else ""
    rationale = f"{_COT_START} {{reasoning}} The answer is (X)." if kind == MMLU_PRO else "{worked solution}"
    return ParsedItem(question=f"{{{prefix}question}}", answer="{answer}" if kind == GSM8K else "X",
                      choices=choices, subject="{subject}", rationale=rationale)  # fmt: skip


def _extraction_steps(kind: str) -> list[dict]:
    if kind == GSM8K:
        return [{"name": "strict-match", "regex": GSM8K_STRICT.pattern, "flags": "", "select": "first match",
                 "then": f"remove {', '.join(GSM8K_IGNORE)} (in order); lower case"}]  # fmt: skip
    if kind == MMLU_PRO:
        selects = ("first match, group 1", "first match, group 1", "the match (the last standalone letter)")
        return [{"name": f"tier {tier + 1}", "regex": regex.pattern, "flags": "DOTALL" if tier == 2 else "",
                 "select": selects[tier]} for tier, regex in enumerate(MMLU_PRO_CASCADE)]  # fmt: skip
    steps = [{"name": name, "regex": regex.pattern, "flags": "MULTILINE" if name != "the letter alone" else "",
              "select": "last match" if name != "the letter alone" else "the match"}
             for name, regex in LETTER_CASCADE]  # fmt: skip
    steps.append({"name": "last standalone letter", "regex": LETTER_LAST_STANDALONE, "flags": "",
                  "select": "last match; {letters} = the item's letters, e.g. ABCD"})  # fmt: skip
    return steps


_REFERENCES = {
    GSM8K: ("lm-evaluation-harness gsm8k (strict-match, flexible-extract)", f"{LM_EVAL}/blob/main/lm_eval/tasks/gsm8k/gsm8k.yaml"),
    MMLU_PRO: ("TIGER-AI-Lab MMLU-Pro official chain-of-thought evaluation", f"{MMLU_PRO_REPO}/blob/main/evaluate_from_api.py"),
    MMLU: ("lm-evaluation-harness mmlu (generative layout), letter answers", f"{LM_EVAL}/tree/main/lm_eval/tasks/mmlu"),
    ARC: ("lm-evaluation-harness arc_easy / arc_challenge, as letter questions", f"{LM_EVAL}/tree/main/lm_eval/tasks/arc"),
    HELLASWAG: ("lm-evaluation-harness hellaswag preprocessing, as letter questions", f"{LM_EVAL}/tree/main/lm_eval/tasks/hellaswag"),
    TRUTHFULQA_MC1: ("lm-evaluation-harness truthfulqa_mc1, as letter questions", f"{LM_EVAL}/tree/main/lm_eval/tasks/truthfulqa"),
}  # fmt: skip


def _scoring(kind: str) -> str:
    if kind == GSM8K:
        return ("Correct when the extracted number equals the reference answer after the same post-processing, "
                "or both are plain numbers of equal value (18.00 = 18). No number found: no answer, wrong.")  # fmt: skip
    if kind == MMLU_PRO:
        return ("Correct when the extracted letter is the answer letter. No letter found, or a letter the question "
                "does not have: no answer, wrong (the official script guesses at random; this does not).")  # fmt: skip
    return ("Correct when the extracted letter is the answer letter. No letter found, or a letter the question "
            "does not have: no answer, wrong.")  # fmt: skip


def task_definition(kind: str, shots: int) -> dict:
    """What is recorded on the suite/run and shown on the page: template, regexes, scoring, reference."""
    _check_kind(kind)
    example_shots = [_placeholder(kind, example=True)] if shots > 0 else []
    title, url = _REFERENCES[kind]
    metrics = ["accuracy", "accuracy_ci_low", "accuracy_ci_high", "stderr", "no_answer_rate", "by_subject"]
    definition = {
        "kind": kind,
        "name": NAMES[kind],
        "version": TASK_VERSION,
        "shots": shots,
        "reference": {"title": title, "url": url},
        "prompt": {
            "form": "chat messages",
            "messages": build_messages(kind, _placeholder(kind, example=False), example_shots),
            "shots_note": (
                f"The example is repeated for each of the {shots} worked examples, same subject first."
                if shots > 0
                else "Zero-shot: no worked examples."
            ),
        },
        "extraction": _extraction_steps(kind),
        "alternate_extractions": {},
        "scoring": _scoring(kind),
        "metrics": metrics,
        "max_tokens": default_max_tokens(kind),
        "temperature": 0.0,
        "documentation": "docs/benchmarks-scoring.md",
    }
    if kind == GSM8K:
        definition["alternate_extractions"] = {"flexible-extract": {
            "regex": GSM8K_FLEXIBLE.pattern, "flags": "", "select": "last match, first non-empty group",
            "then": f"remove {', '.join(GSM8K_IGNORE)} (in order); lower case"}}  # fmt: skip
        definition["metrics"] = [*metrics, "accuracy_flexible_extract"]
    if kind == HELLASWAG:
        definition["prompt"]["preprocessing"] = (
            'lm-eval\'s: strip; " [title]" → ". "; remove [bracketed] marks; double spaces → one'
        )
    return definition


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown benchmark kind {kind!r}; expected one of {', '.join(KINDS)}")
