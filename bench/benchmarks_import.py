"""`make bench`, benchmark suites (issue 15): importing a 12,000-item MMLU-Pro-shaped Parquet file ≤ 10 s.

The file is generated here (tests/benchmarks/files.py: `mmlu_pro_items` + `mmlu_pro_parquet`, nothing
downloaded) with realistic lengths: ~400-character questions, 3–10 options of ~60 characters (most 10, the rest
padded with "N/A" as some releases are), ~600-character cot_content, 14 categories. The timed path is the
product's: `imports.suite_import` (parse the Parquet bytes, check every row, store the suite and its 12,000
items in one transaction) against a fresh PostgreSQL database, as a web request or API call runs it. Median of
three imports (BENCH_BENCHMARKS_IMPORT_RUNS); each makes the next version of the same suite name.
"""

import os
import statistics
import sys
import time

from common import ROOT, Report, ensure_database, setup_django

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/llmbench_bench") + "_benchmarks"
RUNS = int(os.environ.get("BENCH_BENCHMARKS_IMPORT_RUNS", "3"))
ITEMS = 12_000
TARGET_S = 10.0

ensure_database(PG_URL)
setup_django(PG_URL)
sys.path.insert(0, str(ROOT))

from django.core.management import call_command  # noqa: E402

from apps.accounts.models import Team  # noqa: E402
from apps.benchmarks.imports import suite_import  # noqa: E402
from apps.benchmarks.models import BenchmarkSuite  # noqa: E402
from tests.benchmarks.files import mmlu_pro_items, mmlu_pro_parquet  # noqa: E402


def main() -> int:
    call_command("migrate", verbosity=0)
    team, _ = Team.objects.get_or_create(slug="bench-benchmarks", defaults={"name": "Bench benchmarks"})
    BenchmarkSuite.objects.filter(team=team).delete()  # earlier bench runs (no runs use them)
    started = time.perf_counter()
    items = mmlu_pro_items(ITEMS, seed=15, question_chars=400, option_chars=60, cot_chars=600)
    data = mmlu_pro_parquet(items)
    print(f"MMLU-Pro-shaped Parquet: {ITEMS:,} items, {len(data) / 1e6:.1f} MB, "
          f"built in {time.perf_counter() - started:.1f} s")  # fmt: skip
    report = Report()
    seconds = []
    for n in range(RUNS):
        started = time.perf_counter()
        suite = suite_import(team=team, user=None, name="MMLU-Pro bench", files=[("test.parquet", data)])
        seconds.append(time.perf_counter() - started)
        if suite.item_count != ITEMS or suite.items.count() != ITEMS:
            raise SystemExit(f"the import stored {suite.items.count()} items, not {ITEMS}")
        print(f"  import {n + 1}: v{suite.version}, {suite.item_count:,} items in {seconds[-1]:.2f} s")
    report.line(f"benchmark import: {ITEMS:,}-item MMLU-Pro Parquet (median of {RUNS})", statistics.median(seconds),
                TARGET_S, "s")  # fmt: skip
    BenchmarkSuite.objects.filter(team=team).delete()
    return report.close()


if __name__ == "__main__":
    sys.exit(main())
