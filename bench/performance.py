"""`make bench`, part 2: performance-run ingest and the grid / compare API (issue #3), on PostgreSQL.

BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/llmbench_bench; the database is
created when missing) names the database. Targets:

* 1,000,000 request samples stored in under 20 s (a binary COPY through psycopg), with rows/s,
  the process's CPU time and the ratio against a plain COPY of the same rows (the same binary
  COPY statement, no summary, no model layer);
* 100,000 samples with 64 inter-token gaps each in under 2 s;
* grid and compare API p95 under 150 ms with 2,000 runs and 2,000,000 samples stored (the grid
  shows one workload: by default the most common of the 2,000 runs, one in seven of them).
"""

import os
import sys
import time

import numpy as np
from common import Report, Timer, ensure_database, setup_django

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/llmbench_bench")
INGEST_SAMPLES, GRID_RUNS, SAMPLES_PER_RUN, REQUESTS = 1_000_000, 2_000, 1_000, 30


ensure_database(PG_URL)
setup_django(PG_URL)

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from apps.accounts.models import Membership, Team  # noqa: E402
from apps.accounts.services import membership_set, token_create  # noqa: E402
from apps.hardware.models import HardwareProfile, PerformanceRun, RequestSample, RunSummary  # noqa: E402
from apps.hardware.parsed import ParsedRun, ParsedSample  # noqa: E402
from apps.hardware.services import (  # noqa: E402
    RunTarget,
    _copy_types,
    _sample_row,
    run_store,
    samples_copy_sql,
)
from apps.scores.models import ModelVariant  # noqa: E402


def samples(n: int, rng, *, gaps: int = 0) -> list[ParsedSample]:
    ttft = rng.lognormal(4.5, 0.3, n)
    out = rng.integers(64, 256, n)
    mean_itl = rng.gamma(16, 10 / 16, n)
    failed = rng.random(n) < 0.01
    result = []
    for i in range(n):
        if failed[i]:
            result.append(ParsedSample(index=i, error_code="429", error_message="rate limited", input_tokens=512))
            continue
        itl = rng.gamma(16, mean_itl[i] / 16, gaps) if gaps else None
        result.append(
            ParsedSample(
                index=i,
                ttft_ms=float(ttft[i]),
                e2e_ms=float(ttft[i] + mean_itl[i] * (out[i] - 1)),
                input_tokens=512,
                output_tokens=int(out[i]),
                mean_itl_ms=None if gaps else float(mean_itl[i]),
                itl_ms=itl,
                start_offset_ms=float(i * 2.0),
            )
        )
    return result


def plain_copy_seconds(run_id: int, parsed: list[ParsedSample]) -> float:
    """The same rows through a bare COPY into the same table (no summary, no model layer):
    the run's stored samples are deleted first, untimed, and everything is rolled back after."""
    from psycopg.types.string import BytesBinaryDumper

    rows = [_sample_row(run_id, s) for s in parsed]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {RequestSample._meta.db_table} WHERE run_id = %s", [run_id])
        types = _copy_types(cursor, RequestSample._meta.db_table)
        cursor.cursor.adapters.register_dumper(bytes, BytesBinaryDumper)
        with Timer() as timer:
            with cursor.cursor.copy(samples_copy_sql()) as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
            # The deferred foreign-key checks run at commit in the product: time them here too.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        transaction.set_rollback(True)
    return timer.seconds


def p95_ms(client: Client, url: str, **headers) -> float:
    client.get(url, **headers)
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = client.get(url, **headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:300]
    return float(np.percentile(times, 95))


def main() -> int:
    print(f"== performance runs, on {connection.vendor}")
    call_command("migrate", verbosity=0)
    team, _ = Team.objects.get_or_create(slug="bench-perf", defaults={"name": "Bench performance"})
    PerformanceRun.objects.filter(team=team).delete()
    variant, _ = ModelVariant.objects.get_or_create(team=team, model_name="org/bench", quantization="BF16")
    hardware, _ = HardwareProfile.objects.get_or_create(team=team, name="bench box", defaults={"hourly_cost_usd": 2})
    rng = np.random.default_rng(1)
    report = Report()

    for label, n, gaps in (
        ("1,000,000 samples with per-request ITL", INGEST_SAMPLES, 0),
        ("100,000 samples with 64 ITL gaps each", 100_000, 64),
    ):
        parsed = samples(n, rng, gaps=gaps)
        run = ParsedRun(source_format="llmbench_json", concurrency=64, samples=parsed)
        cpu = time.process_time()
        with Timer() as timer:
            stored = run_store(team=team, parsed=run, target=RunTarget(variant, hardware, None))
        cpu = time.process_time() - cpu
        baseline = plain_copy_seconds(stored.pk, parsed)
        target = 20.0 * n / INGEST_SAMPLES
        report.line(f"ingest {label}", timer.seconds, target, "s")
        print(f"    {n / timer.seconds:,.0f} rows/s stored (samples + summary), {cpu:.2f} s CPU in this process; "
              f"plain COPY of the same rows {baseline:.2f} s, {n / baseline:,.0f} rows/s; "
              f"ratio to plain COPY {timer.seconds / baseline:.2f}")  # fmt: skip
    PerformanceRun.objects.filter(team=team).delete()

    print(f"   storing {GRID_RUNS:,} runs × {SAMPLES_PER_RUN:,} samples …", flush=True)
    variants = [ModelVariant.objects.get_or_create(team=team, model_name=f"org/m{i}", quantization=q)[0]
                for i in range(10) for q in ("BF16", "AWQ")]  # fmt: skip
    boxes = [HardwareProfile.objects.get_or_create(team=team, name=f"box {i}", defaults={"hourly_cost_usd": 1 + i})[0]
             for i in range(10)]  # fmt: skip
    template = samples(SAMPLES_PER_RUN, rng)
    with Timer() as timer:
        for i in range(GRID_RUNS):
            run = ParsedRun(source_format="llmbench_json", concurrency=2 ** (i % 7), samples=template)
            run_store(team=team, parsed=run, target=RunTarget(variants[i % 20], boxes[(i // 20) % 10], None))
    print(f"   stored in {timer.seconds:.1f} s ({GRID_RUNS * SAMPLES_PER_RUN / timer.seconds:,.0f} samples/s)")
    # Statistics, as autovacuum's analyze gives them within a minute of a bulk load (bench/analytics.py does the
    # same): without them the planner guesses 100,000 samples per run and reads one run's 1,000 with parallel
    # workers, and compare measures that start-up instead of the product.
    with connection.cursor() as cursor:
        for model in (PerformanceRun, RequestSample, RunSummary):
            cursor.execute(f"ANALYZE {model._meta.db_table}")

    user, _ = get_user_model().objects.get_or_create(username="bench")
    membership_set(user=user, team=team, role=Membership.Role.VIEWER)
    auth = {"HTTP_AUTHORIZATION": f"Token {token_create(user=user, team=team, name='bench').key}"}
    client = Client()
    report.line(
        "grid API p95 (2,000 runs)", p95_ms(client, "/api/v1/performance/grid?metric=ttft_p95_ms", **auth), 150, "ms"
    )
    report.line(
        "grid API p95, cost metric and a filter",
        p95_ms(client, "/api/v1/performance/grid?metric=cost_per_1m_output_usd&concurrency=8", **auth),
        150,
        "ms",
    )
    ids = list(PerformanceRun.objects.filter(team=team).values_list("pk", flat=True)[:2])
    report.line(
        "compare API p95 (2 runs × 1,000 samples, Mann-Whitney)",
        p95_ms(client, f"/api/v1/performance/compare?runs={ids[0]},{ids[1]}", **auth),
        150,
        "ms",
    )
    ids4 = list(PerformanceRun.objects.filter(team=team).values_list("pk", flat=True)[:4])
    report.line(
        "compare API p95 (4 runs)",
        p95_ms(client, f"/api/v1/performance/compare?runs={','.join(map(str, ids4))}", **auth),
        150,
        "ms",
    )
    return report.close()


if __name__ == "__main__":
    sys.exit(main())
