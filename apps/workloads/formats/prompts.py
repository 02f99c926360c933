"""Plain prompts (design §2.3): JSON Lines {"prompt", "output_tokens"?, "system"?} or a CSV with the same columns."""

from apps.workloads.engine.types import Conversation, ParsedDataset, Turn
from apps.workloads.formats import check_count, check_text, csv_records, decode, json_lines, reject_if_empty
from llmbench.uploads import ErrorList

COLUMNS = ("prompt", "output_tokens", "system")


def parse_prompts_jsonl(content: bytes) -> ParsedDataset:
    """One one-turn Conversation per line; other keys are ignored (vLLM's custom dataset carries some)."""
    errors = ErrorList()
    conversations = [
        _conversation(number, record.get("prompt"), record.get("output_tokens"), record.get("system"), errors)
        for number, record in json_lines(decode(content), errors)
    ]
    reject_if_empty(len(conversations), errors)
    errors.raise_if_any()
    return ParsedDataset(kind="conversations", conversations=tuple(c for c in conversations if c is not None))


def parse_prompts_csv(content: bytes) -> ParsedDataset:
    """One one-turn Conversation per data row; the header is line 1, so the first data row is row 2."""
    errors = ErrorList()
    records = csv_records(decode(content), errors)
    header = [name.strip().lower() for name in next(records, (1, []))[1]]
    for name in header:
        if name not in COLUMNS:
            errors.add(1, name or "(header)", f"is not a known column ({', '.join(COLUMNS)}).")
        elif header.count(name) > 1:
            errors.add(1, name, "appears more than once in the header.")
    if "prompt" not in header:
        errors.add(1, "prompt", "the header has no prompt column.")
    errors.raise_if_any()
    conversations: list[Conversation | None] = []
    for row, cells in records:
        if len(cells) != len(header):
            errors.add(row, "(row)", f"has {len(cells)} cells; the header has {len(header)}.")
            continue
        values = dict(zip(header, cells, strict=True))
        output = values.get("output_tokens", "").strip()
        output_tokens = (int(output) if output.isascii() and output.isdigit() else output) if output else None
        conversations.append(_conversation(row, values["prompt"], output_tokens, values.get("system") or None, errors))
    reject_if_empty(len(conversations), errors)
    errors.raise_if_any()
    return ParsedDataset(kind="conversations", conversations=tuple(c for c in conversations if c is not None))


def _conversation(
    row: int, prompt: object, output_tokens: object, system: object, errors: ErrorList
) -> Conversation | None:
    """A one-turn Conversation named by its row, or None with errors."""
    before = len(errors.items) + errors.more
    prompt = check_text(prompt, row, "prompt", errors)
    if output_tokens is not None:
        output_tokens = check_count(output_tokens, row, "output_tokens", errors)
    if system is not None:
        system = check_text(system, row, "system", errors, allow_empty=True)
    if len(errors.items) + errors.more > before:
        return None
    return Conversation(id=str(row), system=system or None, turns=(Turn(user=prompt, output_tokens=output_tokens),))
