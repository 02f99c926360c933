"""A tiny byte-level BPE tokenizer trained offline, so that token tests need no download."""

import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SYLLABLES = ["ka", "lo", "mi", "ten", "ra", "su", "vo", "pe", "dun", "ish", "or", "al", "the", "and", "ing", "st"]
COMMON = ["the", "a", "of", "and", "to", "in", "is", "was", "for", "on", "with", "at", "by", "it", "that"]


def _generated_lines(count: int, seed: int = 13):
    """Made-up words and common English ones, with punctuation and numbers, so the vocabulary is varied."""
    rng = random.Random(seed)
    for _ in range(count):
        words = []
        for _ in range(rng.randint(5, 15)):
            if rng.random() < 0.4:
                words.append(rng.choice(COMMON))
            else:
                words.append("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))))
        yield " ".join(words) + rng.choice([".", ",", "!", "?", f" {rng.randint(0, 999)}."])


def tokenizer_json() -> bytes:
    """The bytes of a tokenizer.json: BPE (vocabulary 800), ByteLevel pre-tokenizer and decoder, <s> and </s>."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_generated_lines(4000), trainer=trainer)
    return tokenizer.to_str().encode()


@pytest.fixture(scope="session")
def test_tokenizer_json() -> bytes:
    return tokenizer_json()


@pytest.fixture(scope="session")
def test_counter(test_tokenizer_json):
    """The test tokenizer, loaded."""
    from apps.workloads.engine.tokens import load_tokenizer

    return load_tokenizer(test_tokenizer_json)


@pytest.fixture
def exact_text(test_counter):
    """A fresh ExactText over the built-in corpus (its mismatch counter starts at 0)."""
    from apps.workloads.engine.tokens import ExactText

    return ExactText(test_counter)
