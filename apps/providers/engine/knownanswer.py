"""CONTRACT STUB (helper H3 implements): known-answer mode of mockllm and of the sim provider.

Given a suite's answer key (JSON Lines from GET /api/v1/benchmark-suites/{id}/answer-key: {"index", "question",
"choices", "answer", "subject"}) and a target accuracy (one number, or per subject), answers each benchmark
question deterministically from a seed in a chosen style, so a test knows the exact expected accuracy:
per subject exactly round(accuracy × items) items are answered right (chosen by the seed), and of the others
round(no_answer_rate × items) give no extractable answer.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyEntry:
    index: int
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    subject: str = ""


class KnownAnswers:
    STYLES = ("cot", "letter", "gsm8k", "auto")

    def __init__(self, entries: list[KeyEntry], *, accuracy: float | dict[str, float] = 1.0, style: str = "auto",
                 no_answer_rate: float = 0.0, seed: int = 0):  # fmt: skip
        raise NotImplementedError

    def reply(self, prompt: str) -> str | None:
        """The answer text for the last key question found in `prompt` (None: not a key question)."""
        raise NotImplementedError

    def expected_accuracy(self, indices: list[int] | None = None) -> float:
        """Exactly the share of `indices` (default: all) this mode answers right."""
        raise NotImplementedError


def load_key(path: str) -> list[KeyEntry]:
    raise NotImplementedError
