"""The request planner: exact lengths, shared prefixes, dataset sampling, trace timing and request assembly."""

import time

import numpy as np
import pytest

from apps.workloads.engine.calibration import CalibrationFit
from apps.workloads.engine.distributions import sample_seconds
from apps.workloads.engine.plan import COMPLETIONS_JOIN, DEFAULT_OUTPUT_TOKENS, build_plan
from apps.workloads.engine.prefix import SEPARATOR
from apps.workloads.engine.spec import normalize, validate_spec
from apps.workloads.engine.tokens import MEAN_WORD_CHARS
from apps.workloads.engine.types import Conversation, ParsedDataset, TraceRow, Turn
from apps.workloads.formats.traces import parse_llmbench_trace, parse_mooncake
from tests.workloads.files import jsonl, llmbench_trace


def _spec(**fields) -> dict:
    """A normalized spec, checked valid first so that a test never plans from a spec the editor would refuse."""
    errors = validate_spec(fields)
    assert errors == [], errors
    return normalize(fields)


def synthetic(**extra) -> dict:
    fields = {
        "source": "synthetic",
        "seed": 7,
        "input_tokens": {"dist": "uniform", "min": 1, "max": 600},
        "output_tokens": {"dist": "uniform", "min": 8, "max": 64},
    }
    return _spec(**(fields | extra))


# --- the seconds sampler -------------------------------------------------------------------------------------------


def test_seconds_sampler_draws_seeded_non_negative_reals():
    """Each shape gives floats ≥ 0 within its bounds, the same for the same seed; a bad shape raises."""
    rng = lambda: np.random.default_rng(3)  # noqa: E731
    assert sample_seconds({"dist": "fixed", "value": 2.5}, 4, rng()).tolist() == [2.5] * 4
    uniform = sample_seconds({"dist": "uniform", "min": 1, "max": 3}, 5000, rng())
    assert uniform.dtype == np.float64 and uniform.min() >= 1 and uniform.max() <= 3
    assert abs(uniform.mean() - 2) < 0.05 and len(np.unique(uniform)) > 4000  # continuous, not integers
    assert np.array_equal(uniform, sample_seconds({"dist": "uniform", "min": 1, "max": 3}, 5000, rng()))
    normal = sample_seconds({"dist": "normal", "mean": 1, "stdev": 2}, 5000, rng())
    assert normal.min() == 0.0 and normal.max() <= 11  # clamped at 0 (default min max(0, mean − 5σ))
    bounded = sample_seconds({"dist": "normal", "mean": 8, "stdev": 3, "min": 5, "max": 9}, 2000, rng())
    assert bounded.min() == 5 and bounded.max() == 9
    lognormal = sample_seconds({"dist": "lognormal", "average": 4, "median_ratio": 0.5, "max": 10}, 5000, rng())
    assert lognormal.min() > 0 and lognormal.max() <= 10
    assert abs(np.median(lognormal) - 2) < 0.15
    with pytest.raises(ValueError, match="dist: must be one of fixed, uniform, normal, lognormal"):
        sample_seconds({"dist": "empirical", "edges": [1, 2], "weights": [1]}, 1, rng())
    with pytest.raises(ValueError, match=r"distribution\.max: is required for uniform"):
        sample_seconds({"dist": "uniform", "min": 1}, 1, rng())


# --- synthetic -----------------------------------------------------------------------------------------------------


def test_synthetic_lengths_are_exact_with_a_tokenizer(test_counter):
    """Over 3,000 single-turn draws the user text has the requested content tokens (≥ 99.5% exactly, every miss
    named in a note), and the output lengths are the spec's draws."""
    plan = build_plan(synthetic(), count=3000, model="m", counter=test_counter)
    assert plan.length_basis == "tokenizer" and not plan.multi_turn and plan.offsets_s is None
    turns = [s.turns[0] for s in plan.sessions]
    delivered = test_counter.count([t.user for t in turns])
    requested = [t.requested_input_tokens for t in turns]
    misses = sum(d != r for d, r in zip(delivered, requested, strict=True))
    assert misses <= 15
    assert (misses > 0) == any("could not be cut to the exact token length" in n for n in plan.notes)
    assert min(requested) >= 1 and max(requested) <= 600 and len(set(requested)) > 400
    assert {t.max_tokens for t in turns} <= set(range(8, 65)) and all(t.think_s == 0.0 for t in turns)


def test_synthetic_plan_is_seeded_and_openings_are_distinct(test_counter):
    """The same spec seed gives the same plan byte for byte; another seed another; no two requests open alike."""
    a = build_plan(synthetic(), count=300, model="m", counter=test_counter)
    b = build_plan(synthetic(), count=300, model="m", counter=test_counter)
    c = build_plan(synthetic(seed=8), count=300, model="m", counter=test_counter)
    users = [s.turns[0].user for s in a.sessions]
    assert users == [s.turns[0].user for s in b.sessions]
    assert users != [s.turns[0].user for s in c.sessions]
    long_ones = [u for u, s in zip(users, a.sessions, strict=True) if s.turns[0].requested_input_tokens >= 16]
    assert len({u[:40] for u in long_ones}) == len(long_ones)


def test_synthetic_prefix_in_the_system_message_is_shared_byte_for_byte(test_counter):
    """Placement system: each session's system message is its prefix, identical bytes for one prefix id, exactly the
    bucket's tokens; the user text has the drawn tokens on top."""
    spec = synthetic(prefix={"buckets": [{"weight": 1, "count": 3, "tokens": 200}], "placement": "system"})
    plan = build_plan(spec, count=200, model="m", counter=test_counter)
    by_id: dict[int, set[str]] = {}
    for session in plan.sessions:
        by_id.setdefault(session.prefix_id, set()).add(session.system)
    assert sorted(by_id) == [0, 1, 2] and all(len(texts) == 1 for texts in by_id.values())
    assert len({next(iter(t)) for t in by_id.values()}) == 3
    assert all(n == 200 for n in test_counter.count([next(iter(t)) for t in by_id.values()]))
    users = test_counter.count([s.turns[0].user for s in plan.sessions])
    assert sum(u + 200 == s.turns[0].requested_input_tokens for u, s in zip(users, plan.sessions, strict=True)) >= 199
    assert plan.request(5, 0, []).messages[0] == {"role": "system", "content": plan.sessions[5].system}


def test_synthetic_prefix_at_the_start_of_the_user_message(test_counter):
    """Placement user: the user text starts with the prefix and a blank line; the whole has prefix + drawn tokens."""
    spec = synthetic(prefix={"buckets": [{"weight": 1, "count": 2, "tokens": 150}], "placement": "user"})
    plan = build_plan(spec, count=300, model="m", counter=test_counter)
    prefixes = {}
    for session in plan.sessions:
        assert session.system is None
        head = session.turns[0].user.split(SEPARATOR, 1)[0]
        assert prefixes.setdefault(session.prefix_id, head) == head
    assert all(n == 150 for n in test_counter.count(list(prefixes.values())))
    counts = test_counter.count([s.turns[0].user for s in plan.sessions])
    exact = sum(c == s.turns[0].requested_input_tokens for c, s in zip(counts, plan.sessions, strict=True))
    assert exact >= 298
    assert all(150 + 1 <= s.turns[0].requested_input_tokens <= 150 + 600 for s in plan.sessions)


def test_completions_puts_the_prefix_in_the_prompt_and_joins_messages(test_counter):
    """With the completions endpoint a system-placed prefix opens the user text, and the prompt is the joined text
    of exactly the requested tokens."""
    spec = synthetic(
        prefix={"buckets": [{"weight": 1, "count": 1, "tokens": 64}], "placement": "system"},
        request={"endpoint": "completions"},
    )
    plan = build_plan(spec, count=50, model="m", counter=test_counter)
    request = plan.request(3, 0, [])
    assert request.endpoint == "completions" and plan.sessions[3].system is None
    assert request.prompt == plan.sessions[3].turns[0].user
    assert len(test_counter.encode(request.prompt)) == request.requested_input_tokens


def test_multi_turn_synthetic_sessions_turns_and_think_times(test_counter):
    """Turns per session come from sessions.turns, think times from think_time_s (none before turn 0), and only the
    first turn has a requested input length."""
    spec = synthetic(
        sessions={
            "turns": {"dist": "uniform", "min": 2, "max": 5},
            "think_time_s": {"dist": "uniform", "min": 0.5, "max": 1.5},
        }
    )
    plan = build_plan(spec, count=100, model="m", counter=test_counter)
    assert plan.multi_turn
    turns = [plan.n_turns(s) for s in range(100)]
    assert min(turns) == 2 and max(turns) == 5
    assert plan.request_count == sum(turns)
    for s, session in enumerate(plan.sessions):
        assert plan.think_s(s, 0) == 0.0 and session.turns[0].requested_input_tokens is not None
        for t in range(1, len(session.turns)):
            assert 0.5 <= plan.think_s(s, t) <= 1.5
            assert session.turns[t].requested_input_tokens is None
    later = [t.user for s in plan.sessions for t in s.turns[1:]]
    assert len(set(later)) == len(later)


def test_request_assembles_system_history_and_user_exactly():
    """messages = [system] + history + [user]; session and turn indexes are set for a multi-turn plan."""
    dataset = ParsedDataset(
        kind="conversations",
        conversations=(
            Conversation("c1", "You are terse.", (Turn("Name three primes.", 12), Turn("And the next?", 4))),
        ),
    )
    spec = _spec(
        source="dataset",
        dataset={"multi_turn": True, "min_input_tokens": None, "min_output_tokens": None},
        sessions={"think_time_s": {"dist": "fixed", "value": 2}},
    )
    plan = build_plan(spec, count=1, model="m", dataset=dataset)
    history = [
        {"role": "user", "content": "Name three primes."},
        {"role": "assistant", "content": "2, 3 and 5."},
    ]
    request = plan.request(0, 1, history)
    assert request.messages == [
        {"role": "system", "content": "You are terse."},
        *history,
        {"role": "user", "content": "And the next?"},
    ]
    assert (request.session_index, request.turn_index, request.max_tokens) == (0, 1, 4)
    assert request.prompt is None and request.requested_input_tokens is None
    assert plan.think_s(0, 1) == 2.0
    first = plan.request(0, 0, [])
    assert first.messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three primes."},
    ]
    assert history == [
        {"role": "user", "content": "Name three primes."},
        {"role": "assistant", "content": "2, 3 and 5."},
    ]  # the caller's history is not changed


def test_completions_prompt_joins_every_message_with_a_blank_line():
    """The completions prompt is system, history and user contents joined by "\\n\\n", roles left out."""
    dataset = ParsedDataset(
        kind="conversations",
        conversations=(Conversation("c1", "Be brief.", (Turn("Hello there", 9), Turn("Why?", 9))),),
    )
    spec = _spec(
        source="dataset",
        dataset={"multi_turn": True, "min_input_tokens": None},
        request={"endpoint": "completions"},
    )
    plan = build_plan(spec, count=1, model="m", dataset=dataset)
    history = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi."}]
    request = plan.request(0, 1, history)
    assert COMPLETIONS_JOIN == "\n\n"
    assert request.prompt == "Be brief.\n\nHello there\n\nHi.\n\nWhy?"
    assert plan.request(0, 0, []).prompt == "Be brief.\n\nHello there"


@pytest.mark.parametrize(
    ("pin", "ignore_eos", "min_tokens"),
    [("none", False, None), ("ignore_eos", True, None), ("min_tokens", False, 40), ("ignore_eos+min_tokens", True, 40)],
)
def test_pin_output_maps_to_ignore_eos_and_min_tokens(pin, ignore_eos, min_tokens):
    """Each pin_output setting sets ignore_eos and/or min_tokens = max_tokens on every request."""
    spec = synthetic(output_tokens={"dist": "fixed", "value": 40}, request={"pin_output": pin})
    request = build_plan(spec, count=2, model="m").request(1, 0, [])
    assert (request.max_tokens, request.ignore_eos, request.min_tokens) == (40, ignore_eos, min_tokens)


def test_sampling_options_model_and_wrap_around():
    """Model, temperature, seed and the spec's sampling options reach the request; s beyond the plan wraps around
    and a single-turn plan leaves session and turn indexes unset."""
    spec = synthetic(
        request={
            "top_k": 20,
            "min_p": 0.1,
            "repetition_penalty": 1.1,
            "stop": ["###"],
            "response_format": {"type": "json_object"},
        }
    )
    plan = build_plan(spec, count=3, model="llama", temperature=0.7, seed=99)
    request = plan.request(4, 0, [])
    assert (request.model, request.temperature, request.seed) == ("llama", 0.7, 99)
    assert (request.top_k, request.min_p, request.repetition_penalty) == (20, 0.1, 1.1)
    assert request.stop == ["###"] and request.response_format == {"type": "json_object"}
    assert request.messages == plan.request(1, 0, []).messages
    assert (request.session_index, request.turn_index) == (None, None)
    assert plan.n_turns(7) == 1


def test_multi_turn_wrap_keeps_the_callers_session_index():
    """A wrapped multi-turn session sends session 0's turns under the session index it was asked for."""
    spec = synthetic(sessions={"turns": {"dist": "fixed", "value": 2}})
    plan = build_plan(spec, count=2, model="m")
    request = plan.request(2, 1, [])
    assert request.session_index == 2 and request.turn_index == 1
    assert request.messages[-1]["content"] == plan.sessions[0].turns[1].user


def test_request_is_fast(test_counter):
    """Building a request from a plan takes well under 200 µs on average (the target is 20 µs; make bench)."""
    spec = synthetic(
        sessions={"turns": {"dist": "fixed", "value": 3}},
        prefix={"buckets": [{"weight": 1, "count": 2, "tokens": 64}]},
    )
    plan = build_plan(spec, count=50, model="m", counter=test_counter, temperature=0.0)
    history = [{"role": "user", "content": "x" * 400}, {"role": "assistant", "content": "y" * 400}] * 2
    n = 5000
    started = time.perf_counter()
    for i in range(n):
        plan.request(i, 2, history)
    mean_us = (time.perf_counter() - started) / n * 1e6
    assert mean_us < 200, f"{mean_us:.1f} µs per request"


def test_without_a_tokenizer_lengths_are_calibrated_or_estimated():
    """With a calibration fit a prompt of N tokens is words_for(N) words (its number "<k>:" one of them); with nothing,
    0.75 words per token; length_basis says which."""
    fit = CalibrationFit(overhead_tokens=10.0, tokens_per_word=1.25, r2=1.0, samples=())
    spec = synthetic(input_tokens={"dist": "fixed", "value": 410})
    calibrated = build_plan(spec, count=5, model="m", calibration=fit)
    assert calibrated.length_basis == "calibrated"
    sizes = [(len(s.turns[0].user) + 1) / MEAN_WORD_CHARS for s in calibrated.sessions]  # words' worth of characters
    assert all(abs(size - fit.words_for(410)) <= 1.5 for size in sizes), sizes  # the "<k>: " opening included
    assert calibrated.sessions[0].turns[0].user.startswith("0: ")
    estimated = build_plan(spec, count=5, model="m")
    assert estimated.length_basis == "estimated"
    sizes = [(len(s.turns[0].user) + 1) / MEAN_WORD_CHARS for s in estimated.sessions]
    assert all(abs(size - round(410 * 0.75)) <= 1.5 for size in sizes), sizes  # the "<k>: " opening included
    assert all(s.turns[0].requested_input_tokens == 410 for s in estimated.sessions)


def test_count_must_be_positive_and_the_source_needs_its_data():
    """count < 1, a dataset spec without a dataset and a trace spec without a trace are refused plainly."""
    with pytest.raises(ValueError, match="count: must be an integer ≥ 1"):
        build_plan(synthetic(), count=0, model="m")
    with pytest.raises(ValueError, match="needs an uploaded dataset"):
        build_plan(_spec(source="dataset"), count=1, model="m")
    with pytest.raises(ValueError, match="needs an uploaded trace"):
        build_plan(_spec(source="trace"), count=1, model="m", dataset=ParsedDataset(kind="conversations"))


# --- datasets ------------------------------------------------------------------------------------------------------


def _dataset(n: int = 400, seed: int = 1) -> ParsedDataset:
    """Conversations with prompts of 1–300 words and references of 1–29 words, some with a system prompt."""
    rng = np.random.default_rng(seed)
    words = ["the", "kettle", "clicked", "off", "in", "the", "kitchen", "and", "a", "thin", "line", "of", "steam"]
    say = lambda k: " ".join(words[i % len(words)] for i in range(int(k)))  # noqa: E731
    conversations = []
    for i in range(n):
        turns = tuple(
            Turn(user=f"q{i}.{t} " + say(rng.integers(1, 300)), reference=say(rng.integers(1, 30)))
            for t in range(1 + i % 3)
        )
        conversations.append(Conversation(f"c{i}", "Be brief." if i % 4 == 0 else None, turns))
    return ParsedDataset(kind="conversations", conversations=tuple(conversations), skipped={"not_alternating": 3})


def test_dataset_sampling_honours_filters_and_counts_skips(test_counter):
    """Every planned first prompt is within the input bounds, its output ≥ the minimum and the total ≤ the maximum;
    with the whole dataset examined, the skips by reason equal a brute-force count, and the parser's skips carry."""
    dataset = _dataset()
    options = {"sample": 1000, "min_input_tokens": 60, "max_input_tokens": 300, "max_total_tokens": 320}
    plan = build_plan(
        _spec(source="dataset", dataset=options), count=400, model="m", dataset=dataset, counter=test_counter
    )
    assert plan.length_basis == "tokenizer"
    expected = {"not_alternating": 3}
    for conversation in dataset.conversations:
        turn = conversation.turns[0]
        system = len(test_counter.encode(conversation.system)) if conversation.system else 0
        prompt, output = system + len(test_counter.encode(turn.user)), len(test_counter.encode(turn.reference))
        reason = (
            "input_below_min" if prompt < 60
            else "input_above_max" if prompt > 300
            else "output_below_min" if output < 4
            else "total_above_max" if prompt + output > 320
            else None
        )  # fmt: skip
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert plan.skipped == expected
    kept = 400 - sum(v for k, v in expected.items() if k != "not_alternating")
    assert any(f"{kept:,} conversations are planned; they are repeated" in n for n in plan.notes)
    for session in plan.sessions[:kept]:
        turn = session.turns[0]
        assert 60 <= turn.requested_input_tokens <= 300
        assert turn.max_tokens >= 4 and turn.requested_input_tokens + turn.max_tokens <= 320
        parts = [p for p in (session.system, turn.user) if p]
        assert turn.requested_input_tokens == sum(test_counter.count(parts))
    # fewer than count passed: they are repeated in order
    assert all(plan.sessions[i].turns[0].user == plan.sessions[i % kept].turns[0].user for i in range(kept, 400))
    assert set(expected) == {"not_alternating", "input_below_min", "input_above_max", "output_below_min",
                             "total_above_max"}  # fmt: skip


def test_dataset_sampling_is_seeded_and_stops_when_enough_pass(test_counter):
    """The spec seed fixes the shuffle; another seed draws another order; only enough candidates are examined."""
    dataset = _dataset()
    spec = _spec(source="dataset", seed=5, dataset={"sample": 50})
    a = build_plan(spec, count=50, model="m", dataset=dataset, counter=test_counter)
    b = build_plan(spec, count=50, model="m", dataset=dataset, counter=test_counter)
    c = build_plan(_spec(source="dataset", seed=6, dataset={"sample": 50}), count=50, model="m", dataset=dataset)
    first = [s.turns[0].user for s in a.sessions]
    assert first == [s.turns[0].user for s in b.sessions] and first != [s.turns[0].user for s in c.sessions]
    assert len(set(first)) == 50
    examined = sum(a.skipped.values()) - 3 + 50
    assert any(f"{examined:,} of 400 conversations examined, 50 kept" in n for n in a.notes)
    assert examined < 200


def test_dataset_output_lengths_by_source(test_counter):
    """reference = the reference's tokens (or the dataset's own count), file = the turn's output_tokens, distribution
    = the spec's draws; a turn with nothing falls back to 128 tokens with a note."""
    conversations = (
        Conversation("a", None, (Turn("first prompt here", reference="one two three four five six"),)),
        Conversation("b", None, (Turn("second prompt here", ref_output_tokens=33, output_tokens=77),)),
        Conversation("c", None, (Turn("third prompt here", output_tokens=12),)),
    )
    dataset = ParsedDataset(kind="conversations", conversations=conversations)
    open_filters = {"min_input_tokens": None, "min_output_tokens": None, "max_total_tokens": None}

    def outputs(output_from, **extra):
        spec = _spec(source="dataset", dataset=open_filters | {"output_from": output_from}, **extra)
        plan = build_plan(spec, count=3, model="m", dataset=dataset, counter=test_counter)
        return {s.turns[0].user.split()[0]: s.turns[0].max_tokens for s in plan.sessions}, plan.notes

    by_reference, notes = outputs("reference")
    reference_tokens = len(test_counter.encode("one two three four five six"))
    assert by_reference == {"first": reference_tokens, "second": 33, "third": DEFAULT_OUTPUT_TOKENS}
    assert any("1 turn(s) had no output length (reference)" in n for n in notes)
    by_file, _ = outputs("file")
    assert by_file == {"first": DEFAULT_OUTPUT_TOKENS, "second": 77, "third": 12}
    by_dist, _ = outputs("distribution", output_tokens={"dist": "fixed", "value": 9})
    assert by_dist == {"first": 9, "second": 9, "third": 9}
    with_dist, notes = outputs("file", output_tokens={"dist": "fixed", "value": 21})
    assert with_dist["first"] == 21 and not any("had no output length" in n for n in notes)


def test_dataset_without_a_tokenizer_counts_characters_and_says_so():
    """No tokenizer: filters use ceil(chars / 4), a note says so, and no requested input length is claimed."""
    conversations = tuple(
        Conversation(str(i), None, (Turn("x" * (4 * n), reference="y" * 40),)) for i, n in enumerate((3, 5, 9))
    )
    spec = _spec(source="dataset", dataset={"min_input_tokens": 5, "max_input_tokens": 8})
    plan = build_plan(
        spec, count=1, model="m", dataset=ParsedDataset(kind="conversations", conversations=conversations)
    )
    assert plan.sessions[0].turns[0].user == "x" * 20 and plan.sessions[0].turns[0].max_tokens == 10
    assert plan.length_basis == "estimated" and plan.sessions[0].turns[0].requested_input_tokens is None
    assert any("characters / 4" in n for n in plan.notes)


def test_dataset_where_nothing_passes_is_a_clear_error(test_counter):
    """When the filters reject every conversation the error says so with the skips."""
    spec = _spec(source="dataset", dataset={"min_input_tokens": 5000, "max_input_tokens": 6000})
    with pytest.raises(ValueError, match=r"no conversation passes the length filters \(skipped: input_below_min 400"):
        build_plan(spec, count=10, model="m", dataset=_dataset(), counter=test_counter)


def test_dataset_multi_turn_keeps_turns_up_to_max_turns_with_a_shared_prefix(test_counter):
    """multi_turn: each conversation's turns up to max_turns become a session, think times from sessions; a prefix
    in the system message is followed by the conversation's own system prompt."""
    spec = _spec(
        source="dataset",
        dataset={"multi_turn": True, "max_turns": 2, "min_input_tokens": None, "max_total_tokens": None},
        sessions={"think_time_s": {"dist": "fixed", "value": 1.5}},
        prefix={"buckets": [{"weight": 1, "count": 1, "tokens": 32}]},
    )
    dataset = _dataset(60)
    plan = build_plan(spec, count=60, model="m", dataset=dataset, counter=test_counter)
    assert plan.multi_turn
    originals = {c.turns[0].user: c for c in dataset.conversations}
    prefixes = set()
    for s, session in enumerate(plan.sessions):
        conversation = originals[session.turns[0].user]
        assert [t.user for t in session.turns] == [t.user for t in conversation.turns[:2]]
        prefix, _, own = session.system.partition(SEPARATOR)
        prefixes.add(prefix)
        assert own == (conversation.system or "")
        assert [plan.think_s(s, t) for t in range(plan.n_turns(s))] == [0.0] + [1.5] * (plan.n_turns(s) - 1)
    assert len(prefixes) == 1 and len(test_counter.encode(prefixes.pop())) == 32
    assert max(plan.n_turns(s) for s in range(60)) == 2


# --- traces --------------------------------------------------------------------------------------------------------


def test_trace_window_and_speedup_set_the_offsets(test_counter):
    """Rows inside [window_start, window_end) are kept, offsets from the window start divided by the speed-up;
    rows outside are counted; lengths are exact."""
    rows = [
        {"timestamp_ms": t, "input_tokens": 40 + i, "output_tokens": 5 + i}
        for i, t in enumerate((0, 1000, 2500, 4000, 9000))
    ]
    dataset = parse_llmbench_trace(llmbench_trace(rows))
    spec = _spec(source="trace", trace={"window_start_s": 1, "window_end_s": 5, "speedup": 2})
    plan = build_plan(spec, count=100, model="m", dataset=dataset, counter=test_counter)
    assert plan.offsets_s.tolist() == pytest.approx([0.0, 0.75, 1.5])
    assert [s.turns[0].offset_s for s in plan.sessions] == pytest.approx([0.0, 0.75, 1.5])
    assert [s.turns[0].max_tokens for s in plan.sessions] == [6, 7, 8]
    assert [s.turns[0].requested_input_tokens for s in plan.sessions] == [41, 42, 43]
    assert test_counter.count([s.turns[0].user for s in plan.sessions]) == [41, 42, 43]
    assert plan.skipped == {"outside_window": 2} and not plan.multi_turn
    capped = build_plan(spec, count=2, model="m", dataset=dataset, counter=test_counter)
    assert capped.request_count == 2 and any("first 2 of the 3 requests" in n for n in capped.notes)


def test_an_empty_trace_window_is_a_clear_error():
    """A window holding no row raises ValueError naming the window and the trace's span."""
    dataset = parse_llmbench_trace(
        llmbench_trace([{"timestamp_ms": 0, "input_tokens": 4}, {"timestamp_ms": 3000, "input_tokens": 4}])
    )
    spec = _spec(source="trace", trace={"window_start_s": 10, "window_end_s": 20})
    with pytest.raises(
        ValueError, match=r"window \[10 s, 20 s\) holds no requests; the trace's rows run from 0 s to 3 s"
    ):
        build_plan(spec, count=10, model="m", dataset=dataset)


def test_mooncake_rows_sharing_hash_ids_share_prefix_bytes(test_counter):
    """Rows with the same leading hash ids start with the same bytes for those blocks, different first ids share
    nothing, and each prompt has input_length tokens."""
    records = [
        {"timestamp": 0, "input_length": 1100, "output_length": 40, "hash_ids": [0, 1, 2]},
        {"timestamp": 0, "input_length": 600, "output_length": 12, "hash_ids": [0, 3]},
        {"timestamp": 250, "input_length": 1030, "output_length": 90, "hash_ids": [0, 1, 4]},
        {"timestamp": 300, "input_length": 700, "output_length": 9, "hash_ids": [5, 6]},
    ]
    plan = build_plan(
        _spec(source="trace"), count=10, model="m", dataset=parse_mooncake(jsonl(records)), counter=test_counter
    )
    a, b, c, d = (s.turns[0].user for s in plan.sessions)
    assert a[: _common(a, c)] == c[: _common(a, c)]
    shared_two_blocks = len(test_counter.encode(a[: _common(a, c)]))
    assert 1024 <= shared_two_blocks < 1030
    assert 512 <= len(test_counter.encode(a[: _common(a, b)])) < 600
    assert _common(a, d) < 10
    assert test_counter.count([a, b, c, d]) == [1100, 600, 1030, 700]
    assert plan.offsets_s.tolist() == [0.0, 0.0, 0.25, 0.3]


def test_mooncake_blocks_without_a_tokenizer_still_share_bytes():
    """Without a tokenizer the blocks are words, and shared leading ids still give identical leading bytes."""
    records = [
        {"timestamp": 0, "input_length": 1100, "output_length": 4, "hash_ids": [0, 1, 2]},
        {"timestamp": 5, "input_length": 1030, "output_length": 4, "hash_ids": [0, 1, 4]},
    ]
    plan = build_plan(_spec(source="trace"), count=10, model="m", dataset=parse_mooncake(jsonl(records)))
    a, c = (s.turns[0].user for s in plan.sessions)
    shared = a[: _common(a, c)]
    assert (len(shared) + 1) / MEAN_WORD_CHARS >= 2 * round(512 * 0.75) - 2
    assert plan.length_basis == "estimated"


def test_trace_sessions_group_rows_with_their_own_offsets_and_delays(test_counter):
    """Rows with a session id are turns in file order; timestamped later turns keep their scaled offset, delayed ones
    become think time; literal prompts are sent as they are; sessions are ordered by their first offset."""
    rows = [
        {"timestamp_ms": 500, "input_tokens": 30, "output_tokens": 8, "session_id": "late"},
        {"timestamp_ms": 0, "input_tokens": 20, "output_tokens": 4, "session_id": "early"},
        {"timestamp_ms": 4000, "prompt": "and in Python?", "output_tokens": 16, "session_id": "early"},
        {"timestamp_ms": 1000, "input_tokens": 10},
    ]
    spec = _spec(source="trace", trace={"speedup": 4})
    plan = build_plan(
        spec, count=10, model="m", dataset=parse_llmbench_trace(llmbench_trace(rows)), counter=test_counter
    )
    assert plan.multi_turn and plan.offsets_s.tolist() == [0.0, 0.125, 0.25]
    early = plan.sessions[0]
    assert [t.offset_s for t in early.turns] == [0.0, 1.0] and early.turns[1].user == "and in Python?"
    assert [plan.think_s(0, t) for t in range(2)] == [0.0, 1.0]  # the scaled gap, for engines timing by think
    assert early.turns[1].requested_input_tokens is None and plan.n_turns(0) == 2 and plan.n_turns(1) == 1
    assert plan.sessions[2].turns[0].max_tokens == DEFAULT_OUTPUT_TOKENS
    assert any("1 row(s) give no output length" in n for n in plan.notes)
    delayed = ParsedDataset(
        kind="trace",
        rows=(
            TraceRow(0.0, 20, None, 4, session="u"),
            TraceRow(None, 20, None, 4, session="u", delay_ms=2000.0),
            TraceRow(None, None, "literal", 4, session="v", delay_ms=1000.0),
        ),
    )
    plan = build_plan(spec, count=10, model="m", dataset=delayed, counter=test_counter)
    u, v = plan.sessions
    assert u.turns[1].offset_s is None and u.turns[1].think_s == pytest.approx(0.5)
    # v has no earlier row of its own, so its delay runs from the file's previous row (2 s): 3 s / 4
    assert v.turns[0].offset_s == pytest.approx(0.75) and v.turns[0].user == "literal"
    assert v.turns[0].requested_input_tokens == len(test_counter.encode("literal"))


def _common(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n
