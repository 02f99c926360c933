"""Building blocks of the capacity tests."""

from apps.capacity.services import capacity_create
from tests.batches.helpers import sim_endpoint
from tests.factories import ModelVariantFactory

# The simulator with a capacity: 4 requests at once, 400 output tokens/s shared, no jitter. With 20 output
# tokens per request the server saturates near 4 / (0.0225 + 19 × 0.010) ≈ 18.8 req/s (docs/capacity.md).
SIM_CAPACITY = "sim://cap?ttft_ms=20&itl_ms=5&jitter=0&max_batch=4&tokens_per_s=400"
SIM_SATURATION_RPS = 18.8


def make_search(team, *, endpoint=None, slo=None, **fields):
    endpoint = endpoint or sim_endpoint(team, name="sim-cap", base_url=SIM_CAPACITY, model_names=["sim-medium"])
    defaults = dict(
        name="capacity", endpoint=endpoint, model="sim-medium", variant=ModelVariantFactory(team=team),
        slo=slo or {"objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": 100}], "max_error_rate": 0.01},
        space="rate", arrivals="constant", start_level=4, max_level=64, tolerance=0.1, probe_duration_s=2,
        prompt_tokens=40, output_tokens=20,
    )  # fmt: skip
    defaults.update(fields)
    return capacity_create(team=team, user=None, **defaults)
