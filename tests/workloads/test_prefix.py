"""Shared prefixes: bucket weights, identical prefix bytes, exact joins, Mooncake blocks and prefix_share."""

import math
import re
from collections import Counter

import numpy as np
import pytest

from apps.workloads.engine.prefix import (
    BlockCache,
    assign_prefixes,
    block_rule_error,
    build_prefixes,
    join_prefix,
    mooncake_prompt,
    parse_buckets,
    prefix_share,
    prefix_weights,
    validate_buckets,
)
from apps.workloads.engine.tokens import ExactText

BUCKETS = [{"weight": 3, "count": 4, "tokens": 120}, {"weight": 1, "count": 1, "tokens": 40}]


@pytest.mark.parametrize(
    ("buckets", "message"),
    [
        ([], "prefix.buckets: must be a non-empty list"),
        ([{"weight": 1, "count": 0, "tokens": 10}], "prefix.buckets[0].count: must be a positive integer"),
        (
            [BUCKETS[0], {"weight": 1.5, "count": 1, "tokens": 10}],
            "prefix.buckets[1].weight: must be a positive integer",
        ),
        ([{"weight": 1, "count": 1}], "prefix.buckets[0].tokens: must be a positive integer"),
        ([{"weight": 1, "count": 1, "tokens": 5, "size": 2}], "prefix.buckets[0].size: unknown key"),
    ],
)
def test_bucket_validation_names_the_path(buckets, message):
    """Each bad bucket field is reported with its index and key."""
    errors = validate_buckets(buckets, "prefix.buckets")
    assert any(e.startswith(message) for e in errors), errors
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_buckets(buckets)


def test_weights_are_split_among_a_buckets_prefixes():
    """Weight 3 over 4 prefixes and weight 1 over 1: integer weights 3,3,3,3 and 4 (lcm 4, gcd 1)."""
    assert prefix_weights(parse_buckets(BUCKETS)) == [3, 3, 3, 3, 4]
    assert prefix_weights(parse_buckets([{"weight": 2, "count": 1, "tokens": 5}] * 2)) == [1, 1]


def test_assign_prefixes_honours_the_weights():
    """Over many sessions bucket 0 gets 3/4 of them and each of its prefixes about 3/16; seeded."""
    buckets = parse_buckets(BUCKETS)
    n = 16_000
    picks = assign_prefixes(buckets, n, np.random.default_rng(4))
    assert picks == assign_prefixes(buckets, n, np.random.default_rng(4))
    counts = Counter(picks)
    assert set(counts) == {(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)}
    tolerance = 5 * math.sqrt(0.25 * 0.75 / n)
    assert abs(counts[1, 0] / n - 0.25) < tolerance
    for j in range(4):
        assert abs(counts[0, j] / n - 3 / 16) < 5 * math.sqrt(3 / 16 * 13 / 16 / n)


def test_prefixes_are_exact_distinct_and_the_same_bytes_every_time(exact_text, test_counter):
    """Each prefix has its bucket's token count, differs from the others, and is rebuilt byte for byte."""
    buckets = parse_buckets(BUCKETS)
    first = build_prefixes(buckets, 11, exact_text)
    again = build_prefixes(buckets, 11, exact_text)
    assert first == again
    assert len({text for text, _ in first.values()}) == 5
    for (i, _), (text, delivered) in first.items():
        assert delivered == buckets[i].tokens == len(test_counter.encode(text))
    assert build_prefixes(buckets, 12, exact_text) != first


def test_join_keeps_the_prefix_bytes_and_hits_the_total(exact_text, test_counter):
    """prefix + "\\n\\n" + suffix starts with the prefix bytes and totals prefix tokens + the suffix target."""
    prefix, prefix_tokens = build_prefixes(parse_buckets(BUCKETS), 11, exact_text)[0, 2]
    rng = np.random.default_rng(8)
    suffixes = set()
    for target in rng.integers(3, 600, size=200):
        text, delivered = join_prefix(prefix, int(target), test_counter, exact_text, rng)
        assert text.startswith(prefix + "\n\n")
        assert delivered == prefix_tokens + target == len(test_counter.encode(text))
        suffixes.add(text[len(prefix) : len(prefix) + 30])
    assert len(suffixes) > 150  # suffixes open at different words


def test_a_suffix_shorter_than_the_separator_is_reported(exact_text, test_counter):
    """When the separator alone is longer than the suffix target, the miss is returned and counted."""
    prefix, prefix_tokens = exact_text.make(50, np.random.default_rng(1))
    separator_tokens = len(test_counter.encode("\n\n"))
    assert separator_tokens == 2  # the test tokenizer never saw a newline
    text, delivered = join_prefix(prefix, 1, test_counter, exact_text, np.random.default_rng(2))
    assert text.startswith(prefix) and delivered == prefix_tokens + 2
    assert exact_text.mismatches == 1


def test_mooncake_rows_sharing_ids_share_bytes(exact_text, test_counter):
    """Rows with the same leading hash ids share those blocks' bytes; every prompt has input_length tokens."""
    cache = BlockCache(exact_text, seed=3)
    a, na = mooncake_prompt([0, 1, 2], 1100, 512, cache)
    b, nb = mooncake_prompt([0, 3], 600, 512, cache)
    c, nc = mooncake_prompt([0, 1, 4], 1030, 512, cache)
    assert (na, nb, nc) == (1100, 600, 1030)
    block0, block01 = cache.text(0, 512), cache.text(0, 512) + cache.text(1, 512)
    assert a.startswith(block01) and c.startswith(block01) and b.startswith(block0)
    assert not b.startswith(block01)
    assert len(test_counter.encode(block0)) == 512
    # a new cache over a new ExactText rebuilds the same bytes
    assert mooncake_prompt([0, 1, 2], 1100, 512, BlockCache(ExactText(test_counter), seed=3))[0] == a


def test_mooncake_last_block_is_the_remainder(exact_text, test_counter):
    """The last block holds input_length − (n − 1)·block_size tokens, over many random rows."""
    cache = BlockCache(exact_text, seed=1)
    rng = np.random.default_rng(9)
    exact = 0
    for _ in range(150):
        k = int(rng.integers(1, 5))
        length = int(rng.integers((k - 1) * 64 + 1, k * 64 + 1))
        ids = [int(i) for i in rng.integers(0, 12, size=k)]
        text, delivered = mooncake_prompt(ids, length, 64, cache)
        assert text.endswith(cache.text(ids[-1], length - (k - 1) * 64))
        exact += delivered == length
    assert exact >= 148


@pytest.mark.parametrize(
    ("n_ids", "length", "error"),
    [
        (3, 1700, "input_length 1700 needs 4 blocks of 512 (1537–2048 tokens); hash_ids has 3"),
        (3, 1024, "input_length 1024 needs 2 blocks of 512 (513–1024 tokens); hash_ids has 3"),
        (3, 1025, None),
        (3, 1536, None),
    ],
)
def test_block_rule(n_ids, length, error, exact_text):
    """The block rule's message names the length, the blocks needed and the ids given; mooncake_prompt enforces it."""
    assert block_rule_error(n_ids, length, 512) == error
    if error:
        with pytest.raises(ValueError, match="needs"):
            mooncake_prompt(list(range(n_ids)), length, 512, BlockCache(exact_text))


def test_prefix_share_counts_tokens_already_sent_as_a_prefix():
    """Each request counts its longest common prefix with any earlier request, over all input tokens."""
    assert prefix_share([]) == 0.0
    assert prefix_share([[1, 2, 3], [4, 5, 6]]) == 0.0
    # second shares 2 with the first; third shares 3 with the second (not only its neighbour in time)
    prompts = [[1, 2, 3, 4], [1, 2, 9, 9, 9], [1, 2, 9, 7], [5, 6]]
    assert prefix_share(prompts) == pytest.approx((0 + 2 + 3 + 0) / 15)
    assert prefix_share([[1, 2], [1, 2], [1, 2, 3]]) == pytest.approx((0 + 2 + 2) / 7)
