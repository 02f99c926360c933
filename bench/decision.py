"""`make bench`, the capacity answer (issue 14): the decision pages with 500 runs, served, under concurrency.

The web tier's path (bench/web.py): a fresh PostgreSQL database (BENCH_PG_URL + "_decision"), `migrate`,
`collectstatic`, then `manage.py serve --no-worker` with DEBUG=false and its defaults. Seeded here: one team with
500 performance runs with summaries (4 model variants × 3 hardware profiles × 2 deployments, 8 load levels each;
one run in ten simulated, left out as a user sees them by default) and 48 completed capacity searches.

`wrk` (Debian package `wrk`) drives each page and API with BENCH_DECISION_CONNECTIONS (8) connections for
BENCH_DECISION_SECONDS (10) s; the pages with the session cookie of a browser-like login, the API with a token.
Target (issue 14): "Pareto and curve pages with 500 runs: p95 < 300 ms", each figure the median of three rounds
(BENCH_DECISION_ROUNDS); no errors (non-2xx or socket errors) in any round. BENCH_DECISION_KEEP_DB=1 reuses
the previous run's database (only when working on this script).
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import web
from common import Report

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/llmbench_bench") + "_decision"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
CONNECTIONS = int(os.environ.get("BENCH_DECISION_CONNECTIONS", "8"))
SECONDS = int(os.environ.get("BENCH_DECISION_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_DECISION_ROUNDS", "3"))
RUNS = 500
TARGET_P95_MS = 300
PAGES = (
    ("curves page", "/analytics/decision/curves/?slo_ms=500", "session", True),
    ("Pareto page", "/analytics/decision/pareto/", "session", True),
    ("cost page", "/analytics/decision/cost/", "session", False),
    ("curves API", "/api/v1/analytics/decision/curves?slo_ms=500", "token", False),
    ("Pareto API", "/api/v1/analytics/decision/pareto", "token", False),
)
# Run in `manage.py shell` against the fresh database: the team, its login (demo / demo-password, as
# web.login_cookie signs in) and the runs, summaries and searches, in bulk.
SEED = f"""
import numpy as np
from django.contrib.auth import get_user_model
from apps.accounts.models import Membership, Team
from apps.accounts.services import membership_set
from apps.capacity.models import CapacitySearch
from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun, RunSummary
from apps.providers.models import ProviderEndpoint
from apps.scores.models import Benchmark, ModelVariant, Score

rng = np.random.default_rng(14)
team = Team.objects.create(slug="demo", name="Bench decision")
user = get_user_model().objects.create_user("demo", password="demo-password")
membership_set(team=team, user=user, role=Membership.Role.VIEWER)
variants = [ModelVariant.objects.create(team=team, model_name=f"org/{{m}}", quantization=q)
            for m, q in (("llama-8b", "BF16"), ("llama-8b", "FP8"), ("qwen-32b", "BF16"), ("qwen-32b", "AWQ"))]
benchmark = Benchmark.objects.create(team=team, name="MMLU")
for v in variants:
    Score.objects.create(team=team, variant=v, benchmark=benchmark, value_pct=float(rng.uniform(55, 85)))
hardware = [HardwareProfile.objects.create(team=team, name=f"{{n}}x H100", accelerator_count=n, hourly_cost_usd=2.5 * n)
            for n in (1, 2, 8)]
deployments = [Deployment.objects.create(team=team, name=f"{{e}} default", engine=e) for e in ("vllm", "sglang")]
endpoint = ProviderEndpoint.objects.create(team=team, name="lab", kind="openai_compatible",
                                           base_url="http://10.0.0.1:8000/v1")
keys = [(v, h, d) for v in variants for h in hardware for d in deployments]
levels = (1, 2, 4, 8, 16, 32, 64, 128)
runs, summaries = [], []
for r in range({RUNS}):
    v, h, d = keys[r % len(keys)]
    c = levels[(r // len(keys)) % len(levels)]
    runs.append(PerformanceRun(team=team, variant=v, hardware=h, deployment=d, concurrency=c, name=f"run {{r}}",
                               input_tokens_target=512, output_tokens_target=256, is_simulated=r % 10 == 9))
PerformanceRun.objects.bulk_create(runs)
for run in runs:
    c, gpus = run.concurrency, run.hardware.accelerator_count
    tpot = float(8 + c * rng.uniform(0.2, 0.6) / gpus)
    tps = float(c * 1000 / tpot * rng.uniform(0.8, 1.0))
    ttft = float(40 + c * rng.uniform(2, 12) / gpus)
    summaries.append(RunSummary(run=run, source="reported", request_count=500, error_count=0,
                                request_throughput_rps=tps / 256, output_token_throughput_tps=tps,
                                metrics={{"ttft_ms": {{"p50": ttft / 2, "p95": ttft}}, "e2e_ms": {{"p95": ttft + 256 * tpot}},
                                         "tpot_ms": {{"p50": tpot, "mean": tpot}}}}))
RunSummary.objects.bulk_create(summaries)
for i, (v, h, d) in enumerate(keys * 2):
    CapacitySearch.objects.create(
        team=team, name=f"search {{i}}", endpoint=endpoint, model=v.model_name, variant=v, hardware=h, deployment=d,
        slo={{"objectives": [{{"metric": "ttft_ms", "percentile": 95, "max_ms": (500.0, 250.0)[i // len(keys)]}}],
             "max_error_rate": 0.01, "attainment": None, "confidence": 0.95}},
        status="completed", capacity=float(rng.uniform(2, 30)), capacity_rps=float(rng.uniform(2, 30)),
        output_tps=float(rng.uniform(500, 5000)), cost_per_1m_output_usd=float(rng.uniform(0.2, 5)),
        is_simulated=i % 10 == 9,
    )
print(PerformanceRun.objects.filter(team=team).count())
"""

COUNT = "from apps.hardware.models import PerformanceRun; print(PerformanceRun.objects.count())"


def fresh_database() -> None:
    base, _, name = PG_URL.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def main() -> int:
    if not shutil.which("wrk"):
        print("bench/decision.py needs wrk: sudo apt-get install wrk (Debian/Ubuntu) or brew install wrk")
        return 1
    started = time.monotonic()
    static_root = tempfile.mkdtemp(prefix="llmbench-bench-decision-")
    script = Path(static_root) / "p95.lua"
    script.write_text(web.WRK_SCRIPT)
    env = web.server_env(static_root, DATABASE_URL=PG_URL, REDIS_URL=REDIS_URL, CACHE_KEY_PREFIX="llmbench-decision",
                         DB_APPLICATION_NAME="llmbench-bench-decision")  # fmt: skip
    print(f"== decision pages on PostgreSQL, DEBUG=false, {web.cpus()} CPUs, {CONNECTIONS} connections × {SECONDS} s "
          f"per page, {ROUNDS} rounds")  # fmt: skip
    if os.environ.get("BENCH_DECISION_KEEP_DB"):  # only when working on this script
        runs = web.manage(env, "shell", "-v", "0", "-c", COUNT).strip().splitlines()[-1]
    else:
        fresh_database()
        web.manage(env, "migrate", "--noinput")
        runs = web.manage(env, "shell", "-v", "0", "-c", SEED).strip().splitlines()[-1]
    web.manage(env, "collectstatic", "--noinput")
    token = web.manage(env, "create_token", "demo", "--team", "demo").strip().splitlines()[-1]
    print(f"   {runs} runs seeded, static files ready in {time.monotonic() - started:.0f} s", flush=True)

    server = web.Server(env)
    results: dict[str, list[web.WrkResult]] = {path: [] for _, path, _, _ in PAGES}
    try:
        headers = {"token": f"Authorization: Token {token}", "session": f"Cookie: {web.login_cookie(server.url)}"}
        for _, path, auth, _ in PAGES:
            web.check_page(server.url + path, headers[auth])
        for _ in range(ROUNDS):
            for _, path, auth, _ in PAGES:
                results[path].append(web.wrk(server.url + path, headers[auth], connections=CONNECTIONS,
                                             seconds=SECONDS, script=str(script)))  # fmt: skip
        if logged := server.errors_logged():
            print(f"   the server logged {logged} internal errors; the last lines of its log:\n{server.log_tail()}")
    finally:
        server.stop()

    report = Report()
    for name, path, _, target in PAGES:
        measured = results[path]
        p95 = statistics.median(m.p95_ms for m in measured)
        print(f"   {name} {path}: p95 {', '.join(f'{m.p95_ms:.0f}' for m in measured)} ms, p50 "
              f"{statistics.median(m.p50_ms for m in measured):.0f} ms, "
              f"{statistics.median(m.rate_per_s for m in measured):,.1f} req/s")  # fmt: skip
        web.zero_line(report, f"{name}: errors at {CONNECTIONS} connections", sum(m.errors for m in measured))
        if target:
            report.line(f"{name}: p95 at {CONNECTIONS} connections, {RUNS} runs", p95, TARGET_P95_MS, "ms")
        else:
            print(f"   {name}: p95 {p95:.0f} ms (reference, no target)")
    print(f"   whole decision bench: {time.monotonic() - started:.0f} s")
    shutil.rmtree(static_root, ignore_errors=True)
    return report.close()


if __name__ == "__main__":
    sys.exit(main())
