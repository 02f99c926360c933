"""Runs stored through the real service, from generated samples."""

import numpy as np

from apps.hardware.parsed import ParsedRun, ParsedSample
from apps.hardware.services import RunTarget, run_store
from tests.factories import HardwareProfileFactory, ModelVariantFactory


def generated_samples(n: int = 50, *, seed: int = 0, ttft_ms: float = 100.0, gap_ms: float = 10.0, failures: int = 2):
    """`n` requests with gamma-distributed ITL gaps, of which the last `failures` fail."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        if i >= n - failures:
            samples.append(ParsedSample(index=i, error_code="429", error_message="rate limited", input_tokens=100))
            continue
        gaps = rng.gamma(4.0, gap_ms / 4.0, size=int(rng.integers(10, 40)))
        ttft = float(rng.normal(ttft_ms, ttft_ms / 10))
        samples.append(
            ParsedSample(
                index=i,
                ttft_ms=ttft,
                e2e_ms=ttft + float(gaps.sum()),
                input_tokens=100,
                output_tokens=len(gaps) + 1,
                itl_ms=gaps.tolist(),
                start_offset_ms=float(i * 50),
            )
        )
    return samples


def stored_run(team, *, variant=None, hardware=None, samples=None, concurrency=8, **run_fields):
    variant = variant or ModelVariantFactory(team=team)
    hardware = hardware or HardwareProfileFactory(team=team)
    parsed = ParsedRun(
        source_format="llmbench_json", tool="test", concurrency=concurrency,
        samples=generated_samples() if samples is None else samples, **run_fields,
    )  # fmt: skip
    return run_store(team=team, parsed=parsed, target=RunTarget(variant, hardware, None))
