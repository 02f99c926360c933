"""Prompt lengths without a tokenizer: fit the server's token count against words, or estimate from characters.

A probe sends prompts of a few word counts with `max_tokens=1` and reads `usage.prompt_tokens`; the line
`prompt_tokens = a + b · words` (`numpy.polyfit`, degree 1) gives the template overhead `a` and the tokens per
word `b`. A target of T tokens then needs `round((T − a) / b)` words.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

MIN_DISTINCT_POINTS = 3


@dataclass(frozen=True, slots=True)
class CalibrationFit:
    """The fitted line `prompt_tokens = overhead_tokens + tokens_per_word · words`, its r² and the probe samples."""

    overhead_tokens: float
    tokens_per_word: float
    r2: float
    samples: tuple[tuple[int, int], ...]

    def words_for(self, tokens: int) -> int:
        """Words to send for a prompt of `tokens` server tokens (at least 1)."""
        return max(1, round((tokens - self.overhead_tokens) / self.tokens_per_word))

    def as_dict(self) -> dict:
        """What a run stores in `token_calibration`, labelled "calibrated" in the UI."""
        return {
            "method": "probe",
            "tokens_per_word": self.tokens_per_word,
            "overhead_tokens": self.overhead_tokens,
            "r2": self.r2,
            "samples": [list(s) for s in self.samples],
        }


def fit_calibration(samples: Sequence[tuple[int, int]]) -> CalibrationFit:
    """Fit from (words, prompt_tokens) pairs; ValueError when there are fewer than 3 distinct word counts or the
    tokens do not grow with the words (b ≤ 0), since either would send prompts of a meaningless length."""
    pairs = tuple((int(w), int(t)) for w, t in samples)
    distinct = len({w for w, _ in pairs})
    if distinct < MIN_DISTINCT_POINTS:
        raise ValueError(
            f"calibration needs at least {MIN_DISTINCT_POINTS} distinct word counts, got {distinct} "
            f"({len(pairs)} samples)"
        )
    words = np.array([w for w, _ in pairs], dtype=float)
    tokens = np.array([t for _, t in pairs], dtype=float)
    b, a = np.polyfit(words, tokens, 1)
    if not b > 0:
        raise ValueError(
            f"calibration slope is {b:.4g} tokens per word: the server's counts do not grow with the prompt"
        )
    residual = float(np.sum((tokens - (a + b * words)) ** 2))
    spread = float(np.sum((tokens - tokens.mean()) ** 2))
    r2 = 1.0 - residual / spread if spread > 0 else 1.0
    return CalibrationFit(overhead_tokens=float(a), tokens_per_word=float(b), r2=r2, samples=pairs)


class TokenEstimate(NamedTuple):
    """A token count and how it was obtained ("estimated" for chars/4)."""

    tokens: int
    label: str


def chars_estimate(text: str) -> TokenEstimate:
    """ceil(characters / 4): the rough rule when the server reports no usage, labelled "estimated"."""
    return TokenEstimate(math.ceil(len(text) / 4), "estimated")
