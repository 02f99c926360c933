"""`make bench`, benchmark runs (issue 15): a 12,000-item run against mockllm's known-answer mode at concurrency 64,
every answer checkpointed.

Targets: with zero latency ≥ 300 items/s; with 200 ms responses ≥ 95% of 64 / 0.2 s = 304 items/s.

The suite is MMLU-Pro-shaped with realistic lengths (tests/benchmarks/files.py, nothing downloaded), imported once
through `imports.suite_import`; its answer key goes to `manage.py mockllm --answer-key` (its own process, pinned to
CPU 1 as bench/loadgen.py does; requests not streamed, so the mock sends each answer whole after TTFT). The timed
path is the product's: `benchmark_run_create`, `benchmark_run_start`, then the django-q2 task body
`runner.run_benchmark` chunk after chunk (each handed the lease by the one before, BATCH_CHUNK_S as configured) in
this process as a worker runs it, against PostgreSQL, every answer stored and scored. Items/s = items / (time from
start to completed); the accuracy must be the key's exact expected one. Median of three runs per latency
(BENCH_BENCHMARKS_RUNS; BENCH_BENCHMARKS_ITEMS shrinks the suite for a quick look).
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
from common import ROOT, Report, ensure_database, setup_django

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/llmbench_bench") + "_benchmarks_run"
RUNS = int(os.environ.get("BENCH_BENCHMARKS_RUNS", "3"))
ITEMS = int(os.environ.get("BENCH_BENCHMARKS_ITEMS", "12000"))
CONCURRENCY, ACCURACY = 64, 0.8
ZERO_TARGET = 300.0
SLOW_MS = 200.0
SLOW_TARGET = 0.95 * CONCURRENCY / (SLOW_MS / 1000)

ensure_database(PG_URL)
setup_django(PG_URL)
sys.path.insert(0, str(ROOT))

from django.core.management import call_command  # noqa: E402
from loadgen import free_port, pin, start_mock  # noqa: E402

from apps.accounts.models import Team  # noqa: E402
from apps.benchmarks import services  # noqa: E402
from apps.benchmarks.imports import suite_answer_key, suite_import  # noqa: E402
from apps.benchmarks.models import BenchmarkRun, BenchmarkSuite  # noqa: E402
from apps.benchmarks.runner import run_benchmark  # noqa: E402
from apps.benchmarks.selectors import run_results  # noqa: E402
from apps.benchmarks.services import (  # noqa: E402
    TargetSpec,
    benchmark_run_create,
    benchmark_run_delete,
    benchmark_run_start,
)
from apps.providers.engine.knownanswer import KnownAnswers, load_key  # noqa: E402
from apps.providers.models import ProviderEndpoint  # noqa: E402
from tests.benchmarks.files import mmlu_pro_items, mmlu_pro_parquet  # noqa: E402


def the_suite(team: Team) -> BenchmarkSuite:
    """The bench suite, imported once and kept between bench runs (the key follows it)."""
    name = f"MMLU-Pro run bench {ITEMS}"
    suite = BenchmarkSuite.objects.filter(team=team, name=name).order_by("-version").first()
    if suite is None:
        items = mmlu_pro_items(ITEMS, seed=15, question_chars=400, option_chars=60, cot_chars=600)
        suite = suite_import(team=team, user=None, name=name, files=[("test.parquet", mmlu_pro_parquet(items))])
    return suite


def one_run(team: Team, suite: BenchmarkSuite, endpoint: ProviderEndpoint, n: int) -> tuple[float, float]:
    """(items/s, accuracy) of one run, timed from start to completed."""
    run = benchmark_run_create(team=team, user=None, suite=suite, name=f"bench {endpoint.name} {n}",
                               concurrency=CONCURRENCY, max_tokens=64, targets=[TargetSpec(endpoint, "mock")])  # fmt: skip
    started = time.perf_counter()
    benchmark_run_start(run=run)
    status, lease = "continued", ""
    while status == "continued":  # the next chunk, as the queue would run it
        status = run_benchmark(run.pk, lease)
        lease = BenchmarkRun.objects.get(pk=run.pk).lease
    wall = time.perf_counter() - started
    run.refresh_from_db()
    if status != "completed" or run.completed_answers != ITEMS:
        raise SystemExit(f"the run ended {status} with {run.completed_answers} answers: {run.error}")
    (result,) = run_results(run, alternates=False)
    accuracy = result.overall.accuracy
    benchmark_run_delete(run=run)
    return ITEMS / wall, accuracy


def main() -> int:
    call_command("migrate", verbosity=0)
    services.job_submit = lambda **kwargs: None  # run here, not through a queue
    pin(0)
    team, _ = Team.objects.get_or_create(slug="bench-benchmark-runs", defaults={"name": "Bench benchmark runs"})
    BenchmarkRun.objects.filter(team=team).delete()
    suite = the_suite(team)
    report = Report()
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "key.jsonl"
        key.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in suite_answer_key(suite)))
        want = KnownAnswers(load_key(str(key)), accuracy=ACCURACY).expected_accuracy()
        for label, ttft_ms, target in (("zero latency", 0.0, ZERO_TARGET), (f"{SLOW_MS:g} ms responses", SLOW_MS,
                                                                           SLOW_TARGET)):  # fmt: skip
            port = free_port()
            mock = start_mock(port, ["--ttft-ms", str(ttft_ms), "--itl-ms", "0", "--output-tokens", "64",
                                     "--request-log-size", "0", "--answer-key", str(key),
                                     "--answer-accuracy", str(ACCURACY)])  # fmt: skip
            try:
                endpoint, _ = ProviderEndpoint.objects.update_or_create(
                    team=team, name=f"mockllm {label}",
                    defaults={"kind": "openai_compatible", "base_url": f"http://127.0.0.1:{port}/v1",
                              "model_names": ["mock"]},
                )  # fmt: skip
                rates = []
                for n in range(RUNS):
                    rate, accuracy = one_run(team, suite, endpoint, n)
                    if accuracy != want:
                        raise SystemExit(f"accuracy {accuracy} is not the known {want}")
                    print(f"  {label}, run {n + 1}: {rate:,.0f} items/s, accuracy {accuracy:.4f} (exact)")
                    rates.append(rate)
                report.line(f"benchmark run: items/s, {label}, c={CONCURRENCY} (median of {RUNS})",
                            statistics.median(rates), target, "it/s", higher_is_better=True)  # fmt: skip
            finally:
                mock.terminate()
                mock.wait(timeout=10)
    return report.close()


if __name__ == "__main__":
    sys.exit(main())
