"""Known-answer mode (apps/providers/engine/knownanswer.py): exact accuracies per subject, nested across
accuracies, replies read by the reference regular expressions (written out here, not imported), the asked
question found after few-shot examples, and the same answers from mockllm over HTTP and from the sim provider."""

import asyncio
import itertools
import json
import os
import re

import pytest
from django.urls import reverse

from apps.providers.engine.knownanswer import (
    NO_ANSWER_CHOICE,
    NO_ANSWER_NUMBER,
    KeyEntry,
    KnownAnswers,
    known_answers,
    load_key,
    parse_accuracy,
    spread,
)
from apps.providers.engine.sim import SimAdapter, SimProfile, check_sim_url
from apps.providers.engine.types import GenerationRequest
from apps.providers.mockllm import MockProfile
from apps.providers.models import ProviderEndpoint
from tests.providers.test_mockllm import read_events, run

# MMLU-Pro's cascade (TIGER-AI-Lab/MMLU-Pro evaluate_from_api.py), then GSM8K's filters (lm-eval gsm8k.yaml).
MMLU_PRO = (re.compile(r"answer is \(?([A-J])\)?"), re.compile(r".*[aA]nswer:\s*([A-J])"))
MMLU_PRO_LAST = re.compile(r"\b[A-J]\b(?!.*\b[A-J]\b)", re.DOTALL)
GSM8K_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
GSM8K_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
LETTERS = "ABCDEFGHIJ"


def mmlu_pro_extract(text: str) -> str:
    for regex in MMLU_PRO:
        if match := regex.search(text):
            return match.group(1)
    match = MMLU_PRO_LAST.search(text)
    return match.group(0) if match else ""


def gsm8k_strict(text: str) -> str:
    match = GSM8K_STRICT.search(text)
    return match.group(1) if match else ""


def gsm8k_flexible(text: str) -> str:
    matches = GSM8K_FLEXIBLE.findall(text)
    return next((group for group in matches[-1] if group), "") if matches else ""


def choice_entry(index: int, subject: str, options: int = 10) -> KeyEntry:
    return KeyEntry(
        index=index,
        question=f"In the {subject} study {index}, which setting keeps case {index} stable?",
        answer=LETTERS[index % options],
        choices=tuple(f"setting {k} of case {index}" for k in range(options)),
        subject=subject,
    )


def number_entry(index: int) -> KeyEntry:
    return KeyEntry(index, f"A server answers {index + 2} requests per second. How many in {index + 1} minutes?",
                    f"{(index + 2) * (index + 1) * 60:,}")  # fmt: skip


SIZES = {"math": 20, "law": 13, "biology": 7, "history": 41}


def mixed_key() -> list[KeyEntry]:
    entries, index = [], 0
    for subject, size in SIZES.items():
        for _ in range(size):
            entries.append(choice_entry(index, subject))
            index += 1
    return entries


def mmlu_pro_prompt(entry: KeyEntry, shots: list[KeyEntry] = ()) -> str:
    """The official MMLU-Pro layout: instruction, worked examples, then the question asked."""

    def block(one: KeyEntry) -> str:
        options = "".join(f"{LETTERS[k]}. {choice}\n" for k, choice in enumerate(one.choices))
        return f"Question:\n{one.question}\nOptions:\n{options}"

    text = 'The following are multiple choice questions (with answers). Finish with "the answer is (X)".\n'
    for shot in shots:
        text += block(shot) + f"Answer: Let's think step by step. The answer is ({shot.answer}).\n\n"
    return text + block(entry) + "Answer: Let's think step by step."


def write_key(path, entries: list[KeyEntry]) -> str:
    rows = [{"index": e.index, "question": e.question, "choices": list(e.choices), "answer": e.answer,
             "subject": e.subject} for e in entries]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def tally(book: KnownAnswers, entries: list[KeyEntry]) -> dict[str, int]:
    """Ask every entry in the MMLU-Pro layout and score the replies with the reference cascade."""
    counts = {"correct": 0, "wrong": 0, "no_answer": 0}
    for entry in entries:
        extracted = mmlu_pro_extract(book.reply(mmlu_pro_prompt(entry)))
        counts["correct" if extracted == entry.answer else "wrong" if extracted else "no_answer"] += 1
    return counts


class TestExactness:
    def test_each_subject_gets_exactly_its_share_right_wrong_and_unanswered(self):
        """Per subject round(accuracy × n) right and round(rate × n) silent; "*" covers unlisted subjects."""
        entries = mixed_key()
        book = KnownAnswers(entries, accuracy={"math": 0.9, "law": 0.5, "*": 0.7}, no_answer_rate=0.1, seed=3)
        for subject, size in SIZES.items():
            indices = [e.index for e in entries if e.subject == subject]
            accuracy = {"math": 0.9, "law": 0.5}.get(subject, 0.7)
            right, silent = round(accuracy * size), min(round(0.1 * size), size - round(accuracy * size))
            assert book.expected_counts(indices) == {"correct": right, "wrong": size - right - silent,
                                                     "no_answer": silent}  # fmt: skip
            assert book.expected_accuracy(indices) == right / size
            assert tally(book, [e for e in entries if e.subject == subject]) == book.expected_counts(indices)
        overall = tally(book, entries)
        assert overall["correct"] == 18 + 6 + 5 + 29  # 0.9·20, round(6.5) = 6 (half to even), 4.9, 28.7
        assert book.expected_accuracy() == overall["correct"] / len(entries)

    def test_an_unlisted_subject_without_a_star_is_always_right(self):
        """A per-subject accuracy leaves the subjects it does not name at 1.0."""
        entries = mixed_key()
        book = KnownAnswers(entries, accuracy={"math": 0.5})
        assert book.expected_accuracy([e.index for e in entries if e.subject == "law"]) == 1.0
        assert book.expected_accuracy([e.index for e in entries if e.subject == "math"]) == 0.5

    def test_a_lower_accuracy_gets_a_subset_of_the_higher_ones_items_right(self):
        """Same seed: the right sets nest, so two "quantizations" differ by a known set of flipped items."""
        entries = mixed_key()
        right = {}
        for accuracy in (0.3, 0.6, 0.8, 0.84, 1.0):
            book = KnownAnswers(entries, accuracy=accuracy, no_answer_rate=0.05, seed=11)
            right[accuracy] = {i for i, outcome in book.outcomes.items() if outcome == "correct"}
        levels = sorted(right)
        for lower, higher in itertools.pairwise(levels):
            assert right[lower] < right[higher]
        flipped = right[0.84] - right[0.8]
        assert len(flipped) == sum(round(0.84 * n) - round(0.8 * n) for n in SIZES.values())
        other_seed = KnownAnswers(entries, accuracy=0.8, seed=12)
        assert {i for i, o in other_seed.outcomes.items() if o == "correct"} != right[0.8]

    def test_the_same_settings_give_the_same_replies(self):
        """Deterministic: a second book with the same settings answers every prompt identically."""
        entries = mixed_key()
        one, two = (KnownAnswers(entries, accuracy=0.6, no_answer_rate=0.2, seed=5) for _ in range(2))
        assert [one.reply(mmlu_pro_prompt(e)) for e in entries] == [two.reply(mmlu_pro_prompt(e)) for e in entries]

    def test_bad_settings_are_refused(self):
        """Accuracies and rates are shares; the style is one of four."""
        for bad in (1.5, "-0.1", "nan", "x", '{"math": 2}', "{", {}):
            with pytest.raises(ValueError, match="accuracy"):
                parse_accuracy(bad)
        assert parse_accuracy("math:0.9,*:0.7") == {"math": 0.9, "*": 0.7}
        assert parse_accuracy('{"math": 0.9}') == {"math": 0.9}
        with pytest.raises(ValueError, match="style"):
            KnownAnswers(mixed_key(), style="essay")
        with pytest.raises(ValueError, match="no-answer rate"):
            KnownAnswers(mixed_key(), no_answer_rate=1.2)


class TestStyles:
    def test_cot_and_letter_replies_are_read_by_the_mmlu_pro_cascade(self):
        """ "The answer is (X)." and a bare "X" both give X; a wrong reply another valid letter."""
        entries = [choice_entry(i, "s", options=4) for i in range(30)]
        for style in ("cot", "letter", "auto"):
            book = KnownAnswers(entries, accuracy=0.5, style=style, seed=2)
            for entry in entries:
                reply = book.reply(mmlu_pro_prompt(entry))
                extracted = mmlu_pro_extract(reply)
                assert (extracted == entry.answer) == (book.outcome(entry.index) == "correct")
                assert extracted in "ABCD" and extracted
                if style == "letter":
                    assert reply == extracted
                else:
                    assert reply.endswith(f"The answer is ({extracted}).")
                    assert MMLU_PRO[0].search(reply).group(1) == extracted  # the cascade's first rule

    def test_gsm8k_replies_end_with_the_number_and_wrong_ones_with_another(self):
        """A worked solution ending "#### N": strict and flexible extraction both give N (or N + 1 when wrong)."""
        entries = [number_entry(i) for i in range(20)]
        book = KnownAnswers(entries, accuracy=0.75, style="auto", seed=4)
        for entry in entries:
            reply = book.reply(f"Question: {entry.question}\nAnswer:")
            assert reply.splitlines()[-1].startswith("#### ")
            number = int(entry.answer.replace(",", ""))
            expected = entry.answer if book.outcome(entry.index) == "correct" else str(number + 1)
            assert gsm8k_strict(reply) == expected
            assert gsm8k_flexible(reply) == expected
        assert book.expected_counts() == {"correct": 15, "wrong": 5, "no_answer": 0}

    def test_letter_and_cot_styles_on_a_number_question(self):
        """A bare number, or a chain of thought ending "The answer is N." (flexible extraction reads it)."""
        entry = number_entry(3)
        assert KnownAnswers([entry], style="letter").reply(entry.question) == entry.answer
        cot = KnownAnswers([entry], style="cot").reply(entry.question)
        assert cot.endswith(f"The answer is {entry.answer}.") and gsm8k_flexible(cot).rstrip(".") == entry.answer

    def test_no_answer_replies_give_the_reference_extractions_nothing(self):
        """No letter A–J standing alone (MMLU-Pro's "I" included) and no digit, so nothing is extracted."""
        assert NO_ANSWER_CHOICE != NO_ANSWER_NUMBER
        for text in (NO_ANSWER_CHOICE, NO_ANSWER_NUMBER):
            assert mmlu_pro_extract(text) == "" and gsm8k_strict(text) == "" and gsm8k_flexible(text) == ""
            assert not re.search(r"\b[A-J]\b|[0-9]", text)
        entries = [choice_entry(i, "s") for i in range(10)] + [number_entry(i) for i in range(10, 20)]
        book = KnownAnswers(entries, accuracy=0.0, no_answer_rate=1.0)
        assert {book.reply(mmlu_pro_prompt(e) if e.choices else e.question) for e in entries} == {
            NO_ANSWER_CHOICE, NO_ANSWER_NUMBER}  # fmt: skip

    def test_spread_cuts_a_text_into_exactly_the_chunks_asked(self):
        """Every chunk carries text; a short answer is followed by spaces; the pieces join back."""
        assert spread("The answer is (B).", 4) == ["The a", "nswer", " is ", "(B)."]
        assert spread("B", 3) == ["B", " ", " "]
        text = "x" * 1000
        assert "".join(spread(text, 7)) == text and len(spread(text, 7)) == 7


class TestFindingTheQuestion:
    def test_few_shot_examples_before_the_question_are_not_answered(self):
        """Examples (themselves key questions) come first; the reply answers the last question asked."""
        entries = [choice_entry(i, "s", options=4) for i in range(12)]
        book = KnownAnswers(entries, accuracy=1.0, style="letter")
        for entry in entries:
            shots = [e for e in entries if e is not entry][:5]
            assert book.reply(mmlu_pro_prompt(entry, shots)) == entry.answer

    def test_labels_and_a_question_that_contains_another_pick_the_whole_question(self):
        """ "Question: …" on the line, and a key question whose tail is another key question: the longer one."""
        short = KeyEntry(0, "What is the median latency?", "A", ("10 ms", "20 ms"), "s")
        long = KeyEntry(1, "Requests took 10, 20 and 30 ms.\nWhat is the median latency?", "B", ("10 ms", "20 ms"), "s")
        shared = KeyEntry(2, "Requests took 10, 20 and 30 ms.\nWhat is the slowest one?", "A", ("30 ms", "10 ms"), "s")
        book = KnownAnswers([short, long, shared], style="letter")
        assert book.reply("Question: What is the median latency?\nA. 10 ms\nB. 20 ms\nAnswer:") == "A"
        assert book.reply(f"Q 7: {long.question}\nA. 10 ms\nB. 20 ms\nAnswer:") == "B"
        assert book.reply(f"{long.question}\nA. 10 ms\nB. 20 ms\n\n{shared.question}\nA. 30 ms\nB. 10 ms") == "A"
        assert book.reply("What is the median latency of a cache?") is None  # a longer sentence is not the question
        assert book.reply("hello there") is None and book.reply("") is None

    def test_options_shown_in_another_order_are_answered_by_the_letter_shown(self):
        """When the prompt lists the options one per line, the right letter is the one the right text has."""
        entry = KeyEntry(0, "Which metric is the time to the first token?", "A", ("TTFT", "ITL", "E2E"), "s")
        book = KnownAnswers([entry], style="letter")
        assert book.reply(f"{entry.question}\nA. ITL\nB. E2E\nC. TTFT\nAnswer:") == "C"
        assert book.reply(f"{entry.question}\nAnswer:") == "A"  # no options listed: the key's letter

    def test_hellaswag_clean_up_and_an_activity_label_still_match(self):
        """The prompt drops bracketed marks and prefixes the activity: both sides are compared cleaned up."""
        entry = KeyEntry(0, "[header] How to tune a server. [title] Measure the load first.", "A", ("x", "y"), "")
        book = KnownAnswers([entry], style="letter")
        assert book.reply("Personal Care and Style: How to tune a server.. Measure the load first.\nA. x\nB. y") == "A"


class TestKeyFiles:
    def test_load_key_reads_json_lines_and_names_a_bad_line(self, tmp_path):
        """Blank lines are skipped; a bad row is named by line and field, without quoting the file."""
        path = write_key(tmp_path / "key.jsonl", mixed_key())
        assert load_key(path) == mixed_key()
        bad = [("not json\n", "line 1 is not JSON"),
               ('{"index": 0, "question": "q", "answer": "A"}\n\n{"index": 0, "question": "r", "answer": "B"}\n',
                'line 3, field "index"'),
               ('{"index": 0, "question": " ", "answer": "A"}\n', 'field "question"'),
               ('{"index": 0, "question": "q", "answer": "E", "choices": ["a", "b"]}\n', 'field "answer"')]  # fmt: skip
        for text, words in bad:
            (tmp_path / "bad.jsonl").write_text(text)
            with pytest.raises(ValueError, match=re.escape(words)):
                load_key(str(tmp_path / "bad.jsonl"))
        with pytest.raises(ValueError, match="no such file"):
            load_key(str(tmp_path / "missing.jsonl"))

    def test_a_key_is_read_again_only_when_its_file_changes(self, tmp_path):
        """Cached per path and modification time: the same object until the file is rewritten."""
        path = write_key(tmp_path / "key.jsonl", mixed_key()[:5])
        first = known_answers(path, accuracy=0.5)
        assert known_answers(path, accuracy=0.5).books[0] is first.books[0]
        write_key(tmp_path / "key.jsonl", mixed_key()[:7])
        os.utime(path, ns=(1, 1))  # a different modification time even within the clock's resolution
        assert len(known_answers(path, accuracy=0.5).books[0].entries) == 7
        assert known_answers("") is None


# --- mockllm over HTTP ------------------------------------------------------------------------------------------


def ask_mock(profile: MockProfile, prompts: list[str], *, stream: bool) -> list[tuple[str, dict]]:
    """(content, usage) of a chat completion per prompt."""

    async def scenario(session, base):
        replies = []
        for prompt in prompts:
            body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "stream": stream}
            if stream:
                body["stream_options"] = {"include_usage": True}
            async with session.post(f"{base}/chat/completions", json=body) as response:
                assert response.status == 200
                if not stream:
                    data = await response.json()
                    replies.append((data["choices"][0]["message"]["content"], data["usage"]))
                    continue
                chunks = [json.loads(d) for _, d in await read_events(response) if d != "[DONE]"]
                text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
                assert all(c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]
                           and c["choices"][0]["finish_reason"] is None)  # fmt: skip
                replies.append((text, chunks[-1]["usage"]))
        return replies

    return run(profile, scenario)


@pytest.mark.parametrize("stream", [False, True])
def test_mockllm_answers_key_questions_at_the_exact_accuracy(tmp_path, stream):
    """Over HTTP, streamed or not: the extracted answers score exactly as expected, tokens counted as before."""
    entries = mixed_key()
    path = write_key(tmp_path / "key.jsonl", entries)
    profile = MockProfile(ttft_ms=0, itl_ms=0, output_tokens=24, answer_key=path, answer_accuracy='{"math": 0.5, "*": 0.8}',
                          answer_style="cot", no_answer_rate=0.1, answer_seed=9)  # fmt: skip
    replies = ask_mock(profile, [mmlu_pro_prompt(e) for e in entries] + ["Tell me a story."], stream=stream)
    book = KnownAnswers(entries, accuracy={"math": 0.5, "*": 0.8}, style="cot", no_answer_rate=0.1, seed=9)
    for entry, (text, usage) in zip(entries, replies, strict=False):
        assert text.strip() == book.reply(mmlu_pro_prompt(entry))
        assert usage["completion_tokens"] == 24
        extracted = mmlu_pro_extract(text)
        outcome = "correct" if extracted == entry.answer else "wrong" if extracted else "no_answer"
        assert outcome == book.outcome(entry.index)
    assert replies[-1][0] == "tok " * 24  # any other prompt is answered as before


def test_mockllm_refuses_a_missing_key_file(tmp_path):
    """A profile naming a key that is not there fails when the app is made, naming the file."""
    from apps.providers.mockllm import make_app

    with pytest.raises(ValueError, match="no such file"):
        make_app(MockProfile(answer_key=str(tmp_path / "missing.jsonl")))


# --- the sim provider -------------------------------------------------------------------------------------------


def test_sim_url_options_set_the_known_answers(tmp_path):
    """answer_key (repeatable), answer_accuracy (a share or per subject), style, rate and seed from the URL."""
    one = write_key(tmp_path / "one.jsonl", mixed_key())
    two = write_key(tmp_path / "two.jsonl", [number_entry(i) for i in range(10)])
    profile = SimProfile.from_url(f"sim://x?zero_latency=1&answer_key={one}&answer_key={two}"
                                  "&answer_accuracy=math:0.5,*:0.8&answer_style=letter&no_answer_rate=0.1&answer_seed=9")  # fmt: skip
    assert profile.answer_key == (one, two)
    assert (profile.answer_accuracy, profile.answer_style, profile.no_answer_rate, profile.answer_seed) == (
        "math:0.5,*:0.8", "letter", 0.1, 9)  # fmt: skip
    adapter = SimAdapter(profile=profile)

    async def ask(prompt: str, stream: bool) -> str:
        request = GenerationRequest(model="sim-small", messages=[{"role": "user", "content": prompt}], stream=stream)
        result = await adapter.generate(None, request)
        assert result.error is None and result.output_tokens == len(result.text.split())
        return result.text

    async def ask_all():
        replies = [await ask(mmlu_pro_prompt(e), stream=e.index % 2 == 0) for e in mixed_key()]
        return replies, await ask(number_entry(4).question, True), await ask("Tell me about caching.", False)

    replies, number, other = asyncio.run(ask_all())
    book = KnownAnswers(mixed_key(), accuracy={"math": 0.5, "*": 0.8}, style="letter", no_answer_rate=0.1, seed=9)
    assert replies == [book.reply(mmlu_pro_prompt(e)) for e in mixed_key()]
    assert sum(r == e.answer for r, e in zip(replies, mixed_key(), strict=True)) == book.expected_counts()["correct"]
    assert number in (number_entry(4).answer, "1801")  # the second key answers its own questions
    assert other not in replies and len(other.split()) > 5  # not a key question: the simulator's text


@pytest.mark.parametrize(
    ("query", "words"),
    [("answer_accuracy=2", "answer_accuracy: the accuracy must be a number between 0 and 1"),
     ("answer_accuracy=math:x", "answer_accuracy"),
     ("answer_style=essay", "answer_style must be auto, cot, letter or gsm8k"),
     ("no_answer_rate=-1", "no_answer_rate must be a number between 0 and 1"),
     ("answer_seed=x", "answer_seed must be a number"),
     ("answer_key=relative/key.jsonl", "answer_key must be an absolute path"),
     ("answer_key={missing}", "answer_key: answer key"),
     ("answer_key={bad}", "answer_key: answer key bad.jsonl, line 2 is not JSON")],
)  # fmt: skip
def test_bad_sim_answer_options_are_refused_naming_the_option(tmp_path, query, words):
    """Each bad known-answer option is a ValueError naming it, as the other sim options are."""
    good = write_key(tmp_path / "key.jsonl", mixed_key())
    (tmp_path / "bad.jsonl").write_text('{"index": 0, "question": "q", "answer": "A"}\nnope\n')
    query = query.format(missing=tmp_path / "missing.jsonl", bad=tmp_path / "bad.jsonl")
    key = "" if "answer_key" in query else f"&answer_key={good}"
    with pytest.raises(ValueError, match=re.escape(words)):
        check_sim_url(f"sim://x?{query}{key}")


def test_answer_options_without_a_key_are_refused():
    """answer_accuracy and the others mean nothing without answer_key: refused, not ignored."""
    with pytest.raises(ValueError, match="answer_accuracy needs answer_key"):
        SimProfile.from_url("sim://x?answer_accuracy=0.5")
    assert SimProfile.from_url("sim://x").known_answers() is None


@pytest.mark.django_db
def test_the_endpoint_form_and_api_refuse_a_bad_answer_key(admin_client_team, admin_api, tmp_path, settings):
    """A simulator endpoint whose key file is missing is a 400 naming base_url, on the page and in the API."""
    settings.SIM_ANSWER_KEY_DIRS = [str(tmp_path)]
    url = f"sim://lab?answer_key={tmp_path / 'missing.jsonl'}"
    body = {"name": "lab sim", "kind": "sim", "base_url": url, "connect_timeout_s": 5, "read_timeout_s": 30,
            "total_timeout_s": 60}  # fmt: skip
    response = admin_client_team.post(reverse("providers:new"), body)
    assert response.status_code == 400 and "no such file" in str(response.context["form"].errors["base_url"])
    api = admin_api.post("/api/v1/providers/endpoints", {"name": "x", "kind": "sim", "base_url": url}, format="json")
    assert api.status_code == 400 and "no such file" in str(api.json()["base_url"])


@pytest.mark.django_db
def test_an_answer_key_outside_the_allowed_directories_is_refused(admin_client_team, admin_api, tmp_path, settings):
    """A user may not point the simulator at any file the server can read: only SIM_ANSWER_KEY_DIRS, and a path
    that climbs out of them with .. or a symbolic link is refused too; nothing is stored."""
    allowed = tmp_path / "keys"
    allowed.mkdir()
    (allowed / "escape").symlink_to(tmp_path)
    settings.SIM_ANSWER_KEY_DIRS = [str(allowed)]
    body = {"name": "lab sim", "kind": "sim", "connect_timeout_s": 5, "read_timeout_s": 30, "total_timeout_s": 60}
    for path in ("/etc/passwd", f"{allowed}/../secret.jsonl", f"{allowed}/escape/secret.jsonl"):
        url = f"sim://lab?answer_key={path}"
        response = admin_client_team.post(reverse("providers:new"), {**body, "base_url": url})
        assert response.status_code == 400
        assert "SIM_ANSWER_KEY_DIRS" in str(response.context["form"].errors["base_url"])
        api = admin_api.post("/api/v1/providers/endpoints", {"name": "x", "kind": "sim", "base_url": url},
                             format="json")  # fmt: skip
        assert api.status_code == 400 and "SIM_ANSWER_KEY_DIRS" in str(api.json()["base_url"])
    assert not ProviderEndpoint.objects.filter(name__in=["lab sim", "x"]).exists()


# --- the demo benchmark -----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_demo_benchmark_measures_both_quantizations_exactly_and_loads_once(team, member, tmp_path, settings):
    """Two suites, one run each over BF16 and AWQ simulators: exact simulated measured scores, AWQ's right items a
    subset of BF16's, and a second load replaces the runs instead of adding to them."""
    from apps.benchmarks import demo
    from apps.benchmarks.models import BenchmarkAnswer, BenchmarkRun, BenchmarkSuite, Status
    from apps.scores.models import Score

    settings.BASE_DIR = tmp_path  # the answer keys go to tmp_path/var/demo-answer-keys
    for data in (demo.arithmetic_jsonl(), demo.knowledge_jsonl()):  # twins would get one answer between them
        questions = [json.loads(line)["question"] for line in data.decode().splitlines()]
        assert len(set(questions)) == len(questions)
    first = demo.load(team, member)
    assert first == {"suites": 2, "items": 70, "runs": 2, "answers": 140, "measured_scores": 4}
    assert sorted(p.name for p in (tmp_path / "var" / "demo-answer-keys").iterdir()) == [
        f"team{team.pk}-gsm8k.jsonl", f"team{team.pk}-mmlu_pro.jsonl"]  # fmt: skip
    second = demo.load(team, member)
    assert second == first
    assert BenchmarkSuite.objects.filter(team=team).count() == 2
    assert BenchmarkRun.objects.filter(team=team, status=Status.COMPLETED).count() == 2
    scores = Score.objects.filter(team=team, origin=Score.Origin.MEASURED).select_related("variant", "benchmark")
    values = {(s.benchmark.name, s.variant.quantization): s.value_pct for s in scores}
    # GSM8K: round(0.86·40) = 34, round(0.80·40) = 32; MMLU-Pro: 3 categories of 10, round(8.6) = 9, 8 each.
    assert values == pytest.approx({("GSM8K", "BF16"): 85.0, ("GSM8K", "AWQ"): 80.0, ("MMLU-Pro", "BF16"): 90.0,
                                    ("MMLU-Pro", "AWQ"): 80.0})  # fmt: skip
    assert all(s.is_simulated for s in scores)
    for benchmark_run in BenchmarkRun.objects.filter(team=team):
        right = {}
        for target in benchmark_run.targets.select_related("variant"):
            answers = BenchmarkAnswer.objects.filter(target=target)
            right[target.variant.quantization] = {a.item_id for a in answers if a.correct}
        assert right["AWQ"] < right["BF16"]
    no_answer = BenchmarkAnswer.objects.filter(run__suite__kind="gsm8k", extracted="", error_code="").count()
    assert no_answer == 2 * 2  # round(0.05 · 40) per target
