"""Builders of workload files in their published shapes, from Python data (nothing copied from real dumps)."""

import csv
import io

import orjson


def jsonl(records: list[dict], *, crlf: bool = False) -> bytes:
    """JSON Lines: one object per line."""
    end = b"\r\n" if crlf else b"\n"
    return b"".join(orjson.dumps(record) + end for record in records)


def sharegpt_item(item_id: str | None, *turns: tuple[str, str]) -> dict:
    """One ShareGPT item from (from, value) pairs."""
    item: dict = {"conversations": [{"from": who, "value": text} for who, text in turns]}
    if item_id is not None:
        item["id"] = item_id
    return item


def sharegpt(items: list) -> bytes:
    """A ShareGPT JSON file: a top-level array of items."""
    return orjson.dumps(items)


def synthetic_sharegpt(n: int) -> bytes:
    """N generated conversations of 1–3 exchanges (every 10th opens with a system turn)."""
    items = []
    for i in range(n):
        turns = [{"from": "system", "value": "Be brief."}] if i % 10 == 0 else []
        for k in range(1 + i % 3):
            turns.append({"from": "human", "value": f"Question {k} of conversation {i}: what is {i} plus {k}?"})
            turns.append({"from": "gpt", "value": f"It is {i + k}."})
        items.append({"id": f"s{i}", "conversations": turns})
    return orjson.dumps(items)


def openai_chat(lines: list[dict]) -> bytes:
    """OpenAI chat JSON Lines: {"messages": [...], "max_tokens"?} per line."""
    return jsonl(lines)


def csv_file(header: list[str], rows: list[list], *, bom: bool = False, crlf: bool = False) -> bytes:
    """A CSV file with the given header and rows (csv module quoting)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(header)
    writer.writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode()


def azure_csv(rows: list[tuple[str, int, int]], **kwargs) -> bytes:
    """An Azure LLM inference trace: TIMESTAMP,ContextTokens,GeneratedTokens."""
    return csv_file(["TIMESTAMP", "ContextTokens", "GeneratedTokens"], [list(r) for r in rows], **kwargs)


def llmbench_trace(rows: list[dict], block_size: int | None = None) -> bytes:
    """llmbench.trace/1 JSON Lines, with the header line when `block_size` is given."""
    header = [{"format": "llmbench.trace/1", "block_size": block_size}] if block_size is not None else []
    return jsonl(header + rows)
