"""CONTRACT STUB (helper H2 implements): accuracy with intervals, per subject, and seeded stratified subsets."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Accuracy:
    n: int  # items scored (answered: failed requests are not scored)
    correct: int
    no_answer: int
    accuracy: float | None  # correct / n, 0–1
    ci_low: float | None  # Wilson 95%, 0–1
    ci_high: float | None
    stderr: float | None  # lm-evaluation-harness: sample standard deviation / sqrt(n)


def accuracy(correct: int, n: int, no_answer: int = 0, *, confidence: float = 0.95) -> Accuracy:
    raise NotImplementedError


def stratified_subset(subjects: list[str], size: int, seed: int) -> list[int]:
    """Indices (into `subjects`) of a subset of `size` items, allocated to subjects in proportion (largest
    remainder, at least one per subject while size allows), drawn with numpy's default_rng(seed); sorted."""
    raise NotImplementedError
