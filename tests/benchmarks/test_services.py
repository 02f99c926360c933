"""Benchmark run operations: validation naming the field, the estimate, subsets, start / cancel / resume / delete,
the recovery of lost work, the live progress and its publishing, and the selectors the pages read."""

import zlib
from datetime import timedelta

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.benchmarks import services
from apps.benchmarks.models import BenchmarkAnswer, BenchmarkItem, BenchmarkRun, Kind, Status
from apps.benchmarks.runner import prompt_chars
from apps.benchmarks.selectors import answers_for, progress_payload, run_results, target_outcomes
from apps.benchmarks.services import (
    BenchmarkRefused,
    TargetSpec,
    benchmark_run_cancel,
    benchmark_run_create,
    benchmark_run_delete,
    benchmark_run_start,
    progress_publish,
    run_item_indices,
    runs_recover_stalled,
)
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant, Score, ServedVariant
from tests.benchmarks.files import mmlu_pro_items
from tests.benchmarks.test_runner import CATEGORIES, make_suite, variant

FIVE_SHOTS = mmlu_pro_items(15, categories=CATEGORIES, seed=9)  # five per category


@pytest.fixture
def queued(monkeypatch):
    """The chunk tasks the services queue, instead of queueing them."""
    calls: list[tuple] = []
    monkeypatch.setattr("apps.benchmarks.services.job_submit", lambda **kw: calls.append((kw["func"], *kw["args"])))
    return calls


def endpoint(team, name="vllm", **fields) -> ProviderEndpoint:
    fields.setdefault("model_names", ["mock"])
    return ProviderEndpoint.objects.update_or_create(team=team, name=name, defaults={
        "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", **fields})[0]  # fmt: skip


def create(team, suite=None, targets=None, **fields):
    suite = suite or make_suite(team, fewshot=FIVE_SHOTS)
    return benchmark_run_create(team=team, user=None, suite=suite,
                                targets=[TargetSpec(endpoint(team), "mock")] if targets is None else targets, **fields)  # fmt: skip


def errors_of(excinfo) -> dict:
    return {field: " ".join(messages) for field, messages in excinfo.value.message_dict.items()}


@pytest.mark.django_db
def test_a_run_of_another_teams_suite_reads_as_missing(team, other_team):
    suite = make_suite(other_team)
    with pytest.raises(ValidationError) as excinfo:
        create(team, suite=suite)
    assert errors_of(excinfo) == {"suite": "No such suite in this team."}


@pytest.mark.django_db
def test_every_bad_field_is_named(team, other_team):
    """Another team's endpoint and variant, a model the endpoint does not serve, a duplicate target, too many shots,
    an empty subset and out-of-range settings: each named by its field, nothing created."""
    mine = endpoint(team)
    targets = [
        TargetSpec(endpoint(other_team, "theirs"), "mock"),
        TargetSpec(mine, "llama-70b"),
        TargetSpec(mine, "mock", ModelVariant.objects.create(team=other_team, model_name="x", quantization="FP8")),
        TargetSpec(mine, "mock"),
    ]
    with pytest.raises(ValidationError) as excinfo:
        create(team, targets=targets, shots=6, subset_size=0, temperature=3.0, concurrency=0, max_tokens=0)
    errors = errors_of(excinfo)
    assert errors.pop("targets[0].endpoint") == "No such endpoint in this team."
    assert "does not serve “llama-70b”" in errors.pop("targets[1].model")
    assert errors.pop("targets[2].variant") == "No such model variant in this team."
    assert "already a target" in errors.pop("targets[3].model")
    assert "At most 5 few-shot examples" in errors.pop("shots")
    assert "at least 1" in errors.pop("subset_size")
    assert set(errors) == {"temperature", "concurrency", "max_tokens"}
    assert not BenchmarkRun.objects.exists()


@pytest.mark.django_db
def test_shots_need_few_shot_examples_and_a_subset_must_be_smaller_than_the_suite(team):
    suite = make_suite(team)
    with pytest.raises(ValidationError) as excinfo:
        create(team, suite=suite, shots=1, subset_size=60, targets=[])
    errors = errors_of(excinfo)
    assert "no few-shot examples" in errors["shots"] and "below the suite's 60 items" in errors["subset_size"]
    assert errors["targets"] == "Choose at least one endpoint and model."


@pytest.mark.django_db
def test_a_created_run_counts_its_items_estimates_and_remembers_the_variant(team):
    """requests = items × targets; input tokens = prompt characters / 4; output tokens = a typical MMLU-Pro answer
    capped by max tokens; cost from the priced endpoint; the variant is linked to endpoint and model."""
    suite = make_suite(team, fewshot=FIVE_SHOTS)
    priced = endpoint(team, "priced", price_input_per_1m_usd=1.0, price_output_per_1m_usd=2.0)
    bf16 = variant(team, "BF16")
    run = create(team, suite=suite, shots=5, max_tokens=300, concurrency=4,
                 targets=[TargetSpec(priced, "mock", bf16), TargetSpec(endpoint(team), "mock")])  # fmt: skip
    assert run.status == Status.PENDING and run.item_count == 60 and run.targets.count() == 2
    estimate = run.estimate
    assert estimate["requests"] == 120 and estimate["output_tokens"] == 120 * 300
    assert estimate["input_tokens"] == round(prompt_chars(run) / 4 / 60 * 120)
    assert estimate["input_tokens"] > 120 * 5 * 10  # five worked examples in every prompt
    cost = 60 * (prompt_chars(run) / 4 / 60 * 1.0 + 300 * 2.0) / 1e6
    assert estimate["cost_usd"] == pytest.approx(cost, rel=1e-4)
    assert estimate["duration_s"] == pytest.approx(120 * (0.5 + 0.02 * 300) / 4, rel=1e-3)
    assert any("/ 4" in line for line in estimate["assumptions"])
    assert ServedVariant.objects.get(endpoint=priced, model="mock").variant == bf16

    again = create(team, suite=suite, targets=[TargetSpec(priced, "mock")])  # no variant given: the linked one
    assert again.targets.get().variant == bf16
    assert again.estimate["cost_usd"] is not None and again.max_tokens > 0
    unpriced = create(team, suite=suite, targets=[TargetSpec(endpoint(team, "free"), "mock")])
    assert unpriced.estimate["cost_usd"] is None


@pytest.mark.django_db
def test_a_subset_is_stratified_seeded_and_sorted(team):
    suite = make_suite(team)
    run = create(team, suite=suite, subset_size=12, subset_seed=5)
    indices = run_item_indices(run)
    assert run.item_count == 12 and len(indices) == 12 and indices == sorted(indices)
    subjects = [suite.items.get(split=BenchmarkItem.Split.TEST, index=i).subject for i in indices]
    assert {s: subjects.count(s) for s in CATEGORIES} == {"math": 4, "law": 4, "history": 4}
    assert indices == run_item_indices(create(team, suite=suite, subset_size=12, subset_seed=5))
    assert indices != run_item_indices(create(team, suite=suite, subset_size=12, subset_seed=6))


@pytest.mark.django_db(transaction=True)
def test_start_queues_once_and_refuses_a_run_in_progress(team, queued):
    run = create(team)
    run = benchmark_run_start(run=run)
    assert run.status == Status.QUEUED and run.queued_at is not None
    assert queued == [("apps.benchmarks.tasks.benchmark_run_chunk", run.pk, "")]
    with pytest.raises(BenchmarkRefused, match="queued"):
        benchmark_run_start(run=run)
    BenchmarkRun.objects.filter(pk=run.pk).update(status=Status.COMPLETED)
    with pytest.raises(BenchmarkRefused, match="completed"):
        benchmark_run_start(run=run)
    BenchmarkRun.objects.filter(pk=run.pk).update(status=Status.FAILED, error="boom", recoveries=3)
    resumed = benchmark_run_start(run=run)  # a failed run resumes
    assert resumed.status == Status.QUEUED and resumed.error == "" and resumed.recoveries == 0 and len(queued) == 2


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_queued_run_now_and_flags_a_running_one(team, queued):
    run = benchmark_run_start(run=create(team))
    cancelled = benchmark_run_cancel(run=run)
    assert cancelled.status == Status.CANCELLED and cancelled.finished_at is not None

    live = create(team)
    BenchmarkRun.objects.filter(pk=live.pk).update(status=Status.RUNNING, lease="abc", heartbeat_at=timezone.now())
    flagged = benchmark_run_cancel(run=live)
    assert flagged.status == Status.RUNNING and flagged.cancel_requested  # its worker stops it within 0.5 s
    assert progress_payload(flagged)["status_label"] == "cancelling"

    dead = create(team)
    BenchmarkRun.objects.filter(pk=dead.pk).update(status=Status.RUNNING, lease="abc",
                                                   heartbeat_at=timezone.now() - timedelta(minutes=5))  # fmt: skip
    assert benchmark_run_cancel(run=dead).status == Status.CANCELLED  # no live worker to tell


@pytest.mark.django_db
def test_delete_refuses_a_run_in_progress_and_takes_its_measured_scores(team):
    run = create(team, targets=[TargetSpec(endpoint(team), "mock", variant(team, "BF16"))])
    BenchmarkRun.objects.filter(pk=run.pk).update(status=Status.RUNNING)
    run.refresh_from_db()
    with pytest.raises(BenchmarkRefused):
        benchmark_run_delete(run=run)
    BenchmarkRun.objects.filter(pk=run.pk).update(status=Status.COMPLETED)
    run.refresh_from_db()
    bf16 = variant(team, "BF16")
    Score.objects.create(team=team, variant=bf16, benchmark=run.suite.benchmark, value_pct=50,
                         origin=Score.Origin.MEASURED, provenance={"run_id": run.pk})  # fmt: skip
    kept = Score.objects.create(team=team, variant=bf16, benchmark=run.suite.benchmark, value_pct=40)  # imported
    benchmark_run_delete(run=run)
    assert not BenchmarkRun.objects.exists() and list(Score.objects.all()) == [kept]


@pytest.mark.django_db(transaction=True)
def test_recovery_requeues_lost_chunks_and_lost_tasks_and_gives_up_after_five(team, queued):
    now = timezone.now()
    lost = create(team)
    BenchmarkRun.objects.filter(pk=lost.pk).update(status=Status.RUNNING, lease="dead", heartbeat_at=now - timedelta(
        minutes=2))  # fmt: skip
    fresh = create(team)
    BenchmarkRun.objects.filter(pk=fresh.pk).update(status=Status.RUNNING, lease="alive", heartbeat_at=now)
    waiting = create(team)
    BenchmarkRun.objects.filter(pk=waiting.pk).update(status=Status.QUEUED, queued_at=now - timedelta(minutes=5))

    assert runs_recover_stalled() == 2
    lost.refresh_from_db()
    assert lost.lease == "" and lost.recoveries == 1 and lost.queued_at is not None
    assert sorted(queued) == sorted([("apps.benchmarks.tasks.benchmark_run_chunk", lost.pk, ""),
                                     ("apps.benchmarks.tasks.benchmark_run_chunk", waiting.pk, "")])  # fmt: skip
    assert runs_recover_stalled() == 0  # picked up once, not again before the grace passes

    BenchmarkRun.objects.filter(pk=lost.pk).update(lease="dead", queued_at=None, recoveries=4,
                                                   heartbeat_at=now - timedelta(minutes=2))  # fmt: skip
    queued.clear()
    assert runs_recover_stalled() == 1 and queued == []
    lost.refresh_from_db()
    assert lost.status == Status.FAILED and "stopped 5 times" in lost.error
    assert BenchmarkRun.objects.get(pk=fresh.pk).lease == "alive"


def _answer(run, target, item, **fields):
    return BenchmarkAnswer.objects.create(run=run, target=target, item=item, **fields)


@pytest.mark.django_db
def test_progress_results_outcomes_and_answers_read_the_stored_answers(team):
    """Two correct, one wrong, one no answer, one failed: the progress, the result (failed not scored), the
    packed outcomes and digests, and each outcome filter."""
    run = create(team)
    target = run.targets.get()
    items = list(run.suite.items.filter(split="test").order_by("index")[:5])
    _answer(run, target, items[0], content="(A)", extracted=items[0].answer, correct=True, input_tokens=10,
            output_tokens=5, latency_ms=100.0)  # fmt: skip
    _answer(run, target, items[1], extracted=items[1].answer, correct=True, latency_ms=300.0)
    _answer(run, target, items[2], extracted="Z", correct=False)
    _answer(run, target, items[3], extracted="", correct=False)
    _answer(run, target, items[4], error_code="server_error", error_message="boom")
    BenchmarkRun.objects.filter(pk=run.pk).update(completed_answers=5, failed_answers=1, status=Status.RUNNING,
                                                  started_at=timezone.now() - timedelta(seconds=10))  # fmt: skip
    run.refresh_from_db()

    payload = progress_payload(run)
    assert (payload["completed"], payload["failed"], payload["total"]) == (5, 1, 60)
    (row,) = payload["targets"]
    assert (row["answered"], row["scored"], row["correct"], row["no_answer"]) == (5, 4, 2, 1)
    assert row["accuracy_pct"] == 50.0 and payload["eta_s"] == pytest.approx(55 / 0.5, rel=0.05)

    (result,) = run_results(run)
    assert (result.overall.n, result.overall.correct, result.overall.no_answer, result.failed) == (4, 2, 1, 1)
    assert result.mean_latency_ms == 200.0 and result.input_tokens == 10 and result.cost_usd is None

    outcomes, digests, n = target_outcomes(target)
    assert n == 60
    bits = np.unpackbits(np.frombuffer(outcomes, dtype=np.uint8))[:60]
    assert list(bits[:6]) == [1, 1, 0, 0, 0, 0] and bits.sum() == 2
    crc = np.frombuffer(digests, dtype="<u4")
    assert list(crc[:5]) == [zlib.crc32(items[0].answer.encode()), zlib.crc32(items[1].answer.encode()),
                             zlib.crc32(b"Z"), 0, 0]  # fmt: skip

    def indices(**kwargs):
        return [a.item.index for a in answers_for(run, **kwargs)]

    assert indices(outcome="correct") == [0, 1] and indices(outcome="wrong") == [2]
    assert indices(outcome="no_answer") == [3] and indices(outcome="failed") == [4]
    assert indices(subject=items[0].subject, target_id=target.pk) == [i.index for i in items
                                                                      if i.subject == items[0].subject]  # fmt: skip


@pytest.mark.django_db
def test_progress_is_published_to_the_runs_group(team, monkeypatch):
    sent = []

    class Layer:
        async def group_send(self, group, message):
            sent.append((group, message))

    monkeypatch.setattr(services, "get_channel_layer", lambda: Layer())
    run = create(team)
    progress_publish(run.pk)
    ((group, message),) = sent
    assert group == f"benchmark-run-{run.pk}" and message["type"] == "benchmark.progress"
    assert message["payload"] == progress_payload(run)


@pytest.mark.django_db
def test_a_gsm8k_run_defaults_its_max_tokens_from_the_task(team):
    from apps.benchmarks.engine import taskdefs
    from tests.benchmarks.files import gsm8k_items

    suite = make_suite(team, Kind.GSM8K, gsm8k_items(10), name="gsm8k")
    run = create(team, suite=suite)
    assert run.max_tokens == taskdefs.default_max_tokens(Kind.GSM8K)
    assert run.estimate["output_tokens"] == 10 * min(200, run.max_tokens)
