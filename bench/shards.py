"""`make bench`, sharded steps (issue 14): one load step sent by two worker processes meeting at the database
barrier, against `manage.py mockllm` (its own process), on PostgreSQL with the Redis broker.

A django-q2 cluster (`manage.py qcluster`, two task workers) runs a sweep of 2 shards: the sweep's task is the
coordinator and sends shard 1, the other worker takes the queued shard 2. Each round runs that sweep (one level,
STEPS trials: STEPS barriers) and then the same sweep unsharded (one process), in the same cluster against the
same mock, so both see the same machine. The mock injects TTFT 50 ms and ITL 5 ms. Targets, each the median of
ROUNDS rounds:

* merged request count exact: every step's stored run holds exactly the requests the step planned;
* start skew (each shard's actual start − the shared start) p99 ≤ 5 ms over every shard of every barrier;
* TTFT error (mean measured TTFT − the injected 50 ms, as bench/loadgen.py measures it) of the sharded steps
  at most 2 ms above the unsharded steps' error.

BENCH_PG_URL + "_shards" (default postgres://postgres@127.0.0.1:5432/llmbench_bench_shards, created when missing) and
BENCH_SHARDS_REDIS_URL (default redis://127.0.0.1:6379/11; the cluster's queue has a name of its own) name the
services; BENCH_SHARDS_STEPS and BENCH_SHARDS_ROUNDS shorten the run. Exits 1 when a target is missed.
"""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
from common import ROOT, Report, ensure_database, setup_django

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/llmbench_bench") + "_shards"
REDIS_URL = os.environ.get("BENCH_SHARDS_REDIS_URL", "redis://127.0.0.1:6379/11")
STEPS = int(os.environ.get("BENCH_SHARDS_STEPS", "20"))
ROUNDS = int(os.environ.get("BENCH_SHARDS_ROUNDS", "3"))
TTFT_MS, ITL_MS, TOKENS = 50.0, 5.0, 16
CONCURRENCY, REQUESTS = 8, 64  # per step: 4 streams and 32 requests per shard
SKEW_P99_MS, TTFT_EXTRA_MS = 5.0, 2.0

ensure_database(PG_URL)
os.environ["REDIS_URL"] = REDIS_URL
os.environ["Q_CLUSTER_NAME"] = "llmbench-bench-shards"
setup_django(PG_URL)

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from apps.accounts.models import Membership, Team  # noqa: E402
from apps.accounts.services import membership_set  # noqa: E402
from apps.batches.models import LoadSweep  # noqa: E402
from apps.batches.services import sweep_create, sweep_start  # noqa: E402
from apps.hardware.models import RequestSample  # noqa: E402
from apps.providers.models import ProviderEndpoint  # noqa: E402
from apps.scores.models import ModelVariant  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict:
    return {**os.environ, "DATABASE_URL": PG_URL, "REDIS_URL": REDIS_URL, "DJANGO_SETTINGS_MODULE": "llmbench.settings",
            "LOG_LEVEL": "WARNING", **extra}  # fmt: skip


def wait_http(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=1).read()
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start within 30 s")


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 9)
    proc.wait(timeout=10)


def run_sweep(team, endpoint, variant, shards: int) -> LoadSweep:
    """One level, STEPS trials (a barrier each when sharded), run by the cluster to the end."""
    sweep = sweep_create(
        team=team, user=None, name=f"bench: {shards} shard(s)", endpoint=endpoint, model="mock", variant=variant,
        mode="closed", levels=[CONCURRENCY], trials=STEPS, step_request_count=REQUESTS, output_tokens=TOKENS,
        prompt_tokens=64, shards=shards,
    )  # fmt: skip
    sweep_start(sweep=sweep)
    deadline = time.monotonic() + 60 + 10 * STEPS
    while time.monotonic() < deadline:
        sweep.refresh_from_db()
        if sweep.is_finished:
            if sweep.status != "completed":
                raise SystemExit(f"the sweep {sweep.name!r} {sweep.status}: {sweep.error}")
            return sweep
        time.sleep(0.2)
    raise SystemExit(f"the sweep {sweep.name!r} did not finish in time")


def ttft_error_ms(sweep: LoadSweep) -> float:
    """Mean measured TTFT − the injected TTFT over every successful request of the sweep (bench/loadgen.py)."""
    ttfts = RequestSample.objects.filter(run__sweep_step__sweep=sweep, ttft_ms__isnull=False).values_list(
        "ttft_ms", flat=True
    )
    return float(np.mean(list(ttfts))) - TTFT_MS


def one_round(team, endpoint, variant) -> dict[str, float]:
    sharded = run_sweep(team, endpoint, variant, shards=2)
    single = run_sweep(team, endpoint, variant, shards=1)
    steps = list(sharded.steps.select_related("run"))
    stored = [RequestSample.objects.filter(run=step.run).count() for step in steps]
    skews = np.abs([s for step in steps for s in step.shard_alignment["start_skew_ms"]])
    figures = {
        "count_ratio_min": min(stored) / REQUESTS, "count_ratio_max": max(stored) / REQUESTS,
        "skew_p99_ms": float(np.percentile(skews, 99)), "skew_p50_ms": float(np.percentile(skews, 50)),
        "spread_max_ms": max(step.shard_alignment["spread_ms"] for step in steps),
        "ttft_err_sharded_ms": ttft_error_ms(sharded), "ttft_err_single_ms": ttft_error_ms(single),
    }  # fmt: skip
    figures["ttft_extra_ms"] = figures["ttft_err_sharded_ms"] - figures["ttft_err_single_ms"]
    print("  round: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
    return figures


def main() -> int:
    call_command("migrate", verbosity=0)
    LoadSweep.objects.filter(team__slug="bench-shards").delete()
    team, _ = Team.objects.get_or_create(slug="bench-shards", defaults={"name": "Bench shards"})
    user, _ = get_user_model().objects.get_or_create(username="bench-shards")
    membership_set(user=user, team=team, role=Membership.Role.MEMBER)
    variant, _ = ModelVariant.objects.get_or_create(team=team, model_name="mock", quantization="BF16")
    mock_port = free_port()
    endpoint, _ = ProviderEndpoint.objects.update_or_create(
        team=team, name="mockllm", defaults={"kind": "openai_compatible", "base_url": f"http://127.0.0.1:{mock_port}/v1",
                                             "model_names": ["mock"], "max_concurrency": None},
    )  # fmt: skip
    mock = subprocess.Popen(
        [sys.executable, "manage.py", "mockllm", "--port", str(mock_port), "--ttft-ms", str(TTFT_MS), "--itl-ms",
         str(ITL_MS), "--output-tokens", str(TOKENS)], cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=ROOT,
        env=child_env(Q_WORKERS="2", Q_TIMEOUT_S="600", Q_RETRY_S="700"), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    report = Report()
    try:
        wait_http(f"http://127.0.0.1:{mock_port}/v1/models", mock, "manage.py mockllm")
        rounds = [one_round(team, endpoint, variant) for _ in range(ROUNDS)]
    finally:
        stop(cluster)
        stop(mock)
    median = {name: float(np.median([r[name] for r in rounds])) for name in rounds[0]}
    print(
        f"  median of {ROUNDS}: skew p50 {median['skew_p50_ms']:.2f} ms, widest spread between shards "
        f"{median['spread_max_ms']:.2f} ms; TTFT error sharded {median['ttft_err_sharded_ms']:+.2f} ms, one process "
        f"{median['ttft_err_single_ms']:+.2f} ms",
        flush=True,
    )
    report.line("2 shards: fewest requests stored per step ÷ planned (none lost)", median["count_ratio_min"], 1.0, "",
                higher_is_better=True)  # fmt: skip
    report.line("2 shards: most requests stored per step ÷ planned (none twice)", median["count_ratio_max"], 1.0, "")
    report.line(f"2 shards: start skew p99 over {STEPS} barriers", median["skew_p99_ms"], SKEW_P99_MS, "ms")
    report.line("2 shards: TTFT error − one process's TTFT error", max(median["ttft_extra_ms"], 0.0), TTFT_EXTRA_MS,
                "ms")  # fmt: skip
    return report.close()


if __name__ == "__main__":
    sys.exit(main())
