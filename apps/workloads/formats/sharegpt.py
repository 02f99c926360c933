"""ShareGPT JSON (design §2.1): an array of {"id"?, "conversations": [{"from", "value"}, ...]}."""

from collections import Counter

import orjson

from apps.workloads.engine.types import Conversation, ParsedDataset
from apps.workloads.formats import PROMPT_MAX_CHARS, check_text, conversation_from_messages, decode, reject_if_empty
from llmbench.uploads import ErrorList, FileRejected, RowError

# vllm benchmarks/multi_turn/convert_sharegpt_to_openai.py uses the same names.
ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "assistant": "assistant",
    "system": "system",
}


def parse_sharegpt(content: bytes) -> ParsedDataset:
    """Every well-formed item as a Conversation; irregular ones skipped by reason; malformed ones reject the file."""
    try:
        root = orjson.loads(decode(content))
    except orjson.JSONDecodeError as exc:
        raise FileRejected([RowError("file", "(root)", f"is not JSON ({exc}).")]) from None
    if not isinstance(root, list):
        raise FileRejected([RowError("file", "(root)", "is not a JSON array of conversations.")])
    errors = ErrorList()
    skipped: Counter = Counter()
    conversations: list[Conversation] = []
    for index, item in enumerate(root):
        conversation = _item(index, item, errors, skipped)
        if conversation is not None:
            conversations.append(conversation)
    reject_if_empty(len(root), errors, "conversations")
    errors.raise_if_any()
    return ParsedDataset(kind="conversations", conversations=tuple(conversations), skipped=dict(skipped))


def _item(index: int, item: object, errors: ErrorList, skipped: Counter) -> Conversation | None:
    """One item checked; a Conversation if it is well-formed and fit, else None (an error or a skip)."""
    if not isinstance(item, dict):
        errors.add(index, "(item)", f"is not a JSON object ({type(item).__name__}).")
        return None
    item_id = item.get("id")
    row: int | str = index if item_id is None else f"{index} (id {str(item_id)!r})"
    turns = item.get("conversations")
    if not isinstance(turns, list) or not turns:
        errors.add(row, "conversations", "is missing." if turns is None else "is not a non-empty list of turns.")
        return None
    system: str | None = None
    messages: list[tuple[str, str]] = []
    well_formed = True
    for j, turn in enumerate(turns):
        # The fast path: a 100,000-conversation dump holds half a million turns, nearly all of them fine.
        if isinstance(turn, dict):
            speaker, value = turn.get("from"), turn.get("value")
            role = ROLES.get(speaker.lower()) if isinstance(speaker, str) else None
            if role and isinstance(value, str) and len(value) <= PROMPT_MAX_CHARS and (role != "system" or j == 0):
                if role == "system":
                    system = value
                else:
                    messages.append((role, value))
                continue
        _turn_errors(row, j, turn, errors)
        well_formed = False
    if not well_formed:
        return None
    return conversation_from_messages(str(index if item_id is None else item_id), system, messages, skipped)


def _turn_errors(row: int | str, j: int, turn: object, errors: ErrorList) -> None:
    """Every problem of a turn the fast path refused, named by its field."""
    field = f"conversations[{j}]"
    if not isinstance(turn, dict):
        errors.add(row, field, f"is not a JSON object ({type(turn).__name__}).")
        return
    speaker = turn.get("from")
    check_text(turn.get("value"), row, f"{field}.value", errors, allow_empty=True)
    if not isinstance(speaker, str):
        errors.add(row, f"{field}.from", "is missing." if speaker is None else "is not a string.")
    elif speaker.lower() not in ROLES:
        errors.add(row, f"{field}.from", f"{speaker!r} is not a ShareGPT role (human, gpt, system …).")
    elif ROLES[speaker.lower()] == "system" and j != 0:
        errors.add(row, f"{field}.from", "system is only allowed as the first turn.")
