"""`make bench`, load generator: how exactly the load engine measures a server whose timing is known.

`manage.py mockllm` runs in a subprocess pinned to CPU 1 (niced up when allowed); this harness,
on CPU 0 with uvloop, drives it through `OpenAIAdapter` (one shared aiohttp session, unlimited
connector) and `run_step`. The mock injects TTFT 50 ms and ITL 10 ms. Targets:

* closed loop, 128 tokens, ~10 s at 64 and 256 streams: TTFT error mean (measured − injected)
  ≤ 5 ms at 64 and ≤ 25 ms at 256; ITL mean error within ±0.1 ms; at 256 streams achieved
  concurrency ≥ 95 % and output tokens/s ≥ 95 % of the ideal N·128 / (TTFT + 127·ITL);
* open loop, constant 50/100/150 req/s, 16 tokens, ~10 s: achieved rate ≥ 98 % of the target and
  dispatch delay p99 ≤ 10 ms.

Also printed, without a target: client CPU µs per streamed chunk (the harness's process time over
the content chunks received), the mock's own lateness (first send stamp − arrival − TTFT, seen
from the client), the event loop's lag p99, and the TTFT error of the requests after each
stream's first (what the connection set-up costs, shown, not hidden).

Each step runs as the product's load sweeps run it (apps/batches/runner.py): a new aiohttp session
with an unlimited connector, no warm-up, every request a result, so the first request of each
stream opens its connection. The bench measures what users get. Exits 1 when a target is missed.
"""

import asyncio
import contextlib
import gc
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
from common import Report  # noqa: E402

from apps.providers.engine.adapters import adapter_for  # noqa: E402
from apps.providers.engine.loadgen import StepOutcome, StepSpec, run_step  # noqa: E402
from apps.providers.engine.types import EndpointConfig, GenerationRequest, Kind  # noqa: E402

TTFT_MS, ITL_MS, TOKENS, OPEN_TOKENS = 50.0, 10.0, 128, 16
CLOSED = ((64, 5.0), (256, 25.0))  # streams, TTFT error target (ms)
RATES = (50, 100, 150)
STEP_S = float(os.environ.get("BENCH_LOADGEN_STEP_S", "10"))
PROMPT = [{"role": "user", "content": "Tell me about load testing. " * 10}]  # 70 prompt tokens to the mock
MOCK_CPU, HARNESS_CPU = 1, 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CPUS = os.sched_getaffinity(0)  # before anything is pinned: the mock's child inherits the harness's mask


def pin(cpu: int) -> None:
    if len(CPUS) > 1 and cpu in CPUS:
        os.sched_setaffinity(0, {cpu})


def _mock_preexec() -> None:
    pin(MOCK_CPU)
    with contextlib.suppress(OSError):
        os.nice(-10)  # only as root; without it the mock still has a core of its own


def start_mock(port: int, profile: list[str] | None = None) -> subprocess.Popen:
    """`manage.py mockllm` on `port` pinned to MOCK_CPU, with this bench's profile unless `profile` gives flags."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "llmbench.settings", "PYTHONUNBUFFERED": "1"}
    if profile is None:
        profile = ["--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS), "--output-tokens", str(TOKENS)]
    argv = [sys.executable, "manage.py", "mockllm", "--port", str(port), *profile]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, preexec_fn=_mock_preexec, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"manage.py mockllm exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).read()
            return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("manage.py mockllm did not start within 30 s")


def summary(outcome: StepOutcome, first_sends: int = 0) -> dict[str, float]:
    """The step's errors against the injected timing; `warm_ttft_err_mean` leaves out the first
    `first_sends` requests sent (in closed loop, each stream's first: the one that connects)."""
    ok = [r for r in outcome.results if r.ok and r.chunk_times]
    ttft = outcome.ttft_ms()
    later = sorted(ok, key=lambda r: r.send_time)[first_sends:]
    warm = np.array([r.ttft_ms for r in later])
    gap_s = sum(r.chunk_times[-1] - r.chunk_times[0] for r in ok)
    gap_tokens = sum(sum(r.chunk_tokens[1:]) for r in ok)
    server_first = [(r.server_send_times[0] - r.send_time) * 1000 - TTFT_MS for r in ok if r.server_send_times]
    return {
        "requests": len(outcome.results),
        "first_sends": first_sends,
        "failed": outcome.failed,
        "chunks": sum(len(r.chunk_times) for r in ok),
        "ttft_err_mean": float(ttft.mean()) - TTFT_MS if ttft.size else float("nan"),
        "ttft_err_p99": float(np.percentile(ttft, 99)) - TTFT_MS if ttft.size else float("nan"),
        "warm_ttft_err_mean": float(warm.mean()) - TTFT_MS if warm.size else float("nan"),
        "itl_err_mean": gap_s / gap_tokens * 1000 - ITL_MS if gap_tokens else float("nan"),
        "server_late_mean": float(np.mean(server_first)) if server_first else float("nan"),
    }


async def step(config: EndpointConfig, spec: StepSpec, max_tokens: int) -> tuple[StepOutcome, float]:
    """One step on the product's path: a fresh session and adapter, no warm-up (as
    apps.batches.runner runs a sweep step); returns its outcome and the harness's CPU seconds."""
    request = GenerationRequest(model="mock", messages=PROMPT, max_tokens=max_tokens, ignore_eos=True)
    timeout = aiohttp.ClientTimeout(
        total=config.total_timeout_s, sock_connect=config.connect_timeout_s, sock_read=config.read_timeout_s
    )
    gc.collect()
    cpu = time.process_time()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        adapter = adapter_for(config)
        outcome = await run_step(spec, lambda i: adapter.generate(session, request))
    return outcome, time.process_time() - cpu


async def main(base_url: str, report: Report) -> None:
    config = EndpointConfig(kind=Kind.OPENAI_COMPATIBLE, base_url=base_url)
    for streams, ttft_target in CLOSED:
        outcome, cpu = await step(config, StepSpec(mode="closed", concurrency=streams, duration_s=STEP_S), TOKENS)
        s = summary(outcome, first_sends=streams)
        name = f"closed c={streams}"
        info(outcome, s, cpu, name)
        report.line(f"{name}: TTFT error mean (measured − {TTFT_MS:g} ms)", s["ttft_err_mean"], ttft_target, "ms")
        report.line(f"{name}: |ITL error mean| (measured − {ITL_MS:g} ms)", abs(s["itl_err_mean"]), 0.1, "ms")
        if streams == 256:
            ideal = streams * TOKENS / ((TTFT_MS + (TOKENS - 1) * ITL_MS) / 1000)
            report.line(f"{name}: achieved concurrency", outcome.achieved_concurrency, 0.95 * streams, "",
                        higher_is_better=True)  # fmt: skip
            report.line(f"{name}: output tokens/s (ideal {ideal:,.0f})", outcome.output_tokens_per_s, 0.95 * ideal,
                        "tok/s", higher_is_better=True)  # fmt: skip
    for rate in RATES:
        spec = StepSpec(mode="open", rate_rps=rate, duration_s=STEP_S)
        outcome, cpu = await step(config, spec, OPEN_TOKENS)
        name = f"open {rate} req/s"
        info(outcome, summary(outcome), cpu, name)
        report.line(f"{name}: achieved rate", outcome.achieved_rate_rps, 0.98 * rate, "req/s", higher_is_better=True)
        report.line(f"{name}: dispatch delay p99", outcome.dispatch_delay_p99_ms or 0.0, 10.0, "ms")


def info(outcome: StepOutcome, s: dict[str, float], cpu: float, name: str) -> None:
    """The figures without a target, on one line."""
    print(
        f"  {name}: {s['requests']} requests ({s['failed']} failed), {s['chunks']:,} chunks; "
        f"TTFT error p99 {s['ttft_err_p99']:+.1f} ms, "
        + (f"mean after each stream's first request {s['warm_ttft_err_mean']:+.1f} ms, " if s["first_sends"] else "")
        + f"mock late {s['server_late_mean']:+.2f} ms; "
        f"ITL error {s['itl_err_mean']:+.3f} ms; concurrency {outcome.achieved_concurrency:.1f}; "
        f"{outcome.output_tokens_per_s:,.0f} tok/s; dispatch delay p50/p99 {outcome.dispatch_delay_p50_ms or 0:.2f}/"
        f"{outcome.dispatch_delay_p99_ms or 0:.2f} ms; loop lag p99 {outcome.loop_lag_p99_ms or 0:.2f} ms; "
        f"client CPU {cpu / max(s['chunks'], 1) * 1e6:.1f} µs/chunk"
        + ("" if outcome.client_kept_up else f"; client fell behind: {outcome.kept_up_reason}"),
        flush=True,
    )


def run() -> int:
    pin(HARNESS_CPU)
    port = free_port()
    mock = start_mock(port)
    report = Report()
    try:
        try:
            import uvloop
        except ImportError:
            uvloop = None
        (uvloop.run if uvloop else asyncio.run)(main(f"http://127.0.0.1:{port}/v1", report))
    finally:
        mock.terminate()
        try:
            mock.wait(timeout=10)
        except subprocess.TimeoutExpired:
            mock.kill()
    return report.close()


if __name__ == "__main__":
    sys.exit(run())
