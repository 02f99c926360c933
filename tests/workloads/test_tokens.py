"""Token counting, token-exact text, words text and the calibration fit."""

import numpy as np
import pytest

from apps.workloads.engine.calibration import chars_estimate, fit_calibration
from apps.workloads.engine.tokens import MAX_TRIES, ExactText, TokenCounter, load_tokenizer, words_text


@pytest.mark.parametrize("content", [b"", b"{}", b"\xff\xfe not json", b'{"model": {"type": "Nope"}}'])
def test_a_bad_tokenizer_file_gives_a_clear_value_error(content):
    """Bytes that are not a tokenizer.json raise ValueError saying so, with the library's reason."""
    with pytest.raises(ValueError, match=r"^is not a Hugging Face tokenizer.json \(.+\)"):
        load_tokenizer(content)


def test_counter_knows_special_ids_and_counts_in_a_batch(test_counter):
    """Special ids are excluded from the allowed ids; count() matches encoding one text at a time, no specials."""
    assert test_counter.special_ids == [0, 1]
    assert 0 not in test_counter.allowed_ids and 1 not in test_counter.allowed_ids
    assert len(test_counter.allowed_ids) == test_counter.vocab_size - 2
    texts = ["the kettle", "", "A good loaf of bread takes flour, water, salt."]
    assert test_counter.count(texts) == [len(test_counter.encode(t)) for t in texts]
    assert test_counter.count([""]) == [0]  # no <s> added


def test_exact_text_hits_the_requested_length(exact_text, test_counter):
    """Over 2,000 draws of 1..4096 tokens, the delivered count is the re-encoded count, and equals the request for
    ≥ 99.5% of them; every miss is counted in `mismatches`."""
    rng = np.random.default_rng(2026)
    requested = rng.integers(1, 4097, size=2000)
    results = [exact_text.make(int(n), rng) for n in requested]
    delivered = np.array([d for _, d in results])
    for text, d in results[:50]:
        assert len(test_counter.encode(text)) == d
    misses = int((delivered != requested).sum())
    assert misses <= 10
    assert exact_text.mismatches == misses


def test_exact_text_is_seeded_and_openings_differ(exact_text, test_counter):
    """The same rng seed gives the same text; different draws start at different words; no special ids are used."""
    assert not set(exact_text.corpus_ids.tolist()) & set(test_counter.special_ids)
    a = exact_text.make(64, np.random.default_rng(5))
    assert a == exact_text.make(64, np.random.default_rng(5))
    rng = np.random.default_rng(6)
    openings = {exact_text.make(64, rng)[0][:20] for _ in range(30)}
    assert len(openings) >= 20


class _OneExtraToken(TokenCounter):
    """A tokenizer whose encoding of any non-empty text has one more id than its corpus slice."""

    def encode(self, text):
        ids = super().encode(text)
        return [*ids, 2] if ids else ids


class _Stuck(TokenCounter):
    """A tokenizer that counts every text as 7 tokens: the loop can never reach another target."""

    calls = 0

    def encode(self, text):
        type(self).calls += 1
        return [2] * 7 if text else []


def test_the_loop_trims_when_the_text_re_encodes_longer(test_counter):
    """When re-encoding adds a token, the loop shortens the slice until the total is exact."""
    counter = _OneExtraToken(test_counter.tokenizer)
    exact = ExactText(counter)
    rng = np.random.default_rng(0)
    for n in (2, 17, 300):
        text, delivered = exact.make(n, rng)
        assert delivered == n == len(counter.encode(text))
    assert exact.mismatches == 0


def test_the_loop_gives_up_after_ten_tries_and_reports(test_counter):
    """A target the tokenizer cannot reach stops within MAX_TRIES encodes and returns the miss, counted."""
    counter = _Stuck(test_counter.tokenizer)
    exact = ExactText(counter)
    _Stuck.calls = 0
    text, delivered = exact.make(50, np.random.default_rng(0))
    assert delivered == 7 and text
    assert _Stuck.calls <= MAX_TRIES
    assert exact.mismatches == 1


def test_words_text_has_the_words_and_varied_openings():
    """words_text is seeded, starts at different words and has about n words."""
    text = words_text(37, np.random.default_rng(1))
    assert 30 <= len(text.split()) <= 44
    assert text == words_text(37, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    assert len({words_text(5, rng) for _ in range(20)}) >= 15


def test_words_text_is_as_long_in_characters_whatever_it_starts_with():
    """A server counts tokens by characters more than by words: every text of n words has n average words' worth of
    characters (within half a word), so calibrated lengths do not depend on the opening word."""
    from apps.workloads.engine.tokens import MEAN_WORD_CHARS

    rng = np.random.default_rng(3)
    for n in (8, 40, 400):
        lengths = [len(words_text(n, rng)) + 1 for _ in range(200)]  # + the last word's space
        longest_word = max(len(w) for w in words_text(2000, rng).split()) + 1
        assert all(abs(length - n * MEAN_WORD_CHARS) <= longest_word / 2 + 1 for length in lengths)
    assert words_text(0, rng) == ""


def test_calibration_recovers_the_line():
    """From noisy probes of prompt_tokens = 14 + 1.3·words, the fit recovers a and b and sizes targets."""
    rng = np.random.default_rng(3)
    words = [32, 32, 128, 512, 2048, 2048]
    samples = [(w, round(14 + 1.3 * w + rng.normal(0, 2))) for w in words]
    fit = fit_calibration(samples)
    assert abs(fit.tokens_per_word - 1.3) < 0.01
    assert abs(fit.overhead_tokens - 14) < 4
    assert fit.r2 > 0.999
    assert abs(fit.words_for(1000) - (1000 - 14) / 1.3) <= 5
    stored = fit.as_dict()
    assert stored["method"] == "probe" and stored["samples"] == [list(s) for s in samples]


@pytest.mark.parametrize(
    ("samples", "reason"),
    [
        ([(32, 50), (32, 51), (128, 180)], "at least 3 distinct word counts, got 2"),
        ([(32, 500), (128, 400), (512, 300)], "slope"),
        ([(32, 90), (128, 90), (512, 90)], "slope"),
    ],
)
def test_calibration_refuses_a_meaningless_fit(samples, reason):
    """Fewer than 3 distinct word counts, or tokens that do not grow with words, raise ValueError naming why."""
    with pytest.raises(ValueError, match=reason):
        fit_calibration(samples)


def test_chars_estimate_is_a_labelled_quarter_of_the_characters():
    """ceil(len / 4), labelled "estimated"."""
    assert chars_estimate("abcde") == (2, "estimated")
    assert chars_estimate("").tokens == 0
    assert chars_estimate("x" * 400).label == "estimated"
