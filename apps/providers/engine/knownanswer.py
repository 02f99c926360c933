"""Known-answer mode of mockllm and of the sim provider: a fake model that knows a benchmark's answers.

Given a suite's answer key (JSON Lines from GET /api/v1/benchmark-suites/{id}/answer-key: {"index", "question",
"choices", "answer", "subject"}) and a target accuracy (one number, or per subject), it answers each benchmark
question deterministically from a seed in a chosen style, so a test knows the exact expected accuracy
(docs/mockllm-known-answers.md):

* per subject, a permutation of the subject's items seeded by (seed, subject) is cut in three: its first
  round(accuracy × items) items are answered right, its last min(round(no_answer_rate × items), the rest) give
  no extractable answer, the ones between a wrong one (another valid letter; for a number, the number + 1).
  The permutation does not depend on the accuracy, so with one seed a lower accuracy's right items are a subset
  of a higher one's: two "quantizations" differ by a known set of flipped items;
* the asked question is the last key question found in the prompt (the last user message: few-shot examples
  come before it). Key questions are indexed by the first words of their first line; the prompt's lines are
  scanned from the end (a few leading words skipped, for labels such as "Question:"), each hit confirmed by
  the whole question, line by line. The cost is O(lines of the prompt), whatever the key's size.

Replies never guess: a right or wrong reply is extracted by the reference regular expressions (MMLU-Pro's
cascade, GSM8K strict and flexible), a no-answer reply contains no letter A–J standing alone and no digit.
"""

import json
import math
import os
import random
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

LETTERS = "ABCDEFGHIJ"
KEY_WORDS = 6  # a question is indexed by its first line's first KEY_WORDS words (all of them when fewer)
LABEL_WORDS = 3  # words a prompt line may carry before the question ("Question:", "Q 12:")
LABEL_SCAN = 8  # or up to this many, ending with a colon
OPTION_LINES = 14  # lines after a question looked at for its options ("A. …", "(B) …")
MAX_KEY_BYTES = 512 * 1024 * 1024
OPTION = re.compile(r"^(?:[A-Za-z]+:\s*)?\(?([A-J])[.):]\s+(.+)$")
WORD_TOKEN = re.compile(r"\s*\S+")

COT = (
    "Let's think step by step. The question asks us to weigh every option against what it states. "
    "We rule out the options that contradict the facts given, one after the other. "
    "Only one option stays consistent with all of them. The answer is ({answer})."
)
COT_NUMBER = (
    "Let's think step by step. We take the quantities the question gives and combine them as it asks. "
    "Checking the result against the question, it holds. The answer is {answer}."
)
WORKED = (
    "Let's work through it step by step.\nWe take the quantities the problem gives and combine them as it asks.\n"
    "That gives {answer}.\n#### {answer}"
)
# No letter standing alone at all: "I" is one of MMLU-Pro's ten letters, and its cascade's last rule takes it.
NO_ANSWER_CHOICE = "Not sure which option is correct."
NO_ANSWER_NUMBER = "Not sure how to solve this problem."


@dataclass(frozen=True)
class KeyEntry:
    index: int
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    subject: str = ""


BRACKETS = re.compile(r"\[.*?\]")


def _canonical(line: str) -> str:
    """A line as compared: HellaSwag's clean-up (" [title]" → ". ", other bracketed marks dropped, as the prompt
    does), whitespace collapsed. Both sides get it, so a bracket in any other question still matches."""
    if "[" in line:
        line = BRACKETS.sub("", line.replace(" [title]", ". "))
    return " ".join(line.split())


def _normal_lines(text: str) -> list[str]:
    """The text's non-empty lines, canonical."""
    return [line for line in map(_canonical, text.splitlines()) if line]


def _ends_cleanly(text: str, head: str) -> bool:
    """`text` starts with `head`, which does not end inside one of text's words."""
    if not text.startswith(head):
        return False
    return len(text) == len(head) or not (head[-1].isalnum() and text[len(head)].isalnum())


def parse_key(lines: Iterable[str], name: str = "answer key") -> list[KeyEntry]:
    """Entries from JSON Lines; ValueError naming the line and field (never quoting the file)."""
    entries: list[KeyEntry] = []
    seen: set[int] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{name}, line {number}"
        try:
            row = json.loads(line)
        except ValueError:
            raise ValueError(f"{where} is not JSON") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where} is not a JSON object")
        index, question, answer = row.get("index"), row.get("question"), row.get("answer")
        choices, subject = row.get("choices") or [], row.get("subject") or ""
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f'{where}, field "index": a whole number, 0 or more, is required')
        if index in seen:
            raise ValueError(f'{where}, field "index": {index} appears twice')
        if not isinstance(question, str) or not _normal_lines(question):
            raise ValueError(f'{where}, field "question": a non-empty text is required')
        if isinstance(answer, int | float) and not isinstance(answer, bool):
            answer = str(answer)
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f'{where}, field "answer": a non-empty text is required')
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices) or len(choices) > 10:
            raise ValueError(f'{where}, field "choices": a list of at most 10 texts is required')
        if choices and answer.strip() not in LETTERS[: len(choices)]:
            raise ValueError(f'{where}, field "answer": a letter from A to {LETTERS[len(choices) - 1]} is required')
        if not isinstance(subject, str):
            raise ValueError(f'{where}, field "subject": a text is required')
        seen.add(index)
        entries.append(KeyEntry(index, question, answer.strip(), tuple(choices), subject))
    return entries


def load_key(path: str) -> list[KeyEntry]:
    """The entries of a JSON Lines answer key file (ValueError: missing, not a file, or bad, with the line)."""
    if not os.path.isfile(path):
        raise ValueError(f"answer key {path}: no such file")
    if os.path.getsize(path) > MAX_KEY_BYTES:
        raise ValueError(f"answer key {path} is larger than {MAX_KEY_BYTES // 2**20} MB")
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_key(handle, f"answer key {os.path.basename(path)}")
    except UnicodeDecodeError:
        raise ValueError(f"answer key {path} is not UTF-8 text") from None
    except OSError as error:
        raise ValueError(f"answer key {path} cannot be read ({error.strerror})") from None


def parse_accuracy(value: Any) -> float | dict[str, float]:
    """An accuracy setting: a share (0.8, "0.8"), or per subject as a dict, as JSON ('{"math": 0.9, "*": 0.7}')
    or as `math:0.9,*:0.7`. ValueError when a share is not a number between 0 and 1."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError("the accuracy is not valid JSON") from None
        elif ":" in text:
            value = {}
            for part in text.split(","):
                subject, _, share = part.rpartition(":")
                value[subject.strip()] = share.strip()
        else:
            value = text
    if isinstance(value, dict):
        if not value:
            raise ValueError("the accuracy per subject names no subject")
        return {str(subject): _share(share, f"the accuracy of {subject!r}") for subject, share in value.items()}
    return _share(value, "the accuracy")


def _share(value: Any, what: str) -> float:
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number between 0 and 1, not {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(share) and 0 <= share <= 1):
        raise ValueError(f"{what} must be a number between 0 and 1, not {value!r}")
    return share


def last_user_text(messages: Any) -> str:
    """The last user message's text (string content, or the text parts of a content list); '' when none."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role", "user") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
            return ""
    return ""


def spread(text: str, pieces: int) -> list[str]:
    """`text` cut into exactly `pieces` non-empty parts, in order (a stream's chunks); when the text has
    fewer characters than pieces, the last parts are single spaces."""
    pieces = max(1, pieces)
    if len(text) < pieces:
        return [*text, *(" " for _ in range(pieces - len(text)))] if text else [" "] * pieces
    size, extra = divmod(len(text), pieces)
    parts, start = [], 0
    for i in range(pieces):
        end = start + size + (i < extra)
        parts.append(text[start:end])
        start = end
    return parts


def word_tokens(text: str) -> list[str]:
    """`text` as tokens of one word each with its leading whitespace (the sim's tokens)."""
    return WORD_TOKEN.findall(text)


class KnownAnswers:
    """One answer key's answers at a target accuracy, style, no-answer rate and seed."""

    STYLES = ("cot", "letter", "gsm8k", "auto")

    def __init__(self, entries: list[KeyEntry], *, accuracy: float | dict[str, float] = 1.0, style: str = "auto",
                 no_answer_rate: float = 0.0, seed: int = 0):  # fmt: skip
        if style not in self.STYLES:
            raise ValueError(f"the answer style must be one of {', '.join(self.STYLES)}, not {style!r}")
        self.accuracy = parse_accuracy(accuracy)
        self.no_answer_rate = _share(no_answer_rate, "the no-answer rate")
        self.style, self.seed = style, int(seed)
        self.entries = {entry.index: entry for entry in entries}
        if len(self.entries) != len(entries):
            raise ValueError("the answer key has an index twice")
        # index → "correct" | "wrong" | "no_answer", and the offset of its wrong letter among the others
        self.outcomes: dict[int, str] = {}
        self._wrong_offset: dict[int, int] = {}
        by_subject: dict[str, list[int]] = {}
        for entry in entries:
            by_subject.setdefault(entry.subject, []).append(entry.index)
        for subject, indices in by_subject.items():
            self._decide(subject, sorted(indices))
        # first words of a question's first line → [(its normalised lines, entry)]
        self._index: dict[str, list[tuple[list[str], KeyEntry]]] = {}
        self._max_lines = 1
        for entry in entries:
            lines = _normal_lines(entry.question)
            head = " ".join(lines[0].split(" ")[:KEY_WORDS])
            self._index.setdefault(head, []).append((lines, entry))
            self._max_lines = max(self._max_lines, len(lines))
        self._head_sizes = sorted({len(head.split(" ")) for head in self._index}, reverse=True)
        # A cheap first test per position: the head's first two words (or its only word).
        self._starts = {" ".join(head.split(" ")[:2]) for head in self._index}

    def subject_accuracy(self, subject: str) -> float:
        accuracy = self.accuracy
        if isinstance(accuracy, float):
            return accuracy
        return accuracy.get(subject, accuracy.get("*", 1.0))

    def _decide(self, subject: str, indices: list[int]) -> None:
        """Cut the subject's seeded permutation: right first, no-answer last, wrong in between."""
        order = list(indices)
        random.Random(f"{self.seed}\x00{subject}").shuffle(order)  # a str seed is hashed with SHA-512: stable
        n = len(order)
        right = round(self.subject_accuracy(subject) * n)
        silent = min(round(self.no_answer_rate * n), n - right)
        for position, index in enumerate(order):
            self.outcomes[index] = "correct" if position < right else "no_answer" if position >= n - silent else "wrong"
        offsets = random.Random(f"{self.seed}\x00{subject}\x00wrong")  # drawn for every item: no accuracy shifts it
        for index in indices:
            self._wrong_offset[index] = offsets.randrange(1, 10)

    def outcome(self, index: int) -> str:
        """What the item at `index` gets: "correct", "wrong" or "no_answer"."""
        return self.outcomes[index]

    def expected_counts(self, indices: Iterable[int] | None = None) -> dict[str, int]:
        """{"correct", "wrong", "no_answer"} over `indices` (default: all); KeyError for an index not in the key."""
        counts = {"correct": 0, "wrong": 0, "no_answer": 0}
        for index in self.outcomes if indices is None else indices:
            counts[self.outcomes[index]] += 1
        return counts

    def expected_accuracy(self, indices: list[int] | None = None) -> float:
        """Exactly the share of `indices` (default: all) this mode answers right (0.0 for none)."""
        counts = self.expected_counts(indices)
        total = sum(counts.values())
        return counts["correct"] / total if total else 0.0

    # --- finding the asked question ------------------------------------------------------------

    def _match_at(self, texts: list[str], j: int) -> tuple[int, KeyEntry] | None:
        """The key question starting on the prompt line texts[j] (lines are kept last first, so its next lines
        are texts[j - 1], …), after up to LABEL_WORDS words or a label ending in a colon: (where its last line
        is, entry), the one ending lowest, then the longest, when several match."""
        text = texts[j]
        words = text.split(" ")
        count = len(words)
        skips = range(min(LABEL_WORDS, count - 1) + 1)
        if ":" in text:  # a longer label ending at the line's first colon ("Personal Care and Style: …")
            colon = next((k + 1 for k, word in enumerate(words[:LABEL_SCAN]) if word.endswith(":")), 0)
            if LABEL_WORDS < colon < count:
                skips = [*skips, colon]
        best = None
        starts = self._starts
        for skip in skips:
            if words[skip] not in starts and (skip + 1 == count or f"{words[skip]} {words[skip + 1]}" not in starts):
                continue
            for size in self._head_sizes:
                if skip + size > count:
                    continue
                candidates = self._index.get(" ".join(words[skip : skip + size]))
                if not candidates:
                    continue
                rest = " ".join(words[skip:])
                for question, entry in candidates:
                    end = j - len(question) + 1
                    if end < 0 or not self._confirm(question, rest, texts, j):
                        continue
                    if best is None or end < best[0]:
                        best = (end, entry)
        return best

    @staticmethod
    def _confirm(question: list[str], rest: str, texts: list[str], j: int) -> bool:
        last = len(question) - 1
        if last == 0:
            return _ends_cleanly(rest, question[0])
        if rest != question[0] or not _ends_cleanly(texts[j - last], question[last]):
            return False
        return all(texts[j - k] == question[k] for k in range(1, last))

    def find(self, prompt: str) -> tuple[KeyEntry, list[str]] | None:
        """The last key question in `prompt` and the prompt lines after it; None when there is none. Lines are
        made canonical from the end, as far as the scan goes (the question asked is usually near the end)."""
        texts: list[str] = []  # canonical non-empty lines, the last one first
        best: tuple[int, KeyEntry] | None = None  # (where its last line is in texts, entry)
        for raw in reversed(prompt.splitlines()):
            text = _canonical(raw)
            if not text:
                continue
            texts.append(text)
            j = len(texts) - 1
            # Past this line a question cannot end as low as the best one: done.
            if best is not None and j - self._max_lines + 1 > best[0]:
                break
            hit = self._match_at(texts, j)
            if hit is not None and (best is None or hit[0] <= best[0]):  # as low, and starting higher: longer
                best = hit
        if best is None:
            return None
        end = best[0]
        return best[1], [texts[k] for k in range(end - 1, max(-1, end - 1 - OPTION_LINES), -1)]

    # --- answering ----------------------------------------------------------------------------

    def reply(self, prompt: str) -> str | None:
        """The answer text for the last key question found in `prompt` (None: not a key question)."""
        found = self.find(prompt)
        if found is None:
            return None
        entry, after = found
        return self.answer_text(entry, after)

    def answer_text(self, entry: KeyEntry, after: Sequence[str] = ()) -> str:
        """The reply to `entry`; `after` (the prompt lines after the question) maps the key's correct choice
        to the letter the prompt shows it under, when its options are listed there one per line."""
        outcome = self.outcomes[entry.index]
        style = self.style
        if entry.choices:
            if outcome == "no_answer":
                return NO_ANSWER_CHOICE
            letters, right = self._letters(entry, after)
            answer = right if outcome == "correct" else self._wrong_letter(entry, letters, right)
            return answer if style == "letter" else COT.format(answer=answer)
        if outcome == "no_answer":
            return NO_ANSWER_NUMBER
        answer = entry.answer if outcome == "correct" else _wrong_number(entry.answer)
        if style == "letter":
            return answer
        return COT_NUMBER.format(answer=answer) if style == "cot" else WORKED.format(answer=answer)

    def _letters(self, entry: KeyEntry, after: Sequence[str]) -> tuple[str, str]:
        """The letters on offer and the right one, as the prompt shows them (the key's when it cannot tell)."""
        shown: dict[str, list[str]] = {}
        letters = ""
        for line in after:
            match = OPTION.match(line)
            if match is None:
                if letters:
                    break
                continue
            letter = match.group(1)
            if letter in letters:
                break
            letters += letter
            shown.setdefault(match.group(2), []).append(letter)
        right = entry.answer
        correct_text = _canonical(entry.choices[LETTERS.index(right)])
        if len(letters) == len(entry.choices) and correct_text in shown:
            under = shown[correct_text]
            return letters, right if right in under else under[0]
        return LETTERS[: len(entry.choices)], right

    def _wrong_letter(self, entry: KeyEntry, letters: str, right: str) -> str:
        if len(letters) < 2:  # nothing else on offer: a letter past the options is wrong too
            return LETTERS[(LETTERS.index(right) + 1) % len(LETTERS)]
        others = [letter for letter in letters if letter != right]
        return others[(self._wrong_offset[entry.index] - 1) % len(others)]


def _wrong_number(answer: str) -> str:
    """A different number: the answer + 1 (commas dropped); a non-number answer gets 0 (or 1 if it is '0')."""
    try:
        value = Decimal(answer.replace(",", "").replace("$", "").strip())
    except InvalidOperation:
        return "1" if answer.strip() == "0" else "0"
    if not value.is_finite():
        return "0"
    return format(value + 1, "f")


class KnownAnswerBook:
    """Several answer keys answered at once (one per suite): the first key that knows the question answers."""

    def __init__(self, books: list[KnownAnswers]):
        self.books = books

    def reply(self, prompt: str) -> str | None:
        for book in self.books:
            text = book.reply(prompt)
            if text is not None:
                return text
        return None


_cache: OrderedDict[tuple, KnownAnswers] = OrderedDict()
_cache_lock = threading.Lock()
CACHE_SIZE = 16


def known_answers(paths: str | Sequence[str], *, accuracy: Any = 1.0, style: str = "auto", no_answer_rate: float = 0.0,
                  seed: int = 0) -> KnownAnswerBook | None:  # fmt: skip
    """The known answers of the key files at `paths` (None when there are none), loaded once per path and
    modification time (a rewritten key is read again). ValueError on a missing or bad file or setting."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    paths = [path for path in paths if path]
    if not paths:
        return None
    accuracy = parse_accuracy(accuracy)
    settings = (json.dumps(accuracy, sort_keys=True), style, float(no_answer_rate), int(seed))
    books = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            raise ValueError(f"answer key {path}: no such file") from None
        key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size, *settings)
        with _cache_lock:
            book = _cache.get(key)
            if book is not None:
                _cache.move_to_end(key)
        if book is None:
            book = KnownAnswers(
                load_key(path), accuracy=accuracy, style=style, no_answer_rate=no_answer_rate, seed=seed
            )
            with _cache_lock:
                _cache[key] = book
                while len(_cache) > CACHE_SIZE:
                    _cache.popitem(last=False)
        books.append(book)
    return KnownAnswerBook(books)
