"""`make bench`, parameter sweeps (issue #6), on PostgreSQL with Redis, through real processes.

A django-q2 worker (`manage.py qcluster`, one process, the Redis broker) runs each batch in its
chunks; the web app (uvicorn) serves the live page's websocket, which this script watches like a
browser would (a signed-in session, channels-redis between the two processes). Targets:

* a 10,000-combination batch against `sim` with zero latency at ≥ 200 combinations/s, every
  result checkpointed (the seed asks for 10 per minute);
* against `manage.py mockllm` with 500 ms per request (TTFT 100 ms + 40 more tokens at 10 ms)
  and concurrency 32, throughput ≥ 95% of 32 / 0.5 s = 64 results/s. The worker runs with
  BATCH_CHUNK_S=10 here, so the run crosses chunk boundaries (the default is 60 s);
* p95 of the delay from a result's checkpoint (its created_at, set just before its transaction
  commits) to the websocket message carrying it under 250 ms, measured during both runs.

BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/llmbench_bench, created when missing)
and BENCH_REDIS_URL (default redis://127.0.0.1:6379/14, flushed) name the services.
"""

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import redis
from common import ROOT, Report, ensure_database, setup_django

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/llmbench_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
SIM_COMBINATIONS, MOCK_CONCURRENCY, MOCK_REQUEST_MS = 10_000, 32, 500
SIM_STEP = float(os.environ.get("BENCH_BATCH_SIM_STEP", "0.01"))  # 0.01: 100 × 100 values
MOCK_RESULTS = int(os.environ.get("BENCH_BATCH_MOCK_RESULTS", "2560"))  # 40 s at the ideal 64/s


ensure_database(PG_URL)
redis.from_url(REDIS_URL).flushdb()
os.environ["REDIS_URL"] = REDIS_URL
setup_django(PG_URL)

import aiohttp  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from apps.accounts.models import Membership, Team  # noqa: E402
from apps.accounts.services import membership_set  # noqa: E402
from apps.batches.models import Batch  # noqa: E402
from apps.batches.services import batch_create, batch_start  # noqa: E402
from apps.experiments.models import Experiment, Response  # noqa: E402
from apps.providers.models import ProviderEndpoint  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict:
    return {**os.environ, "DATABASE_URL": PG_URL, "REDIS_URL": REDIS_URL, "DJANGO_SETTINGS_MODULE": "llmbench.settings",
            "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING", **extra}  # fmt: skip


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


def worker(**extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=child_env(Q_WORKERS="1", **extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 9)
    proc.wait(timeout=10)


async def watch(web_url: str, session_id: str, batch_id: int, delays: list[float], done: asyncio.Event) -> None:
    """Follow the live page's websocket: for every result, arrival − its checkpoint time."""
    ws_url = web_url.replace("http", "ws") + f"/ws/batches/{batch_id}/"
    headers = {"Origin": web_url, "Cookie": f"sessionid={session_id}"}
    async with aiohttp.ClientSession() as client, client.ws_connect(ws_url, headers=headers, max_msg_size=0) as ws:
        async for message in ws:
            arrived = time.time()
            data = json.loads(message.data)
            if os.environ.get("BENCH_DEBUG"):
                print(data["type"], data["state"]["status"], data["state"]["completed_results"], len(data["results"]))
            if data["type"] == "results":
                delays.extend((arrived - r["at"]) * 1000 for r in data["results"])
            if data["state"]["status"] in ("completed", "failed", "cancelled"):
                done.set()
                return


def run_batch(team, user, web_url: str, session_id: str, **fields) -> tuple[Batch, list[float], float]:
    """Create, start and watch one batch until it ends; (batch, websocket delays in ms, wall seconds)."""
    batch = batch_create(team=team, user=user, **fields)
    delays: list[float] = []

    async def main() -> float:
        done = asyncio.Event()
        watcher = asyncio.create_task(watch(web_url, session_id, batch.pk, delays, done))
        await asyncio.sleep(0.5)  # connected and given the first state
        started = time.perf_counter()
        await asyncio.to_thread(batch_start, batch=batch, confirm=True)
        await asyncio.wait_for(done.wait(), timeout=600)
        wall = time.perf_counter() - started
        await watcher
        return wall

    wall = asyncio.run(main())
    return Batch.objects.select_related("experiment").get(pk=batch.pk), delays, wall


def report_run(report: Report, name: str, batch: Batch, delays: list[float], wall: float) -> float:
    experiment = batch.experiment
    stored = Response.objects.filter(experiment_id=batch.pk).count()
    if experiment.status != Experiment.Status.COMPLETED or stored != batch.result_count:
        raise SystemExit(
            f"{name}: {experiment.status} with {stored} of {batch.result_count} results: {experiment.error}"
        )
    running_s = (experiment.finished_at - experiment.started_at).total_seconds()
    rate = batch.result_count / running_s
    p95 = float(np.percentile(delays, 95)) if delays else float("inf")
    print(f"  {name}: {stored:,} results in {running_s:.1f} s running ({wall:.1f} s from start to the last message); "
          f"websocket delay p50 {np.percentile(delays, 50):.0f} ms, p95 {p95:.0f} ms, max {max(delays):.0f} ms over "
          f"{len(delays):,} results")  # fmt: skip
    report.line(f"{name}: checkpoint → websocket p95", p95, 250, "ms")
    return rate


def main() -> int:
    call_command("migrate", verbosity=0)
    Experiment.objects.filter(team__slug="bench-batches").delete()
    team, _ = Team.objects.get_or_create(slug="bench-batches", defaults={"name": "Bench batches"})
    Team.objects.filter(pk=team.pk).update(batch_confirm_requests=1_000_000)
    user, _ = get_user_model().objects.get_or_create(username="bench-batches")
    membership_set(user=user, team=team, role=Membership.Role.MEMBER)
    client = Client()
    client.force_login(user)
    session_id = client.cookies["sessionid"].value
    sim, _ = ProviderEndpoint.objects.update_or_create(
        team=team, name="instant", defaults={"kind": "sim", "base_url": "sim://local?zero_latency=1"}
    )
    report = Report()
    web_port, mock_port = free_port(), free_port()
    web = subprocess.Popen([sys.executable, "-m", "uvicorn", "llmbench.asgi:application", "--port", str(web_port),
                            "--lifespan", "off", "--log-level", "warning"], cwd=ROOT, env=child_env(),
                           start_new_session=True)  # fmt: skip
    mock = subprocess.Popen(
        [sys.executable, "manage.py", "mockllm", "--port", str(mock_port), "--ttft-ms", "100", "--itl-ms", "10",
         "--output-tokens", "41"], cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    web_url = f"http://127.0.0.1:{web_port}"
    try:
        wait_http(f"{web_url}/health", web, "uvicorn")
        wait_http(f"http://127.0.0.1:{mock_port}/v1/models", mock, "manage.py mockllm")

        sim_worker = worker()
        try:
            batch, delays, wall = run_batch(
                team, user, web_url, session_id, name="bench: 10,000 combinations on sim", targets=[(sim, "sim-small")],
                prompt="Explain in a short paragraph why caching speeds up model serving.", concurrency=32,
                parameter_ranges={"temperature": {"min": SIM_STEP, "max": 1.0, "step": SIM_STEP}, "top_p": {"min": SIM_STEP, "max": 1.0, "step": SIM_STEP},
                                  "max_tokens": 64},
            )  # fmt: skip
        finally:
            stop(sim_worker)
        assert batch.combination_count == round(1 / SIM_STEP) ** 2
        rate = report_run(report, "sim", batch, delays, wall)
        report.line("sim, zero latency: combinations/s, every one checkpointed", rate, 200, "/s", higher_is_better=True)

        endpoint, _ = ProviderEndpoint.objects.update_or_create(
            team=team, name="mockllm", defaults={"kind": "openai_compatible", "base_url": f"http://127.0.0.1:{mock_port}/v1",
                                                 "max_concurrency": None},
        )  # fmt: skip
        mock_worker = worker(BATCH_CHUNK_S="10", Q_TIMEOUT_S="60", Q_RETRY_S="90")
        try:
            seeds = MOCK_RESULTS // 20
            batch, delays, wall = run_batch(
                team, user, web_url, session_id, name="bench: mockllm at 500 ms", targets=[(endpoint, "mock")],
                prompt="Tell me about load testing.", concurrency=MOCK_CONCURRENCY,
                parameter_ranges={"temperature": {"min": 0.0, "max": 1.9, "step": 0.1}, "seed": {"min": 0, "max": seeds - 1, "step": 1}},
            )  # fmt: skip
        finally:
            stop(mock_worker)
        latency = Response.objects.filter(experiment_id=batch.pk, error_code="").values_list("latency_ms", flat=True)
        print(
            f"  mockllm: request latency mean {np.mean(list(latency)):.0f} ms (the mock's profile: {MOCK_REQUEST_MS} ms)"
        )
        rate = report_run(report, "mockllm", batch, delays, wall)
        ideal = MOCK_CONCURRENCY / (MOCK_REQUEST_MS / 1000)
        report.line(f"mockllm 500 ms, concurrency 32: results/s (ideal {ideal:g})", rate, 0.95 * ideal, "/s",
                    higher_is_better=True)  # fmt: skip
    finally:
        stop(web)
        stop(mock)
    return report.close()


if __name__ == "__main__":
    sys.exit(main())
