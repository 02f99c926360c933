"""Plain values shared by the file parsers (apps/workloads/formats) and the request planner.

Frozen so that a parsed dataset can be cached and handed to many plans without copies."""

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Turn:
    """One user message and what is known of its answer.

    `reference` is the dataset's own answer text; `ref_output_tokens` is its token length, filled in later by
    a tokenizer (the parsers never tokenize); `output_tokens` is a length the file fixes (e.g. `max_tokens`)."""

    user: str
    ref_output_tokens: int | None = None
    output_tokens: int | None = None
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    """A system prompt (or none) and the user turns, in order."""

    id: str
    system: str | None
    turns: tuple[Turn, ...]


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One request of a trace: when (ms from the trace start, or a delay after the session's previous turn),
    how long (tokens, or a literal prompt), and which prefix blocks it shares (`hash_ids`)."""

    t_ms: float | None
    input_tokens: int | None
    prompt: str | None
    output_tokens: int | None
    hash_ids: tuple[int, ...] = ()
    session: str | None = None
    delay_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ParsedDataset:
    """What a parser read: conversations (datasets) or rows (traces), what it skipped by reason, and notes
    for the preview (e.g. "timestamps were sorted"). `block_size` is the tokens per hash id, for traces."""

    kind: Literal["conversations", "trace"]
    conversations: tuple[Conversation, ...] = ()
    rows: tuple[TraceRow, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    block_size: int | None = None
