"""Load sweeps with workloads, end to end over real HTTP: each source and request option is driven against mockllm,
and the tests check what the server received (prompt lengths, history, shared prefix bytes, schedule, body fields)
and what was stored (the run's workload version, the samples' workload columns, the summary's workload figures)."""

import functools
import itertools
import statistics
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from aiohttp import web

from apps.batches.models import LoadSweep, Status
from apps.batches.runner import run_sweep
from apps.batches.services import sweep_create
from apps.hardware.models import PerformanceRun, RequestSample
from apps.providers.mockllm import TOKEN_TEXT, MockProfile, clear_received, make_app, received_requests
from apps.providers.models import ProviderEndpoint
from apps.workloads.engine.tokens import MEAN_WORD_CHARS, load_tokenizer
from apps.workloads.services import dataset_upload, tokenizer_upload, workload_create
from tests.factories import HardwareProfileFactory, ModelVariantFactory
from tests.threaded import running_in_thread
from tests.workloads import files
from tests.workloads.conftest import tokenizer_json

# The runner writes progress from a worker thread (its own database connection): commit for real.
pytestmark = pytest.mark.django_db(transaction=True)

FAST = dict(ttft_ms=5, itl_ms=1, output_tokens=64)
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"


@functools.cache
def tokenizer_bytes() -> bytes:
    return tokenizer_json()


@functools.cache
def counter():
    return load_tokenizer(tokenizer_bytes())


def n_tokens(text: str) -> int:
    return counter().count([text])[0]


@dataclass
class Mock:
    url: str
    app: web.Application

    def received(self, path: str | None = None) -> list[dict]:
        return [r for r in received_requests(self.app) if path is None or r["path"] == path]


@contextmanager
def serving(profile: MockProfile):
    """mockllm with `profile` in a thread of its own, for as long as the block runs."""

    async def start():
        app = make_app(profile)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    async def stop(runner):
        await runner.cleanup()

    with running_in_thread(start, stop) as runner:
        yield Mock(f"http://127.0.0.1:{runner.addresses[0][1]}/v1", runner.app)


@pytest.fixture
def mock():
    with serving(MockProfile(**FAST)) as server:
        yield server


def endpoint_for(team, server: Mock) -> ProviderEndpoint:
    return ProviderEndpoint.objects.create(
        team=team, name=f"mock {ProviderEndpoint.objects.count()}", kind="openai_compatible", base_url=server.url,
        model_names=["mock"],
    )  # fmt: skip


def tokenizer(team):
    return tokenizer_upload(team=team, user=None, name="tiny", content=tokenizer_bytes())


def workload(team, spec: dict, name: str = "w", **kwargs):
    return workload_create(team=team, user=None, name=name, spec=spec, **kwargs)


def run(team, server: Mock, wl, **fields) -> LoadSweep:
    """A sweep of `wl`'s latest version against the mock, run to the end in this thread."""
    defaults = {
        "name": "sweep", "endpoint": endpoint_for(team, server), "model": "mock",
        "variant": ModelVariantFactory(team=team), "hardware": HardwareProfileFactory(team=team), "mode": "closed",
        "levels": [1], "step_request_count": 4, "workload_version": wl.latest,
    }  # fmt: skip
    defaults.update(fields)
    sweep = sweep_create(team=team, user=None, **defaults)
    assert run_sweep(sweep.pk) == Status.COMPLETED, LoadSweep.objects.get(pk=sweep.pk).error
    sweep.refresh_from_db()
    return sweep


def runs_of(sweep: LoadSweep) -> list[PerformanceRun]:
    return [step.run for step in sweep.steps.order_by("index")]


def samples_of(run_: PerformanceRun) -> list[RequestSample]:
    return list(RequestSample.objects.filter(run=run_).order_by("start_offset_ms"))


def synthetic(**extra) -> dict:
    spec = {
        "source": "synthetic", "seed": 3, "input_tokens": {"dist": "uniform", "min": 20, "max": 60},
        "output_tokens": {"dist": "uniform", "min": 3, "max": 8},
    }  # fmt: skip
    spec.update(extra)
    return spec


def user_text(body: dict) -> str:
    return body["messages"][-1]["content"]


def sessions_in(entries: list[dict]) -> list[list[dict]]:
    """The bodies of each session in order of its turns, sessions by their first message (the same first message
    in two sessions would be one group: the tests' sessions all open differently)."""
    groups: dict[str, list[dict]] = {}
    for entry in entries:
        body = entry["body"]
        opening = next(m["content"] for m in body["messages"] if m["role"] == "user")
        groups.setdefault(opening, []).append(body)
    return [sorted(bodies, key=lambda b: len(b["messages"])) for bodies in groups.values()]


def check_history(turns: list[dict], system: bool = False) -> None:
    """Turn t sends [system?] + every earlier exchange, the assistant ones holding exactly what the mock streamed
    back (content only), then turn t's new user message."""
    head = 1 if system else 0
    for t, body in enumerate(turns):
        messages = body["messages"]
        assert len(messages) == head + 2 * t + 1
        assert [m["role"] for m in messages[head:]] == ["user", "assistant"] * t + ["user"]
        if t:
            previous = turns[t - 1]
            assert messages[: head + 2 * t - 1] == previous["messages"]
            streamed = TOKEN_TEXT * previous["max_tokens"]  # ignore_eos: exactly max_tokens tokens of "tok "
            assert messages[head + 2 * t - 1] == {"role": "assistant", "content": streamed}


# --- 1. synthetic with a tokenizer --------------------------------------------------------------------------------


def test_synthetic_lengths_are_token_exact_and_steps_send_distinct_prompts(team, mock):
    wl = workload(team, synthetic(), tokenizer=tokenizer(team))
    sweep = run(team, mock, wl, levels=[1, 2], step_request_count=6)
    received = mock.received()
    assert [r["path"] for r in received] == [CHAT] * 12  # no calibration probe: the tokenizer counts
    bodies = [r["body"] for r in received]
    assert all(b["ignore_eos"] is True and b["stream"] is True and b["model"] == "mock" for b in bodies)
    assert all(len(b["messages"]) == 1 for b in bodies)
    sent = Counter((n_tokens(user_text(b)), b["max_tokens"]) for b in bodies)
    runs = runs_of(sweep)
    samples = [s for r in runs for s in samples_of(r)]
    stored = Counter((s.requested_input_tokens, s.requested_output_tokens) for s in samples)
    assert sent == stored and len(set(sent)) > 3  # each prompt re-counted is its requested length; lengths vary
    assert all(s.output_tokens == s.requested_output_tokens and s.error_code == "" for s in samples)
    for r in runs:
        assert r.workload_version_id == wl.latest.pk
        assert r.token_calibration == {"method": "tokenizer", "tokenizer": "tiny"}
        assert r.length_report["output"]["mean_signed_pct"] == 0
    step1, step2 = {user_text(b) for b in bodies[:6]}, {user_text(b) for b in bodies[6:]}
    assert len(step1) == len(step2) == 6 and not step1 & step2


# --- 2. shared prefixes -------------------------------------------------------------------------------------------


def test_shared_prefixes_are_byte_identical_and_hit_the_cache(team):
    spec = synthetic(
        input_tokens={"dist": "fixed", "value": 24}, output_tokens={"dist": "fixed", "value": 3},
        prefix={"buckets": [{"weight": 1, "count": 3, "tokens": 80}]},
    )  # fmt: skip
    wl = workload(team, spec, tokenizer=tokenizer(team))
    with serving(MockProfile(**FAST, prefix_cache=True)) as server:
        sweep = run(team, server, wl, levels=[1], step_request_count=12)
        bodies = [r["body"] for r in server.received()]
    assert len(bodies) == 12
    assert all([m["role"] for m in b["messages"]] == ["system", "user"] for b in bodies)
    systems = [b["messages"][0]["content"] for b in bodies]
    uses = Counter(systems)
    assert len(uses) == 3  # one distinct system text per prefix of the bucket
    assert all(n_tokens(text) == 80 for text in uses)
    assert len({user_text(b) for b in bodies}) == 12  # unique suffixes
    samples = samples_of(runs_of(sweep)[0])  # one stream: sample order is arrival order
    seen = set()
    for body, sample in zip(bodies, samples, strict=True):
        system = body["messages"][0]["content"]
        assert sample.requested_input_tokens == 80 + 24 == n_tokens(system) + n_tokens(user_text(body))
        if system in seen:  # the prefix's whole 64-character blocks come from the cache
            assert sample.cached_tokens >= len(system) // 64 * 64 // 4 > 0
        else:
            assert sample.cached_tokens == 0
        seen.add(system)
    cached = runs_of(sweep)[0].summary.metrics["cached_tokens"]
    assert cached["reported"] == runs_of(sweep)[0].summary.request_count and cached["mean"] > 0
    assert cached["share_of_input"] > 0


# --- 3. multi-turn sessions ---------------------------------------------------------------------------------------


def test_multi_turn_sessions_carry_the_real_responses_and_think_time(team, mock):
    spec = synthetic(
        output_tokens={"dist": "uniform", "min": 3, "max": 9},
        sessions={"turns": {"dist": "fixed", "value": 3}, "think_time_s": {"dist": "fixed", "value": 0.05}},
    )  # fmt: skip
    wl = workload(team, spec, tokenizer=tokenizer(team))
    sweep = run(team, mock, wl, levels=[2], step_request_count=6)
    received = mock.received()
    assert len(received) == 6
    sessions = sessions_in(received)
    assert len(sessions) == 2 and all(len(turns) == 3 for turns in sessions)
    for turns in sessions:
        check_history(turns)
        assert len({user_text(b) for b in turns}) == 3  # every turn adds a new user message
    # The next turn goes out no sooner than think time after the previous answer ended (mock's clock: its arrival).
    for turns in sessions:
        times = [r["received"] for r in received if r["body"] in turns]
        for t in range(2):
            answer_s = (FAST["ttft_ms"] + (turns[t]["max_tokens"] - 1) * FAST["itl_ms"]) / 1000
            assert times[t + 1] - times[t] >= answer_s + 0.05
    run_ = runs_of(sweep)[0]
    samples = samples_of(run_)
    assert sorted((s.session_index, s.turn_index) for s in samples) == sorted(
        (s, t) for s in {x.session_index for x in samples} for t in range(3)
    )
    assert len({s.session_index for s in samples}) == 2
    by_session: dict[int, list[RequestSample]] = {}
    for s in samples:
        by_session.setdefault(s.session_index, []).append(s)
    for turns in by_session.values():
        turns.sort(key=lambda s: s.turn_index)
        for before, after in itertools.pairwise(turns):
            assert after.start_offset_ms - (before.start_offset_ms + before.e2e_ms) >= 50 - 1
        # Later turns carry the history: the server counts more input.
        assert turns[0].input_tokens < turns[1].input_tokens < turns[2].input_tokens
    metrics = run_.summary.metrics
    assert sorted(metrics["whole_step"]["by_turn"]) == ["0", "1", "2"]
    assert all(metrics["whole_step"]["by_turn"][t]["count"] == 2 for t in "012")
    assert metrics["sessions"]["count"] == metrics["sessions"]["completed"] == 2
    assert metrics["sessions"]["aborted"] == 0 and metrics["sessions"]["turns_mean"] == 3


# --- 4. dataset conversations -------------------------------------------------------------------------------------


def test_dataset_conversations_send_their_human_turns_in_order(team, mock):
    items = [
        files.sharegpt_item(
            f"c{i}",
            *([("system", f"You are assistant number {i}, be brief.")] if i == 1 else []),
            *(
                pair
                for k in range(3)
                for pair in (
                    ("human", f"Conversation {i}, question {k}: how many sides has a shape number {k + 3}?"),
                    ("gpt", f"Answer {k} of conversation {i}: it has {k + 3} sides, as its name says."),
                )
            ),
        )
        for i in range(3)
    ]
    dataset = dataset_upload(team=team, user=None, name="chats", content=files.sharegpt(items), filename="c.json")
    spec = {
        "source": "dataset", "seed": 1,
        "dataset": {"multi_turn": True, "min_input_tokens": 1, "min_output_tokens": 1, "sample": 3},
    }  # fmt: skip
    wl = workload(team, spec, dataset=dataset)
    sweep = run(team, mock, wl, levels=[1], step_request_count=9)
    received = mock.received(CHAT)
    assert len(received) == 9  # no calibration for a dataset's own text
    humans = {item["id"]: [c["value"] for c in item["conversations"] if c["from"] == "human"] for item in items}
    systems = {item["id"]: next((c["value"] for c in item["conversations"] if c["from"] == "system"), None)
               for item in items}  # fmt: skip
    sessions = sessions_in(received)
    assert len(sessions) == 3
    for turns in sessions:
        first = user_text(turns[0])
        item_id = next(k for k, v in humans.items() if v[0] == first)
        has_system = systems[item_id] is not None
        if has_system:
            assert all(b["messages"][0] == {"role": "system", "content": systems[item_id]} for b in turns)
        check_history(turns, system=has_system)
        assert [user_text(b) for b in turns] == humans[item_id]  # the dataset's human turns, in order
    samples = samples_of(runs_of(sweep)[0])
    assert sorted(s.turn_index for s in samples) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert runs_of(sweep)[0].workload_version_id == wl.latest.pk


# --- 5. trace replay ----------------------------------------------------------------------------------------------


def common_prefix_tokens(a: str, b: str) -> int:
    """Content tokens of the longest common leading text of `a` and `b`."""
    same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return n_tokens(a[:same])


def test_mooncake_trace_replays_on_schedule_with_shared_blocks(team, mock):
    # 20 rows 50 ms apart; each has 3 blocks of 512: block 1 shared by all, block 2 or 3 by rows of the same parity.
    rows = [
        {"timestamp": 50 * i, "input_length": 1024 + 20 + i, "output_length": 2, "hash_ids": [1, 2 + i % 2, 100 + i]}
        for i in range(20)
    ]
    dataset = dataset_upload(team=team, user=None, name="mc", content=files.jsonl(rows), filename="t.jsonl",
                             fmt="mooncake")  # fmt: skip
    wl = workload(team, {"source": "trace", "seed": 2}, dataset=dataset, tokenizer=tokenizer(team))
    sweep = run(team, mock, wl, mode="open", levels=[1, 2], step_request_count=20)
    received = mock.received()
    assert len(received) == 40 and {r["path"] for r in received} == {CHAT}
    for level, step in ((1, received[:20]), (2, received[20:])):
        times = [r["received"] for r in step]
        gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(times)]
        expected_ms = 50 / level
        assert 0.8 * expected_ms <= statistics.median(gaps_ms) <= 1.2 * expected_ms, gaps_ms
        assert abs((times[-1] - times[0]) * 1000 - 19 * expected_ms) <= 0.1 * 19 * expected_ms
        prompts = [user_text(r["body"]) for r in step]
        # Rows go out in trace order (each prompt is its row's exact length), every step replaying the same rows.
        assert [n_tokens(p) for p in prompts] == [row["input_length"] for row in rows]
        assert [r["body"]["max_tokens"] for r in step] == [2] * 20
    prompts = [user_text(r["body"]) for r in received[:20]]
    assert prompts == [user_text(r["body"]) for r in received[20:]]
    for i in range(20):
        for j in range(i + 1, 20):
            shared = common_prefix_tokens(prompts[i], prompts[j])
            if i % 2 == j % 2:  # two leading blocks in common, the third differs
                assert 2 * 512 - 2 <= shared < 2 * 512 + 10
            else:  # only the first block
                assert 512 - 2 <= shared < 512 + 10
    for run_ in runs_of(sweep):
        assert run_.request_rate_rps is None and run_.concurrency is None
        assert run_.workload_version_id == wl.latest.pk
        assert {s.requested_input_tokens for s in samples_of(run_)} == {row["input_length"] for row in rows}
    assert all(step.dispatch_delay_p99_ms is not None for step in sweep.steps.all())


# --- 6. completions endpoint --------------------------------------------------------------------------------------


def test_completions_endpoint_sends_a_prompt_string(team, mock):
    wl = workload(team, synthetic(request={"endpoint": "completions"}), tokenizer=tokenizer(team))
    sweep = run(team, mock, wl, step_request_count=4)
    received = mock.received()
    assert [r["path"] for r in received] == [COMPLETIONS] * 4
    bodies = [r["body"] for r in received]
    assert all(isinstance(b["prompt"], str) and "messages" not in b for b in bodies)
    samples = samples_of(runs_of(sweep)[0])
    assert len(samples) == 4 and all(s.error_code == "" for s in samples)
    assert Counter((n_tokens(b["prompt"]), b["max_tokens"]) for b in bodies) == Counter(
        (s.requested_input_tokens, s.requested_output_tokens) for s in samples
    )
    assert all(s.output_tokens == s.requested_output_tokens for s in samples)


# --- 7. reasoning -------------------------------------------------------------------------------------------------


def test_reasoning_is_timed_apart_and_kept_out_of_the_history(team):
    spec = synthetic(sessions={"turns": {"dist": "fixed", "value": 2}})
    wl = workload(team, spec, tokenizer=tokenizer(team))
    with serving(MockProfile(ttft_ms=5, itl_ms=2, output_tokens=64, reasoning_tokens=5)) as server:
        sweep = run(team, server, wl, levels=[1], step_request_count=4)
        received = server.received()
    samples = samples_of(runs_of(sweep)[0])
    assert len(samples) == 4
    assert all(s.reasoning_tokens == 5 for s in samples)
    assert all(s.ttfot_ms > s.ttft_ms for s in samples)  # five reasoning deltas before the first answer token
    # The answer is due 5 ITLs (10 ms) after the first reasoning delta; a loaded client reads the first one late,
    # so only the lower bound of one ITL is checked.
    assert statistics.median(s.ttfot_ms - s.ttft_ms for s in samples) >= 2
    assert all(s.output_tokens == s.requested_output_tokens + 5 for s in samples)  # usage counts both
    reasoning = runs_of(sweep)[0].summary.metrics["reasoning"]
    assert reasoning["reasoning_tokens_mean"] == 5 and reasoning["ttfot_ms"]["p50"] > 0
    sessions = sessions_in(received)
    assert len(sessions) == 2
    for turns in sessions:
        check_history(turns)  # the assistant message is the answer only: "tok " × max_tokens, no "hmm "
        assert all("hmm" not in m["content"] for b in turns for m in b["messages"] if m["role"] == "assistant")


# --- 8. calibration without a tokenizer ---------------------------------------------------------------------------


def test_without_a_tokenizer_lengths_are_calibrated_against_the_server(team, mock):
    spec = synthetic(input_tokens={"dist": "uniform", "min": 200, "max": 400}, output_tokens={"dist": "fixed",
                                                                                                "value": 4})  # fmt: skip
    wl = workload(team, spec)
    sweep = run(team, mock, wl, levels=[2], step_request_count=8)
    calibration = sweep.token_calibration
    assert calibration["method"] == "probe" and calibration["tokens_per_word"] > 0
    received = mock.received()
    probes, requests = received[:6], received[6:]
    assert [r["body"]["max_tokens"] for r in probes] == [1] * 6
    # n words' worth of characters (words_text balances by length, within half a word)
    sizes = [(len(user_text(r["body"])) + 1) / MEAN_WORD_CHARS for r in probes]
    assert all(abs(size - n) <= 1 for size, n in zip(sizes, [32, 128, 512, 1024, 2048, 64], strict=True)), sizes
    assert len(requests) == 8 and all(r["body"]["max_tokens"] == 4 for r in requests)
    run_ = runs_of(sweep)[0]
    assert run_.token_calibration["method"] == "probe"
    assert run_.token_calibration["tokens_per_word"] == calibration["tokens_per_word"]
    report = run_.length_report["input"]
    assert report["n"] == 8 and abs(report["mean_signed_pct"]) <= 3, report
    samples = samples_of(run_)
    # What the mock counted (ceil(chars / 4)) is what was stored as delivered.
    assert sorted(s.input_tokens for s in samples) == sorted(-(-len(user_text(r["body"])) // 4) for r in requests)


# --- 9. warm-up ---------------------------------------------------------------------------------------------------


def test_warm_up_requests_are_stored_and_left_out_of_the_statistics(team, mock):
    wl = workload(team, synthetic(), tokenizer=tokenizer(team))
    sweep = run(team, mock, wl, levels=[1, 2], step_request_count=6, warmup_requests=3)
    assert len(mock.received()) == 2 * 9
    for run_ in runs_of(sweep):
        samples = samples_of(run_)
        assert len(samples) == 9
        assert [s.phase for s in samples[:3]] == [1, 1, 1]  # the first three sent
        assert all(s.phase != 1 for s in samples[3:])
        metrics = run_.summary.metrics
        assert metrics["phases"]["warmup"] == 3
        assert metrics["whole_step"]["request_count"] == 9
        # The statistics are over the six after the warm-up (less any ramp-up or drain), never the warm-up's.
        assert sum(metrics["phases"].values()) == 9
        assert run_.summary.request_count == metrics["phases"]["steady"] == 9 - 3 - metrics["phases"]["ramp"]


# --- 10. sampling options -----------------------------------------------------------------------------------------


def test_sampling_options_and_output_pinning_reach_the_server(team, mock):
    options = {
        "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "stop": ["</answer>", "\n\nEND"],
        "response_format": {"type": "json_object"},
    }  # fmt: skip
    tok = tokenizer(team)
    pinned_eos = workload(team, synthetic(request=options), name="eos", tokenizer=tok)
    run(team, mock, pinned_eos, step_request_count=3, temperature=0.7, seed=11)
    bodies = [r["body"] for r in mock.received()]
    assert len(bodies) == 3
    for body in bodies:
        assert {k: body[k] for k in options} == options
        assert body["ignore_eos"] is True and "min_tokens" not in body
        assert body["temperature"] == 0.7 and body["seed"] == 11
    clear_received(mock.app)
    pinned_min = workload(team, synthetic(request={"pin_output": "min_tokens"}), name="min", tokenizer=tok)
    sweep = run(team, mock, pinned_min, step_request_count=3)
    bodies = [r["body"] for r in mock.received()]
    assert len(bodies) == 3
    assert all(b["min_tokens"] == b["max_tokens"] and "ignore_eos" not in b for b in bodies)
    assert all(k not in b for b in bodies for k in options)
    samples = samples_of(runs_of(sweep)[0])
    # The mock honours min_tokens: each answer is exactly as long as asked without ignore_eos.
    assert all(s.output_tokens == s.requested_output_tokens for s in samples)
