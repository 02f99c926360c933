"""Benchmark runs in the worker against mockllm's known-answer mode: the exact expected accuracy per target, measured
scores published with decodable per-item outcomes, subset runs, cancel, resume asking only what is missing,
failed requests stored and asked again, a refused key.

The helpers here (suites built from generated items, known-answer mock servers, the worker's loop) are shared by
the other benchmark run tests."""

import contextlib
import json
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from apps.benchmarks.engine import stats
from apps.benchmarks.engine.formats import ParsedItem
from apps.benchmarks.models import BenchmarkAnswer, BenchmarkItem, BenchmarkRun, BenchmarkSuite, Kind, Status
from apps.benchmarks.runner import run_benchmark
from apps.benchmarks.selectors import answers_for, progress_payload, run_results, target_outcomes
from apps.benchmarks.services import (
    TargetSpec,
    benchmark_run_cancel,
    benchmark_run_create,
    benchmark_run_start,
    run_item_indices,
)
from apps.providers.engine.knownanswer import KnownAnswers, load_key
from apps.providers.mockllm import MockProfile, clear_received, make_app, received_requests
from apps.providers.models import ProviderEndpoint
from apps.scores.models import Benchmark, ModelVariant, Score
from tests.benchmarks.files import gsm8k_items, mmlu_pro_items
from tests.threaded import closing_connection, running_in_thread

# The runner writes from its own thread (its own connection): these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)

CATEGORIES = ("math", "law", "history")


# --- helpers shared by the benchmark run tests -------------------------------------------------------------------


def make_suite(team, kind: str = Kind.MMLU_PRO, items: list[ParsedItem] | None = None,
               fewshot: list[ParsedItem] = (), name: str = "suite") -> BenchmarkSuite:  # fmt: skip
    """A suite stored as an import would store it (test split in order, few-shot examples apart)."""
    items = items if items is not None else mmlu_pro_items(60, categories=CATEGORIES, seed=1)
    benchmark, _ = Benchmark.objects.get_or_create(team=team, name=Kind(kind).label)
    subjects: dict[str, int] = {}
    for item in items:
        if item.subject:
            subjects[item.subject] = subjects.get(item.subject, 0) + 1
    suite = BenchmarkSuite.objects.create(
        team=team, name=name, version=BenchmarkSuite.objects.filter(team=team, name=name).count() + 1, kind=kind,
        benchmark=benchmark, source_format="generated", file_name="generated",
        sha256="0" * 64, item_count=len(items), fewshot_count=len(fewshot), subjects=subjects,
    )  # fmt: skip
    rows = [(BenchmarkItem.Split.TEST, i, item) for i, item in enumerate(items)]
    rows += [(BenchmarkItem.Split.FEWSHOT, i, item) for i, item in enumerate(fewshot)]
    BenchmarkItem.objects.bulk_create(
        BenchmarkItem(suite=suite, split=split, index=i, source_id=item.source_id, subject=item.subject,
                      question=item.question, choices=list(item.choices), answer=item.answer,
                      rationale=item.rationale)
        for split, i, item in rows
    )  # fmt: skip
    return suite


def write_key(suite: BenchmarkSuite, path: Path) -> Path:
    """The suite's answer key as JSON Lines (the layout of GET /api/v1/benchmark-suites/{id}/answer-key)."""
    rows = suite.items.filter(split=BenchmarkItem.Split.TEST).order_by("index")
    path.write_text("".join(json.dumps({"index": r.index, "question": r.question, "choices": r.choices,
                                        "answer": r.answer, "subject": r.subject}) + "\n" for r in rows))  # fmt: skip
    return path


class Mocks:
    """Known-answer mockllm servers in a background thread, each with its own request log."""

    def __init__(self):
        self.apps: list[web.Application] = []
        self._stack = contextlib.ExitStack()

    def start(self, key: Path, accuracy: float, **profile) -> str:
        profile = {"ttft_ms": 0.0, "itl_ms": 0.0, "output_tokens": 64, "answer_key": str(key),
                   "answer_accuracy": accuracy, **profile}  # fmt: skip
        app = make_app(MockProfile(**profile))

        async def start():
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            return runner

        async def stop(runner):
            await runner.cleanup()

        runner = self._stack.enter_context(running_in_thread(start, stop))
        self.apps.append(app)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/v1"

    def requests(self, n: int = 0) -> list[dict]:
        return [r for r in received_requests(self.apps[n]) if r["path"].endswith("/chat/completions")]

    def close(self):
        self._stack.close()


@pytest.fixture
def mocks():
    servers = Mocks()
    yield servers
    servers.close()


@pytest.fixture
def queued(monkeypatch):
    """The chunk tasks the services queue, instead of queueing them."""
    calls: list[tuple] = []
    monkeypatch.setattr("apps.benchmarks.services.job_submit", lambda **kw: calls.append((kw["func"], *kw["args"])))
    return calls


def mock_endpoint(team, url: str, name: str = "mockllm") -> ProviderEndpoint:
    return ProviderEndpoint.objects.create(team=team, name=name, kind="openai_compatible", base_url=url,
                                           model_names=["mock"])  # fmt: skip


def variant(team, quantization: str) -> ModelVariant:
    return ModelVariant.objects.get_or_create(team=team, model_name="Mock 8B", quantization=quantization)[0]


@closing_connection
def run_until_done(run_id: int) -> str:
    """The django-q worker's part: chunk after chunk (each handed the lease by the one before) until the run ends."""
    outcome, lease = "continued", ""
    while outcome == "continued":
        outcome = run_benchmark(run_id, lease)
        lease = BenchmarkRun.objects.get(pk=run_id).lease
    return outcome


def expected(key: Path, accuracy, indices: list[int], **kwargs) -> float:
    return KnownAnswers(load_key(str(key)), accuracy=accuracy, **kwargs).expected_accuracy(indices)


def no_answers_expected(suite: BenchmarkSuite, accuracy: float, rate: float) -> int:
    """Per subject, round(rate × items) of the items not answered right give no answer (knownanswer's rule)."""
    total = 0
    for n in suite.subjects.values():
        total += min(round(rate * n), n - round(accuracy * n))
    return total


# --- tests ---------------------------------------------------------------------------------------------------------


def test_two_targets_score_their_exact_known_accuracy_and_publish_measured_scores(team, mocks, queued, tmp_path):
    """Two quantizations at 90% and 60% are measured exactly; each variant gets a measured score whose outcomes
    and digests decode to the stored answers."""
    suite = make_suite(team)
    key = write_key(suite, tmp_path / "key.jsonl")
    high = mock_endpoint(team, mocks.start(key, 0.9), "bf16")
    low = mock_endpoint(team, mocks.start(key, 0.6, no_answer_rate=0.1), "awq")
    run = benchmark_run_create(team=team, user=None, suite=suite, concurrency=8, targets=[
        TargetSpec(high, "mock", variant(team, "BF16")), TargetSpec(low, "mock", variant(team, "AWQ"))])  # fmt: skip
    benchmark_run_start(run=run)
    assert len(queued) == 1

    assert run_until_done(run.pk) == Status.COMPLETED
    run.refresh_from_db()
    indices = run_item_indices(run)
    assert indices == list(range(60)) and run.completed_answers == 120 and run.failed_answers == 0
    assert len(mocks.requests(0)) == len(mocks.requests(1)) == 60  # every item asked once of each
    for request in mocks.requests(0):
        assert request["body"].get("stream") in (False, None) and request["body"]["temperature"] == 0.0
    results = {r.target.endpoint.name: r for r in run_results(run)}
    assert results["bf16"].overall.accuracy == expected(key, 0.9, indices)
    assert results["awq"].overall.accuracy == expected(key, 0.6, indices, no_answer_rate=0.1)
    assert results["awq"].overall.no_answer == no_answers_expected(suite, 0.6, 0.1) > 0
    assert results["bf16"].overall.n == 60 and results["bf16"].failed == 0
    assert {s for s, _ in results["bf16"].by_subject} == set(CATEGORIES)
    assert sum(a.correct for _, a in results["bf16"].by_subject) == results["bf16"].overall.correct

    scores = Score.objects.filter(origin=Score.Origin.MEASURED, benchmark=suite.benchmark)
    assert scores.count() == 2
    for name, quantization in (("bf16", "BF16"), ("awq", "AWQ")):
        result = results[name]
        score = scores.get(variant__quantization=quantization)
        assert result.measured_score == score
        assert score.value_pct == pytest.approx(100 * result.overall.accuracy)
        assert score.ci_low_pct < score.value_pct < score.ci_high_pct and score.n_items == 60 and score.n_shot == 0
        assert score.stderr_pct == pytest.approx(100 * result.overall.stderr)
        assert score.provenance["run_id"] == run.pk and score.provenance["target_id"] == result.target.pk
        assert score.source == f"Measured: {run.name}" and not score.is_simulated
        correct = np.unpackbits(np.frombuffer(bytes(score.outcomes), dtype=np.uint8))[:60].astype(bool)
        digests = np.frombuffer(bytes(score.answer_digests), dtype="<u4")
        answers = {a.item.index: a for a in BenchmarkAnswer.objects.filter(target=result.target).select_related("item")}
        assert len(answers) == 60 and len(digests) == 60
        for index in range(60):
            answer = answers[index]
            assert correct[index] == answer.correct
            assert digests[index] == (zlib.crc32(answer.extracted.encode()) if answer.extracted else 0)
        assert (bytes(score.outcomes), bytes(score.answer_digests), 60) == target_outcomes(result.target)
        assert correct.sum() == result.overall.correct

    payload = progress_payload(run)
    assert payload["status"] == "completed" and payload["completed"] == payload["total"] == 120
    assert {t["endpoint"]: t["accuracy_pct"] for t in payload["targets"]} == {
        name: pytest.approx(100 * r.overall.accuracy, abs=0.01) for name, r in results.items()
    }
    json.dumps(payload)  # JSON-able as the SSE stream sends it


def test_gsm8k_scores_strict_match_and_shows_the_flexible_extraction(team, mocks, queued, tmp_path):
    """GSM8K answers "#### N": strict-match is the headline at the exact known accuracy, and the alternate
    extraction is computed from the stored responses."""
    suite = make_suite(team, Kind.GSM8K, gsm8k_items(30, seed=2), name="gsm8k")
    key = write_key(suite, tmp_path / "key.jsonl")
    endpoint = mock_endpoint(team, mocks.start(key, 0.7, answer_style="gsm8k"))
    run = benchmark_run_create(team=team, user=None, suite=suite, targets=[TargetSpec(endpoint, "mock")])
    benchmark_run_start(run=run)
    assert run_until_done(run.pk) == Status.COMPLETED
    (result,) = run_results(run)
    assert result.overall.accuracy == expected(key, 0.7, list(range(30)), style="gsm8k")
    assert result.measured_score is None  # no variant linked: nothing to publish to
    assert not Score.objects.filter(origin=Score.Origin.MEASURED).exists()
    for accuracy in result.alternates.values():
        assert accuracy.n == 30 and accuracy.correct >= result.overall.correct


def test_a_subset_run_asks_a_stratified_subset_and_publishes_nothing(team, mocks, queued, tmp_path):
    """A quick check on 15 items per seed: exactly those items asked, the accuracy exact for them, the interval
    wider than the full run's, and no measured score."""
    suite = make_suite(team)
    key = write_key(suite, tmp_path / "key.jsonl")
    endpoint = mock_endpoint(team, mocks.start(key, 0.8))
    run = benchmark_run_create(team=team, user=None, suite=suite, subset_size=15, subset_seed=3,
                               targets=[TargetSpec(endpoint, "mock", variant(team, "BF16"))])  # fmt: skip
    assert run.item_count == 15 and run.estimate["requests"] == 15
    indices = run_item_indices(run)
    assert len(indices) == 15 and indices == sorted(set(indices))
    assert {suite.items.get(split="test", index=i).subject for i in indices} == set(CATEGORIES)  # stratified
    benchmark_run_start(run=run)
    assert run_until_done(run.pk) == Status.COMPLETED
    assert len(mocks.requests()) == 15
    (result,) = run_results(run)
    assert result.overall.n == 15 and result.overall.accuracy == expected(key, 0.8, indices)
    full = stats.accuracy(round(0.8 * 60), 60)
    assert result.overall.ci_high - result.overall.ci_low > full.ci_high - full.ci_low
    assert not Score.objects.exists() and result.measured_score is None
    _, _, n = target_outcomes(result.target)
    assert n == 15


def test_cancel_stops_new_requests_and_a_resume_asks_only_what_is_missing(team, mocks, queued, tmp_path, monkeypatch):
    """Cancelled mid-run, the run keeps its answers; resumed, it asks each missing item once and ends with every
    item answered once and the exact accuracy."""
    monkeypatch.setattr("apps.benchmarks.runner.HEARTBEAT_S", 0.05)  # the runner reads the cancel flag each beat
    suite = make_suite(team)
    key = write_key(suite, tmp_path / "key.jsonl")
    endpoint = mock_endpoint(team, mocks.start(key, 0.75, ttft_ms=100.0))
    run = benchmark_run_create(team=team, user=None, suite=suite, concurrency=2,
                               targets=[TargetSpec(endpoint, "mock", variant(team, "BF16"))])  # fmt: skip
    benchmark_run_start(run=run)
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(run_until_done(run.pk)))
    worker.start()
    stored = BenchmarkAnswer.objects.filter(run=run)
    deadline = time.monotonic() + 20
    while stored.count() < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    benchmark_run_cancel(run=run)
    cancelled_at = len(mocks.requests())
    worker.join(timeout=20)
    assert outcome == [Status.CANCELLED]
    # Requests go on only until the next heartbeat reads the flag: a beat plus one database call on a busy machine
    # (100 ms a request, 2 at a time); never the remaining ~50 items.
    assert len(mocks.requests()) <= cancelled_at + 8
    run.refresh_from_db()
    kept = set(stored.values_list("item__index", flat=True))
    assert run.status == Status.CANCELLED and 6 <= len(kept) < 60 and run.completed_answers == len(kept)
    assert progress_payload(run)["actions"]["resume"]

    asked_before = {r["body"]["messages"][-1]["content"] for r in mocks.requests()}
    clear_received(mocks.apps[0])
    benchmark_run_start(run=run)
    assert run_until_done(run.pk) == Status.COMPLETED
    asked_after = [r["body"]["messages"][-1]["content"] for r in mocks.requests()]
    assert len(asked_after) == 60 - len(kept) == len(set(asked_after))
    assert len(set(asked_after) & asked_before) <= len(asked_before) - len(kept)  # only what was dropped in flight
    keys = list(stored.values_list("target_id", "item_id"))
    assert len(keys) == len(set(keys)) == 60
    (result,) = run_results(run)
    assert result.overall.accuracy == expected(key, 0.75, list(range(60)))
    assert result.measured_score is not None


def test_failed_requests_are_stored_unscored_and_asked_again_on_resume(team, mocks, queued, tmp_path):
    """Requests that fail after retries are kept with their error and not scored; the run ends failed and says
    how many; resumed against a healthy server it asks exactly those again and publishes."""
    suite = make_suite(team)
    key = write_key(suite, tmp_path / "key.jsonl")
    endpoint = mock_endpoint(team, mocks.start(key, 0.9, error_rate=0.2, error_status=400, seed=4))
    run = benchmark_run_create(team=team, user=None, suite=suite,
                               targets=[TargetSpec(endpoint, "mock", variant(team, "BF16"))])  # fmt: skip
    benchmark_run_start(run=run)
    assert run_until_done(run.pk) == Status.FAILED
    run.refresh_from_db()
    failed = answers_for(run, outcome="failed")
    n_failed = failed.count()
    assert 0 < n_failed < 60 and run.failed_answers == n_failed and run.completed_answers == 60
    assert f"{n_failed:,} of 60 requests failed" in run.error
    assert all(a.correct is None and a.error_code for a in failed)
    (result,) = run_results(run)
    assert result.failed == n_failed and result.overall.n == 60 - n_failed
    assert not Score.objects.exists()

    endpoint.base_url = mocks.start(key, 0.9)  # the same known answers, no errors
    endpoint.save()
    benchmark_run_start(run=run)
    assert run_until_done(run.pk) == Status.COMPLETED
    assert len(mocks.requests(1)) == n_failed
    run.refresh_from_db()
    assert run.failed_answers == 0 and run.completed_answers == 60 and not answers_for(run, outcome="failed").exists()
    (result,) = run_results(run)
    assert result.overall.accuracy == expected(key, 0.9, list(range(60)))
    assert Score.objects.get(origin=Score.Origin.MEASURED).n_items == 60


def test_a_refused_key_fails_the_run_and_says_why(team, queued):
    """A 401 stops the run at once: failed, naming the endpoint; nothing stored."""
    from tests.providers.servers import MockLLMServer, Script

    suite = make_suite(team)

    async def start():
        return await MockLLMServer(Script(status=401, error_message="bad key")).start()

    async def stop(server):
        await server.close()

    with running_in_thread(start, stop) as server:
        endpoint = ProviderEndpoint.objects.create(team=team, name="refusing", kind="openai_compatible",
                                                   base_url=f"{server.root}/v1")  # fmt: skip
        run = benchmark_run_create(team=team, user=None, suite=suite, targets=[TargetSpec(endpoint, "mock")])
        benchmark_run_start(run=run)
        assert run_until_done(run.pk) == Status.FAILED
    run.refresh_from_db()
    assert "refusing" in run.error and "refused the API key (401" in run.error
    assert not BenchmarkAnswer.objects.filter(run=run).exists()


def test_a_second_delivery_leaves_a_live_chunk_alone_and_takes_over_a_dead_ones(team, mocks, queued, tmp_path):
    """A task that finds another chunk's live lease ends at once (a lease is taken over only when handed over or
    gone stale); once the holder's heartbeat is stale the next task takes the run over and finishes it."""
    from datetime import timedelta

    from django.utils import timezone

    suite = make_suite(team)
    key = write_key(suite, tmp_path / "key.jsonl")
    endpoint = mock_endpoint(team, mocks.start(key, 0.5))
    run = benchmark_run_create(team=team, user=None, suite=suite, targets=[TargetSpec(endpoint, "mock")])
    benchmark_run_start(run=run)
    held = BenchmarkRun.objects.filter(pk=run.pk)
    held.update(status=Status.RUNNING, lease="alive", heartbeat_at=timezone.now(), queued_at=None)
    assert run_benchmark(run.pk) == "running elsewhere"
    assert run_benchmark(run.pk, "alive") == "running elsewhere"  # not handed over: its holder is still at work
    assert mocks.requests() == [] and held.get().lease == "alive"

    held.update(heartbeat_at=timezone.now() - timedelta(minutes=1))  # the holder died
    assert run_until_done(run.pk) == Status.COMPLETED
    assert len(mocks.requests()) == 60 and held.get().recoveries == 0  # counted, then reset by the answers stored
