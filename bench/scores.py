"""`make bench`, part 1: score import and leaderboard targets (issue #2), as measured / target ratios.

Runs on a throw-away SQLite file unless BENCH_DATABASE_URL names another database (its tables
are created and the bench rows are left in a team with the slug 'bench').

* importing a 10,000-row long CSV of scores: under 5 s on SQLite;
* leaderboard page and API with 500 variants × 20 benchmarks: under 100 ms (p95 of 30 requests);
* quantization API over the same scores (400 quantized variants against their BF16 base): under 100 ms.

Then, served (issue 15: "leaderboard and quantization view with measured scores of 100 variants: p95 < 100 ms"),
on the web tier's path as bench/decision.py runs it: a fresh PostgreSQL database (BENCH_PG_URL + "_scores"),
`migrate`, `collectstatic`, `manage.py serve --no-worker` with DEBUG=false. Seeded: 100 variants (25 models ×
BF16 / FP8 / AWQ / GPTQ) with imported scores on 8 benchmarks and measured scores on GSM8K and MMLU-Pro of
12,000 items each (per-item outcomes and answer digests, the same suite per benchmark), so every quantized
variant is compared item by item with its BF16 base: 150 paired comparisons, 9.6 MB of outcomes. `wrk` drives
the leaderboard and quantization pages and APIs with BENCH_SCORES_CONNECTIONS (8) connections for
BENCH_SCORES_SECONDS (10) s, BENCH_SCORES_ROUNDS (3) rounds, the median p95 against 100 ms; no errors allowed.
Skipped with a note when wrk is missing or BENCH_SCORES_SERVED=0; BENCH_SCORES_KEEP_DB=1 reuses the previous
run's database (only when working on this script).
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
import web
from common import Report, Timer, setup_django

setup_django(
    os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{tempfile.mkdtemp(prefix='llmbench-bench-')}/bench.sqlite3")
)

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from apps.accounts.models import Membership, Team  # noqa: E402
from apps.accounts.services import membership_set, token_create  # noqa: E402
from apps.scores.models import ModelVariant  # noqa: E402
from apps.scores.services import scores_import  # noqa: E402

VARIANTS, BENCHMARKS, REQUESTS = 500, 20, 30

SERVED_PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/llmbench_bench") + "_scores"
SERVED_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
CONNECTIONS = int(os.environ.get("BENCH_SCORES_CONNECTIONS", "8"))
SECONDS = int(os.environ.get("BENCH_SCORES_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_SCORES_ROUNDS", "3"))
MEASURED_ITEMS = 12_000
SERVED_PAGES = (
    ("leaderboard page", "/scores/", "session"),
    ("quantization page", "/scores/quantization/", "session"),
    ("leaderboard API", "/api/v1/scores/leaderboard?page_size=100", "token"),
    ("quantization API", "/api/v1/scores/quantization?page_size=100", "token"),
)
# Run in `manage.py shell` against the fresh database: the team, its login (demo / demo-password, as
# web.login_cookie signs in), 100 variants, imported scores and measured ones with their outcomes, in bulk.
SERVED_SEED = f"""
import zlib
import numpy as np
from django.contrib.auth import get_user_model
from apps.accounts.models import Membership, Team
from apps.accounts.services import membership_set
from apps.scores.models import Benchmark, ModelVariant, Score

rng = np.random.default_rng(15)
team = Team.objects.create(slug="demo", name="Bench scores")
user = get_user_model().objects.create_user("demo", password="demo-password")
membership_set(team=team, user=user, role=Membership.Role.VIEWER)
quants = ("BF16", "FP8", "AWQ", "GPTQ")
variants = ModelVariant.objects.bulk_create([ModelVariant(team=team, model_name=f"org/model-{{m:02d}}", quantization=q,
                                             family="Bench") for m in range(25) for q in quants])
imported = [Benchmark(team=team, name=f"Bench-{{b}}") for b in range(8)]
measured = [Benchmark(team=team, name="GSM8K"), Benchmark(team=team, name="MMLU-Pro")]
Benchmark.objects.bulk_create(imported + measured)
scores = [Score(team=team, variant=v, benchmark=b, value_pct=float(rng.uniform(30, 90)), source="bench")
          for v in variants for b in imported + measured]
n = {MEASURED_ITEMS}
for k, benchmark in enumerate(measured):
    for m in range(25):
        base = rng.random(n) < rng.uniform(0.5, 0.85)
        answers = np.where(base, 1, rng.integers(2, 6, n)).astype(np.int64)
        for q, variant in zip(quants, variants[4 * m:4 * m + 4]):
            correct, given = base.copy(), answers.copy()
            if q != "BF16":
                flip = rng.random(n) < {{"FP8": 0.01, "AWQ": 0.03, "GPTQ": 0.04}}[q]
                correct = np.where(flip, rng.random(n) < 0.4 + 0.2 * ~base, base)
                given = np.where(correct, 1, np.where(flip, rng.integers(2, 6, n), answers))
            digests = np.array([zlib.crc32(str(a).encode()) for a in given.tolist()], dtype="<u4")
            value = 100 * float(correct.mean())
            scores.append(Score(
                team=team, variant=variant, benchmark=benchmark, origin="measured", value_pct=value,
                ci_low_pct=value - 0.8, ci_high_pct=value + 0.8, n_items=n, source="Measured: bench",
                provenance={{"run_id": 1000 + 100 * k + m, "target_id": 1, "suite": {{"id": k + 1, "name": benchmark.name,
                            "version": 1, "sha256": f"sha-{{k}}"}}, "endpoint": "bench", "model": variant.model_name,
                            "settings": {{"shots": 0, "temperature": 0.0, "max_tokens": 1024}}}},
                outcomes=np.packbits(correct).tobytes(), answer_digests=digests.tobytes()))
Score.objects.bulk_create(scores, batch_size=200)
print(Score.objects.filter(team=team, origin="measured").count())
"""


def scores_csv() -> bytes:
    rng = np.random.default_rng(7)
    lines = ["model,quantization,benchmark,score,n_shot,stderr,source"]
    quants = ["BF16", "FP8", "AWQ", "GPTQ", "Q4_K_M"]
    for v in range(VARIANTS):
        model, quant = f"org/model-{v // len(quants):03d}", quants[v % len(quants)]
        for b in range(BENCHMARKS):
            lines.append(f"{model},{quant},Bench-{b:02d},{rng.uniform(20, 90):.2f},5,0.4,bench")
    return ("\n".join(lines) + "\n").encode()


def p95_ms(client: Client, url: str, **headers) -> float:
    client.get(url, **headers)  # warm-up
    samples = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = client.get(url, **headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return float(np.percentile(samples, 95))


def main() -> int:
    print(f"== scores, on {connection.vendor}")
    call_command("migrate", verbosity=0)
    team, _ = Team.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    ModelVariant.objects.filter(team=team, performance_runs__isnull=True).delete()
    user, _ = get_user_model().objects.get_or_create(username="bench")
    membership_set(user=user, team=team, role=Membership.Role.MEMBER)
    report = Report()

    content = scores_csv()
    with Timer() as timer:
        summary = scores_import(team=team, content=content)
    assert summary.rows == VARIANTS * BENCHMARKS, summary
    report.line(f"import {summary.rows:,}-row long CSV", timer.seconds, 5.0, "s")
    with Timer() as timer:
        scores_import(team=team, content=content)
    report.line(f"re-import the same {summary.rows:,} rows (updates)", timer.seconds, 5.0, "s")

    client = Client()
    client.force_login(user)
    report.line(f"leaderboard page p95 ({VARIANTS}×{BENCHMARKS})", p95_ms(client, "/scores/"), 100.0, "ms")
    report.line(
        "leaderboard page sorted by a benchmark, p95",
        p95_ms(client, "/scores/?sort=Bench-07&order=asc&page=5"),
        100.0,
        "ms",
    )
    auth = {"HTTP_AUTHORIZATION": f"Token {token_create(user=user, team=team, name='bench').key}"}
    report.line(
        "leaderboard API p95 (all 500 rows in one page)",
        p95_ms(Client(), "/api/v1/scores/leaderboard?page_size=500", **auth),
        100.0,
        "ms",
    )
    report.line(
        "quantization API p95 (400 quantized variants)",
        p95_ms(Client(), "/api/v1/scores/quantization?page_size=500", **auth),
        100.0,
        "ms",
    )
    served(report)
    return report.close()


def fresh_served_database() -> None:
    base, _, name = SERVED_PG_URL.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def served(report: Report) -> None:
    """The leaderboard and quantization pages and APIs with measured scores of 100 variants, served, under wrk."""
    if os.environ.get("BENCH_SCORES_SERVED") == "0":
        print("   served part skipped (BENCH_SCORES_SERVED=0)")
        return
    if not shutil.which("wrk"):
        print("   served part needs wrk: sudo apt-get install wrk (Debian/Ubuntu) or brew install wrk")
        web.zero_line(report, "served scores pages not measured (wrk missing)", 1)
        return
    started = time.monotonic()
    static_root = tempfile.mkdtemp(prefix="llmbench-bench-scores-")
    script = Path(static_root) / "p95.lua"
    script.write_text(web.WRK_SCRIPT)
    env = web.server_env(static_root, DATABASE_URL=SERVED_PG_URL, REDIS_URL=SERVED_REDIS_URL,
                         CACHE_KEY_PREFIX=f"llmbench-scores-{os.getpid()}", DB_APPLICATION_NAME="llmbench-bench-scores")  # fmt: skip
    print(f"== scores served, measured scores of 100 variants, on PostgreSQL, DEBUG=false, {web.cpus()} CPUs, "
          f"{CONNECTIONS} connections × {SECONDS} s per page, {ROUNDS} rounds")  # fmt: skip
    if os.environ.get("BENCH_SCORES_KEEP_DB"):  # only when working on this script: the previous run's rows
        measured_count = "the previous run's"
    else:
        fresh_served_database()
        web.manage(env, "migrate", "--noinput")
        measured_count = web.manage(env, "shell", "-v", "0", "-c", SERVED_SEED).strip().splitlines()[-1]
    web.manage(env, "collectstatic", "--noinput")
    token = web.manage(env, "create_token", "demo", "--team", "demo").strip().splitlines()[-1]
    print(f"   {measured_count} measured scores of {MEASURED_ITEMS:,} items seeded in {time.monotonic() - started:.0f} s",
          flush=True)  # fmt: skip

    server = web.Server(env)
    results: dict[str, list[web.WrkResult]] = {path: [] for _, path, _ in SERVED_PAGES}
    cpu_ms: dict[str, list[float]] = {path: [] for _, path, _ in SERVED_PAGES}
    idle: dict[str, list[float]] = {path: [] for _, path, _ in SERVED_PAGES}
    try:
        headers = {"token": f"Authorization: Token {token}", "session": f"Cookie: {web.login_cookie(server.url)}"}
        for _, path, auth in SERVED_PAGES:
            cold = time.perf_counter()
            web.check_page(server.url + path, headers[auth])  # the first quantization view pairs (a fresh cache)
            print(f"   first {path}: {(time.perf_counter() - cold) * 1000:.0f} ms")
        for _ in range(ROUNDS):
            for _, path, auth in SERVED_PAGES:
                tree, idle_before, started_s = server.tree(), web.idle_seconds(), time.monotonic()
                cpu_before = web.cpu_seconds(tree)
                result = web.wrk(server.url + path, headers[auth], connections=CONNECTIONS, seconds=SECONDS,
                                 script=str(script))  # fmt: skip
                # The web processes' CPU per request, and the machine's idle CPUs: a p95 measured on a busy
                # machine (other processes holding the CPUs) says so.
                elapsed_s = time.monotonic() - started_s
                cpu_ms[path].append((web.cpu_seconds(tree) - cpu_before) * 1000 / max(result.requests, 1))
                idle[path].append((web.idle_seconds() - idle_before) / elapsed_s)
                results[path].append(result)
        if logged := server.errors_logged():
            print(f"   the server logged {logged} internal errors; the last lines of its log:\n{server.log_tail()}")
    finally:
        server.stop()
    for name, path, _ in SERVED_PAGES:
        measured = results[path]
        p95 = statistics.median(m.p95_ms for m in measured)
        print(f"   {name} {path}: p95 {', '.join(f'{m.p95_ms:.0f}' for m in measured)} ms, p50 "
              f"{statistics.median(m.p50_ms for m in measured):.0f} ms, "
              f"{statistics.median(m.rate_per_s for m in measured):,.1f} req/s, web CPU per request "
              f"{statistics.median(cpu_ms[path]):.1f} ms, {statistics.median(idle[path]):.2f} of {web.cpus()} CPUs "
              "idle")  # fmt: skip
        web.zero_line(report, f"{name}: errors at {CONNECTIONS} connections", sum(m.errors for m in measured))
        report.line(f"{name}: p95 at {CONNECTIONS} connections, 100 variants measured", p95, 100.0, "ms")
    shutil.rmtree(static_root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
