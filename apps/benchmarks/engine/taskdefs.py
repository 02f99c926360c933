"""CONTRACT STUB (helper H2 implements): each benchmark's task as run here, following its reference
evaluation for chat models: the prompt (zero- or k-shot, chat messages), the answer extraction (documented
regular expressions) and the scoring. Pure functions of plain items (apps.benchmarks.engine.formats.ParsedItem).
"""

from apps.benchmarks.engine.formats import ParsedItem


def build_messages(kind: str, item: ParsedItem, shots: list[ParsedItem]) -> list[dict[str, str]]:
    """The chat messages asking `item`, with `shots` (already chosen: same subject first) as worked examples."""
    raise NotImplementedError


def extract_answer(kind: str, text: str, item: ParsedItem) -> str:
    """The answer the response gives ('' when none can be extracted: counted as wrong, "no answer")."""
    raise NotImplementedError


def is_correct(kind: str, extracted: str, item: ParsedItem) -> bool:
    raise NotImplementedError


def task_definition(kind: str, shots: int) -> dict:
    """What is recorded on the suite/run and shown on the page: template, regexes, scoring, reference."""
    raise NotImplementedError


def default_max_tokens(kind: str) -> int:
    raise NotImplementedError
