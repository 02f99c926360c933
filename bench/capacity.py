"""`make bench`, capacity (issue 14): a capacity search against mockllm with a known capacity.

mockllm runs as its own process (`manage.py mockllm`, pinned to CPU 1 as bench/loadgen.py does) with a capacity
model: at most MAX_BATCH requests at once (the rest queue first come, first served) and no token budget, so with
evenly spaced arrivals every request of LENGTH output tokens takes s = TTFT + (LENGTH − 1) × ITL and the server
saturates at C = MAX_BATCH / s requests per second (`mockllm.known_capacity_rps`, derived in
docs/mockllm-capacity.md). Below C no request waits; above it the queue, and TTFT, grow for as long as a probe
lasts. The SLO is p95 TTFT ≤ 500 ms and p95 TPOT ≤ 50 ms, so C is the capacity at that SLO.

The search is the product's own path: `capacity_create` and the task body `runner.run_search` (in this process,
as a worker runs it), against a fresh PostgreSQL database, rate space, from 4 req/s, tolerance 5 %, at most 12
probes. Targets: the bracket contains C, its width is ≤ 10 % of C, within 12 probes; the probes used and the wall
time are printed. Median of three searches (BENCH_CAPACITY_RUNS).
"""

import os
import statistics
import subprocess
import sys
import time

from common import Report, ensure_database, setup_django

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/llmbench_bench") + "_capacity"
RUNS = int(os.environ.get("BENCH_CAPACITY_RUNS", "3"))
PROBE_S = float(os.environ.get("BENCH_CAPACITY_PROBE_S", "8"))
TTFT_MS, ITL_MS, LENGTH, MAX_BATCH = 40.0, 10.0, 64, 16
SLO = {"objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": 500},
                      {"metric": "tpot_ms", "percentile": 95, "max_ms": 50}], "max_error_rate": 0.01}  # fmt: skip

ensure_database(PG_URL)
setup_django(PG_URL)

from django.core.management import call_command  # noqa: E402
from loadgen import free_port, pin  # noqa: E402
from loadgen import start_mock as loadgen_start_mock  # noqa: E402

from apps.accounts.models import Team  # noqa: E402
from apps.capacity.models import CapacitySearch  # noqa: E402
from apps.capacity.runner import run_search  # noqa: E402
from apps.capacity.services import capacity_create, capacity_start  # noqa: E402
from apps.hardware.models import HardwareProfile  # noqa: E402
from apps.providers.mockllm import MockProfile, known_capacity_rps  # noqa: E402
from apps.providers.models import ProviderEndpoint  # noqa: E402
from apps.scores.models import ModelVariant  # noqa: E402

PROFILE = MockProfile(ttft_ms=TTFT_MS, itl_ms=ITL_MS, output_tokens=LENGTH, max_batch=MAX_BATCH)


def start_mock(port: int) -> subprocess.Popen:
    return loadgen_start_mock(port, ["--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS), "--output-tokens", str(LENGTH),
                                     "--max-batch", str(MAX_BATCH), "--request-log-size", "0"])  # fmt: skip


def one_search(team: Team, endpoint: ProviderEndpoint, variant: ModelVariant, hardware: HardwareProfile, n: int):
    search = capacity_create(
        team=team, user=None, name=f"bench {n}", endpoint=endpoint, model="mock", variant=variant, hardware=hardware,
        slo=SLO, space="rate", arrivals="constant", start_level=4, max_level=512, tolerance=0.05,
        probe_duration_s=PROBE_S, max_probes=12, prompt_tokens=32, output_tokens=LENGTH, seed=n,
    )  # fmt: skip
    capacity_start(search=search)
    started = time.perf_counter()
    status = run_search(search.pk)
    while status == "continued":  # the next chunk, as the queue would run it
        status = run_search(search.pk, CapacitySearch.objects.get(pk=search.pk).lease)
    wall = time.perf_counter() - started
    search.refresh_from_db()
    if status != "completed":
        raise SystemExit(f"the search ended {status}: {search.error}")
    return search, wall


def main() -> int:
    call_command("migrate", verbosity=0)
    import apps.capacity.services as services

    services.job_submit = lambda **kwargs: None  # run here, not through a queue
    pin(0)
    port = free_port()
    mock = start_mock(port)
    report = Report()
    try:
        team, _ = Team.objects.get_or_create(slug="bench-capacity", defaults={"name": "Bench capacity"})
        endpoint, _ = ProviderEndpoint.objects.update_or_create(
            team=team, name="mockllm", defaults={"kind": "openai_compatible", "base_url": f"http://127.0.0.1:{port}/v1"}
        )
        variant, _ = ModelVariant.objects.get_or_create(team=team, model_name="mock", quantization="BF16")
        hardware, _ = HardwareProfile.objects.update_or_create(
            team=team, name="bench GPU", defaults={"hourly_cost_usd": 2.0, "accelerator_count": 1}
        )
        capacity = known_capacity_rps(PROFILE, output_tokens=LENGTH, prompt_tokens=1, ttft_max_ms=500, tpot_max_ms=50)
        print(f"mockllm: max batch {MAX_BATCH}, TTFT {TTFT_MS:g} ms, ITL {ITL_MS:g} ms, {LENGTH} tokens: "
              f"known capacity C = {capacity:.2f} req/s")  # fmt: skip
        rows = []
        for n in range(RUNS):
            search, wall = one_search(team, endpoint, variant, hardware, n)
            low, high = search.capacity_low, search.capacity_high
            probes = list(search.probes.order_by("index").values_list("level", "verdict"))
            print(f"  search {n + 1}: capacity {search.capacity:g} req/s [{low:g}, {high:g}], {len(probes)} probes in "
                  f"{wall:.0f} s, ${search.cost_per_1m_output_usd:.3f} per 1M output tokens; "
                  + ", ".join(f"{level:g}:{verdict}" for level, verdict in probes))  # fmt: skip
            rows.append((low, high, len(probes), wall))
        contains = [1.0 if low <= capacity <= high else 0.0 for low, high, _, _ in rows]
        widths = [(high - low) / capacity * 100 for low, high, _, _ in rows]
        report.line("capacity search: searches whose bracket holds C (share)", statistics.median(contains), 1.0,
                    "share", higher_is_better=True)  # fmt: skip
        report.line("capacity search: bracket width, % of C (median of 3)", statistics.median(widths), 10, "%")
        report.line("capacity search: probes used (median of 3)", statistics.median(r[2] for r in rows), 12, "probes")
        print(f"capacity search: wall time {statistics.median(r[3] for r in rows):.0f} s (median of {RUNS})")
    finally:
        mock.terminate()
        mock.wait(timeout=10)
    return report.close()


if __name__ == "__main__":
    sys.exit(main())
