"""CONTRACT STUB (helper H5 implements): two measured scores compared on the same items.

Points lost with a paired 95% interval (Newcombe's hybrid score interval for a difference of paired
proportions, method 10), McNemar's exact test (scipy.stats.binomtest on the discordant pairs, p = 0.5),
answer agreement, and which items flipped.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Paired:
    n: int
    a_correct: int
    b_correct: int
    difference_pts: float  # (b − a) accuracy, in points (percent)
    ci_low_pts: float
    ci_high_pts: float
    b_only: int  # right in b, wrong in a
    a_only: int
    mcnemar_p: float
    agreement: float | None  # share of items with the same extracted answer (None without digests)
    flipped: list[int]  # item indices whose correctness differs


def paired_comparison(a_outcomes: bytes, b_outcomes: bytes, n: int, *, a_digests: bytes | None = None,
                      b_digests: bytes | None = None) -> Paired:  # fmt: skip
    raise NotImplementedError
