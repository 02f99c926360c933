"""Demo hardware, deployments and performance runs with generated (not measured) samples."""

import numpy as np

from apps.accounts.models import Team
from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun
from apps.hardware.parsed import ParsedRun, ParsedSample
from apps.hardware.services import RunTarget, run_store
from apps.scores.models import ModelVariant

DEMO_TOOL = "llmbench-demo"
HARDWARE = [
    # name, accelerator, count, memory GB, interconnect, hourly cost USD, speed factor
    ("1x H100 80GB", "NVIDIA H100 80GB SXM", 1, 80, "NVLink", 2.49, 1.0),
    ("1x L40S 48GB", "NVIDIA L40S 48GB", 1, 48, "PCIe", 1.05, 2.1),
]
VARIANTS = [  # model, quantization, relative cost of a token
    ("meta-llama/Llama-3.1-8B-Instruct", "BF16", 1.0),
    ("meta-llama/Llama-3.1-8B-Instruct", "AWQ", 0.7),
    ("Qwen/Qwen2.5-7B-Instruct", "BF16", 0.95),
]
WORKLOADS = [  # concurrency, input tokens, output tokens
    (1, 256, 128), (4, 512, 128), (8, 1024, 256), (16, 256, 256), (32, 512, 128), (64, 1024, 256),
]  # fmt: skip
REQUESTS_PER_RUN = 80


def _samples(rng, *, concurrency, input_tokens, output_tokens, speed) -> tuple[list[ParsedSample], float]:
    """A closed-loop run under a simple latency model: prefill grows with prompt and load."""
    samples, clock = [], np.zeros(concurrency)
    for index in range(REQUESTS_PER_RUN):
        slot = int(np.argmin(clock))
        start = clock[slot]
        if rng.random() < 0.02:
            samples.append(ParsedSample(index=index, error_code="http_503", error_message="Service Unavailable",
                                        input_tokens=input_tokens, start_offset_ms=float(start)))  # fmt: skip
            clock[slot] += 5.0
            continue
        ttft = speed * (25 + 0.04 * input_tokens * (1 + concurrency / 16)) * rng.lognormal(0, 0.15)
        out = int(max(2, rng.normal(output_tokens, output_tokens * 0.1)))
        itl_mean = speed * (7.5 + 0.25 * concurrency)
        gaps = rng.gamma(shape=16, scale=itl_mean / 16, size=out - 1)
        e2e = ttft + float(gaps.sum())
        samples.append(
            ParsedSample(
                index=index,
                ttft_ms=float(ttft),
                e2e_ms=e2e,
                input_tokens=input_tokens,
                output_tokens=out,
                itl_ms=gaps.round(3).tolist(),
                start_offset_ms=float(start),
            )
        )
        clock[slot] += e2e
    return samples, float(clock.max() / 1000.0)


def demo_performance_load(*, team: Team) -> int:
    """Replace the demo runs of `team` with freshly generated ones (same seed, same numbers)."""
    PerformanceRun.objects.filter(team=team, tool=DEMO_TOOL).delete()
    rng = np.random.default_rng(11)
    deployment, _ = Deployment.objects.get_or_create(
        team=team, name="vLLM 0.11 TP1", defaults={"engine": "vllm", "engine_version": "0.11.0", "max_batch_size": 256}
    )
    created = 0
    for name, accelerator, count, memory, interconnect, cost, speed in HARDWARE:
        hardware, _ = HardwareProfile.objects.get_or_create(
            team=team, name=name,
            defaults={"accelerator": accelerator, "accelerator_count": count, "memory_per_device_gb": memory,
                      "interconnect": interconnect, "hourly_cost_usd": cost, "notes": "Demo hardware."},
        )  # fmt: skip
        for model_name, quantization, token_cost in VARIANTS:
            variant = ModelVariant.objects.get(team=team, model_name=model_name, quantization=quantization)
            for concurrency, input_tokens, output_tokens in WORKLOADS:
                samples, _ = _samples(rng, concurrency=concurrency, input_tokens=input_tokens,
                                      output_tokens=output_tokens, speed=speed * token_cost)  # fmt: skip
                parsed = ParsedRun(
                    source_format="demo", tool=DEMO_TOOL, tool_version="1", concurrency=concurrency,
                    input_tokens_target=input_tokens, output_tokens_target=output_tokens, dataset="synthetic",
                    name=f"demo c{concurrency} {input_tokens}/{output_tokens}", tags=["demo"], samples=samples,
                    notes="Generated demo data, not a measurement.", is_simulated=True,
                )  # fmt: skip
                run_store(team=team, parsed=parsed, target=RunTarget(variant, hardware, deployment))
                created += 1
    return created
