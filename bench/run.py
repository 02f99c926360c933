"""`make bench`: the performance targets of the issues, as measured / target ratios (≤ 1 passes).

Runs on a throw-away SQLite file unless BENCH_DATABASE_URL names another database (its tables
are created and the bench rows are left in a team with the slug 'bench').

Targets (issue #2):
* importing a 10,000-row long CSV of scores: under 5 s on SQLite;
* leaderboard page and API with 500 variants × 20 benchmarks: under 100 ms (p95 of 30 requests).
"""

import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", f"sqlite:///{tempfile.mkdtemp(prefix='llmbench-bench-')}/bench.sqlite3"
)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmbench.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")

# Set Django up exactly as the server process does (including its start-up GC freeze).
importlib.import_module("llmbench.asgi")

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from apps.accounts.models import Membership, Team  # noqa: E402
from apps.accounts.services import membership_set, token_create  # noqa: E402
from apps.scores.models import ModelVariant  # noqa: E402
from apps.scores.services import scores_import  # noqa: E402

VARIANTS, BENCHMARKS, REQUESTS = 500, 20, 30
RESULTS: list[tuple[str, float, float, str]] = []


def report(name: str, measured: float, target: float, unit: str) -> None:
    RESULTS.append((name, measured, target, unit))
    verdict = "ok" if measured <= target else "MISSED"
    print(
        f"{name:<52} {measured:9.1f} {unit:<3} target {target:7.1f} {unit:<3} ratio {measured / target:5.2f}  {verdict}"
    )


def scores_csv() -> bytes:
    rng = np.random.default_rng(7)
    lines = ["model,quantization,benchmark,score,n_shot,stderr,source"]
    quants = ["BF16", "FP8", "AWQ", "GPTQ", "Q4_K_M"]
    for v in range(VARIANTS):
        model, quant = f"org/model-{v // len(quants):03d}", quants[v % len(quants)]
        for b in range(BENCHMARKS):
            lines.append(f"{model},{quant},Bench-{b:02d},{rng.uniform(20, 90):.2f},5,0.4,bench")
    return ("\n".join(lines) + "\n").encode()


def timed_requests(client: Client, url: str, **headers) -> list[float]:
    client.get(url, **headers)  # warm-up
    samples = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = client.get(url, **headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return samples


def main() -> int:
    print(f"database: {connection.vendor} ({os.environ['DATABASE_URL'].split('@')[-1]})")
    call_command("migrate", verbosity=0)
    team, _ = Team.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    ModelVariant.objects.filter(team=team).delete()
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench")
    membership_set(user=user, team=team, role=Membership.Role.MEMBER)

    content = scores_csv()
    started = time.perf_counter()
    summary = scores_import(team=team, content=content)
    import_s = time.perf_counter() - started
    assert summary.rows == VARIANTS * BENCHMARKS, summary
    report(f"import {summary.rows:,}-row long CSV (new rows)", import_s, 5.0, "s")
    started = time.perf_counter()
    summary = scores_import(team=team, content=content)
    report(f"re-import the same {summary.rows:,} rows (updates)", time.perf_counter() - started, 5.0, "s")

    client = Client()
    client.force_login(user)
    page = timed_requests(client, "/scores/")
    report(f"leaderboard page p95 ({VARIANTS}×{BENCHMARKS})", float(np.percentile(page, 95)), 100.0, "ms")
    sorted_page = timed_requests(client, "/scores/?sort=Bench-07&order=asc&page=5")
    report("leaderboard page, sorted by a benchmark, p95", float(np.percentile(sorted_page, 95)), 100.0, "ms")
    key = token_create(user=user, team=team, name="bench").key
    api = timed_requests(Client(), "/api/v1/scores/leaderboard?page_size=500", HTTP_AUTHORIZATION=f"Token {key}")
    report("leaderboard API p95 (all 500 rows in one page)", float(np.percentile(api, 95)), 100.0, "ms")
    quant = timed_requests(Client(), "/api/v1/scores/quantization?page_size=500", HTTP_AUTHORIZATION=f"Token {key}")
    report("quantization API p95 (400 quantized variants)", float(np.percentile(quant, 95)), 100.0, "ms")
    print(f"  (p50 of the two APIs: {np.percentile(api, 50):.1f} ms, {np.percentile(quant, 50):.1f} ms)")

    missed = [name for name, measured, target, _ in RESULTS if measured > target]
    print(
        f"{len(RESULTS) - len(missed)} of {len(RESULTS)} targets met"
        + (f"; missed: {', '.join(missed)}" if missed else "")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
