"""`make bench`, part 5: analytics and exports (issue #7), on PostgreSQL.

BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/llmbench_bench; created when missing) names
the database. A team "bench-analytics" is seeded once (kept between runs) with 200,000 responses in 200
experiments over 90 days and 2,000 performance runs with summaries; one experiment and one run in ten
are simulated (the `sim` provider), the rest measured (an OpenAI-compatible server). Targets:

* every analytics endpoint p95 under 300 ms, over the whole 90 days (all 200,000 responses) and over
  the default 30 days, as a user gets it: simulated results left out (the default), measured in the
  same query;
* a CSV export of 100,000 rows: first byte under 200 ms, all of it under 3 s;
* an Excel export of 100,000 rows under 10 s;
* a PDF report of a 10,000-combination batch under 3 s.

Requests go through Django's test client in this process (no network), so the times are the server's.
"""

import os
import sys
import time
from datetime import timedelta

import numpy as np
from common import Report, Timer, ensure_database, setup_django

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/llmbench_bench")
EXPERIMENTS, PER_EXPERIMENT, RUNS, REQUESTS = 200, 1_000, 2_000, 15
SLUG = "bench-analytics"

ensure_database(PG_URL)
setup_django(PG_URL)

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from apps.accounts.models import Membership, Team  # noqa: E402
from apps.accounts.services import membership_set  # noqa: E402
from apps.experiments.models import Experiment, ExperimentTarget, Response, TestCase  # noqa: E402
from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun, RunSummary  # noqa: E402
from apps.providers.models import ProviderEndpoint  # noqa: E402
from apps.scores.models import Benchmark, ModelVariant, Score  # noqa: E402

MODELS = ["llama-8b", "llama-70b", "qwen-7b", "qwen-32b", "mistral-7b"]
SIMULATED_EVERY_TENTH = 9  # experiments and runs whose index ends in 9 are simulated


def seed(team: Team) -> None:
    rng = np.random.default_rng(2026)
    now = timezone.now()
    endpoints = [ProviderEndpoint.objects.create(team=team, name=f"endpoint {i}", kind="openai_compatible",
                                                 base_url=f"http://10.0.0.{i + 1}:8000/v1") for i in range(4)]  # fmt: skip
    simulator = ProviderEndpoint.objects.create(team=team, name="simulator", kind="sim")
    cases = [TestCase.objects.create(team=team, title=f"case {i}", prompt="q", tags=[f"tag{i % 6}"],
                                     evaluator=("exact_match", "numeric", "contains")[i % 3],
                                     status=TestCase.Status.APPROVED) for i in range(40)]  # fmt: skip
    for e in range(EXPERIMENTS):
        with transaction.atomic():
            started = now - timedelta(days=90 * (EXPERIMENTS - e) / EXPERIMENTS)
            experiment = Experiment.objects.create(
                team=team, name=f"experiment {e}", kind=("single", "batch")[e % 2], status="completed",
                finished_at=started + timedelta(hours=1), started_at=started,
            )  # fmt: skip
            simulated = e % 10 == SIMULATED_EVERY_TENTH
            targets = [ExperimentTarget.objects.create(experiment=experiment,
                                                       endpoint=simulator if simulated else endpoints[(e + t) % 4],
                                                       model=MODELS[(e + t) % 5]) for t in range(2)]  # fmt: skip
            rows = []
            temperature = rng.choice([0.0, 0.3, 0.6, 0.9, 1.2], PER_EXPERIMENT)
            top_p = rng.choice([0.8, 0.9, 1.0], PER_EXPERIMENT)
            max_tokens = rng.choice([128, 256, 512], PER_EXPERIMENT)
            overall = np.clip(rng.normal(70 - 6 * temperature, 8), 0, 100).round(2)
            score = rng.choice([0.0, 0.5, 1.0], PER_EXPERIMENT)
            failed = rng.random(PER_EXPERIMENT) < 0.02
            for i in range(PER_EXPERIMENT):
                case = cases[i % 40]
                ok = not failed[i]
                params = {
                    "temperature": float(temperature[i]),
                    "top_p": float(top_p[i]),
                    "max_tokens": int(max_tokens[i]),
                }
                quality = {"overall": float(overall[i]), "coherence": float(overall[i]) + 5} if ok else {}
                response = Response(
                    experiment=experiment, target=targets[i % 2], test_case=case, item_key=f"tc:{case.pk}",
                    combination=i // 40, repetition=i, content=f"answer {i}", parameters=params, quality=quality,
                    error_code="" if ok else "timeout", passed=bool(score[i] >= 0.5) if ok else None,
                    score=float(score[i]) if ok else None, latency_ms=float(rng.gamma(4, 80)) if ok else None,
                    ttft_ms=float(rng.gamma(4, 15)) if ok else None, cost_usd=0.0004, output_tokens=120,
                    is_simulated=simulated,
                )  # fmt: skip
                response.copy_figures()
                rows.append(response)
            Response.objects.bulk_create(rows, batch_size=2_000)
            created = [started + timedelta(seconds=3 * i) for i in range(PER_EXPERIMENT)]
            ids = list(Response.objects.filter(experiment=experiment).order_by("id").values_list("id", flat=True))
            Response.objects.bulk_update(
                [Response(id=pk, created_at=at) for pk, at in zip(ids, created, strict=True)], ["created_at"],
                batch_size=2_000,
            )  # fmt: skip
        if e % 50 == 49:
            print(f"  seeded {(e + 1) * PER_EXPERIMENT:,} responses", flush=True)
    variants = [
        ModelVariant.objects.create(team=team, model_name=m, quantization=q) for m in MODELS for q in ("BF16", "AWQ")
    ]
    benchmark = Benchmark.objects.create(team=team, name="MMLU")
    for v in variants:
        Score.objects.create(team=team, variant=v, benchmark=benchmark, value_pct=float(rng.uniform(50, 85)))
    hardware = [HardwareProfile.objects.create(team=team, name=f"gpu {i}", hourly_cost_usd=2.0 + i) for i in range(4)]
    deployments = [Deployment.objects.create(team=team, name=f"vllm tp{i + 1}") for i in range(2)]
    for r in range(RUNS):
        ttft = float(rng.uniform(40, 200))
        tps = float(rng.uniform(20, 80))
        run = PerformanceRun.objects.create(
            team=team, variant=variants[r % 10], hardware=hardware[r % 4], deployment=deployments[r % 2],
            concurrency=(1, 8, 32, 64, 128)[r % 5], started_at=now - timedelta(days=90 * (RUNS - r) / RUNS),
            is_simulated=r % 10 == SIMULATED_EVERY_TENTH,
        )  # fmt: skip
        metrics = {"ttft_ms": {"count": 1000, "mean": ttft, "stdev": ttft / 4, "p50": ttft, "p95": ttft * 1.5},
                   "tpot_ms": {"count": 1000, "mean": 1000 / tps, "stdev": 3.0},
                   "output_tps": {"count": 1000, "mean": tps, "stdev": tps / 5}}  # fmt: skip
        RunSummary.objects.create(run=run, source="samples", request_count=1000, error_count=3, metrics=metrics,
                                  output_token_throughput_tps=tps * 32)  # fmt: skip


def mark_simulated(team: Team) -> None:
    """What `seed` does about simulated results, on a database seeded before they were told apart."""
    with transaction.atomic():
        ProviderEndpoint.objects.filter(team=team, name__startswith="endpoint ").update(kind="openai_compatible")
        names = [f"experiment {e}" for e in range(EXPERIMENTS) if e % 10 == SIMULATED_EVERY_TENTH]
        seeded = Response.objects.filter(experiment__team=team, experiment__name__startswith="experiment ")
        seeded.exclude(experiment__name__in=names).update(is_simulated=False)
        seeded.filter(experiment__name__in=names).update(is_simulated=True)
        runs = list(PerformanceRun.objects.filter(team=team).order_by("pk").values_list("pk", flat=True))
        PerformanceRun.objects.filter(team=team).update(is_simulated=False)
        PerformanceRun.objects.filter(pk__in=runs[SIMULATED_EVERY_TENTH::10]).update(is_simulated=True)
    # Those updates rewrote every row: compact the tables as a fresh seed leaves them.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM FULL experiments_response")
        cursor.execute("VACUUM FULL hardware_performancerun")


def p95_ms(client: Client, url: str) -> float:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.content[:300])
    times = []
    for _ in range(REQUESTS):
        with Timer() as timer:
            client.get(url)
        times.append(timer.seconds * 1000)
    return float(np.percentile(times, 95))


def streamed(client: Client, method: str, url: str, **kwargs) -> tuple[float, float, int]:
    """(first byte s, whole body s, bytes) of a streamed download."""
    started = time.perf_counter()
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == 200, response
    chunks = iter(response.streaming_content)
    first = next(chunks)
    first_at = time.perf_counter() - started
    size = len(first) + sum(len(chunk) for chunk in chunks)
    return first_at, time.perf_counter() - started, size


def main() -> int:
    call_command("migrate", verbosity=0)
    team, _ = Team.objects.get_or_create(slug=SLUG, defaults={"name": "Bench analytics"})
    seeded = Response.objects.filter(experiment__team=team, experiment__name__startswith="experiment ")
    simulated = seeded.filter(is_simulated=True)
    if seeded.count() == EXPERIMENTS * PER_EXPERIMENT and simulated.count() != EXPERIMENTS * PER_EXPERIMENT // 10:
        print("marking one experiment and one run in ten simulated (a database seeded before the field) …")
        mark_simulated(team)
    if seeded.count() != EXPERIMENTS * PER_EXPERIMENT:
        print(f"seeding {EXPERIMENTS * PER_EXPERIMENT:,} responses and {RUNS:,} runs (once) …", flush=True)
        Experiment.objects.filter(team=team).delete()
        PerformanceRun.objects.filter(team=team).delete()
        for model in (ModelVariant, HardwareProfile, Deployment, Benchmark, TestCase, ProviderEndpoint):
            model.objects.filter(team=team).delete()
        with Timer() as timer:
            seed(team)
        print(f"  seeded in {timer.seconds:.0f} s", flush=True)
    # What autovacuum does some time after a bulk load (the created_at rewrite leaves 200,000 dead rows):
    # done here so that the timings do not depend on when it wakes up.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    user, _ = get_user_model().objects.get_or_create(username="bench-analytics")
    membership_set(team=team, user=user, role=Membership.Role.VIEWER)
    client = Client()
    client.force_login(user)
    report = Report()
    print(f"analytics on PostgreSQL: {Response.objects.filter(experiment__team=team).count():,} responses "
          f"({simulated.count():,} simulated), {PerformanceRun.objects.filter(team=team).count():,} runs "
          f"({PerformanceRun.objects.filter(team=team, is_simulated=True).count():,} simulated)")  # fmt: skip
    endpoints = {
        "quality trends": "/api/v1/analytics/quality/trends", "breakdown by tag": "/api/v1/analytics/quality/breakdown?dimension=tag",
        "breakdown by model": "/api/v1/analytics/quality/breakdown?dimension=model",
        "model comparison": "/api/v1/analytics/models/comparison?metric=score",
        "parameter optimization": "/api/v1/analytics/parameters/optimization",
        "parameter correlation": "/api/v1/analytics/parameters/correlation",
        "parameter insights": "/api/v1/analytics/parameters/insights", "regressions": "/api/v1/analytics/regressions",
        "leaderboard": "/api/v1/analytics/leaderboard",
    }  # fmt: skip
    for timeframe in ("90d", "30d"):
        for name, url in endpoints.items():
            joiner = "&" if "?" in url else "?"
            report.line(f"{name} p95 ({timeframe})", p95_ms(client, f"{url}{joiner}timeframe={timeframe}"), 300, "ms")

    body = {"entity": "responses", "format": "csv", "filters": {"experiment": list(
        Experiment.objects.filter(team=team).order_by("id").values_list("id", flat=True)[:100])}}  # fmt: skip
    first, whole, size = streamed(client, "post", "/api/v1/export/custom", data=body, content_type="application/json")
    rows = Response.objects.filter(experiment_id__in=body["filters"]["experiment"]).count()
    print(f"CSV export: {rows:,} rows, {size / 1e6:.1f} MB")
    report.line("CSV export 100k rows: first byte", first * 1000, 200, "ms")
    report.line("CSV export 100k rows: complete", whole, 3, "s")
    with Timer() as timer:
        response = client.post(
            "/api/v1/export/custom", data={**body, "format": "xlsx"}, content_type="application/json"
        )
        size = len(response.content)
    print(f"Excel export: {rows:,} rows, {size / 1e6:.1f} MB")
    report.line("Excel export 100k rows", timer.seconds, 10, "s")
    batch_pdf(client, report)
    return report.close()


def batch_pdf(client: Client, report: Report) -> None:
    """A sweep of 10,000 combinations (simulated endpoint, instant), once; then its PDF report."""
    from django.urls import reverse

    from apps.batches.models import Batch

    team = Team.objects.get(slug=SLUG)
    batch = Batch.objects.filter(experiment__team=team, experiment__status="completed").first()
    if batch is None:
        from apps.batches.batch_runner import run_batch_chunk
        from apps.batches.services import batch_create, batch_start

        endpoint = ProviderEndpoint.objects.create(team=team, name="sim instant", kind="sim",
                                                   base_url="sim://local?zero_latency=1")  # fmt: skip
        user = get_user_model().objects.get(username="bench-analytics")
        ranges = {
            "temperature": {"min": 0.0, "max": 1.98, "step": 0.02},
            "top_p": {"min": 0.01, "max": 1.0, "step": 0.01},
        }
        batch = batch_create(team=team, user=user, name="bench pdf sweep", targets=[(endpoint, "sim-small")],
                             prompt="Explain caching.", parameter_ranges=ranges, concurrency=64)  # fmt: skip
        with transaction.atomic():
            batch_start(batch=batch, confirm=True)
        print(f"  running a {batch.combination_count:,}-combination sweep for the PDF (once) …", flush=True)
        outcome = "continued"
        while outcome == "continued":
            outcome = run_batch_chunk(batch.pk)
    url = reverse("batches:batch-export-pdf", args=[batch.pk])
    client.get(url)
    times = []
    for _ in range(3):
        with Timer() as timer:
            response = client.get(url)
        assert response.status_code == 200
        times.append(timer.seconds)
    print(f"batch PDF: {batch.combination_count:,} combinations, {len(response.content) / 1e3:.0f} kB")
    report.line("PDF report of a batch (median of 3)", float(np.median(times)), 3, "s")


if __name__ == "__main__":
    sys.exit(main())
