"""Text-quality metrics: the formulas of docs/evaluators.md on small texts worked out by hand."""

import time

import pytest

from apps.experiments.textmetrics import (
    WEIGHTS,
    ends_cleanly,
    mattr,
    sentences_of,
    syllables,
    text_quality,
    words_of,
)

SCORES = (*WEIGHTS, "overall")


@pytest.mark.parametrize("text", ["", "   \n\t", "... !? —"])
def test_a_text_without_words_scores_zero_everywhere(text):
    """Empty, blank or punctuation-only output: every score and count is 0."""
    result = text_quality(text)
    assert result == {**dict.fromkeys(SCORES, 0.0), "word_count": 0, "sentence_count": 0}


def test_one_word_is_one_sentence_with_documented_scores():
    """One word, "Hello": 2 syllables, a fragment, 1/50 of the default band, creativity scaled by 1/10."""
    result = text_quality("Hello")
    assert (result["word_count"], result["sentence_count"]) == (1, 1)
    assert result["readability"] == pytest.approx(36.62)  # 206.835 − 1.015 − 84.6·2
    assert result["coherence"] == 80.0  # continuity 1, no duplicate, all fragments
    assert result["length_appropriateness"] == 2.0
    assert result["creativity"] == 10.0
    assert result["completeness"] == pytest.approx(100 * 0.4 * (1 / 20))  # no clean ending


def test_text_without_sentence_punctuation_is_one_sentence():
    """No terminal punctuation and no line break: the whole text is one sentence."""
    result = text_quality("this answer has no punctuation at all")
    assert (result["word_count"], result["sentence_count"]) == (7, 1)


def test_line_breaks_and_terminal_punctuation_end_sentences():
    """A list item per line is a sentence; decimals and blank lines split nothing."""
    text = "Pi is 3.14 roughly. Is it?\n\n- item one\n- item two\n**Done.**"
    assert sentences_of(text) == [
        ["Pi", "is", "3.14", "roughly"],
        ["Is", "it"],
        ["item", "one"],
        ["item", "two"],
        ["Done"],
    ]


def test_words_keep_contractions_hyphens_and_numbers_and_split_cjk():
    """don't, well-known, 3.14 and 1,000 are one word; each CJK character is one."""
    assert words_of("Don't panic: 3.14, or 1,000 well-known cafés 東京.") == [
        "Don't",
        "panic",
        "3.14",
        "or",
        "1,000",
        "well-known",
        "cafés",
        "東",
        "京",
    ]


@pytest.mark.parametrize(
    ("word", "count"),
    [("the", 1), ("make", 1), ("table", 2), ("jumped", 1), ("wanted", 2), ("proposal", 3), ("café", 1), ("42", 1)],
)
def test_syllable_heuristic(word, count):
    """Vowel groups, minus a silent final e (not -le) or -ed (not -ted); digits count 1."""
    assert syllables(word) == count


def test_readability_is_flesch_reading_ease():
    """7 words, 1 sentence, 15 syllables: 206.835 − 1.015·7 − 84.6·15/7 = 18.44."""
    result = text_quality("The committee approved the proposal yesterday afternoon.")
    assert result["readability"] == pytest.approx(18.44)


def test_readability_is_clamped_to_0_100():
    """Very easy text is 100, very hard text 0, never beyond."""
    assert text_quality("The cat sat on the mat.")["readability"] == 100.0
    assert text_quality("Readability measures complicated sentences.")["readability"] == 0.0


@pytest.mark.parametrize(("count", "score"), [(5, 50.0), (10, 100.0), (20, 100.0), (40, 50.0)])
def test_length_appropriateness_is_1_in_the_band_and_falls_outside(count, score):
    """Band 10–20: half the low end scores 50, twice the high end scores 50."""
    text = " ".join(["word"] * count) + "."
    assert text_quality(text, target_words=(10, 20))["length_appropriateness"] == score


@pytest.mark.parametrize("target", [(20, 10), (-1, 5), (0, 0), (1.5, 3)])
def test_invalid_target_words_name_the_argument(target):
    """A band that is reversed, negative, empty or not integers is refused."""
    with pytest.raises(ValueError, match="target_words"):
        text_quality("Some text.", target_words=target)


def test_mattr_averages_type_token_ratio_over_windows():
    """Windows of 2 over a a b b: 1/2, 1, 1/2 → 2/3; shorter than a window → plain TTR."""
    assert mattr(["a", "a", "b", "b"], window=2) == pytest.approx(2 / 3)
    assert mattr(["a", "A", "b"], window=50) == pytest.approx(2 / 3)


def test_creativity_prefers_varied_words_to_repetition():
    """A looping text has low lexical diversity; a varied one high."""
    looping = text_quality("the same words again " * 30)
    varied = text_quality(
        "Quantum sensors measure tiny magnetic fields, while optical clocks track time with astonishing "
        "precision; together they reshape navigation, geology and medicine in surprising ways."
    )
    assert looping["creativity"] == 8.0  # 4 distinct words per 50-word window
    assert varied["creativity"] > 90


def test_coherence_drops_for_repeated_and_unrelated_sentences():
    """Linked sentences score 100; a looping repeat and unrelated jumps cost points."""
    linked = text_quality("Cats sleep a lot. Cats also hunt at night. However, they rest by day.")
    repeated = text_quality("Cats sleep a lot. Cats sleep a lot. Cats sleep a lot.")
    unrelated = text_quality("Cats sleep a lot. Bonds pay fixed interest. Volcanoes erupt lava.")
    assert linked["coherence"] == 100.0
    assert repeated["coherence"] == pytest.approx(100 * (0.5 + 0.3 * (1 / 3) + 0.2))
    assert unrelated["coherence"] == 50.0  # continuity 0


def test_completeness_rewards_covering_the_prompt_and_a_clean_ending():
    """Coverage of the prompt's keywords and a finished last sentence both count."""
    prompt = "Explain photosynthesis and chlorophyll."
    full = text_quality("Photosynthesis uses chlorophyll to capture light.", prompt=prompt)
    cut = text_quality("Photosynthesis uses light to make sugar and", prompt=prompt)
    assert full["completeness"] == pytest.approx(100 * (0.6 * 1 + 0.25 * 1 + 0.15 * 6 / 20))
    assert cut["completeness"] == pytest.approx(100 * (0.6 * 0.5 + 0.25 * 0 + 0.15 * 7 / 20))


@pytest.mark.parametrize(
    ("text", "clean"),
    [("Done.", True), ('He said "stop."', True), ("**Bold end!**", True), ("```\ncode\n```", True), ("and so", False)],
)
def test_a_clean_ending(text, clean):
    """Terminal punctuation, even inside quotes or emphasis, or a closing fence."""
    assert ends_cleanly(text) is clean


def test_specificity_rewards_numbers_and_names_and_penalizes_vague_words():
    """Neutral prose is 50; numbers and names raise it, vague words lower it."""
    neutral = text_quality("The answer depends on the context of the question.")
    concrete = text_quality("Paris had 2.1 million people in 2020, said INSEE in France.")
    vague = text_quality("Some things are very good and stuff.")
    assert neutral["specificity"] == 50.0
    assert concrete["specificity"] == 100.0
    assert vague["specificity"] == 0.0


def test_overall_is_the_documented_weighted_mean():
    """overall = 0.2·coherence + 0.2·completeness + 0.15·each of the other four."""
    result = text_quality("Paris is the capital of France. It has about 2.1 million residents.", prompt="Capital?")
    assert sum(WEIGHTS.values()) == pytest.approx(1.0)
    assert result["overall"] == pytest.approx(sum(w * result[name] for name, w in WEIGHTS.items()), abs=0.01)


def test_non_ascii_text_is_counted_and_scored_within_range():
    """Cyrillic words and CJK sentences are counted; every score stays within 0–100."""
    russian = text_quality("Привет, мир. Это простой тест.")
    chinese = text_quality("这是一个测试。我们喜欢它！")
    assert (russian["word_count"], russian["sentence_count"]) == (5, 2)
    assert (chinese["word_count"], chinese["sentence_count"]) == (11, 2)
    for result in (russian, chinese):
        assert all(0 <= result[name] <= 100 for name in SCORES)


def test_a_very_long_text_is_scored_quickly_and_deterministically():
    """60,000 words in well under a second of CPU, and the same result twice."""
    text = "The quick brown fox jumps over the lazy dog near 42 rivers. " * 5000
    start = time.process_time()  # CPU time of this process: other work on the machine does not count
    result = text_quality(text)
    assert time.process_time() - start < 1.5
    assert result == text_quality(text)
    assert (result["word_count"], result["sentence_count"]) == (60000, 5000)
    assert result["length_appropriateness"] == 0.5  # 300 / 60000 = 0.005 → 0.5 points
