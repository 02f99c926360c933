"""Text-quality metrics of one output (LLM Lab's quality_metrics): cheap, deterministic heuristics.

They describe the text's form (is it readable, varied, concrete, of the asked length, does it end
cleanly), not whether it is right: that is the evaluators' job. Every score is 0–100, higher is
better; the formulas are in docs/evaluators.md and each one here says why it is built that way.
No model and no downloaded data (no nltk): the word lists below are the whole vocabulary used.

Words are runs of letters and digits in any script ("don't", "well-known", "3.14" and "1,000"
are one word each), except Chinese and Japanese characters, which count one word each since those
scripts do not separate words with spaces. A sentence ends at `.`, `!`, `?` or `…` followed by
white space or the end, at `。！？`, or at a line break (LLM lists and headings seldom end with a
period); a piece without any word is not a sentence. Abbreviations such as "e.g." split sentences.
"""

import re
import unicodedata
from collections import Counter

DEFAULT_TARGET_WORDS = (50, 300)  # length band used when the caller gives none
MATTR_WINDOW = 50  # Covington & McFall's usual window
WEIGHTS = {
    "coherence": 0.20,
    "completeness": 0.20,
    "readability": 0.15,
    "length_appropriateness": 0.15,
    "creativity": 0.15,
    "specificity": 0.15,
}

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_PART = rf"[^\W_{_CJK}]+"
_WORD = re.compile(rf"[{_CJK}]|{_PART}(?:(?:['’-]|(?<=\d)[.,](?=\d)){_PART})*")
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]*_]*(?=\s|$)|[。！？]+|\n")
_TERMINAL = ".!?…。！？"


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS = _wordset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves also can't don't won't isn't aren't it's i'm you're"""
)
CONNECTIVES = _wordset(
    """also and as because but consequently finally first firstly for furthermore hence he her his
    however in it its instead lastly likewise meanwhile moreover next nevertheless or overall second
    secondly she similarly so such that the their then these they third this those thus therefore
    which yet additionally"""
)
VAGUE = _wordset(
    """thing things stuff something anything everything somehow somewhat various several many some lot
    lots very really quite basically generally kind sort etc maybe perhaps probably often usually
    good nice bad great certain stuffs whatever"""
)
INSTRUCTION_WORDS = _wordset(  # a prompt's wording of the task, not its subject: not expected back
    """explain describe write list give tell summarize summarise please compare discuss provide answer
    question briefly detail details short brief words sentences sentence paragraph paragraphs using"""
)


def words_of(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences_of(text: str) -> list[list[str]]:
    """Each sentence as its list of words; pieces without a word are dropped."""
    return [words for piece in _BOUNDARY.split(text) if (words := words_of(piece))]


def syllables(word: str) -> int:
    """English syllables by a heuristic: accents dropped, groups of vowels (a e i o u y) counted,
    minus a silent final "e" (not "-le" after a consonant: "table") and a silent "-ed" (not "-ted",
    "-ded"); at least 1. A word without Latin letters (a number, another script) counts 1."""
    letters = "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if "a" <= c <= "z")
    if not letters:
        return 1
    count = len(re.findall(r"[aeiouy]+", letters))
    silent_e = letters.endswith("e") and not re.search(r"[^aeiouy]le$", letters)
    silent_ed = letters.endswith("ed") and not letters.endswith(("ted", "ded"))
    return max(1, count - 1 if count > 1 and (silent_e or silent_ed) else count)


def flesch_reading_ease(word_count: int, sentence_count: int, syllable_count: int) -> float:
    """Flesch (1948): 206.835 − 1.015·words/sentences − 84.6·syllables/words (unclamped)."""
    return 206.835 - 1.015 * word_count / sentence_count - 84.6 * syllable_count / word_count


def stem(word: str) -> str:
    """A crude stem so "tests", "testing" and "tested" meet: one of -ing, -ed, -ly or -s (not
    -ss) removed when 3 letters stay, then a final e when 3 letters stay."""
    for suffix in ("ing", "ed", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    else:
        if word.endswith("s") and not word.endswith("ss") and len(word) >= 4:
            word = word[:-1]
    return word[:-1] if word.endswith("e") and len(word) >= 4 else word


def content_stems(words: list[str]) -> set[str]:
    """Stems of the words that carry meaning: not a stop word, 3+ characters or a CJK character."""
    lowered = (w.casefold() for w in words)
    return {stem(w) for w in lowered if w not in STOPWORDS and (len(w) >= 3 or re.fullmatch(f"[{_CJK}]", w))}


def mattr(words: list[str], window: int = MATTR_WINDOW) -> float:
    """Moving-average type-token ratio: the mean share of distinct words over every window of
    `window` consecutive words (plain TTR for a shorter text). Unlike TTR it does not fall just
    because a text is long."""
    tokens = [w.casefold() for w in words]
    if len(tokens) <= window:
        return len(set(tokens)) / len(tokens)
    counts = Counter(tokens[:window])
    total = len(counts)
    for i in range(window, len(tokens)):
        out, new = tokens[i - window], tokens[i]
        counts[out] -= 1
        if counts[out] == 0:
            del counts[out]
        counts[new] += 1
        total += len(counts)
    return total / (len(tokens) - window + 1) / window


def ends_cleanly(text: str) -> bool:
    """Whether the text ends like a finished answer: terminal punctuation (possibly inside closing
    quotes, brackets or Markdown emphasis), a closing bracket, or a closing code fence. An output
    cut at max_tokens usually does not."""
    text = text.rstrip()
    if text.endswith("```") or text[-1:] in ")]}":
        return True
    return text.rstrip("\"'”’)]*_")[-1:] in _TERMINAL


def _coherence(sentences: list[list[str]]) -> float:
    """0.5·continuity + 0.3·(1 − duplicate share) + 0.2·(1 − fragment share).

    Continuity: share of adjacent sentence pairs sharing a content word or linked by a connective
    or pronoun opening the second ("However", "This"); 1 for a single sentence. Duplicates: sentences
    repeating an earlier one word for word (a looping model). Fragments: sentences under 3 words."""
    stems = [content_stems(s) for s in sentences]
    linked = sum(
        1 for i in range(1, len(sentences)) if stems[i] & stems[i - 1] or sentences[i][0].casefold() in CONNECTIVES
    )
    continuity = linked / (len(sentences) - 1) if len(sentences) > 1 else 1.0
    seen: set[tuple[str, ...]] = set()
    duplicates = 0
    for sentence in sentences:
        key = tuple(w.casefold() for w in sentence)
        duplicates += key in seen
        seen.add(key)
    fragments = sum(1 for s in sentences if len(s) < 3)
    n = len(sentences)
    return 0.5 * continuity + 0.3 * (1 - duplicates / n) + 0.2 * (1 - fragments / n)


def _completeness(text: str, words: list[str], prompt: str, low: int) -> float:
    """With prompt keywords: 0.6·coverage + 0.25·clean ending + 0.15·substance; else
    0.6·clean ending + 0.4·substance. Coverage: share of the prompt's content stems found in the
    output, the prompt's instruction words ("explain", "describe", "list"…) left out. Substance:
    min(1, words / the band's lower end, or 20 without one)."""
    clean = float(ends_cleanly(text))
    substance = min(1.0, len(words) / low) if low > 0 else 1.0
    keywords = content_stems([w for w in words_of(prompt) if w.casefold() not in INSTRUCTION_WORDS])
    if not keywords:
        return 0.6 * clean + 0.4 * substance
    coverage = len(keywords & content_stems(words)) / len(keywords)
    return 0.6 * coverage + 0.25 * clean + 0.15 * substance


def _length(count: int, low: int, high: int) -> float:
    """1 inside [low, high]; count/low below it; high/count above it (twice too long = 0.5)."""
    if count < low:
        return count / low
    return 1.0 if count <= high else high / count


def _specificity(sentences: list[list[str]], count: int) -> float:
    """clamp(0.5 + 2.5·specific share − 5·vague share, 0, 1): neutral prose scores 0.5, a text
    where one word in five is a number or a name scores 1, one vague word in ten costs 0.5.
    Specific: a word with a digit, or a capitalized word not opening its sentence (a name, an
    acronym; "I" excluded). Vague: a word of VAGUE ("thing", "stuff", "very", "various")."""
    specific = vague = 0
    for sentence in sentences:
        for i, word in enumerate(sentence):
            if any(c.isdigit() for c in word) or (i > 0 and word[0].isupper() and word != "I"):
                specific += 1
            elif word.casefold() in VAGUE:
                vague += 1
    return min(1.0, max(0.0, 0.5 + 2.5 * specific / count - 5 * vague / count))


def text_quality(output: str, *, prompt: str = "", target_words: tuple[int, int] | None = None) -> dict[str, float]:
    """Every metric of `output`: scores 0–100 (2 decimals), word_count and sentence_count.

    `prompt` lets completeness check the answer covers what was asked; `target_words` (low, high)
    is the wanted length band (DEFAULT_TARGET_WORDS when None). A text without words scores 0."""
    if target_words is None:
        low, high = DEFAULT_TARGET_WORDS
    else:
        low, high = target_words
        if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high and high > 0):
            raise ValueError(f"target_words: needs 0 ≤ low ≤ high and high > 0, not {target_words!r}")
    words = words_of(output)
    sentences = sentences_of(output) or [words]
    if not words:
        return {**dict.fromkeys((*WEIGHTS, "overall"), 0.0), "word_count": 0, "sentence_count": 0}
    count = len(words)
    ease = flesch_reading_ease(count, len(sentences), sum(syllables(w) for w in words))
    scores = {
        "coherence": _coherence(sentences),
        "completeness": _completeness(output, words, prompt, low if target_words else 20),
        "readability": min(1.0, max(0.0, ease / 100)),
        "length_appropriateness": _length(count, low, high),
        "creativity": mattr(words) * min(1.0, count / 10),
        "specificity": _specificity(sentences, count),
    }
    scores["overall"] = sum(WEIGHTS[name] * scores[name] for name in WEIGHTS)
    return {
        **{name: round(100 * value, 2) for name, value in scores.items()},
        "word_count": count,
        "sentence_count": len(sentences),
    }
