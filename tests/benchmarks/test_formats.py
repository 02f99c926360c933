"""The published benchmark layouts parse into the items they were built from, and every bad file is named."""

import hashlib
import random

import pytest

from apps.benchmarks.engine.formats import (
    KIND_NAMES,
    MAX_PROBLEMS,
    FormatError,
    ParsedItem,
    parse_suite_file,
    shuffle_seed,
    subject_from_file_name,
)
from apps.benchmarks.models import Kind
from tests.benchmarks import files


def problems_of(name: str, data: bytes, **kwargs) -> list[str]:
    with pytest.raises(FormatError) as caught:
        parse_suite_file(name, data, **kwargs)
    return caught.value.problems


def test_kind_names_are_the_models_kinds():
    """The engine's own list of kinds (it does not import models) matches Kind, labels included."""
    assert dict(Kind.choices) == KIND_NAMES


# --- round trips --------------------------------------------------------------------------------------------------

ROUND_TRIPS = [
    ("gsm8k", lambda: files.gsm8k_items(40, seed=3), lambda items: files.gsm8k_jsonl(items), "t.jsonl", "gsm8k-jsonl"),
    ("mmlu", lambda: files.mmlu_items(30, subjects=("anatomy",)), files.mmlu_csv, "anatomy_test.csv", "mmlu-csv"),
    ("mmlu", lambda: files.mmlu_items(30), files.mmlu_parquet, "m.parquet", "mmlu-parquet"),
    ("mmlu", lambda: files.mmlu_items(30), files.mmlu_json, "m.json", "mmlu-json"),
    ("mmlu", lambda: files.mmlu_items(30), files.mmlu_jsonl, "m.jsonl", "mmlu-jsonl"),
    ("mmlu_pro", lambda: files.mmlu_pro_items(60, seed=2), files.mmlu_pro_parquet, "p.parquet", "mmlu-pro-parquet"),
    ("mmlu_pro", lambda: files.mmlu_pro_items(60, seed=2), files.mmlu_pro_json, "p.json", "mmlu-pro-json"),
    ("mmlu_pro", lambda: files.mmlu_pro_items(60, seed=2), files.mmlu_pro_jsonl, "p.jsonl", "mmlu-pro-jsonl"),
    ("arc", lambda: files.arc_items(30), files.arc_jsonl, "ARC-Easy-Test.jsonl", "arc-jsonl"),
    ("arc", lambda: files.arc_items(30), lambda items: files.arc_jsonl(items, numeric_labels=True), "a.jsonl",
     "arc-jsonl"),
    ("hellaswag", lambda: files.hellaswag_items(30), files.hellaswag_jsonl, "h.jsonl", "hellaswag-jsonl"),
    ("hellaswag", lambda: files.hellaswag_items(30), lambda items: files.hellaswag_jsonl(items, label_as_text=True),
     "h.jsonl", "hellaswag-jsonl"),
]  # fmt: skip


@pytest.mark.parametrize("kind,make_items,build,file_name,source_format", ROUND_TRIPS)
def test_each_layout_round_trips_told_from_its_content(kind, make_items, build, file_name, source_format):
    """Built from items, parsed without `kind`: the layout is told from the content and the items come back."""
    items = make_items()
    parsed = parse_suite_file(file_name, build(items))
    assert (parsed.kind, parsed.source_format) == (kind, source_format)
    assert parsed.items == items
    assert parse_suite_file(file_name, build(items), kind=kind).items == items  # forcing the kind agrees


def test_answers_are_spread_over_the_letters():
    """The generators do not put every answer on one letter (a parser that ignored the key would fail)."""
    for items in (files.mmlu_items(40), files.mmlu_pro_items(40), files.arc_items(40), files.hellaswag_items(40)):
        assert len({item.answer for item in items}) >= 3


def test_gsm8k_answer_is_the_number_after_the_hashes_without_commas():
    """ "#### 1,234" → "1234"; sign and decimals kept; the rationale is the text before ####."""
    records = [
        {"question": "q1", "answer": "She has <<2*3=6>>6 apples.\nSo 1,234 in all.\n#### 1,234"},
        {"question": "q2", "answer": "Lost.\n#### -3.5"},
        {"question": "q3", "answer": "#### +7"},
        {"question": "q4", "answer": "Sum\n####   1,000,000  "},
    ]
    parsed = parse_suite_file("gsm8k.jsonl", files.jsonl(records))
    assert [item.answer for item in parsed.items] == ["1234", "-3.5", "7", "1000000"]
    assert parsed.items[0].rationale == "She has <<2*3=6>>6 apples.\nSo 1,234 in all."
    assert parsed.items[2].rationale == ""


@pytest.mark.parametrize(
    "file_name,subject",
    [("abstract_algebra_test.csv", "abstract_algebra"), ("data/dev/anatomy_dev.csv", "anatomy"),
     ("high_school_physics_val.csv", "high_school_physics"), ("C:\\mmlu\\virology_test.csv", "virology"),
     ("astronomy.csv", "astronomy")],
)  # fmt: skip
def test_mmlu_csv_subject_comes_from_the_file_name(file_name, subject):
    assert subject_from_file_name(file_name) == subject
    items = files.mmlu_items(3, subjects=("x",))
    assert {item.subject for item in parse_suite_file(file_name, files.mmlu_csv(items)).items} == {subject}


def test_mmlu_csv_subject_argument_wins_and_a_header_row_is_skipped():
    items = files.mmlu_items(3, subjects=("given",))
    parsed = parse_suite_file("upload.csv", files.mmlu_csv(items, header=True), subject="given")
    assert parsed.items == items
    assert parsed.warnings == ["The first row was a header (question … answer) and was skipped."]


def test_mmlu_csv_keeps_quoted_commas_and_newlines_and_numbers_rows_by_line():
    """A quoted question over two lines is one row; the next row's number is its line."""
    data = b'"Which, of these\nis right?",1,2,3,4,B\nplain,a,b,c,d,E\n'
    problems = problems_of("law_test.csv", data)
    assert problems == ['row 3, field "answer": "E" is not one of A, B, C, D']
    good = parse_suite_file("law_test.csv", data.replace(b",E", b",d"))
    assert good.items[0] == ParsedItem("Which, of these\nis right?", "B", ("1", "2", "3", "4"), "law")
    assert good.items[1].answer == "D"  # lower case letters are read


def test_mmlu_json_answer_may_be_a_letter_and_subject_falls_back_to_the_argument():
    records = [{"question": "q", "choices": ["a", "b", "c"], "answer": "c"}]
    assert parse_suite_file("x.json", files.json_array(records), subject="misc").items == [
        ParsedItem("q", "C", ("a", "b", "c"), "misc")
    ]


def test_mmlu_pro_drops_na_padding_and_keeps_the_letter():
    """Padded to 10 with "N/A": the padding is dropped, answer and answer_index agree, and a warning says so."""
    items = [ParsedItem("q", "C", ("a", "b", "c", "d"), "math", "cot", "17")]
    parsed = parse_suite_file("x.parquet", files.mmlu_pro_parquet(items, pad_to=10))
    assert parsed.items == items
    assert parsed.warnings == ['6 "N/A" padding options were dropped, as the official MMLU-Pro evaluation does.']
    assert parse_suite_file("x.parquet", files.mmlu_pro_parquet(items, pad_to=None)).warnings == []


def test_mmlu_pro_answer_disagreements_are_named():
    base = {"question_id": 1, "question": "q", "cot_content": "", "category": "law", "src": "s"}
    records = [
        {**base, "options": ["a", "b", "c", "N/A"], "answer": "B", "answer_index": 1},  # fine
        {**base, "options": ["a", "b", "c"], "answer": "B", "answer_index": 2},
        {**base, "options": ["a", "b", "N/A"], "answer": "C", "answer_index": 2},
        {**base, "options": ["a", "N/A", "c"], "answer": "C", "answer_index": 2},
        {**base, "options": ["a", "b", "c"], "answer": "K", "answer_index": 2},
        {**base, "options": ["a", "N/A", "N/A"], "answer": "A", "answer_index": 0},
        {**base, "options": ["a", "b"], "answer": None, "answer_index": 0},
    ]
    assert problems_of("p.json", files.json_array(records)) == [
        'row 2, field "answer_index": 2 does not agree with "answer" "B"',
        'row 3, field "answer": "C" names an "N/A" padding option',
        'row 4, field "answer": "C" no longer names the same option once the "N/A" options before it are dropped',
        'row 5, field "answer": "K" is not one of A, B, C',
        'row 6, field "options": has 1 choice; at least 2 are needed',
        'row 7, field "answer": is missing',
    ]


def test_arc_numeric_labels_become_letters_and_the_key_follows():
    record = {"id": "NYSEDREGENTS_2010_8_5", "answerKey": "3",
              "question": {"stem": "s", "choices": [{"text": t, "label": str(n)} for n, t in enumerate("wxyz", 1)]}}  # fmt: skip
    assert parse_suite_file("a.jsonl", files.jsonl([record])).items == [
        ParsedItem("s", "C", ("w", "x", "y", "z"), "", "", "NYSEDREGENTS_2010_8_5")
    ]


def test_arc_hugging_face_layout_is_read_too():
    record = {"id": "Mercury_1", "question": "s", "choices": {"text": ["p", "q", "r"], "label": ["A", "B", "C"]},
              "answerKey": "B"}  # fmt: skip
    parsed = parse_suite_file("arc.parquet", files.parquet([record]))
    assert (parsed.source_format, parsed.items) == ("arc-parquet", [ParsedItem("s", "B", ("p", "q", "r"), "", "",
                                                                               "Mercury_1")])  # fmt: skip


def test_hellaswag_joins_ctx_a_and_ctx_b_as_lm_eval_does_when_ctx_is_absent():
    record = {"ctx_a": "A man is at a lake.", "ctx_b": "then he", "endings": ["a", "b", "c", "d"], "label": "2",
              "activity_label": "Fishing", "ind": 9}  # fmt: skip
    assert parse_suite_file("h.jsonl", files.jsonl([record])).items == [
        ParsedItem("A man is at a lake. Then he", "C", ("a", "b", "c", "d"), "Fishing", "", "9")
    ]


def test_hellaswag_unlabelled_test_split_is_refused():
    record = {"ctx": "c", "endings": ["a", "b", "c", "d"], "label": "", "activity_label": "x"}
    assert problems_of("hellaswag_test.jsonl", files.jsonl([record, {**record, "label": 7}])) == [
        'row 1, field "label": is empty: the unlabelled test split cannot be scored',
        'row 2, field "label": 7 is not between 0 and 3',
    ]


# --- TruthfulQA ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["hf", "original"])
def test_truthfulqa_choices_are_shuffled_and_the_key_follows_the_right_text(shape):
    """The file lists the right answer first; after parsing it is under a spread of letters, deterministically."""
    items = files.truthfulqa_items(60, seed=5)
    data = files.truthfulqa_mc1_json(items, shape=shape)
    parsed = parse_suite_file("mc_task.json", data)
    assert parsed.kind == "truthfulqa_mc1"
    for item, got in zip(items, parsed.items, strict=True):
        assert got.question == item.question
        assert sorted(got.choices) == sorted(item.choices)
        assert got.choices[ord(got.answer) - ord("A")] == item.choices[ord(item.answer) - ord("A")]
    assert len({got.answer for got in parsed.items}) >= 5  # not always "A"
    assert parse_suite_file("mc_task.json", data).items == parsed.items  # the same order every time


def test_truthfulqa_shuffle_is_the_documented_one():
    """random.Random seeded with the first 8 bytes of sha256(question) shuffles the published order."""
    question = "What happens if you crack your knuckles a lot?"
    choices = ["Nothing in particular happens", "You will get arthritis", "Your knuckles swell", "They break"]
    seed = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big")
    assert shuffle_seed(question) == seed
    order = list(range(4))
    random.Random(seed).shuffle(order)
    record = {"question": question, "mc1_targets": dict(zip(choices, [1, 0, 0, 0], strict=True))}
    item = parse_suite_file("mc.json", files.json_array([record])).items[0]
    assert item.choices == tuple(choices[i] for i in order)
    assert item.answer == "ABCD"[order.index(0)]


def test_truthfulqa_needs_exactly_one_correct_label_and_letters_go_past_j():
    many = [f"answer {n}" for n in range(13)]
    records = [
        {"question": "two", "mc1_targets": {"choices": ["a", "b", "c"], "labels": [1, 1, 0]}},
        {"question": "none", "mc1_targets": {"a": 0, "b": 0}},
        {"question": "many", "mc1_targets": {"choices": many, "labels": [1] + [0] * 12}},
    ]
    assert problems_of("mc.json", files.json_array(records)) == [
        'row 1, field "mc1_targets": has 2 answers labelled 1; MC1 needs exactly one',
        'row 2, field "mc1_targets": has 0 answers labelled 1; MC1 needs exactly one',
    ]
    item = parse_suite_file("mc.json", files.json_array(records[2:])).items[0]
    assert len(item.choices) == 13 and item.answer in "ABCDEFGHIJKLM"


# --- bad files ----------------------------------------------------------------------------------------------------


def test_gsm8k_bad_answers_name_row_and_field():
    records = [{"question": "q", "answer": "ok\n#### 5"}] * 11 + [
        {"question": "q", "answer": "x\n#### twelve"},
        {"question": "q", "answer": "no marker"},
        {"question": "", "answer": "#### 1"},
        {"answer": "#### 1"},
        {"question": "q", "answer": 5},
    ]
    assert problems_of("gsm8k.jsonl", files.jsonl(records)) == [
        'row 12, field "answer": "#### twelve" is not a number',
        'row 13, field "answer": "no marker" does not end with "#### <number>"',
        'row 14, field "question": is empty',
        'row 15, field "question": is missing',
        'row 16, field "answer": "5" does not end with "#### <number>"',
    ]


def test_rows_are_numbered_by_line_in_json_lines_and_by_position_in_arrays():
    good, bad = {"question": "q", "answer": "#### 1"}, {"question": "q", "answer": "#### x"}
    assert problems_of("g.jsonl", files.jsonl([good]) + b"\n\n" + files.jsonl([bad])) == [
        'row 4, field "answer": "#### x" is not a number'
    ]
    assert problems_of("g.json", files.json_array([good, good, bad])) == [
        'row 3, field "answer": "#### x" is not a number'
    ]
    assert problems_of("g.parquet", files.parquet([good, bad])) == ['row 2, field "answer": "#### x" is not a number']


def test_problems_stop_at_twenty():
    bad = [{"question": "q", "answer": f"#### n{i}"} for i in range(100)]
    problems = problems_of("g.jsonl", files.jsonl(bad))
    assert len(problems) == MAX_PROBLEMS
    assert problems[-1] == 'row 20, field "answer": "#### n19" is not a number'


@pytest.mark.parametrize(
    "data,problem",
    [
        (b"", "the file is empty"),
        (b" \n\t\n", "the file is empty"),
        (b"\xff\xfe{\x00", "the file is not UTF-8 text (byte 1 cannot be decoded)"),
        (b"[]", "the file has no items"),
        (b'[{"question": "q", "answer": "#### 1"},', "line 1: invalid JSON"),
        (b'{\n  "question": "q",\n  "answer": "#### 1"\n}\n', "the file is one JSON object"),
        (b'[{"foo": 1, "bar": 2}]', "the layout could not be told from the fields (bar, foo)"),
        (b"a,b,c\n", "the layout could not be told: the file is not Parquet or JSON, and its first row has 3"),
        (b"PAR1 not really parquet", "the file is not a readable Parquet file"),
        (b"[1, 2]", "row 1: is not a JSON object"),
    ],
)
def test_bad_files_get_one_clear_problem(data, problem):
    problems = problems_of("upload.bin", data)
    assert problems[0].startswith(problem), problems
    assert len(problems) <= 2


def test_invalid_json_lines_are_named_by_line_and_the_rest_still_checked():
    data = b'{"question": "q", "answer": "#### 1"}\n{"question": "q", answer\n{"question": "q", "answer": "#### y"}\n'
    problems = problems_of("g.jsonl", data)
    assert problems[0].startswith("line 2: invalid JSON (")
    assert problems[1:] == ['row 3, field "answer": "#### y" is not a number']


def test_a_line_separator_inside_a_json_lines_string_is_not_a_new_line():
    record = {"question": "first\u2028second\x85third", "answer": "#### 2"}
    assert parse_suite_file("g.jsonl", files.jsonl([record])).items[0].question == "first\u2028second\x85third"


def test_parquet_missing_a_column_is_named():
    records = [{k: v for k, v in record.items() if k != "answer"}
               for record in files.mmlu_pro_records(files.mmlu_pro_items(3))]  # fmt: skip
    assert problems_of("p.parquet", files.parquet(records)) == ['the MMLU-Pro Parquet file has no column "answer"']


def test_forced_kind_that_does_not_match_is_named():
    data = files.mmlu_jsonl(files.mmlu_items(2))
    assert problems_of("m.jsonl", data, kind="truthfulqa_mc1") == [
        'no row has the field "mc1_targets" that a TruthfulQA MC1 file has'
    ]
    assert problems_of("m.csv", files.mmlu_csv(files.mmlu_items(2)), kind="gsm8k") == [
        "a GSM8K file is JSON, JSON Lines or Parquet, not CSV"
    ]
    assert problems_of("m.jsonl", data, kind="nope")[0].startswith('"nope" is not a benchmark kind')


def test_wrong_types_are_named_not_raised():
    records = [
        {"question": "q", "subject": "s", "choices": "abcd", "answer": 0},
        {"question": "q", "subject": "s", "choices": ["a", None], "answer": 0},
        {"question": ["q"], "subject": "s", "choices": ["a", "b"], "answer": 0},
        {"question": "q", "subject": "s", "choices": ["a", "b"], "answer": True},
        {"question": "q", "subject": "s" * 101, "choices": ["a", "b"], "answer": 1},
    ]
    assert problems_of("m.json", files.json_array(records)) == [
        'row 1, field "choices": "abcd" is not a list',
        'row 2, field "choices": choice 2 is missing',
        'row 3, field "question": "["q"]" is not text',
        'row 4, field "answer": "true" is not a whole number',
        'row 5, field "subject": is longer than 100 characters',
    ]


def test_nul_characters_are_refused_before_the_database_sees_them():
    records = [{"question": "q\u0000", "answer": "#### 1"}, {"question": "q", "choices": ["a", "b\u0000"], "answer": 0}]
    assert problems_of("g.jsonl", files.jsonl(records[:1])) == [
        'row 1, field "question": contains a NUL character (\\u0000)'
    ]
    assert problems_of("m.jsonl", files.jsonl(records[1:])) == [
        'row 1, field "choices": contains a NUL character (\\u0000)'
    ]
