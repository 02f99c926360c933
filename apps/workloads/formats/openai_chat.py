"""OpenAI chat JSON Lines (design §2.2): {"messages": [{"role", "content"}], "max_tokens"?} per line."""

from collections import Counter

from apps.workloads.engine.types import Conversation, ParsedDataset
from apps.workloads.formats import (
    check_count,
    check_text,
    conversation_from_messages,
    decode,
    json_lines,
    reject_if_empty,
)
from llmbench.uploads import ErrorList

ROLES = ("system", "user", "assistant")
UNSUPPORTED_ROLES = ("tool", "function", "developer")


def parse_openai_chat(content: bytes) -> ParsedDataset:
    """One Conversation per line; each user message is a turn, a following assistant message its reference."""
    errors = ErrorList()
    skipped: Counter = Counter()
    conversations: list[Conversation] = []
    lines = 0
    for number, record in json_lines(decode(content), errors):
        lines += 1
        conversation = _line(number, record, errors, skipped)
        if conversation is not None:
            conversations.append(conversation)
    reject_if_empty(lines, errors)
    errors.raise_if_any()
    return ParsedDataset(kind="conversations", conversations=tuple(conversations), skipped=dict(skipped))


def _line(number: int, record: dict, errors: ErrorList, skipped: Counter) -> Conversation | None:
    """One line checked; a Conversation if well-formed and fit, else None (an error or a skip)."""
    before = len(errors.items) + errors.more
    max_tokens = record.get("max_tokens")
    if max_tokens is not None:
        check_count(max_tokens, number, "max_tokens", errors)
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        errors.add(number, "messages", "is missing." if messages is None else "is not a non-empty list of messages.")
        return None
    system: str | None = None
    pairs: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(message, dict):
            errors.add(number, field, f"is not a JSON object ({type(message).__name__}).")
            continue
        role = message.get("role")
        text = _content(message.get("content"), number, f"{field}.content", errors)
        if role in UNSUPPORTED_ROLES:
            errors.add(number, f"{field}.role", f"{role!r} is not supported (only system, user and assistant).")
        elif role not in ROLES:
            errors.add(number, f"{field}.role", f"{role!r} is not a chat role (system, user, assistant).")
        elif role == "system" and i != 0:
            errors.add(number, f"{field}.role", "system is only allowed as the first message.")
        elif text is not None and role == "system":
            system = text
        elif text is not None:
            pairs.append((role, text))
    if len(errors.items) + errors.more > before:
        return None
    return conversation_from_messages(str(number), system, pairs, skipped, last_output_tokens=max_tokens)


def _content(content: object, row: int, field: str, errors: ErrorList) -> str | None:
    """A message's text: the string itself, or its text parts joined; None with an error otherwise."""
    if not isinstance(content, list):
        return check_text(content, row, field, errors, allow_empty=True)
    texts: list[str] = []
    for k, part in enumerate(content):
        if not isinstance(part, dict):
            errors.add(row, f"{field}[{k}]", f"is not a JSON object ({type(part).__name__}).")
        elif part.get("type") != "text":
            errors.add(row, f"{field}[{k}].type", f"{part.get('type')!r} is not supported (only text parts).")
        elif (text := check_text(part.get("text"), row, f"{field}[{k}].text", errors, allow_empty=True)) is not None:
            texts.append(text)
    return check_text("".join(texts), row, field, errors, allow_empty=True)
