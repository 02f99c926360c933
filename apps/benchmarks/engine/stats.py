"""Accuracy with its intervals, per subject, and seeded stratified subsets of a suite's items.

* Wilson's score interval (95% by default, z from scipy.stats.norm.ppf): unlike the normal approximation it
  stays inside [0, 1] and is not empty at 0% or 100%, so small subsets and per-subject figures are honest.
* The standard error as lm-evaluation-harness reports it beside its accuracies (`mean_stderr`: the sample standard
  deviation, ddof=1, of the 0/1 outcomes over √n), so a measured score and an imported lm-eval score carry the
  same kind of ± figure. For 0/1 outcomes that is √(p(1−p)/(n−1)).
* Stratified subsets: the subset size shared among subjects by largest remainder (one each first, while the size
  allows), each subject's items drawn with numpy's default_rng(seed): the same indices on every machine.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True)
class Accuracy:
    n: int  # items scored (answered: failed requests are not scored)
    correct: int
    no_answer: int
    accuracy: float | None  # correct / n, 0–1
    ci_low: float | None  # Wilson 95%, 0–1
    ci_high: float | None
    stderr: float | None  # lm-evaluation-harness: sample standard deviation / sqrt(n)

    @property
    def no_answer_rate(self) -> float | None:
        return self.no_answer / self.n if self.n else None


def wilson_interval(correct: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for correct/n (n > 0), clipped to [0, 1] against rounding."""
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high


def lm_eval_stderr(correct: int, n: int) -> float | None:
    """lm-eval's mean_stderr of the 0/1 outcomes: sample stdev (ddof=1) / √n; None below two items."""
    if n < 2:
        return None
    p = correct / n
    return math.sqrt(p * (1 - p) / (n - 1))


def accuracy(correct: int, n: int, no_answer: int = 0, *, confidence: float = 0.95) -> Accuracy:
    """Accuracy of `correct` out of `n` scored items; every figure None when nothing was scored."""
    if not 0 <= correct <= n or not 0 <= no_answer <= n - correct:
        raise ValueError(f"need 0 ≤ correct ≤ n and 0 ≤ no answer ≤ n − correct (got {correct}, {no_answer}, {n})")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (got {confidence})")
    if n == 0:
        return Accuracy(n=0, correct=0, no_answer=0, accuracy=None, ci_low=None, ci_high=None, stderr=None)
    low, high = wilson_interval(correct, n, confidence=confidence)
    return Accuracy(n=n, correct=correct, no_answer=no_answer, accuracy=correct / n, ci_low=low, ci_high=high,
                    stderr=lm_eval_stderr(correct, n))  # fmt: skip


def accuracy_by_subject(
    subjects: list[str], correct: list[bool], no_answer: list[bool], *, confidence: float = 0.95
) -> list[tuple[str, Accuracy]]:
    """Accuracy per subject of scored items (three parallel lists), subjects in name order."""
    if not len(subjects) == len(correct) == len(no_answer):
        raise ValueError("subjects, correct and no_answer must have the same length")
    counts: dict[str, list[int]] = {}
    for subject, right, missing in zip(subjects, correct, no_answer, strict=True):
        tally = counts.setdefault(subject, [0, 0, 0])
        tally[0] += 1
        tally[1] += bool(right)
        tally[2] += bool(missing) and not right
    return [(subject, accuracy(tally[1], tally[0], tally[2], confidence=confidence))
            for subject, tally in sorted(counts.items())]  # fmt: skip


def _largest_remainder(total: int, weights: dict[str, int]) -> dict[str, int]:
    """`total` shared in proportion to `weights` (integers, exact arithmetic): floors, then one more each to the
    largest remainders (ties: the larger weight, then the name)."""
    weight_sum = sum(weights.values())
    if total <= 0 or weight_sum == 0:
        return dict.fromkeys(weights, 0)
    shares = {name: total * weight // weight_sum for name, weight in weights.items()}
    left = total - sum(shares.values())
    by_remainder = sorted(weights, key=lambda name: (-(total * weights[name] % weight_sum), -weights[name], name))
    for name in by_remainder[:left]:
        shares[name] += 1
    return shares


def subset_allocation(counts: dict[str, int], size: int) -> dict[str, int]:
    """How many items each subject gives to a subset of `size`: one each first while the size allows, the rest in
    proportion to the items left (largest remainder); never more than a subject has."""
    total = sum(counts.values())
    size = max(0, min(size, total))
    if size >= len(counts):
        rest = _largest_remainder(size - len(counts), {name: count - 1 for name, count in counts.items()})
        return {name: 1 + rest[name] for name in counts}
    return _largest_remainder(size, counts)


def stratified_subset(subjects: list[str], size: int, seed: int) -> list[int]:
    """Indices (into `subjects`) of a subset of `size` items, allocated to subjects in proportion (largest
    remainder, at least one per subject while size allows), drawn with numpy's default_rng(seed); sorted."""
    if size >= len(subjects):
        return list(range(len(subjects)))
    if size <= 0:
        return []
    by_subject: dict[str, list[int]] = {}
    for index, subject in enumerate(subjects):
        by_subject.setdefault(subject, []).append(index)
    allocation = subset_allocation({name: len(indices) for name, indices in by_subject.items()}, size)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for name in sorted(by_subject):
        if allocation[name]:
            picked = rng.choice(np.asarray(by_subject[name]), size=allocation[name], replace=False)
            chosen.extend(int(index) for index in picked)
    return sorted(chosen)
