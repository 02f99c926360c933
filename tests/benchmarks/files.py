"""Benchmark files in their published layouts, built from plain items, and generators of synthetic items.

Everything is generated here: no third-party benchmark data is committed or downloaded. Builders take a list
of `ParsedItem` (what the parser gives back) and return the BYTES of one layout, so a test can round-trip
`parse_suite_file(name, builder(items))` and compare. Generators make seeded synthetic items with the letters
spread over the choices. Signatures are kept stable: other tests and bench scripts use them.

    items = mmlu_pro_items(200, categories=("math", "law"), seed=1)
    suite_import(team=team, user=user, name="MMLU-Pro", files=[("test.parquet", mmlu_pro_parquet(items))])
"""

import csv
import io
import random
from collections.abc import Callable, Sequence

import orjson

from apps.benchmarks.engine.formats import LETTERS, ParsedItem

# --- generic containers -------------------------------------------------------------------------------------------


def jsonl(records: Sequence[dict]) -> bytes:
    """JSON Lines: one object per line."""
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


def json_array(records: Sequence[dict]) -> bytes:
    """A JSON array of objects, indented as published files often are."""
    return orjson.dumps(list(records), option=orjson.OPT_INDENT_2)


def parquet(records: Sequence[dict]) -> bytes:
    """A Parquet file of the records (pyarrow infers the columns: lists, structs, ints, strings)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(list(records)), sink)
    return sink.getvalue()


def _container(records: list[dict], fmt: str) -> bytes:
    return {"jsonl": jsonl, "json": json_array, "parquet": parquet}[fmt](records)


def _answer_position(item: ParsedItem) -> int:
    return LETTERS.index(item.answer)


# --- records of each layout ---------------------------------------------------------------------------------------


def gsm8k_records(items: Sequence[ParsedItem]) -> list[dict]:
    return [{"question": item.question, "answer": f"{item.rationale}\n#### {item.answer}"} for item in items]


def mmlu_records(items: Sequence[ParsedItem]) -> list[dict]:
    """The Hugging Face layout (cais/mmlu): question, subject, choices, 0-based answer."""
    return [{"question": item.question, "subject": item.subject, "choices": list(item.choices),
             "answer": _answer_position(item)} for item in items]  # fmt: skip


def mmlu_pro_records(items: Sequence[ParsedItem], *, pad_to: int | None = 10) -> list[dict]:
    """TIGER-Lab/MMLU-Pro rows; options padded with "N/A" up to `pad_to` (None: no padding). question_id is
    the item's source_id when numeric, else its position."""
    records = []
    for position, item in enumerate(items):
        options = list(item.choices)
        if pad_to is not None:
            options += ["N/A"] * (pad_to - len(options))
        records.append({
            "question_id": int(item.source_id) if item.source_id.isdigit() else position,
            "question": item.question,
            "options": options,
            "answer": item.answer,
            "answer_index": _answer_position(item),
            "cot_content": item.rationale,
            "category": item.subject,
            "src": f"ori_mmlu-{item.subject}",
        })  # fmt: skip
    return records


def arc_records(items: Sequence[ParsedItem], *, numeric_labels: bool = False) -> list[dict]:
    """AI2's ARC JSON Lines rows; labels "1".."n" when `numeric_labels` (as some ARC questions have)."""
    records = []
    for position, item in enumerate(items):
        labels = (
            [str(n + 1) for n in range(len(item.choices))] if numeric_labels else list(LETTERS[: len(item.choices)])
        )
        record = {
            "id": item.source_id or f"ARC_{position}",
            "question": {"stem": item.question,
                         "choices": [{"text": text, "label": label} for text, label in zip(item.choices, labels, strict=True)]},
            "answerKey": labels[_answer_position(item)],
        }  # fmt: skip
        if item.subject:
            record["subject"] = item.subject
        records.append(record)
    return records


def hellaswag_records(items: Sequence[ParsedItem], *, label_as_text: bool = False) -> list[dict]:
    """Rowan/hellaswag rows (the original JSON Lines has an integer label, the Hugging Face one a string).
    `ctx` is the item's question; ctx_a / ctx_b split it at its first ". " the way the dataset does."""
    records = []
    for position, item in enumerate(items):
        ctx_a, _, ctx_b = item.question.partition(". ")
        label = _answer_position(item)
        records.append({
            "ind": int(item.source_id) if item.source_id.isdigit() else position,
            "activity_label": item.subject,
            "ctx_a": ctx_a + ("." if ctx_b else ""),
            "ctx_b": ctx_b,
            "ctx": item.question,
            "endings": list(item.choices),
            "label": str(label) if label_as_text else label,
            "split": "val",
        })  # fmt: skip
    return records


def truthfulqa_records(items: Sequence[ParsedItem], *, shape: str = "hf") -> list[dict]:
    """TruthfulQA MC1 rows with the correct answer FIRST, as published. shape "hf": {"choices", "labels"};
    "original": the repository's {answer text: 1 or 0} dict (mc_task.json)."""
    records = []
    for item in items:
        correct = item.choices[_answer_position(item)]
        choices = [correct] + [text for text in item.choices if text != correct]
        labels = [1] + [0] * (len(choices) - 1)
        if shape == "hf":
            targets: dict = {"choices": choices, "labels": labels}
        elif shape == "original":
            targets = dict(zip(choices, labels, strict=True))
        else:
            raise ValueError(f"unknown TruthfulQA shape {shape!r}")
        records.append({"question": item.question, "mc1_targets": targets})
    return records


# --- bytes of each layout -----------------------------------------------------------------------------------------


def gsm8k_jsonl(items: Sequence[ParsedItem]) -> bytes:
    """GSM8K JSON Lines (openai/grade-school-math): question, answer = rationale + "\\n#### " + number."""
    return jsonl(gsm8k_records(items))


def mmlu_csv(items: Sequence[ParsedItem], *, header: bool = False) -> bytes:
    """MMLU's original per-subject CSV (hendrycks/test data/test/<subject>_test.csv): no header, question,
    A, B, C, D, answer letter. The subject is not in the file: name it "<subject>_test.csv"."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(["question", "A", "B", "C", "D", "answer"])
    for item in items:
        if len(item.choices) != 4:
            raise ValueError("an MMLU CSV row has exactly 4 choices")
        writer.writerow([item.question, *item.choices, item.answer])
    return out.getvalue().encode()


def mmlu_parquet(items: Sequence[ParsedItem]) -> bytes:
    return parquet(mmlu_records(items))


def mmlu_json(items: Sequence[ParsedItem]) -> bytes:
    return json_array(mmlu_records(items))


def mmlu_jsonl(items: Sequence[ParsedItem]) -> bytes:
    return jsonl(mmlu_records(items))


def mmlu_pro_parquet(items: Sequence[ParsedItem], *, pad_to: int | None = 10) -> bytes:
    return parquet(mmlu_pro_records(items, pad_to=pad_to))


def mmlu_pro_json(items: Sequence[ParsedItem], *, pad_to: int | None = 10) -> bytes:
    return json_array(mmlu_pro_records(items, pad_to=pad_to))


def mmlu_pro_jsonl(items: Sequence[ParsedItem], *, pad_to: int | None = 10) -> bytes:
    return jsonl(mmlu_pro_records(items, pad_to=pad_to))


def arc_jsonl(items: Sequence[ParsedItem], *, numeric_labels: bool = False) -> bytes:
    return jsonl(arc_records(items, numeric_labels=numeric_labels))


def hellaswag_jsonl(items: Sequence[ParsedItem], *, label_as_text: bool = False) -> bytes:
    return jsonl(hellaswag_records(items, label_as_text=label_as_text))


def truthfulqa_mc1_json(items: Sequence[ParsedItem], *, shape: str = "hf") -> bytes:
    return json_array(truthfulqa_records(items, shape=shape))


def build(kind: str, items: Sequence[ParsedItem], fmt: str = "") -> tuple[str, bytes]:
    """(file name, bytes) of `items` in the usual layout of `kind` (fmt: "jsonl", "json", "parquet" where the
    kind has several; MMLU also "csv", named "<subject>_test.csv" after the first item's subject)."""
    if kind == "gsm8k":
        return "test.jsonl", gsm8k_jsonl(items)
    if kind == "mmlu":
        fmt = fmt or "csv"
        if fmt == "csv":
            return f"{items[0].subject or 'subject'}_test.csv", mmlu_csv(items)
        return f"mmlu.{fmt}", _container(mmlu_records(items), fmt)
    if kind == "mmlu_pro":
        fmt = fmt or "parquet"
        return f"mmlu_pro.{fmt}", _container(mmlu_pro_records(items), fmt)
    if kind == "arc":
        return "ARC-Challenge-Test.jsonl", arc_jsonl(items)
    if kind == "hellaswag":
        return "hellaswag_val.jsonl", hellaswag_jsonl(items)
    if kind == "truthfulqa_mc1":
        return "mc_task.json", truthfulqa_mc1_json(items)
    raise ValueError(f"unknown kind {kind!r}")


# --- synthetic items ----------------------------------------------------------------------------------------------

_WORDS = ("the", "a", "of", "energy", "cell", "market", "court", "river", "theorem", "value", "force", "price",
          "which", "is", "when", "given", "system", "rate", "number", "law", "process", "field", "group", "heat",
          "contract", "species", "function", "signal", "state", "reaction")  # fmt: skip


def filler(rng: random.Random, chars: int) -> str:
    """Readable-looking text of about `chars` characters (0: "")."""
    words, length = [], 0
    while length < chars:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:chars].rstrip()


def gsm8k_items(n: int, seed: int = 0) -> list[ParsedItem]:
    """Word problems whose answers are whole numbers (some in the thousands, some negative); GSM8K has no ids."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        a, b, c = rng.randint(2, 90), rng.randint(2, 60), rng.randint(1, 40)
        total = a * b - c if i % 7 else c - a * b * 3
        question = f"A shop sells {a} boxes of {b} pencils each and gives away {c} pencils. Question {i}: what is left?"
        rationale = f"{a} boxes of {b} pencils is <<{a}*{b}={a * b}>>{a * b} pencils.\nThe rest is {total}."
        items.append(ParsedItem(question=question, answer=str(total), rationale=rationale))
    return items


def _choice_items(n: int, seed: int, subjects: Sequence[str], count: Callable, *, question_chars: int = 0,
                  choice_chars: int = 0, rationale_chars: int = 0, prefix: str = "Q") -> list[ParsedItem]:  # fmt: skip
    rng = random.Random(seed)
    items = []
    for i in range(n):
        k = count(rng)
        subject = subjects[i % len(subjects)] if subjects else ""
        question = f"{prefix}{i} ({subject}): which option is right?"
        if question_chars:
            question = f"{question} {filler(rng, question_chars - len(question) - 1)}"
        choices = tuple(f"option {letter} of {prefix}{i}" + (f" {filler(rng, choice_chars)}" if choice_chars else "")
                        for letter in LETTERS[:k])  # fmt: skip
        answer = LETTERS[rng.randrange(k)]
        rationale = filler(rng, rationale_chars) + f" The answer is ({answer})." if rationale_chars else ""
        items.append(ParsedItem(question=question, answer=answer, choices=choices, subject=subject,
                                rationale=rationale.strip(), source_id=str(i)))  # fmt: skip
    return items


def mmlu_items(n: int, subjects: Sequence[str] = ("abstract_algebra", "anatomy"), seed: int = 0) -> list[ParsedItem]:
    """Four-choice questions, subjects in turn (source_id "" as MMLU has no ids)."""
    items = _choice_items(n, seed, subjects, lambda rng: 4, prefix="M")
    return [ParsedItem(item.question, item.answer, item.choices, item.subject) for item in items]


MMLU_PRO_CATEGORIES = ("math", "physics", "chemistry", "law", "engineering", "other", "economics", "health",
                       "psychology", "business", "biology", "philosophy", "computer science", "history")  # fmt: skip


def mmlu_pro_items(
    n: int,
    categories: Sequence[str] = MMLU_PRO_CATEGORIES,
    seed: int = 0,
    *,
    question_chars: int = 0,
    option_chars: int = 0,
    cot_chars: int = 0,
) -> list[ParsedItem]:
    """MMLU-Pro-shaped items: 3–10 options (most 10), categories in turn, numeric source ids. The *_chars
    arguments make realistic lengths (the bench: ~400-character questions, ~600-character cot_content)."""
    return _choice_items(n, seed, categories, lambda rng: 10 if rng.random() < 0.8 else rng.randint(3, 9),
                         question_chars=question_chars, choice_chars=option_chars, rationale_chars=cot_chars,
                         prefix="P")  # fmt: skip


def arc_items(n: int, seed: int = 0) -> list[ParsedItem]:
    """Four-choice (some three- and five-choice) science questions, ids like AI2's, no subject."""
    items = _choice_items(n, seed, (), lambda rng: rng.choice((3, 4, 4, 4, 5)), prefix="A")
    return [ParsedItem(item.question, item.answer, item.choices, "", "", f"Mercury_{7000000 + i}")
            for i, item in enumerate(items)]  # fmt: skip


def hellaswag_items(
    n: int, seed: int = 0, activities: Sequence[str] = ("Baking cookies", "Surfing")
) -> list[ParsedItem]:
    """Contexts of two sentences with four endings; activity labels in turn."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        endings = tuple(f"ending {letter} of context {i}." for letter in "ABCD")
        question = f"A person is shown in scene {i}. They pick up the tool and"
        items.append(ParsedItem(question=question, answer=LETTERS[rng.randrange(4)], choices=endings,
                                subject=activities[i % len(activities)], source_id=str(i)))  # fmt: skip
    return items


def truthfulqa_items(n: int, seed: int = 0) -> list[ParsedItem]:
    """Questions with 4–13 distinct answers (as MC1 has), no subject."""
    items = _choice_items(n, seed, (), lambda rng: rng.randint(4, 13), prefix="T")
    return [ParsedItem(item.question, item.answer, item.choices) for item in items]
