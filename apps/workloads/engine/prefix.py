"""Shared prompt prefixes: synthetic prefix buckets, Mooncake hash-id blocks, and the share of tokens a cache could hit.

Prefixes are generated once each and then reused verbatim, so requests that share one send identical bytes, and a
server with prefix caching sees identical leading tokens.
"""

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from apps.workloads.engine.tokens import ExactText, TokenCounter

SEPARATOR = "\n\n"
MOONCAKE_BLOCK_SIZE = 512
BLOCK_TAG_MIN_TOKENS = 16


@dataclass(frozen=True, slots=True)
class PrefixBucket:
    """`count` distinct prefixes of `tokens` content tokens, together drawn with relative `weight`."""

    weight: int
    count: int
    tokens: int


def validate_buckets(buckets: Any, path: str) -> list[str]:
    """Problems with a `[{weight, count, tokens}]` list, each naming its path (`prefix.buckets[1].count: …`)."""
    if not isinstance(buckets, list) or not buckets:
        return [f"{path}: must be a non-empty list of {{weight, count, tokens}}"]
    errors = []
    for i, bucket in enumerate(buckets):
        where = f"{path}[{i}]"
        if not isinstance(bucket, dict):
            errors.append(f"{where}: must be an object with weight, count and tokens")
            continue
        errors += [f"{where}.{key}: unknown key" for key in sorted(bucket.keys() - {"weight", "count", "tokens"})]
        for key in ("weight", "count", "tokens"):
            value = bucket.get(key)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                errors.append(f"{where}.{key}: must be a positive integer")
    return errors


def parse_buckets(buckets: Any, path: str = "prefix.buckets") -> list[PrefixBucket]:
    """Validated buckets; ValueError listing every problem."""
    errors = validate_buckets(buckets, path)
    if errors:
        raise ValueError("; ".join(errors))
    return [PrefixBucket(b["weight"], b["count"], b["tokens"]) for b in buckets]


def prefix_weights(buckets: Sequence[PrefixBucket]) -> list[int]:
    """Integer weight of each prefix, in bucket order: a bucket's weight is split evenly among its prefixes.

    As guidellm does, scale by the lcm of the counts so every share is an integer, then divide by the gcd.
    """
    scale = math.lcm(*(b.count for b in buckets))
    per_prefix = [scale * b.weight // b.count for b in buckets]
    divisor = math.gcd(*per_prefix)
    return [w // divisor for b, w in zip(buckets, per_prefix, strict=True) for _ in range(b.count)]


def assign_prefixes(
    buckets: Sequence[PrefixBucket], n_sessions: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """(bucket index, prefix index within the bucket) for each session, drawn by the prefixes' weights."""
    keys = [(i, j) for i, b in enumerate(buckets) for j in range(b.count)]
    weights = np.asarray(prefix_weights(buckets), dtype=float)
    picks = rng.choice(len(keys), size=n_sessions, p=weights / weights.sum())
    return [keys[k] for k in picks]


def build_prefixes(
    buckets: Sequence[PrefixBucket], seed: int, exact_text: ExactText
) -> dict[tuple[int, int], tuple[str, int]]:
    """Every prefix once: {(bucket, index): (text, delivered tokens)}.

    Each one draws from its own generator seeded by (seed, bucket, index), so the bytes are the same on every call
    and do not depend on how many buckets come before it.
    """
    prefixes = {}
    for i, bucket in enumerate(buckets):
        for j in range(bucket.count):
            rng = np.random.default_rng([seed, i, j])
            prefixes[i, j] = exact_text.make(bucket.tokens, rng)
    return prefixes


def join_prefix(
    prefix: str,
    suffix_target_tokens: int,
    counter: TokenCounter,
    exact_text: ExactText,
    rng: np.random.Generator,
) -> tuple[str, int]:
    """(prefix + "\\n\\n" + suffix, delivered) whose total is the prefix's tokens + `suffix_target_tokens`.

    The prefix bytes are kept as they are; the separator counts against the suffix, which is cut from the corpus
    at a random word and trimmed or extended until the whole re-encodes to the target.
    """
    total = len(counter.encode(prefix)) + suffix_target_tokens
    return exact_text.fit(prefix + SEPARATOR, total, exact_text.start(rng))


def block_rule_error(n_hash_ids: int, input_length: int, block_size: int) -> str | None:
    """Why `input_length` does not fit `n_hash_ids` blocks of `block_size`, or None when it does.

    The last block holds `input_length − (n − 1) · block_size` tokens, which must be in [1, block_size].
    """
    needed = max(1, math.ceil(input_length / block_size))
    if n_hash_ids == needed:
        return None
    low, high = (needed - 1) * block_size + 1, needed * block_size
    return f"input_length {input_length} needs {needed} blocks of {block_size} ({low}–{high} tokens); hash_ids has {n_hash_ids}"


class BlockCache:
    """Text of each Mooncake block, made once per (hash id, length) from a generator seeded by (seed, hash id).

    A truncated last block starts where the full block of the same id starts, so it reads as its beginning.
    Each block opens with "Block <id>: " (when it has room, BLOCK_TAG_MIN_TOKENS): the corpus has under 700 word
    starts, so two ids would otherwise often draw the same start and share their text, a cache hit the trace
    does not hold.
    """

    def __init__(self, exact_text: ExactText, seed: int = 0):
        self.exact_text = exact_text
        self.seed = seed
        self.texts: dict[tuple[int, int], str] = {}

    def text(self, hash_id: int, n_tokens: int) -> str:
        key = (hash_id, n_tokens)
        if key not in self.texts:
            start = self.exact_text.start(np.random.default_rng([self.seed, hash_id]))
            head = f"Block {hash_id}: " if n_tokens >= BLOCK_TAG_MIN_TOKENS else ""
            self.texts[key] = self.exact_text.fit(head, n_tokens, start)[0]
        return self.texts[key]


def mooncake_prompt(
    hash_ids: Sequence[int], input_length: int, block_size: int, block_cache: BlockCache
) -> tuple[str, int]:
    """(prompt, delivered tokens) for a Mooncake row: the blocks' texts joined, the last cut to the remainder.

    Rows that share leading hash ids share those blocks byte for byte. ValueError when the block rule is broken.
    """
    error = block_rule_error(len(hash_ids), input_length, block_size)
    if error:
        raise ValueError(error)
    last = input_length - (len(hash_ids) - 1) * block_size
    parts = [block_cache.text(h, block_size) for h in hash_ids[:-1]]
    parts.append(block_cache.text(hash_ids[-1], last))
    text = "".join(parts)
    return text, len(block_cache.exact_text.counter.encode(text))


def prefix_share(prompts_token_ids: Sequence[Sequence[int]]) -> float:
    """Σ tokens of each request already sent as the prefix of an earlier request ÷ Σ input tokens.

    This is the ceiling of a prefix cache's hit rate. The longest common prefix with any earlier request is the
    longest with one of its neighbours in sorted order, so the earlier requests are kept sorted.
    """
    seen: list[tuple[int, ...]] = []
    shared = total = 0
    for ids in prompts_token_ids:
        key = tuple(int(i) for i in ids)
        total += len(key)
        at = bisect.bisect_left(seen, key)
        neighbours = seen[max(at - 1, 0) : at + 1]
        shared += max((_common_prefix(key, other) for other in neighbours), default=0)
        seen.insert(at, key)
    return shared / total if total else 0.0


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0])
