"""Workload file parsers: exact results for good files, row-and-field errors for bad ones, skips counted."""

import pytest

from apps.workloads.engine.types import Conversation, TraceRow, Turn
from apps.workloads.formats import PROMPT_MAX_CHARS, detect, parse
from llmbench.uploads import FileRejected
from tests.workloads import files


def rejected(fmt: str, content: bytes) -> list[tuple]:
    """The (row, field, message) of every error the parser raises."""
    with pytest.raises(FileRejected) as caught:
        parse(fmt, content)
    return [(e.row, e.field, e.message) for e in caught.value.errors]


def assert_error(errors: list[tuple], row, field: str, word: str) -> None:
    """One error names this row and field and says `word`."""
    assert any(r == row and f == field and word in m for r, f, m in errors), errors


# ShareGPT


def test_sharegpt_parses_turns_with_references_and_system():
    """Each reply becomes the reference of the turn before it; system is kept apart."""
    item = files.sharegpt_item(
        "c1",
        ("system", "Be terse."),
        ("human", "Three primes?"),
        ("gpt", "2, 3, 5."),
        ("human", "Next?"),
        ("gpt", "7."),
    )
    dataset = parse("sharegpt", files.sharegpt([item, files.sharegpt_item(None, ("user", "Hi"))]))
    assert dataset.kind == "conversations"
    assert dataset.conversations == (
        Conversation("c1", "Be terse.", (Turn("Three primes?", reference="2, 3, 5."), Turn("Next?", reference="7."))),
        Conversation("1", None, (Turn("Hi"),)),
    )
    assert dataset.skipped == {}


def test_sharegpt_drops_a_leading_assistant_turn():
    """A conversation opening with the assistant starts at the first user turn."""
    dataset = parse(
        "sharegpt", files.sharegpt([files.sharegpt_item("a", ("gpt", "Hello!"), ("human", "Hi"), ("bard", "Yes"))])
    )
    assert dataset.conversations == (Conversation("a", None, (Turn("Hi", reference="Yes"),)),)


def test_sharegpt_skips_unfit_conversations_by_reason():
    """No user turn, non-alternating turns and a blank user turn are counted, not rejected."""
    items = [
        files.sharegpt_item("n", ("gpt", "only me")),
        files.sharegpt_item("x", ("human", "a"), ("human", "b")),
        files.sharegpt_item("e", ("human", "  "), ("gpt", "b")),
        files.sharegpt_item("ok", ("human", "a")),
    ]
    dataset = parse("sharegpt", files.sharegpt(items))
    assert [c.id for c in dataset.conversations] == ["ok"]
    assert dataset.skipped == {"no_user_turn": 1, "not_alternating": 1, "empty_user_turn": 1}


def test_sharegpt_rejects_a_root_that_is_not_an_array():
    """The root must be an array."""
    assert_error(rejected("sharegpt", b'{"conversations": []}'), "file", "(root)", "array")


def test_sharegpt_rejects_bad_json():
    """Text that is not JSON is named as such."""
    assert_error(rejected("sharegpt", b"[{"), "file", "(root)", "JSON")


def test_sharegpt_lists_every_malformed_item_with_index_and_id():
    """Each malformed item is named by its index (and id) and the field at fault."""
    items = [
        "text",
        {"id": "k3Zq"},
        {"conversations": []},
        {"conversations": ["hi"]},
        files.sharegpt_item("r", ("narrator", "Once upon a time")),
        files.sharegpt_item("s", ("human", "hi"), ("system", "late")),
        {"conversations": [{"from": "human"}]},
        {"conversations": [{"value": "hi"}]},
        {"conversations": [{"from": "human", "value": 3}]},
        files.sharegpt_item("long", ("human", "x" * (PROMPT_MAX_CHARS + 1))),
    ]
    errors = rejected("sharegpt", files.sharegpt(items))
    assert_error(errors, 0, "(item)", "object")
    assert_error(errors, "1 (id 'k3Zq')", "conversations", "missing")
    assert_error(errors, 2, "conversations", "non-empty")
    assert_error(errors, 3, "conversations[0]", "object")
    assert_error(errors, "4 (id 'r')", "conversations[0].from", "'narrator' is not a ShareGPT role")
    assert_error(errors, "5 (id 's')", "conversations[1].from", "first")
    assert_error(errors, 6, "conversations[0].value", "missing")
    assert_error(errors, 7, "conversations[0].from", "missing")
    assert_error(errors, 8, "conversations[0].value", "string")
    assert_error(errors, "9 (id 'long')", "conversations[0].value", "limit")
    assert len(errors) == 10


def test_sharegpt_rejects_non_utf8_bytes():
    """Bytes that are not UTF-8 are rejected with a clear message."""
    assert_error(rejected("sharegpt", b'[{"id": "\xff"}]'), "file", "encoding", "UTF-8")


def test_sharegpt_parses_100k_conversations():
    """A 100,000-conversation file parses and every conversation is kept."""
    dataset = parse("sharegpt", files.synthetic_sharegpt(100_000))
    assert len(dataset.conversations) == 100_000
    assert dataset.skipped == {}
    assert sum(len(c.turns) for c in dataset.conversations) == 33_334 + 2 * 33_333 + 3 * 33_333
    assert dataset.conversations[0].system == "Be brief."


# OpenAI chat


def test_openai_chat_parses_text_parts_references_and_max_tokens():
    """Text parts are joined, a trailing assistant message is the reference, max_tokens the last turn's length."""
    content = files.openai_chat(
        [
            {"messages": [{"role": "user", "content": "Summarise."}, {"role": "assistant", "content": "Done."}]},
            {
                "messages": [
                    {"role": "system", "content": "French."},
                    {"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]},
                ],
                "max_tokens": 32,
            },
        ]
    )
    dataset = parse("openai_chat", content)
    assert dataset.conversations == (
        Conversation("1", None, (Turn("Summarise.", reference="Done."),)),
        Conversation("2", "French.", (Turn("Hello", output_tokens=32),)),
    )


def test_openai_chat_rejects_images_tools_and_bad_max_tokens_by_line():
    """Image parts, tool roles, missing messages and a bad max_tokens are named by line and field."""
    user = {"role": "user", "content": "hi"}
    content = files.openai_chat(
        [
            {
                "messages": [
                    user,
                    {"role": "assistant", "content": "a"},
                    {"role": "user", "content": [{"type": "image_url"}]},
                ]
            },
            {"messages": [user, {"role": "tool", "content": "x"}]},
            {"messages": []},
            {"messages": [user], "max_tokens": 0},
            {"messages": [{"role": "robot", "content": "x"}]},
        ]
    )
    errors = rejected("openai_chat", content + b"not json\n")
    assert_error(errors, 1, "messages[2].content[0].type", "'image_url' is not supported")
    assert_error(errors, 2, "messages[1].role", "'tool' is not supported")
    assert_error(errors, 3, "messages", "non-empty")
    assert_error(errors, 4, "max_tokens", "integer")
    assert_error(errors, 5, "messages[0].role", "not a chat role")
    assert_error(errors, 6, "(line)", "JSON")


def test_openai_chat_counts_skips():
    """A line with two user messages in a row is skipped, not rejected."""
    content = files.openai_chat([{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}])
    assert parse("openai_chat", content).skipped == {"not_alternating": 1}


# Plain prompts


def test_prompts_jsonl_parses_one_turn_conversations():
    """Each line is a one-turn conversation with its optional output length and system prompt."""
    content = files.jsonl([{"prompt": "Haiku", "output_tokens": 48}, {"prompt": "Sort", "system": "Terse."}])
    assert parse("prompts_jsonl", content).conversations == (
        Conversation("1", None, (Turn("Haiku", output_tokens=48),)),
        Conversation("2", "Terse.", (Turn("Sort"),)),
    )


def test_prompts_jsonl_rejects_missing_empty_and_bad_lengths():
    """A missing or empty prompt and a bad output_tokens are named by line."""
    content = files.jsonl(
        [{"text": "x"}, {"prompt": ""}, {"prompt": "a", "output_tokens": 1.5}, {"prompt": "b", "output_tokens": True}]
    )
    errors = rejected("prompts_jsonl", content)
    assert_error(errors, 1, "prompt", "missing")
    assert_error(errors, 2, "prompt", "empty")
    assert_error(errors, 3, "output_tokens", "integer")
    assert_error(errors, 4, "output_tokens", "integer")


@pytest.mark.parametrize(("bom", "crlf"), [(False, False), (True, True)])
def test_prompts_csv_parses_with_bom_and_crlf(bom, crlf):
    """A BOM and CRLF line ends change nothing; an empty output_tokens cell means the default; rows start at 2."""
    content = files.csv_file(
        ["prompt", "output_tokens", "system"],
        [["Write a haiku\nabout rain", "48", ""], ["List sorts", "", "Terse."]],
        bom=bom,
        crlf=crlf,
    )
    assert parse("prompts_csv", content).conversations == (
        Conversation("2", None, (Turn("Write a haiku\nabout rain", output_tokens=48),)),
        Conversation("4", "Terse.", (Turn("List sorts"),)),
    )


def test_prompts_csv_rejects_a_header_without_prompt_and_unknown_columns():
    """The header is row 1: a missing prompt column and an unknown column are named there."""
    errors = rejected("prompts_csv", files.csv_file(["text", "output_tokens"], [["a", "1"]]))
    assert_error(errors, 1, "prompt", "no prompt column")
    assert_error(errors, 1, "text", "not a known column")


def test_prompts_csv_rejects_bad_rows_by_line():
    """Wrong cell counts, empty prompts, bad lengths and over-long prompts are named by CSV line."""
    rows = [["a", "1"], ["b"], ["", "5"], ["c", "0"], ["d", "-2"], ["x" * (PROMPT_MAX_CHARS + 1), ""]]
    errors = rejected("prompts_csv", files.csv_file(["prompt", "output_tokens"], rows, crlf=True))
    assert_error(errors, 3, "(row)", "cells")
    assert_error(errors, 4, "prompt", "empty")
    assert_error(errors, 5, "output_tokens", "integer")
    assert_error(errors, 6, "output_tokens", "integer")
    assert_error(errors, 7, "prompt", "limit")
    assert len(errors) == 5


def test_prompts_csv_rejects_non_utf8_bytes():
    """Latin-1 bytes are rejected as not UTF-8."""
    assert_error(rejected("prompts_csv", "prompt\ncafé\n".encode("latin-1")), "file", "encoding", "UTF-8")


# Mooncake


def test_mooncake_parses_rows_and_accepts_text_input():
    """Lengths, hash ids and sessions are kept; text_input stands for a literal prompt; block size is 512."""
    content = files.jsonl(
        [
            {"timestamp": 0, "input_length": 1100, "output_length": 40, "hash_ids": [0, 1, 2]},
            {"timestamp": 0, "input_length": 512, "output_length": 12, "hash_ids": [0]},
            {"timestamp": 250.5, "text_input": "Hello", "output_length": 9, "session_id": "u1"},
        ]
    )
    dataset = parse("mooncake", content)
    assert dataset.kind == "trace"
    assert dataset.block_size == 512
    assert dataset.rows == (
        TraceRow(0.0, 1100, None, 40, (0, 1, 2)),
        TraceRow(0.0, 512, None, 12, (0,)),
        TraceRow(250.5, None, "Hello", 9, (), "u1"),
    )
    assert dataset.notes == ()


def test_mooncake_sorts_unsorted_timestamps_stably_and_says_so():
    """Rows are put in time order, ties keep the file's order, a delay row follows its session, and a note says so."""
    content = files.jsonl(
        [
            {"timestamp": 300, "input_length": 5, "session_id": "a"},
            {"delay": 50, "input_length": 6, "session_id": "a"},
            {"timestamp": 100, "input_length": 7},
            {"timestamp": 100, "input_length": 8},
        ]
    )
    dataset = parse("mooncake", content)
    assert [r.input_tokens for r in dataset.rows] == [7, 8, 5, 6]
    assert dataset.rows[3].delay_ms == 50.0
    assert any("sorted" in note for note in dataset.notes)


def test_mooncake_block_rule_has_the_exact_error_text():
    """input_length must fit the hash_ids' blocks, the last one partial."""
    errors = rejected("mooncake", files.jsonl([{"timestamp": 0, "input_length": 1700, "hash_ids": [1, 2, 3]}]))
    assert errors == [(1, "hash_ids", "input_length 1700 needs 4 blocks of 512 (1537–2048 tokens); hash_ids has 3.")]


def test_mooncake_rejects_each_malformed_row():
    """Payload/messages rows, mixed timing, bad lengths, bad hash ids and missing timestamps are named by line."""
    rows = [
        {"timestamp": 0, "payload": {}, "input_length": 1},
        {"timestamp": 0, "messages": [], "input_length": 1},
        {"timestamp": 0, "delay": 5, "input_length": 1},
        {"timestamp": -1, "input_length": 1},
        {"timestamp": "soon", "input_length": 1},
        {"input_length": 1},
        {"timestamp": 0, "input_length": 0},
        {"timestamp": 0, "input_length": 10, "output_length": 0},
        {"timestamp": 0, "input_length": 10, "hash_ids": [1, -1]},
        {"timestamp": 0, "input_length": 10, "text_input": "x"},
        {"timestamp": 0, "text_input": "x", "hash_ids": [1]},
        {"timestamp": 0, "input_length": 10, "hash_ids": [1, 2]},
    ]
    errors = rejected("mooncake", files.jsonl(rows))
    assert_error(errors, 1, "payload", "not supported")
    assert_error(errors, 2, "messages", "not supported")
    assert_error(errors, 3, "delay", "together")
    assert_error(errors, 4, "timestamp", "≥ 0")
    assert_error(errors, 5, "timestamp", "number")
    assert_error(errors, 6, "timestamp", "missing")
    assert_error(errors, 7, "input_length", "integer")
    assert_error(errors, 8, "output_length", "integer")
    assert_error(errors, 9, "hash_ids", "integers")
    assert_error(errors, 10, "input_length", "exactly one")
    assert_error(errors, 11, "hash_ids", "only allowed")
    assert_error(errors, 12, "hash_ids", "needs 1 blocks")


# Azure


def test_azure_csv_makes_times_relative_sorts_and_floors_zero_outputs():
    """Offsets are ms from the earliest row after a stable sort; GeneratedTokens 0 becomes 1 and is noted."""
    content = files.azure_csv(
        [
            ("2023-11-16 18:15:50.9951690", 396, 109),
            ("2023-11-16 18:15:46.6805900", 374, 44),
            ("2023-11-16 18:15:47.6805900", 10, 0),
        ],
        bom=True,
        crlf=True,
    )
    dataset = parse("azure_csv", content)
    assert [r.input_tokens for r in dataset.rows] == [374, 10, 396]
    assert [r.output_tokens for r in dataset.rows] == [44, 1, 109]
    assert dataset.rows[0] == TraceRow(0.0, 374, None, 44)
    assert dataset.rows[1].t_ms == pytest.approx(1000.0)
    assert dataset.rows[2].t_ms == pytest.approx(4314.579)
    assert any("sorted" in note for note in dataset.notes)
    assert any("1 row(s) have GeneratedTokens 0" in note for note in dataset.notes)


def test_azure_csv_rejects_a_wrong_header():
    """The header must be TIMESTAMP,ContextTokens,GeneratedTokens (any case)."""
    errors = rejected("azure_csv", files.csv_file(["time", "input", "output"], [["2023-11-16 18:15:46", "1", "1"]]))
    assert_error(errors, 1, "(header)", "TIMESTAMP")
    assert parse("azure_csv", b"timestamp,contexttokens,generatedtokens\n2023-11-16 18:15:46,1,1\n").rows


def test_azure_csv_rejects_bad_cells_by_line():
    """Unparseable times, ContextTokens < 1 and negative GeneratedTokens are named by line and column."""
    rows = [("yesterday", 5, 5), ("2023-11-16 18:15:46", 0, 5), ("2023-11-16 18:15:46", 5, -1)]
    errors = rejected("azure_csv", files.azure_csv(rows))
    assert_error(errors, 2, "TIMESTAMP", "date")
    assert_error(errors, 3, "ContextTokens", "integer ≥ 1")
    assert_error(errors, 4, "GeneratedTokens", "integer ≥ 0")


# llmbench.trace/1


def test_llmbench_trace_parses_header_block_size_and_rows():
    """The header sets the block size; rows carry tokens or a prompt, and sessions."""
    content = files.llmbench_trace(
        [
            {"timestamp_ms": 0, "input_tokens": 700, "output_tokens": 64, "hash_ids": [10, 11, 12], "session_id": "u1"},
            {"timestamp_ms": 4200, "prompt": "and in Python?", "output_tokens": 128, "session_id": "u1"},
        ],
        block_size=256,
    )
    dataset = parse("llmbench_trace", content)
    assert dataset.block_size == 256
    assert dataset.rows == (
        TraceRow(0.0, 700, None, 64, (10, 11, 12), "u1"),
        TraceRow(4200.0, None, "and in Python?", 128, (), "u1"),
    )


def test_llmbench_trace_without_header_uses_512_blocks():
    """Without a header line the block size is 512, so 700 tokens need 2 hash ids."""
    errors = rejected(
        "llmbench_trace", files.llmbench_trace([{"timestamp_ms": 0, "input_tokens": 700, "hash_ids": [1, 2, 3]}])
    )
    assert errors == [(1, "hash_ids", "input_tokens 700 needs 2 blocks of 512 (513–1024 tokens); hash_ids has 3.")]


def test_llmbench_trace_rejects_bad_header_and_rows():
    """A wrong format name, a missing timestamp and an unknown field are named by line."""
    content = files.jsonl(
        [
            {"format": "llmbench.trace/9"},
            {"input_tokens": 5},
            {"timestamp_ms": 1, "input_tokens": 5, "colour": "red"},
        ]
    )
    errors = rejected("llmbench_trace", content)
    assert_error(errors, 1, "format", "llmbench.trace/1")
    assert_error(errors, 2, "timestamp_ms", "missing")
    assert_error(errors, 3, "colour", "not a trace field")


# Shared


def test_empty_file_and_unknown_format_are_rejected():
    """An empty file has no rows; an unknown format name is a 400, not a crash."""
    assert_error(rejected("prompts_jsonl", b"\n\n"), "file", "(root)", "no rows")
    assert_error(rejected("yaml", b"x"), "file", "format", "not a known format")


@pytest.mark.parametrize(
    ("content", "filename", "expected"),
    [
        (files.synthetic_sharegpt(2), "dump.json", "sharegpt"),
        (files.openai_chat([{"messages": [{"role": "user", "content": "hi"}]}]), "chat.jsonl", "openai_chat"),
        (files.jsonl([{"prompt": "hi"}]), "p.jsonl", "prompts_jsonl"),
        (files.csv_file(["prompt"], [["hi"]], bom=True), "p.csv", "prompts_csv"),
        (files.jsonl([{"timestamp": 0, "input_length": 5, "hash_ids": [0]}]), "m.jsonl", "mooncake"),
        (files.azure_csv([("2023-11-16 18:15:46", 1, 1)]), "AzureLLMInferenceTrace_conv.csv", "azure_csv"),
        (files.llmbench_trace([{"timestamp_ms": 0, "input_tokens": 5}], block_size=64), "t.jsonl", "llmbench_trace"),
        (b"hello", "notes.txt", None),
    ],
)
def test_detect_guesses_the_format(content, filename, expected):
    """The first record or header tells the format apart."""
    assert detect(content, filename) == expected


def test_a_csv_cell_past_the_csv_module_limit_is_a_row_error():
    """A cell too big for the csv module is named by its line instead of raising csv.Error."""
    content = files.csv_file(["prompt"], [["ok"], ["x" * (4 * PROMPT_MAX_CHARS + 1)]])
    assert_error(rejected("prompts_csv", content), 3, "(row)", "CSV")
