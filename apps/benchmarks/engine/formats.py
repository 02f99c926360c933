"""CONTRACT STUB (helper H1 implements): the published benchmark file layouts, parsed into plain items.

Layouts (detected from the content, or forced by `kind`): GSM8K JSON Lines; MMLU per-subject CSV (no header)
and MMLU Parquet/JSON(L) (question, subject, choices, integer answer); MMLU-Pro Parquet/JSON(L); ARC JSON Lines;
HellaSwag JSON Lines; TruthfulQA MC1 JSON. Every bad row is named (row number from 1, field) in FormatError.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ParsedItem:
    question: str
    answer: str  # "A".."J" for multiple choice; the final number for GSM8K ("1234", "-3.5")
    choices: tuple[str, ...] = ()
    subject: str = ""
    rationale: str = ""
    source_id: str = ""


@dataclass
class ParsedSuite:
    kind: str  # apps.benchmarks.models.Kind value
    source_format: str  # e.g. "gsm8k-jsonl", "mmlu-csv", "mmlu-parquet", "mmlu-pro-parquet", "arc-jsonl"
    items: list[ParsedItem]
    warnings: list[str] = field(default_factory=list)


class FormatError(ValueError):
    """A file that cannot be imported; `problems` are 'row 12, field "answer": …' strings (first 20)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems[:5]))


def parse_suite_file(name: str, data: bytes, *, kind: str | None = None, subject: str = "") -> ParsedSuite:
    """Parse one uploaded file. `subject` names the subject of an MMLU per-subject CSV (default: from the
    file name, e.g. "abstract_algebra_test.csv" → "abstract_algebra")."""
    raise NotImplementedError
