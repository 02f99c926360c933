"""`make bench`, part 1: score import and leaderboard targets (issue #2), as measured / target ratios.

Runs on a throw-away SQLite file unless BENCH_DATABASE_URL names another database (its tables
are created and the bench rows are left in a team with the slug 'bench').

* importing a 10,000-row long CSV of scores: under 5 s on SQLite;
* leaderboard page and API with 500 variants × 20 benchmarks: under 100 ms (p95 of 30 requests);
* quantization API over the same scores (400 quantized variants against their BF16 base): under 100 ms.
"""

import os
import sys
import tempfile
import time

import numpy as np
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
    return report.close()


if __name__ == "__main__":
    sys.exit(main())
